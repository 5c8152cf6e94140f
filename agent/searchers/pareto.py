"""Pareto fronts of evaluated policies (accuracy up, cost down) and their CSV / PNG outputs."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from ..constraints import Constraints
from ..evaluation import EvalResult
from ..storage import atomic_write_bytes, atomic_write_text

__all__ = ["COST_OF", "pareto_mask", "pareto_front", "write_pareto"]

COST_OF: dict[str, Callable[[EvalResult], float | None]] = {
    "latency": lambda r: r.latency_ratio,
    "flops": lambda r: r.flops_ratio,
}
"""Objective name -> the cost it minimises (a ratio to the dense model)."""

PARETO_COLUMNS = ["trial", "accuracy", "acc_drop", "cost", "flops_ratio", "params_ratio", "latency_ms",
                  "latency_ratio", "feasible", "policy_key", "importance", "ratios"]
"""Columns of ``pareto.csv``."""


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def pareto_mask(accuracy: Sequence[float], cost: Sequence[float]) -> list[bool]:
    """Which points are non-dominated: the one dominance rule (accuracy up, cost down).

    A point is dominated when another is at least as accurate and at most as costly, and strictly better in one.

    Example:
        >>> pareto_mask([90.0, 91.0, 89.0], [0.5, 0.6, 0.6])
        [True, True, False]
    """
    pts = list(zip(accuracy, cost, strict=True))
    return [not any((a2 >= a and c2 <= c) and (a2 > a or c2 < c) for a2, c2 in pts) for a, c in pts]


def pareto_front(history: Sequence[tuple[int, EvalResult]], *, objective: str) -> list[tuple[int, EvalResult]]:
    """Feasible evaluated results no other feasible result dominates, sorted by cost.

    A dominates B when it is at least as accurate and at most as costly, and strictly better in one. Only ``ok``
    results that meet every constraint are candidates, so every member meets the constraints it claims.
    Identical policies appear once (their first evaluation).
    """
    cost = COST_OF[objective]
    seen: set[str] = set()
    points: list[tuple[int, EvalResult, float]] = []
    for trial, r in history:
        c = cost(r)
        if r.ok and r.feasible and _finite(r.accuracy) and _finite(c) and r.policy.key() not in seen:
            seen.add(r.policy.key())
            points.append((trial, r, float(c)))  # type: ignore[arg-type]

    keep = pareto_mask([r.quality for _, r, _ in points], [c for _, _, c in points])
    front = [p for p, k in zip(points, keep, strict=True) if k]
    return [(t, r) for t, r, _ in sorted(front, key=lambda p: (p[2], -p[1].quality))]


def write_pareto(out_dir: Path, *, history: Sequence[tuple[int, EvalResult]], front: Sequence[tuple[int, EvalResult]],
                 objective: str, constraints: Constraints) -> list[Path]:
    """Write ``pareto.csv`` (the front) and ``pareto.png`` (every evaluated policy, the front highlighted)."""
    cost = COST_OF[objective]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PARETO_COLUMNS)
    for trial, r in front:
        writer.writerow([trial, r.accuracy, r.acc_drop, cost(r), r.flops_ratio, r.params_ratio, r.latency_ms,
                         r.latency_ratio, r.feasible, r.policy.key(), r.policy.importance,
                         json.dumps({k: round(v, 6) for k, v in r.policy.ratios.items()}, sort_keys=True)])
    csv_path = out_dir / "pareto.csv"
    atomic_write_text(csv_path, buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ok = [r for _, r in history if r.ok and _finite(cost(r)) and _finite(r.accuracy)]
    for feasible, style in ((False, {"marker": "x", "color": "0.6", "label": "infeasible"}),
                            (True, {"marker": "o", "color": "tab:blue", "alpha": 0.5, "label": "feasible"})):
        pts = [r for r in ok if r.feasible == feasible]
        if pts:
            ax.scatter([cost(r) for r in pts], [r.accuracy for r in pts], s=18, **style)
    if front:
        ax.plot([cost(r) for _, r in front], [r.accuracy for _, r in front], "-o", color="tab:red", ms=5,
                drawstyle="steps-post", label="Pareto front")
    target = constraints.flops_target if objective == "flops" else (
        constraints.latency_target.value if constraints.latency_target and constraints.latency_target.unit == "ratio"
        else None)
    if target is not None:
        ax.axvline(target, ls="--", color="0.3", lw=1, label=f"{objective} target")
    if ok and constraints.max_acc_drop is not None:
        ax.axhline(ok[0].dense_accuracy - constraints.max_acc_drop, ls=":", color="0.3", lw=1, label="accuracy floor")
    ax.set_xlabel(f"{objective} ratio to dense (lower is better)")
    ax.set_ylabel("accuracy % (higher is better)")
    ax.set_title(f"accuracy vs {objective}: {len(front)} front / {len(ok)} evaluated")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    png_path = out_dir / "pareto.png"
    atomic_write_bytes(png_path, png.getvalue())
    return [csv_path, png_path]
