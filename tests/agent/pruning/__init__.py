"""Tests of :mod:`agent.pruning`."""
