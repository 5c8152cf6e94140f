"""Tests of :mod:`agent.measure`."""
