"""The RL searcher (``rl``): the agent and its episodes in :mod:`.search`, its options in :mod:`.options`.

The searcher is imported on first use (PEP 562), so reading the options (the CLI does, to build its flags) loads
neither gymnasium nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import RL_ALGOS, RLConfig

__all__ = ["RLConfig", "RLSearcher", "RL_ALGOS"]


def __getattr__(name: str) -> Any:
    """Import :class:`RLSearcher` (and gymnasium, torch behind it) on first access."""
    if name == "RLSearcher":
        return importlib.import_module(f"{__name__}.search").RLSearcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
