"""Sensitivity analysis: accuracy drop when one unit alone is pruned, plus its FLOPs and latency shares.

Profiles are cached on disk keyed by the task fingerprint (weights + spec) and every setting that changes
the numbers, so the env, the greedy baseline and the CLI share one measurement.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import user_error
from ..policy import Policy
from ..storage import atomic_write_json, atomic_write_text
from ..tasks.datasets import cache_dir
from ..tasks.metrics import METRICS
from ..tasks.task import Task
from .core import evaluate_policy
from .engine import get_engine
from .records import EvalSettings

__all__ = ["SensitivityProfile", "analyse_sensitivity", "DEFAULT_SENSITIVITY_RATIOS", "plot_sensitivity", "curve_styles"]

DEFAULT_SENSITIVITY_RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class SensitivityProfile:
    """Per-unit accuracy / cost curves of single-unit pruning."""

    ratios: list[float]
    """Analysed pruning ratios (ascending)."""
    units: list[str]
    """Unit names in graph order."""
    dense_accuracy: float
    """Dense accuracy on the scored split (percent)."""
    accuracy: dict[str, list[float]]
    """Unit -> accuracy at each ratio (percent)."""
    flops_ratio: dict[str, list[float]]
    """Unit -> whole-model MACs ratio at each ratio."""
    latency_ratio: dict[str, list[float]]
    """Unit -> whole-model latency ratio at each ratio: measured, or the latency table's prediction when a table was
    attached (empty lists when latency is off)."""
    macs_share: dict[str, float]
    """Unit -> share of dense MACs in the layers it touches (shrinks in or out), so shares of neighbouring units
    overlap and sum to about 2; shown as "MACs touched"."""
    latency_share: dict[str, float]
    """Unit -> share of dense latency it controls (latency saved at the largest ratio / that ratio)."""
    importance: str = "l2"
    """Criterion ranking channels inside each unit."""
    key: str = ""
    """Cache key (task fingerprint + settings)."""
    meta: dict[str, object] = field(default_factory=dict)
    """Settings the profile was measured with."""
    metric: str = "accuracy"
    """The task's metric held in ``dense_accuracy`` / ``accuracy`` (drops follow its direction)."""

    def _drop(self, value: float) -> float:
        return METRICS[self.metric].drop(dense=self.dense_accuracy, value=value)

    def drop(self, unit: str, ratio: float) -> float:
        """Accuracy drop (points) of ``unit`` alone at ``ratio``, linearly interpolated (0 at ratio 0)."""
        xs = [0.0, *self.ratios]
        ys = [0.0, *(self._drop(a) for a in self.accuracy[unit])]
        return float(np.interp(ratio, xs, ys))

    def drops(self, unit: str) -> list[float]:
        """Accuracy drops of ``unit`` at every analysed ratio."""
        return [self._drop(a) for a in self.accuracy[unit]]

    def rows(self) -> list[dict[str, object]]:
        """Flat rows (unit, ratio, accuracy, acc_drop, flops_ratio, latency_ratio, shares) for CSV export.

        ``macs_touched`` is :attr:`macs_share` (the share of dense MACs in layers the unit shrinks; overlapping).
        """
        out = []
        for unit in self.units:
            for i, r in enumerate(self.ratios):
                lat = self.latency_ratio.get(unit) or []
                out.append({
                    "unit": unit, "ratio": r, "accuracy": self.accuracy[unit][i],
                    "acc_drop": self._drop(self.accuracy[unit][i]),
                    "flops_ratio": self.flops_ratio[unit][i], "latency_ratio": lat[i] if lat else None,
                    "macs_touched": self.macs_share[unit], "latency_share": self.latency_share.get(unit),
                })
        return out

    def to_csv(self, path: str | Path) -> None:
        """Write :meth:`rows` as CSV."""
        import pandas as pd

        atomic_write_text(path, pd.DataFrame(self.rows()).to_csv(index=False))

    def to_json(self, path: str | Path) -> None:
        """Save the profile (the on-disk cache format)."""
        atomic_write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> SensitivityProfile:
        """Load a profile saved by :meth:`to_json`."""
        return cls(**json.loads(Path(path).read_text()))


