"""The searcher registry: each ``--method`` name's searcher class and options class, both imported lazily.

This module imports no heavy library: the CLI reads the options classes (:data:`OPTIONS`) to build its flag
groups, and ``prunepilot --help`` must not load torch, Optuna or Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import user_error

if TYPE_CHECKING:
    from .base import Searcher

__all__ = ["SEARCHERS", "OPTIONS", "get_searcher", "searcher_names", "options_class", "option_classes"]

SEARCHERS: dict[str, str] = {
    "uniform": "agent.searchers.baselines:UniformSearcher",
    "global": "agent.searchers.baselines:GlobalSearcher",
    "greedy": "agent.searchers.baselines:GreedySearcher",
    "knapsack": "agent.searchers.knapsack.search:KnapsackSearcher",
    "optuna": "agent.searchers.optuna.search:OptunaSearcher",
    "nsga2": "agent.searchers.optuna.search:NSGA2Searcher",
    "rl": "agent.searchers.rl:RLSearcher",
    "ray": "agent.searchers.ray.tune:RaySearcher",
}
"""Registry: name -> ``module:Class`` (imported lazily)."""

OPTIONS: dict[str, str] = {
    "ray": "agent.searchers.ray.options:RayOptions",
    "optuna": "agent.searchers.optuna.options:OptunaOptions",
    "nsga2": "agent.searchers.optuna.options:OptunaOptions",
    "rl": "agent.searchers.rl.options:RLConfig",
    "knapsack": "agent.searchers.knapsack.options:KnapsackOptions",
}
"""Method name -> its options dataclass (``module:Class``; light modules). Methods without options are absent.

The ``search`` command shows one flag group per class, in this order."""


def _load(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def searcher_names() -> list[str]:
    """Registered searcher names."""
    return list(SEARCHERS)


def get_searcher(name: str) -> type[Searcher]:
    """The searcher class registered as ``name``.

    Raises:
        UserInputError: Unknown name.
    """
    if name not in SEARCHERS:
        raise user_error("unknown method", name, f"choose one of {', '.join(SEARCHERS)}")
    return _load(SEARCHERS[name])


def options_class(name: str) -> type | None:
    """The options dataclass of method ``name`` (None: the method has no options of its own)."""
    ref = OPTIONS.get(name)
    return _load(ref) if ref is not None else None


def option_classes() -> list[type]:
    """Every registered options dataclass once, in :data:`OPTIONS` order."""
    return list(dict.fromkeys(_load(ref) for ref in OPTIONS.values()))
