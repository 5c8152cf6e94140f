"""Optuna plumbing for the ``optuna`` and ``nsga2`` searchers: samplers, pruners, the study itself.

The study lives in an RDB storage (default: ``sqlite:///OUT/study.db``, readable by optuna-dashboard) beside
``results.csv``, never instead of it. Opening a study recovers from a killed process: its RUNNING trials are
marked FAIL and their parameters enqueued again, so the resumed search evaluates (or, through the session's
cache, re-serves) exactly what was interrupted.

A study in an explicit ``--storage`` (PostgreSQL for many machines) is *shared*: every worker asks it for trials,
and ``--trials`` is the study's total (:func:`study_budget_used`). Its running trials send Optuna heartbeats, so
the trial of a worker that died is marked FAIL by a live worker once it falls silent, and re-queued.

The options (and the storage URL check) live in :mod:`.options` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import user_error
from .options import OBJECTIVES, PRUNERS, SAMPLERS, OptunaOptions, check_storage_url

__all__ = ["OptunaOptions", "SAMPLERS", "PRUNERS", "OBJECTIVES", "make_sampler", "make_pruner", "open_study",
           "check_storage_url", "sqlalchemy_url", "interrupted_trials", "fail_and_requeue", "fail_stale", "retried_trial",
           "study_budget_used", "quiet_optuna", "OWNER_ATTR", "RETRY_ATTR", "ROW_ATTR", "WARM_ATTR", "GRACE_BEATS"]

OWNER_ATTR = "prunepilot_owner"
"""Trial user attribute: the output directory of the process that asked for the trial."""
RETRY_ATTR = "prunepilot_retry_of"
"""Trial user attribute: number of the interrupted trial this one re-runs."""
WARM_ATTR = "prunepilot_warm_start"
"""Trial user attribute: which baseline policy a warm-start trial carries."""
ROW_ATTR = "prunepilot_row"
"""Trial user attribute: the output directory whose ``results.csv`` holds this trial's row (unset: no row)."""
GRACE_BEATS = 3
"""A running trial whose heartbeat is this many intervals old belongs to a dead worker."""
_STUDY_ATTR = "prunepilot"


def sqlalchemy_url(url: str) -> str:
    """The URL handed to SQLAlchemy: plain ``postgresql://`` selects the installed psycopg 3 driver.

    SQLAlchemy reads a driver-less ``postgresql://`` as psycopg2, which PrunePilot does not install; an explicit
    driver (``postgresql+psycopg2://``) is kept as given.

    Example:
        >>> sqlalchemy_url("postgresql://u:pw@db:5432/studies")
        'postgresql+psycopg://u:pw@db:5432/studies'
    """
    return "postgresql+psycopg://" + url[len("postgresql://"):] if url.startswith("postgresql://") else url


def _shown(url: str) -> str:
    """``url`` with its password masked (for messages)."""
    return re.sub(r"^([a-z0-9+_]+://[^:/@]+):[^@/]*@", r"\1:***@", url)


def make_sampler(name: str, *, seed: int, trials: int, multi_objective: bool) -> Any:
    """The Optuna sampler ``name`` (NSGA-II for multi-objective studies), seeded."""
    import optuna

    if multi_objective:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials // 4)))
    if name == "tpe":  # constraints-aware: Optuna 5's TPE reads the values set with trial.set_constraint;
        # constant liar: trials running in other workers of a shared study count as bad, so workers spread out
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(3, min(10, trials // 5)),
                                          constant_liar=True)
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


def _storage(url: str, *, heartbeat: int | None) -> Any:
    """Optuna's ``RDBStorage`` for ``url``; with ``heartbeat``, running trials beat and stale ones are retried."""
    import optuna

    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
        callback = (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=3)
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": GRACE_BEATS * heartbeat,
                  ("heartbeat_stale_trial_callback" if retry else "failed_trial_callback"): callback}
    try:
        return optuna.storages.RDBStorage(url=sqlalchemy_url(url), **kwargs)
    except ImportError as exc:
        raise user_error("the database driver for --storage is not installed:", _shown(url),
                         f"install it ({exc}), e.g. pip install 'psycopg[binary]' for PostgreSQL") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "cannot open it"
        raise user_error("cannot open the Optuna storage", _shown(url),
                         f"check the URL, the server and permissions ({type(exc).__name__}: {str(exc)[:200]})") from None


