"""Observation features of the pruning env: one float32 vector per step, every entry in [-1, 1].

The vector describes the unit about to be pruned (AMC's layer embedding plus measured sensitivity) and the
state of the budget. Static per-unit features are computed once per env by :func:`unit_features`; the budget
features are appended at each step by :func:`observation`.

======================= ============================================================================== =========
feature                 meaning                                                                        range
======================= ============================================================================== =========
``index``               position of the unit in graph order, ``t / (N - 1)``                           [0, 1]
``type``                layer type of the unit's first layer: conv 0, depthwise conv 0.5, linear 1     [0, 1]
``in_channels``         input channels of the unit's first layer / the largest over units              [0, 1]
``out_channels``        prunable channels of the unit / the largest over units                         [0, 1]
``kernel``              kernel size (product of spatial dims) / the largest over units                 [0, 1]
``stride``              stride / the largest over units                                                [0, 1]
``flops_share``         share of dense MACs in the layers the unit touches                             [0, 1]
``params_share``        share of dense parameters in the layers the unit touches                       [0, 1]
``kind``                unit kind: its position in ``kind_names()`` / (kinds - 1), e.g. heads 0,       [0, 1]
                        embed 1/3, mlp 2/3, channels 1
``drop@r`` (one per r)  MEASURED accuracy drop (points) when this unit alone is pruned at analysed     [-1, 1]
                        ratio ``r`` (``analyse_sensitivity``, cached), squashed as
                        ``sign(d) * log1p(|d|) / log1p(100)``
``latency_share``       measured share of dense latency the unit controls (sensitivity profile);       [0, 1]
                        its FLOPs share when latency was not measured
``reduced``             predicted MACs removed so far (units before this one), fraction of dense       [0, 1]
``remaining``           MACs share of this and later units / the sum over all units                    [0, 1]
``prev_action``         ratio chosen for the previous unit (0 at the first)                            [0, 1]
``wall_low``            lowest ratio the budget wall allows for this unit, / ``max_ratio``              [0, 1]
``wall_high``           highest ratio the budget wall allows for this unit, / ``max_ratio``             [0, 1]
``target``              the FLOPs target (1 without one)                                               [0, 1]
======================= ============================================================================== =========

After the last unit the observation keeps the final budget features and zeros for the unit features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from agent.evaluation.sensitivity import SensitivityProfile
from agent.pruning.graph import PrunableUnit
from agent.pruning.kinds import kind_names

__all__ = ["UNIT_FEATURES", "BUDGET_FEATURES", "feature_names", "unit_features", "observation", "squash_drop"]

UNIT_FEATURES = ("index", "type", "in_channels", "out_channels", "kernel", "stride", "flops_share", "params_share",
                 "kind")
"""AMC's layer embedding (the sensitivity features follow them)."""
BUDGET_FEATURES = ("reduced", "remaining", "prev_action", "wall_low", "wall_high", "target")
"""Budget-progress features (after ``latency_share``)."""
_TYPE_CODE = {"conv": 0.0, "dwconv": 0.5, "linear": 1.0}


def feature_names(ratios: Sequence[float]) -> list[str]:
    """Names of the observation entries, in order, for sensitivity ratios ``ratios``."""
    return [*UNIT_FEATURES, *(f"drop@{r:g}" for r in ratios), "latency_share", *BUDGET_FEATURES]


def squash_drop(points: float) -> float:
    """Map an accuracy drop in points to [-1, 1] keeping small drops distinguishable."""
    d = max(-100.0, min(100.0, float(points)))
    return math.copysign(math.log1p(abs(d)) / math.log1p(100.0), d)


def unit_features(units: Sequence[PrunableUnit], profile: SensitivityProfile) -> np.ndarray:
    """Static features of every unit: layer embedding, sensitivity, latency share (rows in graph order)."""
    geo = [(u.layer_type, u.in_channels, u.kernel, u.stride) for u in units]
    n = len(units)
    max_in = max(g[1] for g in geo) or 1
    max_out = max(u.channels for u in units) or 1
    max_k = max(g[2] for g in geo) or 1
    max_s = max(g[3] for g in geo) or 1
    measured_latency = any(profile.latency_share.get(u.name, 0.0) > 0 for u in units)
    kinds = kind_names()
    kinds += sorted({u.kind for u in units} - set(kinds))  # a kind unregistered since its graph was built
    rows = []
    for u, (kind, cin, kernel, stride) in zip(units, geo, strict=True):
        embed = [u.index / (n - 1) if n > 1 else 0.0, _TYPE_CODE.get(kind, 0.0), cin / max_in, u.channels / max_out,
                 kernel / max_k, stride / max_s, u.macs_share, u.params_share,
                 kinds.index(u.kind) / max(1, len(kinds) - 1)]
        drops = [squash_drop(d) for d in profile.drops(u.name)]
        lat = profile.latency_share.get(u.name, 0.0) if measured_latency else u.macs_share
        rows.append([*embed, *drops, lat])
    return np.clip(np.asarray(rows, dtype=np.float64), -1.0, 1.0)


def observation(static: np.ndarray | None, *, reduced: float, remaining: float, prev_action: float,
                wall_low: float, wall_high: float, target: float, width: int) -> np.ndarray:
    """One observation: a unit's static row (zeros after the last unit) followed by the budget features."""
    head = static if static is not None else np.zeros(width - len(BUDGET_FEATURES))
    tail = [reduced, remaining, prev_action, wall_low, wall_high, target]
    return np.clip(np.concatenate([head, tail]), -1.0, 1.0).astype(np.float32)
