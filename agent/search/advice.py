"""What to tell a user whose search found no feasible policy: how far off the closest one is, and what to try.

Every comparison goes through :meth:`Constraints.violations` (one rule); this module only words the gaps and
proposes concrete flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..constraints import Constraints, LatencyTarget

__all__ = ["constraint_gaps", "next_flags"]


def _met(constraints: Constraints, **metrics: Any) -> bool:
    base: dict[str, Any] = {"flops_ratio": 0.0, "params_ratio": 0.0, "latency_ratio": None, "latency_ms": None,
                            "acc_drop": None}
    return not constraints.violations(**{**base, **metrics})


def constraint_gaps(result: Mapping[str, Any], constraints: Constraints) -> list[str]:
    """One plain phrase per stated constraint: the value, the limit, and met or by how much it misses.

    Args:
        result: An evaluation as written to ``summary.json`` (``accuracy``, ``acc_drop``, ``flops_ratio``, ...).
        constraints: The search's constraints.
    """
    out = []
    if constraints.max_acc_drop is not None and result.get("acc_drop") is not None:
        drop, limit = float(result["acc_drop"]), constraints.max_acc_drop
        ok = _met(Constraints(max_acc_drop=limit), acc_drop=drop)
        from ..tasks.metrics import METRICS

        metric = METRICS[result.get("metric") or "accuracy"]
        unit = f" {metric.drop_unit}" if metric.drop_unit else ""
        out.append(f"{metric.name} {metric.text(float(result['accuracy']))} vs dense "
                   f"{metric.text(float(result['dense_accuracy']))}: drop {drop:.2f}{unit}, allowed {limit:g}"
                   + ("" if ok else f" ({drop - limit:.2f} over)"))
    for key, name, target in (("flops_ratio", "FLOPs", constraints.flops_target),
                              ("params_ratio", "params", constraints.params_target)):
        if target is not None and result.get(key) is not None:
            value = float(result[key])
            ok = _met(Constraints(**{key.replace("_ratio", "_target"): target}), **{key: value})
            out.append(f"{name} {value:.3f}x of dense, target {target:g}x" + ("" if ok else f" ({value - target:.3f} over)"))
    lat = constraints.latency_target
    if lat is not None:
        key = "latency_ratio" if lat.unit == "ratio" else "latency_ms"
        if result.get(key) is not None:
            value = float(result[key])
            ok = _met(Constraints(latency_target=lat), **{key: value})
            shown = f"{value:.3f}x of dense" if lat.unit == "ratio" else f"{value:.3f} ms"
            out.append(f"latency {shown}, target {lat.text()}" + ("" if ok else f" ({value - lat.value:.3f} over)"))
    return out


def _looser(target: float) -> float:
    """A target a third of the way from ``target`` to no pruning at all, rounded up to 0.05."""
    return min(1.0, math.ceil((target + (1.0 - target) / 3) * 20) / 20)


def next_flags(result: Mapping[str, Any], constraints: Constraints, *, finetune_steps: int,
               max_ratio: float) -> list[str]:
    """Concrete flags that move the next search towards feasibility, most promising first.

    Args:
        result: The closest evaluation (as in ``summary.json``).
        constraints: The search's constraints.
        finetune_steps: The per-candidate fine-tune of the search (``--finetune-steps``).
        max_ratio: The search's ``--max-ratio``.
    """
    flags: list[str] = []
    drop = result.get("acc_drop")
    acc_short = (constraints.max_acc_drop is not None and drop is not None
                 and not _met(Constraints(max_acc_drop=constraints.max_acc_drop), acc_drop=float(drop)))
    if acc_short:
        steps = 100 if finetune_steps <= 0 else 2 * finetune_steps
        flags.append(f"--finetune-steps {steps} (fine-tune each candidate before scoring it)")
        flags.append(f"--max-metric-drop {math.ceil(float(drop) * 2) / 2:g} (allow the drop the closest policy has)")
        for flag, target in (("--flops-target", constraints.flops_target),
                             ("--params-target", constraints.params_target)):
            if target is not None and target < 1:
                flags.append(f"{flag} {_looser(target):g} (prune less)")
        lat = constraints.latency_target
        if lat is not None and lat.unit == "ratio" and lat.value < 1:
            flags.append(f"--latency-target {_looser(lat.value):g} (prune less)")
    else:  # a cost target missed: prune harder or aim elsewhere
        for key, flag, target in (("flops_ratio", "--flops-target", constraints.flops_target),
                                  ("params_ratio", "--params-target", constraints.params_target)):
            value = result.get(key)
            if target is not None and value is not None and float(value) > target:
                flags.append(f"{flag} {math.ceil(float(value) * 100) / 100:g} (what the closest policy reaches)")
        lat = constraints.latency_target
        if lat is not None and lat.unit == "ratio" and result.get("latency_ratio") is not None:
            value = float(result["latency_ratio"])
            if not _met(Constraints(latency_target=lat), latency_ratio=value):
                flags.append(f"--latency-target {LatencyTarget(min(1.0, math.ceil(value * 100) / 100)).text()[:-1]} "
                             "(what the closest policy reaches)")
        if max_ratio < 0.95:
            flags.append(f"--max-ratio {min(0.95, max_ratio + 0.05):g} (let units lose more channels)")
        flags.append("--method optuna --trials 40 (search more policies)")
    return flags
