"""Paired, seeded quality benchmark: every searcher against uniform and Torch-Pruning global, with intervals.

For each task one dense model is trained (cached); for each FLOPs budget and each seed ``s`` every method runs a
search with search seed ``s`` and then the *same* final fine-tune (same epochs, LR and data order, seed ``s``).
Differences are therefore paired: per seed, ``acc(method) - acc(reference)`` on the same dense model, the same
fine-tune and the same 5,000+ test images. A method is *better* (or *worse*) only where the 95% t-interval of the
paired difference excludes zero; otherwise there is *no difference*. Share of uniform's loss recovered per seed:
``(acc_method - acc_uniform) / (acc_dense - acc_uniform)``.

A budget is a FLOPs ratio (``0.2``) or a latency ratio measured on this machine (``latency=0.4``): then every
method meets the same latency target by measurement (paired rounds against the dense model, the table's batch
rule, one thread, widths in multiples of 8 as the CLI keeps them), so the comparison is at equal measured latency.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.cli.commands import LATENCY_ROUND_TO
from agent.constraints import Constraints, LatencyTarget
from agent.evaluation import EvalSettings, get_engine
from agent.measure.latency import LatencyConfig, auto_batch_size
from agent.search.results import ResultLog
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig
from agent.storage import atomic_write_json
from agent.tasks import build_task

TASKS = {
    "mnist1d-hard": {"model": "rescnn1d", "dataset": "mnist1d-hard", "train_epochs": 12},
    "resnet-digits": {"model": "resnet-s", "dataset": "digits-aug", "train_epochs": 15},
    "mobile-digits": {"model": "mobilenet-s", "dataset": "digits-aug", "train_epochs": 15},
    "default": {"model": "cnn1d", "dataset": "mnist1d", "train_epochs": 3},  # the test suite's tiny version
}
"""Benchmark tasks: name -> :func:`agent.tasks.build_task` arguments (1-D residual, 2-D residual, 2-D mobile)."""
METHODS = {
    "uniform": {"method": "uniform"},
    "global": {"method": "global", "importance": "l2"},
    "global-taylor": {"method": "global", "importance": "taylor"},
    "greedy": {"method": "greedy"},
    "knapsack": {"method": "knapsack"},
    "knapsack-importance": {"method": "knapsack", "options": {"knapsack_value": "importance"}},
    "optuna": {"method": "optuna"},
    "nsga2": {"method": "nsga2"},
    "rl": {"method": "rl", "options": {"rl_algo": "td3"}},
}
"""Method entries (same meaning as in ``bench_quality``); ``global`` / ``global-taylor`` are Torch-Pruning's
global pruning with L2 / Taylor importance."""
REFERENCES = ("uniform", "global", "global-taylor")
"""Methods every other one is compared with (paired)."""


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t interval of ``values`` (half-width NaN for one value)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, half


def verdict(mean: float, half: float) -> str:
    """``better`` / ``worse`` when the interval ``mean ± half`` excludes zero, else ``no difference``."""
    if math.isfinite(half) and mean - half > 0:
        return "better"
    if math.isfinite(half) and mean + half < 0:
        return "worse"
    return "no difference"


Budget = tuple[str, float]
"""``("flops", 0.2)`` or ``("latency", 0.4)``."""


def parse_budget(text: str) -> Budget:
    """``0.2`` -> a FLOPs budget, ``latency=0.4`` -> a measured latency budget (ratios of dense)."""
    kind, _, value = text.rpartition("=")
    kind = kind or "flops"
    if kind not in ("flops", "latency"):
        raise ValueError(f"budget {text!r}: expected a FLOPs ratio like 0.2 or latency=RATIO")
    return kind, float(value)


def _as_budget(budget: float | Budget) -> Budget:
    """A bare number is a FLOPs budget (the grid's historic argument)."""
    return budget if isinstance(budget, tuple) else ("flops", float(budget))


def budget_label(kind: str, budget: float) -> str:
    """``0.2`` for FLOPs (the tables' historic label), ``latency0.4`` for latency."""
    return f"{budget:g}" if kind == "flops" else f"{kind}{budget:g}"


def _constraints_and_settings(kind: str, budget: float, seed: int, task) -> tuple[Constraints, EvalSettings]:
    if kind == "flops":
        return Constraints(flops_target=budget), EvalSettings(seed=seed, measure_latency=False)
    latency = LatencyConfig(batch_size=auto_batch_size(get_engine(task).graph.dense_macs), threads=1)
    return Constraints(latency_target=LatencyTarget(budget)), EvalSettings(seed=seed, latency=latency)


def run_grid(tasks: Sequence[str], budgets: Sequence[float | Budget], methods: Sequence[str], seeds: Sequence[int], *,
             out: Path, trials: int, episodes: int, final_epochs: float, train_epochs: int | None = None,
             reuse: bool = False, headroom_budgets: Sequence[float | Budget] = ()) -> list[dict[str, object]]:
    """Run every (task, budget, seed, method) search with the common final fine-tune; one raw row each.

    At ``headroom_budgets`` only ``uniform`` runs (to document how much uniform pruning loses there).

    Each finished run's row is also written to ``row.json`` in its run directory; with ``reuse`` a run whose
    ``row.json`` exists is not repeated (an interrupted grid continues where it stopped).
    """
    budgets, headroom_budgets = [_as_budget(b) for b in budgets], [_as_budget(b) for b in headroom_budgets]
    rows: list[dict[str, object]] = []
    for task_name in tasks:
        spec = dict(TASKS[task_name])
        if train_epochs is not None:
            spec["train_epochs"] = train_epochs
        task = build_task(**spec)
        # uniform first at every budget, then one method at a time: an interrupted grid has whole methods
        every = [*budgets, *(b for b in headroom_budgets if b not in budgets)]
        jobs = [(b, "uniform") for b in every if "uniform" in methods or b not in budgets]
        jobs += [(b, m) for b in budgets for m in methods if m != "uniform"]
        for (kind, budget), name in jobs:
            for seed in seeds:
                entry = METHODS[name]
                options = dict(entry.get("options", {}))
                if entry["method"] == "rl":
                    options["episodes"] = episodes
                constraints, settings = _constraints_and_settings(kind, budget, seed, task)
                config = SearchConfig(method=entry["method"], seed=seed, importance=entry.get("importance", "l2"),
                                      trials=episodes if entry["method"] == "rl" else trials, options=options,
                                      round_to=LATENCY_ROUND_TO if kind == "latency" else None)  # as the CLI
                run_dir = out / task_name / f"{kind}{budget:g}" / f"seed{seed}" / name
                key = {"trials": trials, "episodes": episodes, "final_epochs": final_epochs,
                       "fingerprint": task.fingerprint}
                done = run_dir / "row.json"
                if reuse and done.exists() and json.loads(done.read_text()).get("key") == key:
                    rows.append(json.loads(done.read_text())["row"])
                    continue
                t0 = time.perf_counter()
                try:
                    outcome = run_search(task=task, out_dir=run_dir, constraints=constraints, settings=settings,
                                         config=config, overwrite=True, latency_model=kind == "latency",
                                         final=FinalTuneConfig(epochs=final_epochs))
                except Exception as exc:  # noqa: BLE001 - a benchmark row records the failure and goes on
                    rows.append({"task": task_name, "kind": kind, "budget": budget, "seed": seed, "method": name,
                                 "error": str(exc)[:200]})
                    print(rows[-1], flush=True)
                    continue
                wall = time.perf_counter() - t0
                s = outcome.summary
                best, final = s.get("best") or {}, s.get("final") or {}
                tune_s = float(final.get("wall_s") or 0.0)
                rows.append({
                    "task": task_name, "model": spec["model"], "dataset": spec["dataset"],
                    "test_samples": len(task.data.test), "kind": kind, "budget": budget, "seed": seed, "method": name,
                    "feasible": bool(s.get("feasible")),
                    "dense_test_acc": round(float(final.get("dense_test_accuracy", float("nan"))), 3),
                    "test_acc": round(float(final.get("test_accuracy", float("nan"))), 3),
                    "flops_ratio": round(float(best.get("flops_ratio", float("nan"))), 4),
                    "latency_ratio": round(float(best.get("latency_ratio") or float("nan")), 4),
                    "latency_hi": round(float(best.get("latency_ratio_hi") or float("nan")), 4),
                    "evals": len(ResultLog.open(run_dir / "results.csv", resume=True).rows),
                    "search_s": round(wall - tune_s, 1), "finetune_s": round(tune_s, 1),
                    "finetune_steps": final.get("steps", 0),
                })
                atomic_write_json(done, {"key": key, "row": rows[-1]})
                print(rows[-1], flush=True)
    return rows


def _fmt(mean: float, half: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if not math.isfinite(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def summarise(raw: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """One row per (task, budget, method): mean accuracy with its interval, paired differences and recovery."""
    cells: dict[tuple[str, str, str], dict[int, dict[str, object]]] = {}
    for r in raw:
        if r.get("error") or not r.get("feasible"):
            continue
        label = budget_label(str(r.get("kind") or "flops"), float(r["budget"]))  # type: ignore[arg-type]
        cells.setdefault((str(r["task"]), label, str(r["method"])), {})[int(r["seed"])] = r
    out = []
    for (task, budget, method), by_seed in cells.items():
        accs = [float(by_seed[s]["test_acc"]) for s in sorted(by_seed)]
        dense = float(next(iter(by_seed.values()))["dense_test_acc"])
        mean, half = t_interval(accs)
        row: dict[str, object] = {
            "task": task, "budget": budget, "method": method, "seeds": len(accs), "dense_acc": round(dense, 2),
            "test_acc": _fmt(mean, half), "loss_vs_dense": _fmt(*t_interval([dense - a for a in accs])),
            "flops_ratio": round(float(np.mean([float(by_seed[s]["flops_ratio"]) for s in by_seed])), 3),
            "latency_ratio": round(float(np.mean([float(by_seed[s].get("latency_ratio") or "nan") for s in by_seed])), 3),
            "evals": round(float(np.mean([float(by_seed[s]["evals"]) for s in by_seed])), 1),
            "search_s": round(float(np.mean([float(by_seed[s]["search_s"]) for s in by_seed])), 1),
        }
        for ref in REFERENCES:
            other = cells.get((task, budget, ref))
            common = sorted(set(by_seed) & set(other or {}))
            if ref == method or not common:
                row[f"vs_{ref}"] = ""
                continue
            d_mean, d_half = t_interval([float(by_seed[s]["test_acc"]) - float(other[s]["test_acc"])  # type: ignore[index]
                                         for s in common])
            row[f"vs_{ref}"] = f"{_fmt(d_mean, d_half)} ({verdict(d_mean, d_half)})"
        uni = cells.get((task, budget, "uniform"), {})
        shares = [(float(by_seed[s]["test_acc"]) - float(uni[s]["test_acc"]))
                  / (dense - float(uni[s]["test_acc"])) for s in sorted(set(by_seed) & set(uni))
                  if dense - float(uni[s]["test_acc"]) > 0]
        share_mean, share_half = t_interval(shares) if shares else (float("nan"), float("nan"))
        row["recovered"] = "" if method == "uniform" or not shares else _fmt(share_mean, share_half)
        row["_share"] = share_mean if method != "uniform" else float("nan")
        out.append(row)
    return out


def best_recovery(summary: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Per (task, budget): the searcher (not a reference) with the highest mean share of uniform's loss recovered."""
    best: dict[tuple[str, str], dict[str, object]] = {}
    for r in summary:
        share = float(r["_share"])  # type: ignore[arg-type]
        if r["method"] in REFERENCES or not math.isfinite(share):
            continue
        key = (str(r["task"]), str(r["budget"]))
        if key not in best or share > float(best[key]["_share"]):  # type: ignore[arg-type]
            best[key] = r
    return [{"task": t, "budget": b, "best": r["method"], "recovered": r["recovered"],
             "vs_global": r["vs_global"], "vs_global-taylor": r["vs_global-taylor"]}
            for (t, b), r in sorted(best.items())]


def headroom(summary: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Per task: dense accuracy and uniform's loss (mean ± interval) at each budget."""
    tasks: dict[str, dict[str, object]] = {}
    for r in summary:
        if r["method"] != "uniform":
            continue
        row = tasks.setdefault(str(r["task"]), {"task": r["task"], "dense_acc": r["dense_acc"]})
        row[f"uniform_loss@{r['budget']}"] = r["loss_vs_dense"]
    def order(key: str) -> tuple[int, float]:  # FLOPs budgets largest first, then latency ones
        if "@" not in key:
            return (-1, 0.0)
        label = key.split("@")[1]
        return (1, float(label[len("latency"):])) if label.startswith("latency") else (0, -float(label))

    ordered = lambda row: sorted(row, key=order)  # noqa: E731
    return [{k: row[k] for k in ordered(row)} for row in tasks.values()]
