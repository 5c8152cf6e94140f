"""Run a whole search: validate, build the task, search, confirm the best policy, fine-tune, save outputs.

This is the programmatic entry point behind ``prunepilot search``; everything it writes goes to ``out_dir``:
``results.csv`` (every evaluation, appended as it finishes), ``run_config.json``, ``best_policy.json``,
``pruned_model.pt`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import save_pruned_model
from .constraints import Constraints
from .errors import SearchFailedError, UserInputError, user_error
from .evaluation import EvalResult, EvalSettings, evaluate_policy, get_engine
from .finetune import FinalTuneConfig, default_finetune_lr, finetune_model
from .results import ResultLog
from .searchers.base import get_searcher
from .session import SearchConfig, SearchSession
from .storage import atomic_write_json
from .tasks.task import Task
from .training import accuracy

__all__ = ["FinalTuneConfig", "SearchOutcome", "run_search", "check_output_dir", "finalize", "precheck_targets"]


def precheck_targets(*, model_spec: str, input_shape: tuple[int, ...], num_classes: int, constraints: Constraints,
                     max_ratio: float) -> None:
    """Fail fast (before any training) when FLOPs / params targets are out of reach at ``max_ratio``.

    Uses the untrained architecture: which channels go does not change how many MACs remain.

    Raises:
        UserInputError: The targets cannot be met even with every unit pruned at ``max_ratio``.
    """
    if constraints.flops_target is None and constraints.params_target is None:
        return
    import torch

    from .pruning.graph import PruningGraph
    from .tasks.models import build_model

    graph = PruningGraph(build_model(model_spec, input_shape, num_classes), torch.zeros((1, *input_shape)))
    scores = {u.name: torch.arange(u.channels, dtype=torch.float32) for u in graph.units}
    plan = graph.select(scores, dict.fromkeys(graph.unit_names(), max_ratio))
    flops = graph.predict_macs(plan) / graph.dense_macs
    params = graph.predict_params(plan) / graph.dense_params
    slack = 0.95  # predictions ignore pooling / activation costs; leave the exact check to the searchers
    issues = constraints.violations(flops_ratio=flops * slack, params_ratio=params * slack, latency_ratio=None,
                                    latency_ms=None, acc_drop=None)
    if issues:
        raise UserInputError(f"target cannot be met even at max pruning (ratio {max_ratio:g} in every unit of "
                             f"{model_spec} gives {'; '.join(issues)}): relax the target or raise --max-ratio")


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
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise user_error("output directory is not writable:", str(out), "choose a writable --out")
    return out


def _result_dict(r: EvalResult) -> dict[str, Any]:
    return {
        "status": r.status, "accuracy": r.accuracy, "dense_accuracy": r.dense_accuracy, "acc_drop": r.acc_drop,
        "flops_ratio": r.flops_ratio, "params_ratio": r.params_ratio, "macs": r.macs, "params": r.params,
        "latency_ms": r.latency_ms, "latency_ratio": r.latency_ratio, "latency_pred_ms": r.latency_pred_ms,
        "peak_mem_mb": r.peak_mem_mb, "model_mb": r.model_mb, "feasible": r.feasible, "reason": r.reason,
        "kept_channels": r.kept_channels, "wall_s": r.wall_s,
        **({"settings_overrides": r.settings_overrides} if r.settings_overrides else {}),
    }


NEAR_LATENCY = 0.05
"""A result over its latency target by at most this fraction (and feasible otherwise) is re-measured at
confirmation: a single timing round is a provisional verdict on a noisy machine, the confirmation is final."""


def _only_latency_near(session: SearchSession, r: EvalResult) -> bool:
    """Infeasible only because of latency, and within ``NEAR_LATENCY`` of the target."""
    c = session.constraints
    if c.latency_target is None or r.latency_ratio is None or r.latency_ms is None:
        return False
    slack = 1.0 + NEAR_LATENCY
    return not c.violations(flops_ratio=r.flops_ratio, params_ratio=r.params_ratio,
                            latency_ratio=r.latency_ratio / slack, latency_ms=r.latency_ms / slack, acc_drop=r.acc_drop)


def _ranked_candidates(session: SearchSession) -> list[EvalResult]:
    """Feasible results by accuracy, then results only just over the latency target (to be re-measured)."""
    seen, ranked = set(), []
    feasible = [r for r in session.results() if r.ok and r.feasible]
    near = [r for r in session.results() if r.ok and not r.feasible and _only_latency_near(session, r)]
    for group in (feasible, near):
        for r in sorted(group, key=lambda r: (-round(r.accuracy, 6), r.flops_ratio)):
            if r.policy.key() not in seen:
                seen.add(r.policy.key())
                ranked.append(r)
    return ranked


CONFIRM_ROUNDS = 3
"""Latency timing rounds when the chosen policy is confirmed (the fastest round counts)."""


def finalize(session: SearchSession, *, out_dir: Path, final: FinalTuneConfig, confirm_tries: int = 8,
             extra_summary: dict[str, Any] | None = None) -> SearchOutcome:
    """Confirm the best feasible policy by a fresh measurement, fine-tune it, and write every output file.

    Candidates are tried in order of accuracy; the first whose re-measured cost still meets the targets is
    kept, so the reported policy always meets its latency target by measurement.
    """
    task = session.task
    # confirmation measures latency in several rounds (robust to interference bursts), dense included
    settings = dataclasses.replace(session.settings, latency=dataclasses.replace(
        session.settings.latency, rounds=max(CONFIRM_ROUNDS, session.settings.latency.rounds)))
    counts = session.summary_counts()
    ok = [r for r in session.results() if r.ok]
    summary: dict[str, Any] = {
        "method": session.config.method, "task": dataclasses.asdict(task.spec), "task_fingerprint": task.fingerprint,
        "constraints": session.constraints.to_dict(), "counts": counts, "units": session.unit_names,
        "dense": dataclasses.asdict(get_engine(task).dense(settings)) if ok else None,
        "wall_s": round(time.monotonic() - session.started, 3), **(extra_summary or {}),
    }
    if not ok:
        atomic_write_json(out_dir / "summary.json", {**summary, "feasible": False, "best": None})
        if not counts["total"]:
            raise SearchFailedError("no evaluation was run: the trial budget was already spent (a shared --storage "
                                    "study counts every worker's trials); raise --trials to continue the study")
        reasons = sorted({r.reason for r in session.results()})[:3]
        raise SearchFailedError(f"every one of the {counts['total']} evaluations failed (e.g. {reasons}); "
                                f"see {out_dir / 'results.csv'}")
    chosen, model, confirmed = None, None, []
    for cand in _ranked_candidates(session)[:confirm_tries]:
        cand_settings = dataclasses.replace(settings, **cand.settings_overrides) if cand.settings_overrides else settings
        res, mdl = evaluate_policy(task, cand.policy, settings=cand_settings, constraints=session.constraints,
                                   return_model=True)
        res.settings_overrides = dict(cand.settings_overrides)
        confirmed.append({"policy_key": cand.policy.key(), "feasible": res.feasible, "reason": res.reason,
                          "latency_ms": res.latency_ms})
        if res.ok and res.feasible:
            chosen, model = res, mdl
            break
    summary["confirmation"] = confirmed
    if chosen is None:
        closest = min(ok, key=lambda r: (len(r.reason.split(";")) if r.reason else 0, -r.accuracy))
        summary.update(feasible=False, best=None, closest=_result_dict(closest),
                       closest_policy=closest.policy.to_dict())
        atomic_write_json(out_dir / "summary.json", summary)
        return SearchOutcome(None, summary, out_dir)
    engine = get_engine(task)
    removed = engine.plan(chosen.policy, settings)
    final_metrics: dict[str, Any] = {}
    if final.iterative_steps > 1:
        from .iterative import iterative_prune

        per_step = dataclasses.replace(final, epochs=final.epochs / final.iterative_steps)
        outcome = iterative_prune(task, chosen.policy, steps=final.iterative_steps, schedule=final.schedule,
                                  power=final.power, finetune=per_step, settings=settings)
        assert {k: v.tolist() for k, v in outcome.plan.items()} == {k: v.tolist() for k, v in removed.items()}
        model = outcome.model
        final_metrics = {"epochs": final.epochs, "steps": sum(s.finetune_steps for s in outcome.steps),
                         "lr": final.lr or default_finetune_lr(task), "kd_alpha": final.kd_alpha,
                         "iterative_steps": final.iterative_steps, "schedule": final.schedule,
                         "wall_s": round(sum(s.wall_s for s in outcome.steps), 3), "iterative": outcome.records()}
    elif final.epochs > 0:
        final_metrics = finetune_model(model, task, config=final, device=settings.device,
                                       batch_size=settings.finetune_batch, seed=settings.seed)
    dev = settings.device
    final_metrics["val_accuracy"] = accuracy(model.to(dev), task.data.val, device=dev)
    final_metrics["test_accuracy"] = accuracy(model, task.data.test, device=dev)
    final_metrics["dense_val_accuracy"] = accuracy(task.model.to(dev), task.data.val, device=dev)
    final_metrics["dense_test_accuracy"] = accuracy(task.model, task.data.test, device=dev)
    task.model.to("cpu")
    model.to("cpu")
    best = _result_dict(chosen)
    policy = chosen.policy.to_dict()
    save_pruned_model(out_dir / "pruned_model.pt", task=task, model=model, removed=removed, policy=policy,
                      metrics={**best, "final": final_metrics})
    atomic_write_json(out_dir / "best_policy.json", {"policy": policy, "metrics": best, "final": final_metrics})
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


def run_search(*, task: Task, out_dir: str | os.PathLike[str], constraints: Constraints, settings: EvalSettings,
               config: SearchConfig, final: FinalTuneConfig | None = None, resume: bool = False,
               overwrite: bool = False, progress: bool = False, latency_model: bool = True) -> SearchOutcome:
    """Search for a policy and write the outputs.

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
    searcher_cls.check(config=config, settings=settings, constraints=constraints,
                       unit_names=get_engine(task).graph.unit_names())
    out.mkdir(parents=True, exist_ok=True)
    _write_run_config(out, task=task, constraints=constraints, settings=settings, config=config, resume=resume)
    if latency_model and settings.measure_latency:
        get_engine(task).attach_latency_model(settings, round_to=config.round_to)
    else:
        get_engine(task).latency_model = None
    log = ResultLog.open(out / "results.csv", resume=resume)
    session = SearchSession(task=task, constraints=constraints, settings=settings, config=config, log=log,
                            progress=progress, output_dir=out)
    searcher = searcher_cls()
    try:
        searcher.run(session)
    finally:
        session.close()
    if session._sensitivity is not None:  # the profile a guided searcher used, for `prunepilot report`
        session._sensitivity.to_json(out / "sensitivity.json")
    return finalize(session, out_dir=out, final=final or FinalTuneConfig(),
                    extra_summary={"searcher": searcher.describe(), "resumed_trials": session.resumed})
