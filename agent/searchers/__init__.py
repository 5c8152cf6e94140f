"""Policy searchers behind one interface (:class:`Searcher`), registered by name with their options classes.

:class:`Searcher` is imported on first use (PEP 562): the registry and the options classes are light, so the
CLI can build its flags from them without loading torch.
"""

from __future__ import annotations

from typing import Any

from .registry import OPTIONS, SEARCHERS, get_searcher, options_class, searcher_names

__all__ = ["OPTIONS", "SEARCHERS", "Searcher", "get_searcher", "options_class", "searcher_names"]


def __getattr__(name: str) -> Any:
    """Import :class:`Searcher` (and the session machinery behind it) on first access."""
    if name == "Searcher":
        from .base import Searcher

        return Searcher
    raise AttributeError(f"module 'agent.searchers' has no attribute {name!r}")
