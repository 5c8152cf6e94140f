"""Tests of :mod:`agent.deploy`."""
