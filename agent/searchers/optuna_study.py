"""Optuna plumbing for the ``optuna`` and ``nsga2`` searchers: options, samplers, pruners, the study itself.

The study lives in an RDB storage (default: ``sqlite:///OUT/study.db``, readable by optuna-dashboard) beside
``results.csv``, never instead of it. Opening a study recovers from a killed process: its RUNNING trials are
marked FAIL and their parameters enqueued again, so the resumed search evaluates (or, through the session's
cache, re-serves) exactly what was interrupted.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import user_error

__all__ = ["OptunaOptions", "SAMPLERS", "PRUNERS", "OBJECTIVES", "make_sampler", "make_pruner", "open_study",
           "check_storage_url", "quiet_optuna", "OWNER_ATTR", "RETRY_ATTR", "WARM_ATTR"]

SAMPLERS = ("tpe", "cmaes", "random", "qmc")
"""Samplers of the single-objective ``optuna`` method."""
PRUNERS = ("median", "none")
"""Early-stopping rules for candidates during the short fine-tune."""
OBJECTIVES = ("latency", "flops")
"""Cost objective of ``nsga2`` (minimised next to maximised accuracy)."""
OWNER_ATTR = "prunepilot_owner"
"""Trial user attribute: the output directory of the process that asked for the trial."""
RETRY_ATTR = "prunepilot_retry_of"
"""Trial user attribute: number of the interrupted trial this one re-runs."""
WARM_ATTR = "prunepilot_warm_start"
"""Trial user attribute: which baseline policy a warm-start trial carries."""
_STUDY_ATTR = "prunepilot"
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

    sampler: str | None = None
    """``tpe`` (default), ``cmaes``, ``random`` or ``qmc`` (``nsga2`` always uses NSGA-II)."""
    storage: str | None = None
    """Optuna storage URL (default ``sqlite:///OUT/study.db``); a PostgreSQL URL shares one study between machines."""
    study_name: str | None = None
    """Study name in the storage (default ``prunepilot-<method>``)."""
    objective: str | None = None
    """``nsga2`` cost objective: ``latency`` (measured; default when latency is measured) or ``flops``."""
    pruner: str | None = None
    """``median`` (default for ``optuna``) or ``none``; acts per fine-tune chunk, so it needs fine-tune steps."""
    search_space: str = "layerwise"
    """Preset name (``layerwise``, ``grouped``, ``threshold``) or a YAML / JSON space file."""
    warm_start: bool = True
    """Enqueue the uniform and sensitivity-greedy policies as the first trials."""
    budget_fit: bool | None = None
    """Scale each sampled policy (its kept-channel fractions) onto the FLOPs / params target before evaluating
    (default: on for ``optuna``, off for ``nsga2``, whose front should span the costs)."""
    reject_margin: float = 0.1
    """Candidates predicted over a cost target by more than this fraction are rejected unevaluated."""
    report_chunks: int = 4
    """Fine-tune chunks scored for the pruner when the evaluation settings have only one."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> OptunaOptions:
        """The options this searcher understands, validated (other keys belong to other methods).

        Raises:
            UserInputError: An unknown sampler / pruner / objective, a bad storage URL or search space.
        """
        known = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in options.items() if k in known and v is not None})
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
        if self.report_chunks < 1:
            raise user_error("report_chunks must be >= 1, got", self.report_chunks, "e.g. 4")
        from search_spaces import load_space

        load_space(self.search_space)


def make_sampler(name: str, *, seed: int, trials: int, multi_objective: bool) -> Any:
    """The Optuna sampler ``name`` (NSGA-II for multi-objective studies), seeded."""
    import optuna

    if multi_objective:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials // 4)))
    if name == "tpe":  # constraints-aware: Optuna 5's TPE reads the values set with trial.set_constraint
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(3, min(10, trials // 5)))
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=max(2, min(5, trials // 8)),
                                            warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(name: str) -> Any:
    """The Optuna pruner ``name`` (``none`` -> ``NopPruner``)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _storage(url: str) -> Any:
    import optuna

    try:
        return optuna.storages.RDBStorage(url=url)
    except ImportError as exc:
        raise user_error("the database driver for --storage is not installed:", url,
                         f"install it ({exc}), e.g. pip install psycopg2-binary for PostgreSQL") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "cannot open it"
        raise user_error("cannot open the Optuna storage", url,
                         f"check the URL, the server and permissions ({type(exc).__name__}: {str(exc)[:200]})") from None


def open_study(*, out_dir: Path, storage_url: str | None, study_name: str, directions: Sequence[str],
               sampler: Any, pruner: Any, fingerprint: Mapping[str, Any], fresh: bool) -> tuple[Any, bool]:
    """Create or load the study and recover trials a killed process left RUNNING.

    Args:
        out_dir: The search's output directory (default storage location, and this worker's identity).
        storage_url: Storage URL, or None for ``sqlite:///OUT/study.db``.
        study_name: Study name.
        directions: ``maximize`` / ``minimize`` per objective.
        sampler: The sampler.
        pruner: The pruner.
        fingerprint: What must not change between runs of one study (space, constraints, method).
        fresh: No finished evaluation is being resumed: a default-storage study is started over.

    Returns:
        The study and whether it holds no trials yet (so warm-start trials should be enqueued).

    Raises:
        UserInputError: The stored study was made for a different space / constraints / objectives.
    """
    import optuna
    from optuna.trial import TrialState

    default = storage_url is None
    url = storage_url or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    storage = _storage(url)
    if default and fresh:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:
            pass
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                directions=list(directions), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != list(directions):
        raise user_error(f"study {study_name!r} in {url} has other objectives:",
                         [d.name.lower() for d in study.directions], "use another --study-name or --storage")
    stored = study.user_attrs.get(_STUDY_ATTR)
    if stored is None:
        study.set_user_attr(_STUDY_ATTR, dict(fingerprint))
    elif stored != dict(fingerprint):
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise user_error(f"study {study_name!r} in {url} was made with a different", changed,
                         "resume with the same method, constraints and search space, or pass another --study-name")
    owner = str(out_dir.resolve())
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if default or trial.user_attrs.get(OWNER_ATTR) == owner:
            study.tell(trial.number, state=TrialState.FAIL)
            attrs = {RETRY_ATTR: trial.number}
            if WARM_ATTR in trial.user_attrs:
                attrs[WARM_ATTR] = trial.user_attrs[WARM_ATTR]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    return study, len(study.get_trials(deepcopy=False)) == 0


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Keep Optuna's per-trial INFO lines and the CMA-ES 'constraints unused' warning out of the output."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constraints have been set, but CmaEsSampler")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)
