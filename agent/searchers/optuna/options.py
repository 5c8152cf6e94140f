"""Options of the ``optuna`` / ``nsga2`` searchers (:class:`OptunaOptions`): the one place a new option is added.

Each field with a docstring is a ``search`` flag (see :mod:`agent.searchers.options`); this module imports no
heavy library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import user_error
from ..options import from_options, option

__all__ = ["OptunaOptions", "SAMPLERS", "PRUNERS", "OBJECTIVES", "check_storage_url"]

SAMPLERS = ("tpe", "cmaes", "random", "qmc")
"""Samplers of the single-objective ``optuna`` method."""
PRUNERS = ("median", "none")
"""Early-stopping rules for candidates during the short fine-tune."""
OBJECTIVES = ("latency", "flops")
"""Cost objective of ``nsga2`` (minimised next to maximised accuracy)."""
_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql", "cockroachdb")


def check_storage_url(url: str) -> str:
    """Return ``url`` if it looks like an SQLAlchemy database URL Optuna's ``RDBStorage`` accepts.

    Raises:
        UserInputError: Anything else.
    """
    m = re.match(r"^([a-z0-9]+)(\+[a-z0-9_]+)?://", url or "")
    if m is None or m.group(1) not in _DIALECTS:
        raise user_error("--storage must be a database URL, got", url,
                         "e.g. sqlite:///runs/study.db or postgresql://user:pass@host/db")
    return url


@dataclass(frozen=True)
class OptunaOptions:
    """Method-specific options of the ``optuna`` / ``nsga2`` searchers (from ``SearchConfig.options``)."""

    cli_group: ClassVar[str] = "optuna / nsga2"
    """Title of the flag group in ``search --help``."""

    sampler: str | None = option(choices=SAMPLERS)
    """Optuna sampler (default ``tpe``; ``nsga2`` always uses NSGA-II)."""
    storage: str | None = option(parse=check_storage_url)
    """Optuna storage URL (default ``sqlite:///OUT/study.db``); an explicit URL, e.g.
    ``postgresql://user:pw@host/db``, is a study shared by every worker given it (each with its own ``--out``), and
    ``--trials`` is then the study's total over all workers."""
    study_name: str | None = None
    """Study name in the storage (default ``prunepilot-METHOD``)."""
    heartbeat: int = 20
    """Seconds between heartbeats of a running trial in a ``--storage`` study (default 20); a trial silent for 3
    intervals (its worker died) is marked FAIL by a live worker and retried."""
    objective: str | None = option(choices=OBJECTIVES)
    """``nsga2`` cost objective (default ``latency``; ``flops`` with ``--no-latency``)."""
    pruner: str | None = option(choices=PRUNERS)
    """Stop weak candidates during the short fine-tune (default ``median`` for ``optuna``); it acts per fine-tune
    chunk, so it needs fine-tune steps."""
    warm_start: bool = True
    """Enqueue the uniform, greedy and knapsack policies as the first trials."""
    budget_fit: bool | None = None
    """Scale each sampled policy (its kept-channel fractions) onto the FLOPs / params target before evaluating
    (default: on for ``optuna``, off for ``nsga2``, whose front should span the costs)."""
    search_space: str = option("layerwise", cli=False)
    """Preset name (``layerwise``, ``grouped``, ``threshold``) or a YAML / JSON space file (the ``--search-space``
    flag of the search group, shared with ``ray``)."""
    reject_margin: float = option(0.1, cli=False)
    """Candidates predicted over a cost target by more than this fraction are rejected unevaluated."""
    report_chunks: int = option(4, cli=False)
    """Fine-tune chunks scored for the pruner when the evaluation settings have only one."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> OptunaOptions:
        """The options this searcher understands, validated (other keys belong to other methods).

        Raises:
            UserInputError: An unknown sampler / pruner / objective, a bad storage URL or search space.
        """
        opts = from_options(cls, options)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Check every option (the search space file is parsed too).

        Raises:
            UserInputError: A bad value, named with its fix.
        """
        for flag, value, allowed in (("--sampler", self.sampler, SAMPLERS), ("--pruner", self.pruner, PRUNERS),
                                     ("--objective", self.objective, OBJECTIVES)):
            if value is not None and value not in allowed:
                raise user_error(f"unknown {flag}", value, f"choose one of {', '.join(allowed)}")
        if self.storage is not None:
            check_storage_url(self.storage)
        if self.study_name is not None and not str(self.study_name).strip():
            raise user_error("--study-name must not be empty, got", self.study_name, "e.g. --study-name cnn1d-half")
        if not 0 <= self.reject_margin:
            raise user_error("reject_margin must be >= 0, got", self.reject_margin, "e.g. 0.1")
        if isinstance(self.heartbeat, bool) or not isinstance(self.heartbeat, int) or self.heartbeat < 1:
            raise user_error("--heartbeat must be a whole number of seconds >= 1, got", self.heartbeat, "e.g. 20")
        if self.report_chunks < 1:
            raise user_error("report_chunks must be >= 1, got", self.report_chunks, "e.g. 4")
        from search_spaces import load_space

        load_space(self.search_space)
