"""Zoo sweep: every torchvision classification model through PrunePilot's graph and through Torch-Pruning alone.

Each model runs in its own subprocess (one per side), so peak RSS is that side's own: graph build, importance,
one uniform application at ``ratio`` and a forward of the pruned model. PrunePilot's side also records its
predicted MACs against the MACs counted on the pruned model.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

__all__ = ["ZOO_EXCLUDED", "zoo_models", "input_size", "zoo"]

ZOO_EXCLUDED = (
    "regnet_y_128gf", "vit_h_14", "vit_l_32", "vit_l_16", "convnext_large", "regnet_y_32gf", "vgg19_bn", "vgg19",
    "vgg16_bn", "vgg16", "vgg13_bn", "vgg13", "vgg11_bn", "vgg11", "wide_resnet101_2", "efficientnet_v2_l",
    "regnet_x_32gf",
)
"""The 17 torchvision classification models with the most parameters (at 10 classes): left out of the default sweep."""

_TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def zoo_models(*, include_large: bool = False) -> list[str]:
    """Names of torchvision's classification models, in alphabetical order."""
    import torchvision

    names = sorted(torchvision.models.list_models(module=torchvision.models))
    return names if include_large else [n for n in names if n not in ZOO_EXCLUDED]


def input_size(name: str) -> int:
    """Square input side used for ``name``: 224 for transformers, 96 for inception_v3, 64 otherwise."""
    if name.startswith(_TRANSFORMERS):
        return 224
    return 96 if name == "inception_v3" else 64


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds of this process (robust to other load on the machine, unlike wall time)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _worker(name: str, side: str, ratio: float) -> dict[str, object]:
    import warnings

    import torch
    import torch_pruning as tp
    import torchvision

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, input_size(name), input_size(name))
    row: dict[str, object] = {"model": name, "side": side}
    rss0, t0, c0 = _rss_mb(), time.perf_counter(), _cpu_s()
    try:
        if side == "tp":
            from agent.pruning.tracing import find_output_layer

            head = dict(model.named_modules())[find_output_layer(model, x)]
            pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                          pruning_ratio=ratio, ignored_layers=[head])
            pruner.step()
            pruned = model
        else:
            from agent.pruning import PruningGraph, compute_importance

            graph = PruningGraph(model, x)
            scores = compute_importance(graph, "l2")
            plan = graph.select(scores, {u.name: ratio for u in graph.units})
            row["units"] = len(graph.units)
            row["macs_pred"] = graph.predict_macs(plan)
            pruned = graph.apply(plan)
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        row["cpu_s"] = round(_cpu_s() - c0, 2)
        row["rss_peak_mb"] = round(_rss_mb(), 1)
        row["rss_delta_mb"] = round(_rss_mb() - rss0, 1)
        with torch.no_grad():
            pruned(x)
        macs, _ = tp.utils.count_ops_and_params(pruned, x)
        row["macs"] = float(macs)
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - the sweep reports every failure as a row
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        if os.environ.get("ZOO_TRACE"):
            traceback.print_exc()
    return row


def _limit_memory(mem_gb: float) -> None:
    cap = int(mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _run_one(name: str, side: str, ratio: float, timeout_s: float, mem_gb: float) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--worker", name, side, str(ratio)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                             cwd=Path(__file__).resolve().parents[1], preexec_fn=lambda: _limit_memory(mem_gb))
    except subprocess.TimeoutExpired:
        return {"model": name, "side": side, "status": "timeout", "error": f"over {timeout_s:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"model": name, "side": side, "status": "crashed", "error": tail,
                "wall_s": round(time.perf_counter() - t0, 1)}
    return json.loads(lines[-1])


def zoo(models: list[str], *, ratio: float = 0.5, timeout_s: float = 300.0, mem_gb: float = 6.0) -> list[dict[str, object]]:
    """One row per model: PrunePilot and Torch-Pruning alone side by side, each under the same memory cap.

    Args:
        models: torchvision model names.
        ratio: Uniform pruning ratio of every unit.
        timeout_s: Wall-time cap of each side.
        mem_gb: Address-space cap of each side (a runaway shape inference fails instead of swapping).
    """
    rows = []
    for name in models:
        pp = _run_one(name, "pp", ratio, timeout_s, mem_gb)
        tp_ = _run_one(name, "tp", ratio, timeout_s, mem_gb)
        row: dict[str, object] = {"model": name, "input": input_size(name), "units": pp.get("units", ""),
                                  "prunepilot": pp["status"], "torch_pruning": tp_["status"]}
        if pp["status"] == "ok":
            row["macs_ratio_err_pct"] = round(100 * abs(pp["macs_pred"] - pp["macs"]) / pp["macs"], 2)
        for key in ("cpu_s", "wall_s", "rss_peak_mb"):
            row[f"pp_{key}"], row[f"tp_{key}"] = pp.get(key, ""), tp_.get(key, "")
        if pp["status"] == "ok" and tp_["status"] == "ok":
            row["rss_x"] = round(pp["rss_peak_mb"] / tp_["rss_peak_mb"], 2)
            row["cpu_x"] = round(pp["cpu_s"] / max(tp_["cpu_s"], 1e-3), 2)
        row["error"] = pp.get("error", "") or (f"tp: {tp_['error']}" if tp_.get("error") else "")
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(_worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))), flush=True)
