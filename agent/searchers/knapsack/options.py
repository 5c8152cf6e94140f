"""Options of the ``knapsack`` searcher (:class:`KnapsackOptions`); this module imports no heavy library."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import user_error
from ..options import LATENCY_RETRIES, from_options, option

__all__ = ["KNAPSACK_VALUES", "KnapsackOptions"]

KNAPSACK_VALUES = ("sensitivity", "importance")
"""What a unit's kept width is worth to the knapsack."""


@dataclass(frozen=True)
class KnapsackOptions:
    """Method-specific options of the ``knapsack`` searcher (from ``SearchConfig.options``)."""

    cli_group: ClassVar[str] = "knapsack"
    """Title of the flag group in ``search --help``."""

    value: str = option("sensitivity", key="knapsack_value", flag="--knapsack-value", choices=KNAPSACK_VALUES)
    """What a unit's kept width is worth: ``sensitivity`` (default), minus the accuracy drop of that unit alone
    at that width, read from the measured sensitivity curves (units x ratios evaluations, cached and shared with
    greedy); ``importance``, the summed mean-normalised importance of the kept channels (HALP's value: no
    evaluation, but blind to which units accuracy depends on, so it can starve a shared residual width)."""
    retries: int = option(LATENCY_RETRIES, cli=False)
    """Re-solves with a tightened latency budget after a measured latency miss."""

    def __post_init__(self) -> None:
        if self.value not in KNAPSACK_VALUES:
            raise user_error("unknown --knapsack-value", self.value, f"choose one of {', '.join(KNAPSACK_VALUES)}")
        if self.retries < 0:
            raise user_error("knapsack retries must be >= 0, got", self.retries, "e.g. 2")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> KnapsackOptions:
        """The options this searcher understands (other keys belong to other methods)."""
        return from_options(cls, options)
