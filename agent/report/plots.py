"""The report's figures (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluation import EvalResult
from ..searchers.pareto import pareto_mask
from ..storage import atomic_path

__all__ = ["best_so_far", "plot_ratios", "plot_progress", "plot_pareto", "plot_iterative"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return path


def best_so_far(results: Sequence[tuple[int, EvalResult]]) -> list[float]:
    """Best feasible accuracy after each evaluation (NaN until the first feasible one)."""
    best, out = -math.inf, []
    for _, r in results:
        if r.ok and r.feasible and math.isfinite(r.accuracy):
            best = max(best, r.accuracy)
        out.append(best if best > -math.inf else math.nan)
    return out


def plot_ratios(ratios: Mapping[str, float], path: Path, *, kept: Mapping[str, int] | None = None) -> Path:
    """Horizontal bar chart of each unit's pruning ratio (kept channel counts as labels)."""
    plt = _pyplot()
    names = list(ratios)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(names) + 1)))
    bars = ax.barh(range(len(names)), [ratios[n] for n in names], color="#4c72b0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("pruning ratio (fraction of channels removed)")
    ax.set_title("Per-unit pruning ratios of the best policy")
    if kept:
        for bar, n in zip(bars, names, strict=True):
            if n in kept:
                ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{kept[n]} kept",
                        va="center", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_progress(results: Sequence[tuple[int, EvalResult]], path: Path, *, dense_accuracy: float | None) -> Path:
    """Accuracy of every evaluation and the best feasible accuracy so far, against evaluation number."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(1, len(results) + 1))
    ok = [(x, r) for x, (_, r) in zip(xs, results, strict=True) if r.ok and math.isfinite(r.accuracy)]
    feas = [(x, r.accuracy) for x, r in ok if r.feasible]
    infeas = [(x, r.accuracy) for x, r in ok if not r.feasible]
    if infeas:
        ax.scatter(*zip(*infeas, strict=True), s=14, color="#bbbbbb", label="infeasible")
    if feas:
        ax.scatter(*zip(*feas, strict=True), s=16, color="#55a868", label="feasible")
    ax.step(xs, best_so_far(results), where="post", color="#c44e52", marker="_", label="best feasible so far")
    if dense_accuracy is not None:
        ax.axhline(dense_accuracy, ls="--", color="#333333", lw=1, label="dense")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(1, len(xs)) + 0.5)  # whole evaluations, even for a one-evaluation run
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 100.0))  # accuracy never exceeds 100%
    ax.set_xlabel("evaluation")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Search progress")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_pareto(results: Sequence[tuple[int, EvalResult]], path: Path, *, costs: Sequence[str],
                best_key: str | None = None) -> Path:
    """Accuracy against each cost ratio (``flops_ratio``, ``latency_ratio``) with the non-dominated front marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(costs), figsize=(6 * len(costs), 4.2), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        pts = [r for _, r in results if r.ok and math.isfinite(r.accuracy) and getattr(r, cost) is not None
               and math.isfinite(getattr(r, cost))]
        acc, cst = [r.accuracy for r in pts], [getattr(r, cost) for r in pts]
        front = pareto_mask(acc, cst)
        ax.scatter([c for c, f in zip(cst, front, strict=True) if not f],
                   [a for a, f in zip(acc, front, strict=True) if not f], s=14, color="#bbbbbb", label="dominated")
        fx = sorted((c, a) for c, a, f in zip(cst, acc, front, strict=True) if f)
        if fx:
            ax.plot(*zip(*fx, strict=True), marker="o", color="#dd8452", label="Pareto front")
        for r in pts:
            if best_key is not None and r.policy.key() == best_key:
                ax.scatter([getattr(r, cost)], [r.accuracy], s=120, marker="*", color="#c44e52", zorder=5,
                           label="chosen")
                break
        ax.set_xlabel(cost.replace("_", " ") + " (of dense)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy vs cost of every evaluation")
    fig.tight_layout()
    return _save(fig, path)


def plot_iterative(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Accuracy and FLOPs ratio after each iterative pruning step (hollow markers: step pruned nothing)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["accuracy"] for r in records], color="#4c72b0", label="val accuracy")
    for r in records:
        ax.scatter([r["step"]], [r["accuracy"]], color="#4c72b0",
                   facecolors="#4c72b0" if r["pruned"] else "none", zorder=3)
    ax.set_xlabel("pruning step")
    ax.set_ylabel("accuracy (%)")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["flops_ratio"] for r in records], color="#dd8452", ls="--", label="FLOPs ratio")
    ax2.set_ylabel("FLOPs ratio")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="lower left")
    ax.set_title("Iterative pruning (hollow: step pruned nothing, fine-tune skipped)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
