"""Run a whole search: validate, build the task, search, confirm the best policy, fine-tune, save outputs.

This is the programmatic entry point behind ``prunepilot search``; everything it writes goes to ``out_dir``:
``results.csv`` (every evaluation, appended as it finishes), ``run_config.json``, ``best_policy.json``,
``pruned_model.pt``, ``summary.json`` and ``sessions.json`` (wall time of every session of a resumed search).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constraints import Constraints
from ..deploy.artifacts import save_pruned_model
from ..deploy.finetune import FinalTuneConfig, default_finetune_lr, finetune_model
from ..errors import SearchFailedError, UserInputError, user_error
from ..evaluation import EvalResult, EvalSettings, PruningEngine, evaluate_policy, get_engine
from ..measure.lut import LatencyTable
from ..progress import phase_bar
from ..pruning.coverage import check_prunable
from ..searchers.base import get_searcher
from ..storage import atomic_write_json
from ..tasks.task import Task
from .advice import constraint_gaps, next_flags
from .feasibility import check_latency_floor
from .policy_file import write_policy_file
from .results import ResultLog
from .session import SearchConfig, SearchSession

__all__ = ["FinalTuneConfig", "SearchOutcome", "run_search", "check_output_dir", "finalize",
           "SESSIONS", "read_sessions"]


@dataclass
class SearchOutcome:
    """What a finished search returns (and writes to ``summary.json``)."""

    best: EvalResult | None
    """The confirmed best policy's evaluation (None when nothing was feasible)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """The content of ``summary.json``."""
    out_dir: Path | None = None
    """Where the outputs are."""