def open_study(*, out_dir: Path, storage_url: str | None, study_name: str, directions: Sequence[str],
               sampler: Any, pruner: Any, fingerprint: Mapping[str, Any], fresh: bool,
               heartbeat: int | None = None) -> tuple[Any, bool]:
    """Create or load the study (checking it was made for this search).

    Args:
        out_dir: The search's output directory (default storage location).
        storage_url: Storage URL, or None for ``sqlite:///OUT/study.db``.
        study_name: Study name.
        directions: ``maximize`` / ``minimize`` per objective.
        sampler: The sampler.
        pruner: The pruner.
        fingerprint: What must not change between runs of one study (space, constraints, method).
        fresh: No finished evaluation is being resumed: a default-storage study is started over.
        heartbeat: Heartbeat interval in seconds (shared studies), or None for none.

    Returns:
        The study and whether it holds no trials yet (so warm-start trials should be enqueued).

    Raises:
        UserInputError: The storage cannot be opened, or the stored study was made for a different space /
            constraints / objectives.
    """
    import optuna

    default = storage_url is None
    url = storage_url or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    storage = _storage(url, heartbeat=heartbeat)
    if default and fresh:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
        except KeyError:
            pass
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                directions=list(directions), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != list(directions):
        raise user_error(f"study {study_name!r} in {_shown(url)} has other objectives:",
                         [d.name.lower() for d in study.directions], "use another --study-name or --storage")
    stored = study.user_attrs.get(_STUDY_ATTR)
    if stored is None:
        study.set_user_attr(_STUDY_ATTR, dict(fingerprint))
    elif stored != dict(fingerprint):
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise user_error(f"study {study_name!r} in {_shown(url)} was made with a different", changed,
                         "resume with the same method, constraints and search space, or pass another --study-name")
    return study, len(study.get_trials(deepcopy=False)) == 0


def interrupted_trials(study: Any, *, owner: str | None) -> list[Any]:
    """RUNNING trials a killed process left behind: those asked by ``owner`` (every one when ``owner`` is None)."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if owner is None or t.user_attrs.get(OWNER_ATTR) == owner]


def fail_and_requeue(study: Any, trial: Any) -> bool:
    """Mark an interrupted trial FAIL and enqueue its parameters again; False if another worker finished it first.

    A live worker of a shared study may fail the same stale trial through the heartbeat at the same moment; only
    the one whose update lands re-queues it, so it is retried once.
    """
    import optuna
    from optuna.trial import TrialState

    try:  # the storage's own compare-and-set: raises if the trial is no longer RUNNING
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)  # noqa: SLF001
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    attrs = {RETRY_ATTR: trial.number}
    if WARM_ATTR in trial.user_attrs:
        attrs[WARM_ATTR] = trial.user_attrs[WARM_ATTR]
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)
    return True


def retried_trial(trial: Any) -> int | None:
    """Number of the interrupted trial that ``trial`` re-runs (ours or the heartbeat's retry), if any."""
    number = trial.user_attrs.get(RETRY_ATTR)
    if number is not None:
        return number
    system = getattr(trial, "system_attrs", None)  # a FrozenTrial has them; a live Trial asks its storage
    if system is None:
        system = trial.storage.get_trial_system_attrs(trial._trial_id)  # noqa: SLF001
    return system.get("failed_trial")


def study_budget_used(study: Any, *, before: int | None = None) -> int:
    """Evaluations a study has spent: trials with a row in some worker's ``results.csv``, plus running ones.

    This is what ``--trials`` caps for a shared study (all workers together). With ``before``, only trials
    numbered below it count: a trial asked by several workers at once then knows whether it is over the budget.
    """
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if (before is None or t.number < before)
               and (t.state == TrialState.RUNNING or (t.state.is_finished() and t.user_attrs.get(ROW_ATTR))))


def fail_stale(study: Any, *, heartbeat: int) -> None:
    """Mark the running trials of dead workers FAIL and re-queue them (shared studies).

    Optuna's heartbeat check covers trials that beat; a worker killed between asking for a trial and its first
    beat leaves one that never beat and names no owner: it is failed once it is ``GRACE_BEATS`` intervals old.
    """
    import datetime

    import optuna
    from optuna.trial import TrialState

    optuna.storages.fail_stale_trials(study)
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=GRACE_BEATS * heartbeat)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if OWNER_ATTR not in t.user_attrs and t.datetime_start is not None and t.datetime_start < cutoff:
            fail_and_requeue(study, t)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Keep Optuna's per-trial log lines and the CMA-ES 'constraints unused' warning out of the output."""
    import optuna

    level = optuna.logging.get_verbosity()  # ERROR: a failed evaluation is in results.csv with its reason already
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Constraints have been set, but CmaEsSampler")
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)
