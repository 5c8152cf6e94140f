"""Tests of :mod:`agent.report`."""
