"""Tests of :mod:`agent.evaluation`."""
