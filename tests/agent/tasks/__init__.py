"""Tests of :mod:`agent.tasks`."""
