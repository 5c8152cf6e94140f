"""The RL searcher (``rl``): the agent and its episodes in :mod:`.search`, its options in :mod:`.options`.

The searcher is imported on first use (PEP 562), so reading the options (the CLI does, to build its flags) loads
neither gymnasium nor torch.
"""

from __future__ import annotations

from typing import Any

from .options import RL_ALGOS, RLConfig

__all__ = ["RLConfig", "RLSearcher", "RL_ALGOS"]


def __getattr__(name: str) -> Any:
    """Import the searcher module's public names on first access."""
    from . import search

    if name in search.__all__:
        return getattr(search, name)
    raise AttributeError(f"module 'agent.searchers.rl' has no attribute {name!r}")
