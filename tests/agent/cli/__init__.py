"""Tests of :mod:`agent.cli`."""
