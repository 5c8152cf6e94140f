"""The searcher interface and registry.

A searcher proposes policies and reads :class:`~agent.evaluation.EvalResult` objects through a
:class:`~agent.search.session.SearchSession`; it never touches model weights. Searchers are registered by name
(the CLI's ``--method``) in :mod:`.registry`, with each method's options class; heavy ones (Optuna, RL, Ray) are
imported only when chosen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from ..search.session import SearchConfig, SearchSession
from .registry import SEARCHERS, get_searcher, searcher_names

if TYPE_CHECKING:
    from ..constraints import Constraints
    from ..evaluation import EvalSettings

__all__ = ["Searcher", "SEARCHERS", "get_searcher", "searcher_names"]


class Searcher(ABC):
    """Base class of every policy searcher."""

    name: ClassVar[str] = ""
    """Registry name (``--method``)."""

    @abstractmethod
    def run(self, session: SearchSession) -> None:
        """Propose and evaluate policies through ``session`` until done or out of budget."""

    @classmethod
    def planned_evaluations(cls, *, config: SearchConfig, constraints: Constraints) -> int:
        """How many evaluations a run will make (the progress bar's length); the trial budget by default."""
        del constraints
        return config.trials

    def describe(self) -> str:
        """One line for logs and summaries."""
        return self.name

    @classmethod
    def check(cls, *, config: SearchConfig, settings: EvalSettings, constraints: Constraints,
              unit_names: Sequence[str] | None = None, unit_kinds: Mapping[str, str] | None = None) -> None:
        """Validate method-specific options before any expensive work (default: nothing to check).

        Called by the CLI before the task is built, and by ``run_search`` with the task's ``unit_names`` and
        ``unit_kinds`` (unit name -> kind, for search spaces that bound each kind) before anything is written.

        Raises:
            UserInputError: An option is invalid.
        """
        del config, settings, constraints, unit_names, unit_kinds
