"""``search`` options of the RL searcher (``--method rl``), registered through ``METHOD_ARGS``."""

from __future__ import annotations

import argparse

from .common import LazyChoices

__all__ = ["add_rl_args"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer like 60, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer like 60, got {text!r}")
    return value


def add_rl_args(p: argparse.ArgumentParser) -> None:
    """``--rl-algo``, ``--episodes``, ``--action-mode``, ``--reward``."""
    g = p.add_argument_group("rl (--method rl)")
    g.add_argument("--rl-algo", choices=LazyChoices("agent.searchers.rl", "RL_ALGOS"), default=None,
                   help="stable-baselines3 agent (default td3)")
    g.add_argument("--episodes", type=_positive_int, default=None,
                   help="episodes, one evaluation each (default: --trials); each also counts as a trial")
    g.add_argument("--action-mode", choices=LazyChoices("env.config", "ACTION_MODES"), default=None,
                   help="actions set per-unit ratios (default) or normalised-importance thresholds")
    g.add_argument("--reward", choices=LazyChoices("env.rewards", "reward_names"), default=None,
                   help="episode reward (default acc)")
