"""Plan -> kept channels -> predicted cost ratios: the one path from a pruning plan to what it costs.

A plan maps each unit to the root channels it loses (``PruningGraph.select``). Every caller that needs a plan's
kept widths (latency tables, results, budget walls, feasibility floors) or its predicted FLOPs / params ratios
(searchers' cheap cost questions, the env's wall, up-front target checks) reads them here; no model is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .graph import PrunableUnit, PruningGraph

__all__ = ["kept_channels", "predicted_flops_ratio", "predicted_params_ratio"]


def kept_channels(units: Iterable[PrunableUnit], plan: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Channels each unit keeps under ``plan`` (a unit the plan does not name keeps all of them)."""
    return {u.name: u.channels - len(plan.get(u.name, ())) for u in units}


def predicted_flops_ratio(graph: PruningGraph, plan: Mapping[str, np.ndarray]) -> float:
    """MACs of ``plan`` relative to the dense model, predicted from the dense per-layer counts."""
    return graph.predict_macs(plan) / graph.dense_macs


def predicted_params_ratio(graph: PruningGraph, plan: Mapping[str, np.ndarray]) -> float:
    """Parameters of ``plan`` relative to the dense model, predicted from the dense per-layer counts."""
    return graph.predict_params(plan) / graph.dense_params
