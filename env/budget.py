"""AMC's budget wall: per-unit ratio bounds that keep the cost targets reachable and stop needless pruning.

While an episode walks the units in graph order, :meth:`BudgetWall.bounds` gives the ratio interval of the
current unit given the ratios already chosen:

* **lower bound** - the least pruning that still lets every cost target be met if all later units are pruned
  at ``max_ratio`` (AMC's constraint: the target stays reachable);
* **upper bound** - the least pruning that already meets every target if all later units stay at
  ``min_ratio`` (pruning more than that buys nothing under a hard budget and only costs accuracy).

Costs are *predicted* from the dense graph (:mod:`agent.pruning.plan_cost`) and, for a
latency target, from the engine's latency model (``.predict(kept_channels) -> ms``) when one is attached; without
one, a latency target given as a ratio is enforced through the FLOPs ratio as a proxy. Ratios live on each
unit's channel grid (``k / channels``), so a bound is exactly the ratio of a whole number of removed channels.
Whether a prediction meets the targets is the one cost calculus (:meth:`agent.constraints.Constraints.overage`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from agent.constraints import Constraints, CostProbe, LatencyTarget
from agent.evaluation import PruningEngine
from agent.pruning.graph import PrunableUnit
from agent.pruning.plan_cost import kept_channels, predicted_flops_ratio, predicted_params_ratio

__all__ = ["BudgetWall", "CostTarget"]

WALL_MARGIN = 1e-3
"""Relative safety margin under each target (predictions and measurements differ by rounding)."""


@dataclass(frozen=True)
class CostTarget:
    """One walled cost and the value its prediction must not exceed."""

    name: str
    """``flops``, ``params`` or ``latency``."""
    limit: float
    """The target already shrunk by the safety margin: a ratio of dense, or the latency table's milliseconds."""


