"""Tests of :mod:`agent.searchers`."""