def check_output_dir(out_dir: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> Path:
    """Make sure ``out_dir`` is writable and will not silently clobber an earlier search.

    Raises:
        UserInputError: Not writable, or it holds a search and neither ``resume`` nor ``overwrite`` was given.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise user_error("--out is a file, not a directory:", str(out), "pass a directory path")
    if (out / "results.csv").exists() and not (resume or overwrite):
        raise user_error("output directory already holds a search:", str(out),
                         "pass --resume to continue it, --overwrite to start over, or another --out")
    if resume and overwrite:
        raise user_error("--resume and --overwrite conflict, got both for", str(out), "pass only one of them")
    if resume and not (out / "results.csv").exists():
        raise user_error("--resume found no search to continue (no results.csv) in", str(out),
                         "check the --out path, or drop --resume to start a new search there")
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise user_error("output directory is not writable:", str(out), "choose a writable --out")
    return out


NEAR_LATENCY = 0.05
"""A result over its latency target by at most this fraction (and feasible otherwise) is re-measured at
confirmation: a single timing round is a provisional verdict on a noisy machine, the confirmation is final."""


def _only_latency_near(session: SearchSession, r: EvalResult) -> bool:
    """Infeasible only because of latency, and within ``NEAR_LATENCY`` of the target."""
    c = session.constraints
    if c.latency_target is None or r.latency_ratio is None or r.latency_ms is None:
        return False
    return not c.check_result(r, latency_slack=1.0 + NEAR_LATENCY)


def _ranked_candidates(session: SearchSession) -> list[EvalResult]:
    """Feasible results by accuracy, then results only just over the latency target (to be re-measured)."""
    seen, ranked = set(), []
    feasible = [r for r in session.results() if r.ok and r.feasible]
    near = [r for r in session.results() if r.ok and not r.feasible and _only_latency_near(session, r)]
    for group in (feasible, near):
        for r in sorted(group, key=lambda r: (-round(r.quality, 6), r.flops_ratio)):
            if r.policy.key() not in seen:
                seen.add(r.policy.key())
                ranked.append(r)
    return ranked


SESSIONS = "sessions.json"
"""Wall time and trial count of every session of a search (a resumed search adds one; Ctrl-C still records it)."""


def read_sessions(out_dir: Path) -> list[dict[str, Any]]:
    """The sessions recorded in ``out_dir`` (empty when none, or the file is unreadable)."""
    try:
        rows = json.loads((out_dir / SESSIONS).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _record_session(out_dir: Path, earlier: list[dict[str, Any]], session: SearchSession, *, ended: str) -> None:
    if out_dir.is_dir():
        atomic_write_json(out_dir / SESSIONS, [*earlier, {
            "wall_s": round(time.monotonic() - session.started, 3), "trials": session.trials_done - session.resumed,
            "ended": ended}])


CLOSEST_POLICY = "closest_policy.json"
"""Written instead of ``best_policy.json`` when nothing was feasible: the closest policy (``feasible: false``)."""

def _confirm(session: SearchSession, ranked: list[EvalResult], *, settings: EvalSettings,
             confirmed: list[dict[str, Any]], progress: Any) -> tuple[EvalResult | None, Any]:
    """Re-measure ``ranked`` in order; the first still feasible and its model (appends to ``confirmed``)."""
    for i, cand in enumerate(ranked, 1):
        cand_settings = dataclasses.replace(settings, **cand.settings_overrides) if cand.settings_overrides else settings
        res, mdl = evaluate_policy(session.task, cand.policy, settings=cand_settings, constraints=session.constraints,
                                   return_model=True)
        res.settings_overrides = dict(cand.settings_overrides)
        confirmed.append({"policy_key": cand.policy.key(), "feasible": res.feasible, "reason": res.reason,
                          "latency_ms": res.latency_ms, "dense_latency_ms": res.dense_latency_ms,
                          "latency_ratio": res.latency_ratio, "latency_ratio_lo": res.latency_ratio_lo,
                          "latency_ratio_hi": res.latency_ratio_hi, "latency_rounds": res.latency_rounds})
        if progress:
            progress(i, len(ranked))
        if res.ok and res.feasible:
            return res, mdl
    return None, None


CONFIRM_ROUNDS = 5
"""Minimum paired latency rounds when the chosen policy is confirmed."""
CONFIRM_MAX_ROUNDS = 20
"""Cap on paired rounds at confirmation (rounds go on until the ratio's interval is within tolerance)."""


def finalize(session: SearchSession, *, out_dir: Path, final: FinalTuneConfig, confirm_tries: int = 8,
             extra_summary: dict[str, Any] | None = None, progress: bool = False,
             earlier_sessions: list[dict[str, Any]] | None = None) -> SearchOutcome:
    """Confirm the best feasible policy by a fresh measurement, fine-tune it, and write every output file.

    Candidates are tried in order of accuracy; the first whose re-measured cost still meets the targets is
    kept, so the reported policy always meets its latency target by measurement. With ``progress``, the
    confirmation and the final fine-tune each show a bar on stderr. ``earlier_sessions`` (of a resumed search,
    see :data:`SESSIONS`) add their wall time to ``wall_s_total``; ``wall_s`` is this session's alone.
    """
    task = session.task
    # confirmation measures latency in several rounds (robust to interference bursts), dense included
    lat = session.settings.latency
    settings = dataclasses.replace(session.settings, latency=dataclasses.replace(
        lat, rounds=max(CONFIRM_ROUNDS, lat.rounds), max_rounds=max(CONFIRM_MAX_ROUNDS, lat.max_rounds)))
    counts = session.summary_counts()
    ok = [r for r in session.results() if r.ok]
    summary: dict[str, Any] = {
        "method": session.config.method, "task": dataclasses.asdict(task.spec), "task_fingerprint": task.fingerprint,
        "constraints": session.constraints.to_dict(), "counts": counts, "units": session.unit_names,
        "dense": dataclasses.asdict(get_engine(task).dense(settings)) if ok else None,
        "latency_device": {"device": lat.device, "batch_size": lat.batch_size, "threads": lat.threads},
        "wall_s": round(time.monotonic() - session.started, 3), **(extra_summary or {}),
    }
    earlier = earlier_sessions or []
    summary.update(sessions=len(earlier) + 1,
                   wall_s_total=round(summary["wall_s"] + sum(float(e.get("wall_s") or 0) for e in earlier), 3))
    if not ok:
        atomic_write_json(out_dir / "summary.json", {**summary, "feasible": False, "best": None})
        if not counts["total"]:
            raise SearchFailedError("no evaluation was run: the trial budget was already spent (a shared --storage "
                                    "study counts every worker's trials); raise --trials to continue the study")
        reasons = sorted({r.reason for r in session.results()})[:3]
        raise SearchFailedError(f"every one of the {counts['total']} evaluations failed (e.g. {reasons}); "
                                f"see {out_dir / 'results.csv'}")
    confirmed: list[dict[str, Any]] = []
    ranked = _ranked_candidates(session)[:confirm_tries]
    with phase_bar("confirm best policy", enabled=progress and bool(ranked), unit="policy") as bar:
        if bar:
            bar(0, len(ranked))
        chosen, model = _confirm(session, ranked, settings=settings, confirmed=confirmed, progress=bar)
    summary["confirmation"] = confirmed
    if chosen is None:
        closest = min(ok, key=lambda r: (len(r.reason.split(";")) if r.reason else 0, -r.quality))
        closest_dict = closest.to_dict()
        write_policy_file(out_dir / CLOSEST_POLICY, policy=closest.policy, metrics=closest_dict,
                          settings=session.settings, overrides=closest.settings_overrides, feasible=False)
        summary.update(feasible=False, best=None, closest=closest_dict, closest_policy=closest.policy.to_dict(),
                       gaps=constraint_gaps(closest_dict, session.constraints),
                       advice=next_flags(closest_dict, session.constraints,
                                         finetune_steps=session.settings.finetune_steps,
                                         max_ratio=session.config.max_ratio),
                       outputs=["results.csv", CLOSEST_POLICY, "summary.json"])
        atomic_write_json(out_dir / "summary.json", summary)
        return SearchOutcome(None, summary, out_dir)
    engine = get_engine(task)
    removed = engine.plan(chosen.policy, settings)
    final_metrics: dict[str, Any] = {}
    if final.iterative_steps > 1:
        from ..deploy.iterative import iterative_prune

        per_step = dataclasses.replace(final, epochs=final.epochs / final.iterative_steps)
        with phase_bar("final fine-tune (iterative)", enabled=progress, unit="prune step") as bar:
            if bar:
                bar(0, final.iterative_steps)
            outcome = iterative_prune(task, chosen.policy, steps=final.iterative_steps, schedule=final.schedule,
                                      power=final.power, finetune=per_step, settings=settings,
                                      on_step=(lambda s: bar(s.step, final.iterative_steps)) if bar else None)
        assert {k: v.tolist() for k, v in outcome.plan.items()} == {k: v.tolist() for k, v in removed.items()}
        model = outcome.model
        final_metrics = {"epochs": final.epochs, "steps": sum(s.finetune_steps for s in outcome.steps),
                         "lr": final.lr or default_finetune_lr(task), "kd_alpha": final.kd_alpha,
                         "iterative_steps": final.iterative_steps, "schedule": final.schedule,
                         "wall_s": round(sum(s.wall_s for s in outcome.steps), 3), "iterative": outcome.records()}
    elif final.epochs > 0:
        with phase_bar("final fine-tune", enabled=progress) as bar:
            final_metrics = finetune_model(model, task, config=final, device=settings.device,
                                           batch_size=settings.finetune_batch, seed=settings.seed, progress=bar)
    dev = settings.device
    final_metrics["val_accuracy"] = task.score(model.to(dev), "val", device=dev)
    final_metrics["test_accuracy"] = task.score(model, "test", device=dev)
    final_metrics["dense_val_accuracy"] = task.score(task.model.to(dev), "val", device=dev)
    final_metrics["dense_test_accuracy"] = task.score(task.model, "test", device=dev)
    task.model.to("cpu")
    model.to("cpu")
    best = chosen.to_dict()
    policy = chosen.policy.to_dict()
    save_pruned_model(out_dir / "pruned_model.pt", task=task, model=model, removed=removed, policy=policy,
                      metrics={**best, "final": final_metrics})
    write_policy_file(out_dir / "best_policy.json", policy=chosen.policy, metrics=best, settings=session.settings,
                      overrides=chosen.settings_overrides, feasible=True, final=final_metrics)
    summary.update(feasible=True, best=best, best_policy=policy, final=final_metrics,
                   outputs=["results.csv", "best_policy.json", "pruned_model.pt", "summary.json"])
    atomic_write_json(out_dir / "summary.json", summary)
    return SearchOutcome(chosen, summary, out_dir)


def _write_run_config(out_dir: Path, *, task: Task, constraints: Constraints, settings: EvalSettings,
                      config: SearchConfig, resume: bool) -> None:
    path = out_dir / "run_config.json"
    current = {"task": dataclasses.asdict(task.spec), "task_fingerprint": task.fingerprint,
               "method": config.method, "constraints": constraints.to_dict(),
               "settings": json.loads(json.dumps(dataclasses.asdict(settings), default=str)),
               "config": json.loads(json.dumps(dataclasses.asdict(config), default=str))}
    if resume and path.exists():
        before = json.loads(path.read_text())
        for key in ("task_fingerprint", "method", "constraints"):
            if before.get(key) != current[key]:
                raise user_error(f"--resume with a different {key} than the run in", str(out_dir),
                                 f"it was {before.get(key)!r}, now {current[key]!r}: rerun with the same settings "
                                 "or use another --out")
    atomic_write_json(path, current)


def _importance_up_front(engine: PruningEngine, *, config: SearchConfig, settings: EvalSettings) -> None:
    """Score channels once before the search: a criterion that fails on this model stops here, in one line."""
    try:
        engine.importance(config.importance, settings)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a whole-run phase: one line and exit 2, not a failed row per candidate
        raise user_error(f"importance {config.importance!r} failed on this model:", f"{type(exc).__name__}: {exc}",
                         "choose another criterion, e.g. --importance l2") from exc


def _latency_table(engine: PruningEngine, *, settings: EvalSettings, round_to: int | None,
                   progress: bool = False) -> LatencyTable | None:
    """The per-device latency table, or None with a warning when it can't be built (latency is still measured).

    With ``progress``, building it (not loading it from the cache) shows a bar on stderr.
    """
    try:
        with phase_bar("latency table", enabled=progress, unit="layer") as bar:
            return engine.attach_latency_model(settings, round_to=round_to, progress=bar)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - degrade: searchers steer by measurement only
        warnings.warn(f"the latency table could not be built ({type(exc).__name__}: {str(exc)[:200]}); searching with "
                      "measured latency only (no latency_pred_ms, no latency floor check)", stacklevel=2)
        return None


def run_search(*, task: Task, out_dir: str | os.PathLike[str], constraints: Constraints, settings: EvalSettings,
               config: SearchConfig, final: FinalTuneConfig | None = None, resume: bool = False,
               overwrite: bool = False, progress: bool = False, latency_model: bool = True) -> SearchOutcome:
    """Search for a policy and write the outputs.

    Example:
        >>> import tempfile
        >>> from agent import Constraints, EvalSettings, FinalTuneConfig, SearchConfig, build_task, run_search
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> outcome = run_search(task=task, out_dir=tempfile.mkdtemp(), constraints=Constraints(flops_target=0.5),
        ...                      settings=EvalSettings(measure_latency=False), config=SearchConfig(method="uniform"),
        ...                      final=FinalTuneConfig(epochs=1), latency_model=False)
        >>> outcome.best.flops_ratio <= 0.5, sorted(p.name for p in outcome.out_dir.iterdir())[:3]
        (True, ['best_policy.json', 'pruned_model.pt', 'results.csv'])

    Args:
        task: The dense model and data.
        out_dir: Output directory.
        constraints: Cost targets and accuracy budget.
        settings: How each candidate is evaluated.
        config: Method, budget and shared searcher settings.
        final: Fine-tuning of the chosen policy.
        resume: Continue the search logged in ``out_dir`` (finished evaluations are not re-run).
        overwrite: Replace an earlier search in ``out_dir``.
        progress: Show a progress bar.
        latency_model: When latency is measured, build (or load) the per-device latency table so every result
            carries a predicted latency and searchers can reject candidates predicted over budget.

    Returns:
        The outcome (best result and the summary).
    """
    out = check_output_dir(out_dir, resume=resume, overwrite=overwrite)
    searcher_cls = get_searcher(config.method)
    engine = get_engine(task)
    check_prunable(engine.graph, what=task.spec.model)
    searcher_cls.check(config=config, settings=settings, constraints=constraints,
                       unit_names=engine.graph.unit_names(), unit_kinds={u.name: u.kind for u in engine.units})
    _importance_up_front(engine, config=config, settings=settings)
    fresh = not out.exists() or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    _write_run_config(out, task=task, constraints=constraints, settings=settings, config=config, resume=resume)
    table = _latency_table(engine, settings=settings, round_to=config.round_to, progress=progress) \
        if latency_model and settings.measure_latency else None
    if table is not None:
        check_latency_floor(engine.graph, table, constraints=constraints, max_ratio=config.max_ratio,
                            round_to=config.round_to, dense_ms=engine.dense(settings).latency_ms)
    else:
        engine.latency_model = None
    earlier = read_sessions(out) if resume else []
    log = ResultLog.open(out / "results.csv", resume=resume)
    session = SearchSession(task=task, constraints=constraints, settings=settings, config=config, log=log,
                            progress=progress, output_dir=out,
                            planned=searcher_cls.planned_evaluations(config=config, constraints=constraints))
    searcher = searcher_cls()
    try:
        try:
            searcher.run(session)
        except UserInputError:
            if fresh and session.trials_done == 0:  # bad input found late (e.g. no cluster): leave nothing behind
                shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            session.close()
        if session._sensitivity is not None:  # the profile a guided searcher used, for `prunepilot report`
            session._sensitivity.to_json(out / "sensitivity.json")
        outcome = finalize(session, out_dir=out, final=final or FinalTuneConfig(),
                           extra_summary={"searcher": searcher.describe(), "resumed_trials": session.resumed},
                           progress=progress, earlier_sessions=earlier)
    except BaseException:
        _record_session(out, earlier, session, ended="interrupted")
        raise
    _record_session(out, earlier, session, ended="finished")
    return outcome