class BudgetWall:
    """Ratio bounds per unit that keep the FLOPs / params / latency targets reachable (see module docstring).

    Args:
        engine: The task's pruning engine (graph, latency model).
        scores: Per-unit channel importance (decides which channels a ratio removes).
        constraints: The cost targets (accuracy budget ignored).
        min_ratio: Smallest per-unit ratio.
        max_ratio: Largest per-unit ratio.
        round_to: Keep a multiple of this many channels where possible.
        dense_latency_ms: Dense latency measured now, to turn a target in milliseconds into a ratio (with a latency
            model: of the table's dense prediction; without one and without this, such a target cannot be
            walled and a warning is issued).
    """

    def __init__(self, *, engine: PruningEngine, scores: Mapping[str, torch.Tensor], constraints: Constraints,
                 min_ratio: float, max_ratio: float, round_to: int | None = None,
                 dense_latency_ms: float | None = None) -> None:
        self.engine, self.graph, self.scores = engine, engine.graph, scores
        self.units: list[PrunableUnit] = list(engine.units)
        self.min_ratio, self.max_ratio, self.round_to = min_ratio, max_ratio, round_to
        self._roots: dict[tuple[str, int], np.ndarray] = {}
        self.walled: Constraints = self._walled(constraints, dense_latency_ms)
        """The walled targets, in the units of the wall's predictions (see :meth:`_walled`)."""
        shrink = 1.0 - WALL_MARGIN  # the terms' values are placeholders: only their targets are read
        self.targets: list[CostTarget] = [
            CostTarget(t.name, t.target * shrink)
            for t in self.walled.cost_terms(flops_ratio=1.0, params_ratio=1.0, latency_ms=1.0)]
        """The walled targets and their shrunk limits (what :meth:`meets` holds the predictions under)."""

    # ------------------------------------------------------------------ predictions
    def _removed(self, unit: PrunableUnit, ratio: float) -> np.ndarray:
        kept = unit.kept_channels(ratio, self.round_to)
        key = (unit.name, kept)
        if key not in self._roots:
            plan = self.graph.select(self.scores, {unit.name: ratio}, self.round_to)
            self._roots[key] = plan.get(unit.name, np.zeros(0, dtype=np.int64))
        return self._roots[key]

    def plan(self, ratios: Mapping[str, float]) -> dict[str, np.ndarray]:
        """Root channels removed per unit (same selection as the engine's)."""
        out = {}
        for u in self.units:
            r = float(ratios.get(u.name, 0.0))
            if r > 0:
                roots = self._removed(u, r)
                if len(roots):
                    out[u.name] = roots
        return out

    def flops_ratio(self, ratios: Mapping[str, float]) -> float:
        """Predicted MACs ratio of ``ratios``."""
        return predicted_flops_ratio(self.graph, self.plan(ratios))

    def _walled(self, c: Constraints, dense_latency_ms: float | None) -> Constraints:
        """The cost targets in what the wall predicts: FLOPs and params ratios, the latency table's milliseconds.

        Without a latency model a latency ratio target (or a millisecond one with a measured dense latency) is
        walled through the FLOPs ratio as a proxy; an absolute target becomes a ratio of the dense latency measured
        now (a latency table may be cached).
        """
        lat, model = c.latency_target, self.engine.latency_model
        lat_ratio = lat.as_ratio(dense_latency_ms) if lat is not None else None
        flops_limit, latency = c.flops_target, None
        if lat is not None and model is not None:
            dense_pred = float(model.predict({u.name: u.channels for u in self.units}))
            latency = LatencyTarget(lat_ratio * dense_pred if lat_ratio is not None else lat.value, "ms")
        elif lat is not None:
            if lat_ratio is None:
                warnings.warn(f"latency target {lat.text()} cannot be enforced by the budget wall without a latency "
                              "model or a measured dense latency; only the reward sees it", stacklevel=3)
            else:
                flops_limit = min(flops_limit, lat_ratio) if flops_limit is not None else min(lat_ratio, 1.0)
        return Constraints(flops_target=flops_limit, params_target=c.params_target, latency_target=latency)

    def costs(self, ratios: Mapping[str, float]) -> CostProbe:
        """Predicted costs of ``ratios`` that the wall walls (the others are not predicted: 0)."""
        w, plan = self.walled, self.plan(ratios)
        model = self.engine.latency_model
        return CostProbe(predicted_flops_ratio(self.graph, plan),
                         predicted_params_ratio(self.graph, plan) if w.params_target is not None else 0.0,
                         latency_ms=float(model.predict(kept_channels(self.units, plan)))
                         if w.latency_target is not None else None)

    @property
    def active(self) -> bool:
        """Whether any cost target is walled."""
        return bool(self.targets)

    def meets(self, ratios: Mapping[str, float]) -> bool:
        """Whether the predicted costs of ``ratios`` meet every target (held ``WALL_MARGIN`` under it)."""
        return not self.active or self.walled.overage(self.costs(ratios), margin=WALL_MARGIN) <= 1.0

    # ------------------------------------------------------------------ grid and bounds
    def grid_ratio(self, unit: PrunableUnit, removed: int) -> float:
        """The ratio that removes ``removed`` channels of ``unit`` (clipped into [min_ratio, max_ratio])."""
        return min(self.max_ratio, max(self.min_ratio, removed / unit.channels))

    def removed_range(self, unit: PrunableUnit) -> tuple[int, int]:
        """Channels removed at ``min_ratio`` and at ``max_ratio``."""
        return (unit.channels - unit.kept_channels(self.min_ratio, self.round_to),
                unit.channels - unit.kept_channels(self.max_ratio, self.round_to))

    def _least_meeting(self, prefix: Mapping[str, float], unit: PrunableUnit, rest: Sequence[PrunableUnit],
                       rest_ratio: float) -> int | None:
        """Fewest removed channels of ``unit`` meeting every target with ``rest`` at ``rest_ratio``."""
        lo, hi = self.removed_range(unit)
        trial = dict(prefix)
        trial.update({u.name: rest_ratio for u in rest})

        def ok(k: int) -> bool:
            trial[unit.name] = self.grid_ratio(unit, k)
            return self.meets(trial)

        if not ok(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
        return lo

    def bounds(self, prefix: Mapping[str, float], index: int) -> tuple[float, float]:
        """Ratio interval ``(low, high)`` of unit ``index`` given the ratios of the units before it."""
        unit, rest = self.units[index], self.units[index + 1:]
        k_min, k_max = self.removed_range(unit)
        if not self.active:
            return self.grid_ratio(unit, k_min), self.max_ratio
        low = self._least_meeting(prefix, unit, rest, self.max_ratio)
        low = k_max if low is None else low
        high = self._least_meeting(prefix, unit, rest, self.min_ratio)
        high = k_max if high is None else max(high, low)
        hi_ratio = self.max_ratio if high == k_max else self.grid_ratio(unit, high)
        return self.grid_ratio(unit, low), hi_ratio

    def reachable(self) -> bool:
        """Whether every target can be met at all (every unit at ``max_ratio``)."""
        return self.meets(dict.fromkeys((u.name for u in self.units), self.max_ratio))
