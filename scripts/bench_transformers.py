"""Transformer benchmarks: two ViTs at FLOPs and latency targets, ``llama-tiny`` perplexity vs parameters.

The ViTs are the built-in ``vit-tiny`` (torchvision) and ``timm:vit_tiny_patch16_224``, both on digits32.

One dense model per task is trained once and cached under ``--out`` (``dense-<task>-e<epochs>.pt``). For every
target, seed ``s`` and method, a search runs with search seed ``s`` and then the *same* final fine-tune (same
epochs, LR and data order, seed ``s``), so per seed the methods are paired. Project searchers run through
:func:`agent.run_search`; ``tp-uniform`` is Torch-Pruning's own pruner (``tp.pruner.BasePruner``, one ratio for
every group, L2 magnitude, ``nn.MultiheadAttention`` widths pruned per head as in Torch-Pruning's torchvision ViT
example, then ``hidden_dim`` set to the new width). It cannot go through the CLI (it is not a PrunePilot policy:
one ratio for every group, the residual width included, which PrunePilot keeps whole without ``--prune-embed``),
so it runs here through the Python API: its ratio is bisected onto the target (FLOPs counted, or the latency
interval's upper end measured with
:func:`agent.measure.latency.measure_latency_ratio`, judged by :meth:`Constraints.meets_cost`), then it gets the
same :func:`agent.finetune_model` as the others. Every final model's latency ratio is measured the same way
afterwards (paired rounds, its 90% interval), at ``--threads`` torch threads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp
from bench_paired import METHODS, t_interval, verdict
from torch import nn

from agent import load_pruned_model
from agent.constraints import Constraints, CostProbe, LatencyTarget
from agent.deploy.finetune import FinalTuneConfig, finetune_model
from agent.evaluation import EvalSettings
from agent.measure import LatencyConfig
from agent.measure.latency import auto_batch_size, measure_latency_ratio
from agent.search.results import ResultLog
from agent.search.run import run_search
from agent.search.session import SearchConfig
from agent.storage import atomic_write_json
from agent.tasks import Task, build_task, save_checkpoint

TASKS = {
    "vit": {"model": "vit-tiny", "dataset": "digits32"},
    "vit-timm": {"model": "timm:vit_tiny_patch16_224", "dataset": "digits32"},
    "lm": {"model": "llama-tiny", "dataset": "pystdlib"},
}
"""Benchmark tasks: name -> :func:`agent.tasks.build_task` arguments (epochs come from the command line)."""
TP_UNIFORM = "tp-uniform"
"""Torch-Pruning's own uniform pruner (ViT only), beside the project's methods in ``bench_paired.METHODS``."""


def dense_task(name: str, *, out: Path, epochs: int) -> Task:
    """The task's dense model: trained once and saved under ``out``, loaded from there afterwards."""
    path = out / f"dense-{name}-e{epochs}.pt"
    if path.exists():
        return build_task(checkpoint=str(path))
    task = build_task(**TASKS[name], train_epochs=epochs)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(task, path)
    return task


def parse_target(text: str) -> Constraints:
    """``flops=0.5`` / ``params=0.7`` / ``latency=0.6`` -> the constraints of that one target."""
    kind, value = text.split("=")
    if kind == "latency":
        return Constraints(latency_target=LatencyTarget.parse(value))
    return Constraints(**{f"{kind}_target": float(value)})


