"""Latency benchmarks: FLOPs ratio vs measured latency ratio, and the latency table's prediction error."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from agent.measure import LatencyConfig, measure_latency_ratio
from agent.measure.lut import build_latency_table
from agent.pruning import PruningGraph, compute_importance
from agent.tasks import build_model

MODEL_INPUTS = {
    "tv:resnet18": (3, 224, 224), "tv:mobilenet_v2": (3, 224, 224), "resnet56": (3, 32, 32),
    "resnet20": (3, 32, 32), "cnn1d": (1, 40),
}


def _graph(spec: str) -> tuple[PruningGraph, tuple[int, ...]]:
    shape = MODEL_INPUTS[spec]
    torch.manual_seed(0)
    model = build_model(spec, shape, 1000 if spec.startswith("tv:") else 10)
    return PruningGraph(model, torch.randn(1, *shape)), shape


def uniform_ratio_for_flops(graph: PruningGraph, scores: dict, target: float, round_to: int | None = None) -> float:
    """Smallest uniform ratio whose (exactly predicted) MACs ratio is <= target."""
    lo, hi = 0.0, 0.95
    for _ in range(20):
        mid = (lo + hi) / 2
        plan = graph.select(scores, dict.fromkeys(graph.unit_names(), mid), round_to)
        if graph.predict_macs(plan) / graph.dense_macs <= target:
            hi = mid
        else:
            lo = mid
    return hi


def flops_vs_latency(models: Sequence[str], batches: Sequence[int], target: float = 0.5,
                     round_to: int | None = None) -> list[dict[str, object]]:
    """Prune each model uniformly to ``target`` FLOPs; measure latency ratio at each batch size."""
    rows = []
    for spec in models:
        graph, shape = _graph(spec)
        scores = compute_importance(graph, "l2")
        r = uniform_ratio_for_flops(graph, scores, target, round_to)
        plan = graph.select(scores, dict.fromkeys(graph.unit_names(), r), round_to)
        pruned = graph.apply(plan)
        import torch_pruning as tp

        macs, _ = tp.utils.count_ops_and_params(pruned, torch.randn(1, *shape))
        for batch in batches:
            cfg = LatencyConfig(batch_size=batch, warmup=2, repeats=7, max_seconds=20.0, min_repeats=3, rounds=3)
            paired = measure_latency_ratio(pruned, graph.model, shape, config=cfg)
            dense, ratio = paired.dense_ms, paired.ratio
            rows.append({"model": spec, "input": "x".join(map(str, shape)), "batch": batch, "ratio": round(r, 4),
                         "round_to": round_to or "", "flops_ratio": round(macs / graph.dense_macs, 4),
                         "dense_ms": round(dense, 3), "pruned_ms": round(paired.model_ms, 3),
                         "latency_ratio": round(ratio, 4), "ci_lo": round(paired.lo, 4), "ci_hi": round(paired.hi, 4),
                         "rounds": paired.rounds, "threads": paired.threads})
            print(rows[-1], flush=True)
    return rows


def table_accuracy(models: Sequence[str], batch: int, n_policies: int = 12, seed: int = 0,
                   round_to: int | None = None) -> list[dict[str, object]]:
    """Build each model's latency table and compare its predictions with measurements.

    Policies: four uniform ones, the rest random per-unit ratios. The table is also reloaded from JSON to time
    the cache path.
    """
    rows = []
    rng = np.random.default_rng(seed)
    for spec in models:
        graph, shape = _graph(spec)
        cfg = LatencyConfig(batch_size=batch, warmup=2, repeats=9, max_seconds=10.0)
        t0 = time.perf_counter()
        table = build_latency_table(graph, input_shape=shape, config=cfg, round_to=round_to, cache=False)
        build_s = time.perf_counter() - t0
        table.to_json(f"/tmp/prunepilot-bench-lut-{spec.replace(':', '_')}.json")
        t0 = time.perf_counter()
        type(table).from_json(f"/tmp/prunepilot-bench-lut-{spec.replace(':', '_')}.json")
        reload_s = time.perf_counter() - t0
        scores = {u.name: torch.rand(u.channels, generator=torch.Generator().manual_seed(1)) for u in graph.units}
        errors = []
        for i in range(n_policies):
            if i < 4:
                ratios = dict.fromkeys(graph.unit_names(), (0.2, 0.4, 0.6, 0.8)[i])
            else:
                ratios = {u: float(rng.uniform(0.0, 0.8)) for u in graph.unit_names()}
            plan = graph.select(scores, ratios, round_to)
            kept = {u.name: u.channels - len(plan.get(u.name, ())) for u in graph.units}
            # predicted and measured ratios to dense: the measurement pairs the model with the dense one round by
            # round, so machine drift between the table build and this check cannot pose as prediction error
            measured = measure_latency_ratio(graph.apply(plan), graph.model, shape, config=cfg).ratio
            predicted = table.predict(kept) / table.predict({})
            errors.append((predicted - measured) / measured)
        abs_err = np.abs(errors)
        rows.append({"model": spec, "input": "x".join(map(str, shape)), "batch": batch, "policies": n_policies,
                     "round_to": round_to or "", "build_s": round(build_s, 2), "cache_load_s": round(reload_s, 3),
                     "median_abs_err": round(float(np.median(abs_err)), 4), "max_abs_err": round(float(abs_err.max()), 4),
                     "mean_signed_err": round(float(np.mean(errors)), 4)})
        print(rows[-1], flush=True)
    return rows
