"""Tests of :mod:`agent.search`."""