def tp_prune(model: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    """A copy of a ViT pruned by Torch-Pruning's ``BasePruner`` at one ``ratio`` for every group.

    Head handling follows Torch-Pruning's own examples: torchvision's ``nn.MultiheadAttention`` is pruned per head
    (``out_channel_groups``) and ``hidden_dim`` set to the new width afterwards; timm's ``Attention`` passes
    ``num_heads`` of its ``qkv`` (head dimensions pruned, head count kept) and gets ``num_heads`` / ``head_dim``
    back from the pruner.
    """
    m = copy.deepcopy(model).eval()
    timm_attn = [x for x in m.modules() if hasattr(x, "qkv") and hasattr(x, "num_heads")]
    if timm_attn:
        heads = {x.qkv: x.num_heads for x in timm_attn}
        pruner = tp.pruner.BasePruner(m, example, tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                      ignored_layers=[m.head], num_heads=heads, prune_head_dims=True)
        pruner.step()
        for x in timm_attn:
            x.num_heads = pruner.num_heads[x.qkv]
            x.head_dim = x.qkv.out_features // (3 * x.num_heads)
            x.attn_dim = x.num_heads * x.head_dim
        return m
    heads = {x: x.num_heads for x in m.modules() if isinstance(x, nn.MultiheadAttention)}
    pruner = tp.pruner.BasePruner(m, example, tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                  ignored_layers=[m.heads], out_channel_groups=heads,
                                  unwrapped_parameters=[(m.class_token, 2), (m.encoder.pos_embedding, 2)])
    pruner.step()
    m.hidden_dim = m.conv_proj.out_channels  # what Torch-Pruning's torchvision example sets after pruning
    return m


def _cost(model: nn.Module, task: Task, constraints: Constraints, lat: LatencyConfig) -> CostProbe:
    example = task.example_input()
    macs, params = tp.utils.count_ops_and_params(model, example)
    dense_macs, dense_params = tp.utils.count_ops_and_params(task.model, example)
    hi = None
    if constraints.latency_target is not None:
        hi = measure_latency_ratio(model, task.model, task.input_shape, config=lat).hi
    return CostProbe(macs / dense_macs, params / dense_params, latency_ratio=hi)


def tp_uniform(task: Task, constraints: Constraints, lat: LatencyConfig, *, steps: int) -> tuple[nn.Module, int]:
    """Bisect Torch-Pruning's uniform ratio to the least pruning that meets ``constraints``; model and evaluations."""
    lo, hi, best, evals = 0.0, 0.9, None, 0
    for _ in range(steps):
        mid = (lo + hi) / 2
        model = tp_prune(task.model, task.example_input(), mid)
        evals += 1
        if constraints.meets_cost(_cost(model, task, constraints, lat)):
            hi, best = mid, model
        else:
            lo = mid
    if best is None:
        best = tp_prune(task.model, task.example_input(), hi)
        evals += 1
    return best, evals


def run_one(task: Task, *, task_name: str, target: str, method: str, seed: int, out: Path, trials: int,
            final_epochs: float, lat: LatencyConfig, measure: bool, tp_steps: int) -> dict[str, object]:
    """One search (or Torch-Pruning bisection) plus the common final fine-tune; its row."""
    constraints = parse_target(target)
    latency_search = constraints.latency_target is not None
    # the search (and Torch-Pruning's bisection) time candidates as the CLI does; the final models get the
    # confirmation's longer measurement (``lat``)
    search_lat = dataclasses.replace(lat, rounds=LatencyConfig.rounds, max_rounds=LatencyConfig.max_rounds)
    settings = EvalSettings(seed=seed, measure_latency=latency_search, latency=search_lat)
    final = FinalTuneConfig(epochs=final_epochs)
    run_dir = out / "runs" / task_name / target.replace("=", "") / f"seed{seed}" / method
    row: dict[str, object] = {"task": task_name, "target": target, "seed": seed, "method": method,
                              "test_samples": len(task.data.test), "metric": task.data.metric}
    t0 = time.perf_counter()
    if method == TP_UNIFORM:
        model, evals = tp_uniform(task, constraints, search_lat, steps=tp_steps)
        tune = finetune_model(model, task, config=final, batch_size=settings.finetune_batch, seed=seed)
        cost = _cost(model, task, dataclasses.replace(constraints, latency_target=None), lat)
        row.update(feasible=constraints.meets_cost(cost), evals=evals, finetune_s=round(tune.get("wall_s", 0.0), 1))
    else:
        entry = METHODS[method]
        config = SearchConfig(method=entry["method"], seed=seed, importance=entry.get("importance", "l2"),
                              trials=trials, options=dict(entry.get("options", {})),
                              round_to=8 if latency_search else None)
        outcome = run_search(task=task, out_dir=run_dir, constraints=constraints, settings=settings, config=config,
                             overwrite=True, latency_model=latency_search, final=final)
        s = outcome.summary
        if not s.get("feasible"):
            return {**row, "feasible": False, "error": "no feasible policy", "wall_s": round(time.perf_counter() - t0, 1)}
        model = load_pruned_model(run_dir / "pruned_model.pt")
        row.update(feasible=True, evals=len(ResultLog.open(run_dir / "results.csv", resume=True).rows),
                   finetune_s=round(float(s["final"].get("wall_s") or 0.0), 1))
    wall = time.perf_counter() - t0
    example = task.example_input()
    macs, params = tp.utils.count_ops_and_params(model, example)
    dense_macs, dense_params = tp.utils.count_ops_and_params(task.model, example)
    row.update(dense_test=round(task.score(task.model, "test"), 3), test=round(task.score(model, "test"), 3),
               flops_ratio=round(macs / dense_macs, 4), params_ratio=round(params / dense_params, 4),
               wall_s=round(wall, 1))
    if measure:
        paired = measure_latency_ratio(model, task.model, task.input_shape, config=lat)
        row.update(latency_ratio=round(paired.ratio, 3), latency_lo=round(paired.lo, 3), latency_hi=round(paired.hi, 3),
                   dense_ms=round(paired.dense_ms, 2), threads=paired.threads)
    return row


def run_grid(task_name: str, *, targets: Sequence[str], methods: Sequence[str], seeds: Sequence[int], out: Path,
             epochs: int, trials: int, final_epochs: float, threads: int, measure: bool, tp_steps: int = 10,
             max_rounds: int = 20, reuse: bool = False, prune_embed: bool = False) -> list[dict[str, object]]:
    """Every (target, method, seed) of one task; a finished run's row is kept in ``row.json`` (``reuse`` skips it).

    With ``prune_embed`` the project's searchers prune the residual width too (``--prune-embed``); its rows and run
    directories are those of task ``<task>+embed``.

    Latency is timed at ``threads`` torch threads and the ``auto`` batch of the dense model: candidates in the
    search with the CLI's paired rounds (3 to 10), every final model in 5 to ``max_rounds`` rounds.
    """
    torch.set_num_threads(threads)
    task = dense_task(task_name, out=out, epochs=epochs)
    task.prune_embed = prune_embed
    label = f"{task_name}+embed" if prune_embed else task_name
    batch = auto_batch_size(float(tp.utils.count_ops_and_params(task.model, task.example_input())[0]))
    lat = LatencyConfig(batch_size=batch, threads=threads, rounds=min(5, max_rounds), max_rounds=max_rounds)
    rows = []
    for target in targets:
        for method in methods:
            for seed in seeds:
                done = out / "runs" / label / target.replace("=", "") / f"seed{seed}" / f"{method}.row.json"
                key = {"epochs": epochs, "trials": trials, "final_epochs": final_epochs, "threads": threads,
                       "fingerprint": task.fingerprint, "max_rounds": max_rounds}
                if reuse and done.exists() and json.loads(done.read_text()).get("key") == key:
                    rows.append(json.loads(done.read_text())["row"])
                    continue
                try:
                    row = run_one(task, task_name=label, target=target, method=method, seed=seed, out=out,
                                  trials=trials, final_epochs=final_epochs, lat=lat, measure=measure,
                                  tp_steps=tp_steps)
                except Exception as exc:  # noqa: BLE001 - a benchmark row records the failure and goes on
                    row = {"task": label, "target": target, "seed": seed, "method": method,
                           "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                row["batch"] = batch
                rows.append(row)
                atomic_write_json(done, {"key": key, "row": row})
                print(row, flush=True)
    return rows


def _fmt(mean: float, half: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if not np.isfinite(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def summarise(raw: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """One row per (task, target, method): mean test metric and its 95% interval over seeds, paired vs uniform.

    ``vs_uniform`` is the paired per-seed gain over ``uniform`` in the metric's better direction (accuracy points
    up, perplexity down), with its interval and verdict.
    """
    cells: dict[tuple[str, str, str], dict[int, dict[str, object]]] = {}
    for r in raw:
        if not r.get("error") and r.get("feasible"):
            cells.setdefault((str(r["task"]), str(r["target"]), str(r["method"])), {})[int(r["seed"])] = r
    out = []
    for (task, target, method), by_seed in cells.items():
        seeds = sorted(by_seed)
        first = by_seed[seeds[0]]
        sign = -1.0 if first["metric"] == "perplexity" else 1.0
        digits = 3 if first["metric"] == "perplexity" else 2
        mean = lambda key: float(np.mean([float(by_seed[s][key]) for s in seeds]))  # noqa: E731,B023
        row: dict[str, object] = {"task": task, "target": target, "method": method, "seeds": len(seeds),
                                  f"dense_{first['metric']}": first["dense_test"],
                                  f"test_{first['metric']}": _fmt(*t_interval([float(by_seed[s]["test"]) for s in seeds]),
                                                                  digits),
                                  "flops_ratio": round(mean("flops_ratio"), 3),
                                  "params_ratio": round(mean("params_ratio"), 3)}
        if "latency_ratio" in first:
            row["latency_ratio"] = _fmt(*t_interval([float(by_seed[s]["latency_ratio"]) for s in seeds]), 3)
            row["latency_90%_each"] = "; ".join(f"{by_seed[s]['latency_lo']}-{by_seed[s]['latency_hi']}" for s in seeds)
        row.update(evals=round(mean("evals"), 1), wall_s=round(mean("wall_s"), 1))
        uni = cells.get((task, target, "uniform"), {})
        common = sorted(set(by_seed) & set(uni))
        if method != "uniform" and common:
            gain = t_interval([sign * (float(by_seed[s]["test"]) - float(uni[s]["test"])) for s in common])
            row["vs_uniform"] = f"{_fmt(*gain, digits)} ({verdict(*gain)})"
        out.append(row)
    for r in raw:
        if r.get("error") or not r.get("feasible"):
            key = (str(r["task"]), str(r["target"]), str(r["method"]))
            if key not in cells:
                out.append({"task": r["task"], "target": r["target"], "method": r["method"],
                            "error": r.get("error", "infeasible")})
                cells[key] = {}
    return out
