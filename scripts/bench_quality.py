"""Policy-quality and search-cost benchmarks: every searcher under the same evaluation and fine-tune budget.

Under a latency target, searchers keep multiples of 8 channels (the CLI's default) unless a method entry says
otherwise: ``global`` is plain Torch-Pruning global pruning (no rounding), tuned until it meets the latency target
by measurement; ``global-r8`` is the same with rounding.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.constraints import Constraints, LatencyTarget
from agent.evaluation import EvalSettings, Status
from agent.measure import LatencyConfig
from agent.search.results import ResultLog
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig
from agent.tasks import build_task

TASKS = {
    "default": {"model": "cnn1d", "dataset": "mnist1d", "train_epochs": 15},
    "resnet20-digits": {"model": "resnet20", "dataset": "digits", "train_epochs": 40},
    "resnet20-digits32": {"model": "resnet20", "dataset": "digits32", "train_epochs": 30},
    "resnet56-digits32": {"model": "resnet56", "dataset": "digits32", "train_epochs": 40},
}
METHODS = {
    "uniform": {"method": "uniform"},
    "global": {"method": "global", "importance": "l2"},
    "global-taylor": {"method": "global", "importance": "taylor"},
    "global-r8": {"method": "global", "importance": "l2", "round_to": 8},
    "greedy": {"method": "greedy"},
    "optuna": {"method": "optuna"},
    "nsga2": {"method": "nsga2"},
    "rl": {"method": "rl", "options": {"rl_algo": "td3"}},
}


def _cost_to_best(rows: list[dict[str, str]], tolerance: float = 0.5) -> tuple[int, float]:
    """Evaluations and seconds until the best feasible accuracy is within ``tolerance`` points of the final best."""
    feas = [(i, float(r["accuracy"])) for i, r in enumerate(rows) if r["status"] == Status.OK and r["feasible"] == "True"]
    if not feas:
        return -1, float("nan")
    final = max(a for _, a in feas)
    first = min(i for i, a in feas if a >= final - tolerance)
    t0 = float(rows[0]["timestamp"]) - float(rows[0]["wall_s"] or 0)
    return first + 1, float(rows[first]["timestamp"]) - t0


def _overheads(rows: list[dict[str, str]]) -> tuple[float, float]:
    shares_apply, shares_measure = [], []
    for r in rows:
        t = json.loads(r["times"] or "{}")
        if t.get("total"):
            shares_apply.append(t.get("apply", 0.0) / t["total"])
            shares_measure.append(t.get("measure", 0.0) / t["total"])
    return (float(np.mean(shares_apply)) if shares_apply else float("nan"),
            float(np.mean(shares_measure)) if shares_measure else float("nan"))


def quality(tasks: Sequence[str], targets: Sequence[str], methods: Sequence[str], *, out: Path, trials: int,
            episodes: int, finetune_steps: int, final_epochs: float, latency_batch: int, seed: int = 0,
            data_root: str | None = None, train_epochs: int | None = None) -> list[dict[str, object]]:
    """Run every (task, target, method) and collect the confirmed, fine-tuned best policy's metrics."""
    rows = []
    for task_name in tasks:
        if task_name.startswith("cifar10"):
            task = build_task(model="resnet20", dataset="cifar10", data_root=data_root, train_epochs=30)
        else:
            spec = dict(TASKS[task_name])
            if train_epochs is not None:
                spec["train_epochs"] = train_epochs
            task = build_task(**spec)
        for target in targets:
            kind, value = target.split("=")
            constraints = Constraints(flops_target=float(value)) if kind == "flops" else \
                Constraints(latency_target=LatencyTarget.parse(value))
            for name in methods:
                spec = METHODS[name]
                options = dict(spec.get("options", {}))
                if spec["method"] == "rl":
                    options["episodes"] = episodes
                settings = EvalSettings(finetune_steps=finetune_steps, seed=seed,
                                        latency=LatencyConfig(batch_size=latency_batch, repeats=9))
                round_to = spec.get("round_to", 8 if (kind == "latency" and spec["method"] != "global") else None)
                config = SearchConfig(method=spec["method"], trials=episodes if spec["method"] == "rl" else trials,
                                      seed=seed, importance=spec.get("importance", "l2"), options=options,
                                      round_to=round_to)
                run_dir = out / task_name / target.replace("=", "") / name
                t0 = time.perf_counter()
                try:
                    outcome = run_search(task=task, out_dir=run_dir, constraints=constraints, settings=settings,
                                         config=config, final=FinalTuneConfig(epochs=final_epochs), overwrite=True)
                except Exception as exc:  # noqa: BLE001 - a benchmark row records the failure and goes on
                    rows.append({"task": task_name, "target": target, "method": name, "error": str(exc)[:200]})
                    print(rows[-1], flush=True)
                    continue
                wall = time.perf_counter() - t0
                log = ResultLog.open(run_dir / "results.csv", resume=True).rows
                evals_to_best, secs_to_best = _cost_to_best(log)
                apply_share, measure_share = _overheads(log)
                s = outcome.summary
                best, final = s.get("best") or {}, s.get("final") or {}
                rows.append({
                    "task": task_name, "target": target, "method": name, "feasible": s.get("feasible"),
                    "evals": len(log), "search_val_acc": round(best.get("accuracy", float("nan")), 2),
                    "final_val_acc": round(final.get("val_accuracy", float("nan")), 2),
                    "final_test_acc": round(final.get("test_accuracy", float("nan")), 2),
                    "dense_test_acc": round(final.get("dense_test_accuracy", float("nan")), 2),
                    "round_to": round_to or "",
                    "flops_ratio": round(best.get("flops_ratio", float("nan")), 3),
                    "latency_ratio": round(best.get("latency_ratio") or float("nan"), 3),
                    "latency_pred_err": round((best["latency_pred_ms"] - best["latency_ms"]) / best["latency_ms"], 3)
                    if best.get("latency_pred_ms") and best.get("latency_ms") else "",
                    "wall_s": round(wall, 1), "evals_to_best": evals_to_best,
                    "s_to_best": round(secs_to_best, 1), "apply_share": round(apply_share, 4),
                    "measure_share": round(measure_share, 4),
                })
                print(rows[-1], flush=True)
    return rows