def _cache_key(task: Task, ratios: Sequence[float], importance: str, settings: EvalSettings,
               latency_table: str | None = None) -> str:
    payload = json.dumps({
        "task": task.fingerprint, "ignore": list(task.ignore_layers), "ratios": list(ratios), "importance": importance,
        "settings": dataclasses.asdict(settings), "torch": torch.__version__, "v": 1,
        **({"latency_table": latency_table} if latency_table else {}),
        **({"prune_embed": True} if task.prune_embed else {}),  # its units differ; keys without it stay valid
    }, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def analyse_sensitivity(
    task: Task,
    *,
    ratios: Sequence[float] = DEFAULT_SENSITIVITY_RATIOS,
    importance: str = "l2",
    settings: EvalSettings | None = None,
    cache: bool = True,
    cache_root: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityProfile:
    """Measure (or load from cache) the sensitivity profile of every unit.

    Example:
        >>> from agent import EvalSettings, analyse_sensitivity, build_task
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> profile = analyse_sensitivity(task, ratios=(0.5, 0.9), settings=EvalSettings(measure_latency=False),
        ...                               cache=False)
        >>> profile.units, len(profile.accuracy["net.1"])
        (['net.1', 'net.3'], 2)

    Args:
        task: The dense model and data.
        ratios: Pruning ratios to analyse, each in (0, 1).
        importance: Criterion ranking channels inside a unit.
        settings: Evaluation settings (default: no fine-tune, BN recalibration, val split, CPU latency). With a
            latency table attached to the task's engine, latency curves are the table's predictions.
        cache: Read / write the on-disk cache.
        cache_root: Cache directory (default ``$PRUNEPILOT_CACHE/sensitivity``).
        progress: Called as ``progress(done, total)`` after each evaluation.

    Returns:
        The profile.
    """
    ratios = sorted(float(r) for r in ratios)
    bad = [r for r in ratios if not 0 < r < 1]
    if not ratios or bad:
        raise user_error("sensitivity ratios must be in (0, 1), got", bad or ratios, "e.g. --ratios 0.1,0.3,0.5,0.7,0.9")
    settings = settings or EvalSettings()
    engine = get_engine(task)
    # with a latency table attached, the latency curves are its predictions and only accuracy is evaluated: one
    # paired measurement per unit and ratio would cost seconds each and add nothing the table has not timed
    table = engine.latency_model if settings.measure_latency else None
    key = _cache_key(task, ratios, importance, settings,
                     None if table is None else str(getattr(table, "key", type(table).__name__)))
    root = Path(cache_root) if cache_root else cache_dir() / "sensitivity"
    path = root / f"{key}.json"
    if cache and path.exists():
        return SensitivityProfile.from_json(path)
    dense = engine.dense(settings)
    scored = dataclasses.replace(settings, measure_latency=False) if table is not None else settings
    names = engine.graph.unit_names()
    acc: dict[str, list[float]] = {}
    flops: dict[str, list[float]] = {}
    lat: dict[str, list[float]] = {}
    total, done = len(names) * len(ratios), 0
    for unit in names:
        acc[unit], flops[unit], lat[unit] = [], [], []
        for r in ratios:
            policy = Policy({unit: r}, importance)
            res = evaluate_policy(task, policy, settings=scored)
            acc[unit].append(res.accuracy)
            flops[unit].append(res.flops_ratio)
            if table is not None:
                kept = engine.kept_channels(engine.plan(policy, settings))
                lat[unit].append(engine.predict_latency(kept, settings)[1])  # type: ignore[index]
            elif res.latency_ratio is not None:
                lat[unit].append(res.latency_ratio)
            done += 1
            if progress:
                progress(done, total)
    lat_share = {u: max(0.0, 1.0 - lat[u][-1]) / ratios[-1] if lat[u] else 0.0 for u in names}
    profile = SensitivityProfile(
        ratios, names, dense.accuracy, acc, flops, lat,
        {u.name: u.macs_share for u in engine.units}, lat_share, importance, key,
        {"settings": dataclasses.asdict(settings), "task": task.fingerprint}, task.metric.name,
    )
    if cache:
        profile.to_json(path)
    return profile


_MARKERS = "osD^vP*Xph<>"
_LINESTYLES = ("-", "--", ":", "-.")


def curve_styles(n: int) -> list[dict[str, str]]:
    """Matplotlib styles of ``n`` curves, each (colour, marker, line style) combination distinct.

    Colours cycle through the 10 of ``tab10``; every next ten change the line style, and the marker follows the
    curve index, so units past the tenth never reuse a look (up to 480 units).
    """
    return [{"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)],
             "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)]} for i in range(n)]


def plot_sensitivity(profile: SensitivityProfile, path: str | Path) -> None:
    """Accuracy-vs-ratio curve per unit, as a PNG (distinct colour / marker / line style per unit, legend beside)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..storage import atomic_path

    n = len(profile.units)
    ncol = max(1, -(-n // 24))  # legend columns: at most 24 rows
    fig, ax = plt.subplots(figsize=(7 + 2.2 * ncol, max(4.5, 0.2 * min(n, 24))))
    for unit, style in zip(profile.units, curve_styles(n), strict=True):
        ax.plot([0, *profile.ratios], [profile.dense_accuracy, *profile.accuracy[unit]], label=unit,
                markersize=4, linewidth=1.2, **style)
    ax.set_xlabel("pruning ratio of the unit alone")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Sensitivity ({profile.importance} importance)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
