"""Options of the Ray Tune executor (:class:`RayOptions`, ``--method ray`` and ``--method optuna --backend ray``).

Each field with a docstring is a ``search`` flag (see :mod:`agent.searchers.options`); this module imports no
heavy library (Ray is imported by :mod:`.tune` when a search runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import user_error
from ..options import from_options, option

__all__ = ["RayOptions", "RAY_SEARCH_ALGS"]

RAY_SEARCH_ALGS = ("optuna", "random")
"""Proposal algorithms behind Ray Tune."""


@dataclass(frozen=True)
class RayOptions:
    """How Ray Tune runs the evaluations."""

    cli_group: ClassVar[str] = "ray tune (--method ray, or --method optuna --backend ray)"
    """Title of the flag group in ``search --help``."""

    concurrency: int = 2
    """Trials at once (default 2)."""
    cpus_per_trial: float = 1.0
    """CPUs per trial, also its torch thread count (default 1)."""
    gpus_per_trial: float = 0.0
    """GPUs per trial, fractions share a GPU (default 0); > 0 evaluates and times on CUDA."""
    address: str | None = None
    """Join an existing Ray cluster: ``auto`` or ``HOST:PORT`` (default: a private local Ray on 127.0.0.1)."""
    backend: str = "local"
    """``local`` (default) or ``ray``: run ``--method optuna``'s trials on Ray Tune (OptunaSearch with
    ``--sampler``, ``--concurrency`` trials at once)."""
    search_alg: str = option("optuna", flag="--ray-search")
    """``optuna`` (TPE, warm-started; default) or ``random``."""
    max_failures: int = 2
    """Retries of a crashed trial (default 2); a failing evaluation is recorded, not retried."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise user_error("--concurrency must be >= 1, got", self.concurrency, "e.g. --concurrency 2")
        if self.cpus_per_trial <= 0:
            raise user_error("--cpus-per-trial must be > 0, got", self.cpus_per_trial, "e.g. --cpus-per-trial 1")
        if self.gpus_per_trial < 0:
            raise user_error("--gpus-per-trial must be >= 0, got", self.gpus_per_trial, "e.g. --gpus-per-trial 0.5")
        if self.search_alg not in RAY_SEARCH_ALGS:
            raise user_error("unknown --ray-search", self.search_alg, "choose optuna or random")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RayOptions:
        """Options from ``SearchConfig.options`` (CLI names), validated.

        Raises:
            UserInputError: A value out of range, named with its fix.
        """
        return from_options(cls, options)
