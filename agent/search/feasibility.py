"""Feasibility up front: targets out of reach are refused before any training or search.

FLOPs / params targets are checked on the untrained architecture with every unit pruned at ``--max-ratio``
(:func:`precheck_targets`). Latency has a floor: pruning removes channels, not the fixed cost of running a model
(dispatch, activations, pooling, the layers no unit controls). The latency table predicts it directly: its
prediction with every unit pruned as far as allowed is the *floor* no policy can go under on this device, batch
size and thread count. A target under the floor is refused before any search starts.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..constraints import Constraints
from ..errors import UserInputError
from ..measure.latency import LatencyConfig
from ..pruning.plan_cost import kept_channels

if TYPE_CHECKING:
    from ..measure.model import LatencyModel
    from ..pruning.graph import PruningGraph

__all__ = ["FLOOR_SLACK", "latency_floor", "check_latency_floor", "precheck_latency_floor", "precheck_targets"]

FLOOR_SLACK = 0.9
"""A target is refused when under ``FLOOR_SLACK`` x the predicted floor: the table's prediction errs by a few
percent, so a target just under the floor is warned about, not refused."""


def latency_floor(graph: PruningGraph, table: LatencyModel, *, max_ratio: float, round_to: int | None) -> float:
    """Predicted latency ratio (to dense) with every unit pruned at ``max_ratio``: the floor of any policy."""
    scores = {u.name: torch.arange(u.channels, dtype=torch.float32) for u in graph.units}
    plan = graph.select(scores, dict.fromkeys(graph.unit_names(), max_ratio), round_to)
    return float(table.predict_ratio(kept_channels(graph.units, plan)))


def check_latency_floor(graph: PruningGraph, table: LatencyModel, *, constraints: Constraints, max_ratio: float,
                        round_to: int | None, dense_ms: float | None = None) -> float | None:
    """Refuse a latency target under the model's floor; returns the floor ratio (None without a latency target).

    Args:
        graph: The dense model's pruning graph.
        table: Its latency table on the target device, batch and threads.
        constraints: The constraints (only the latency target is checked).
        max_ratio: Largest per-unit pruning ratio of the search.
        round_to: Channel multiple of the search.
        dense_ms: The dense latency measured now (for millisecond targets; default: the table's).

    Raises:
        UserInputError: The target is under ``FLOOR_SLACK`` x the floor.
    """
    target = constraints.latency_target
    if target is None:
        return None
    floor = latency_floor(graph, table, max_ratio=max_ratio, round_to=round_to)
    dense = dense_ms or table.dense_ms or float(table.predict({}))
    wanted = target.as_ratio(dense)
    threads = table.meta.get("threads", "?")
    where = f"{table.device} at batch {table.batch_size} with {threads} threads"
    floor_text = f"{floor:.3f}x of dense ({floor * dense:.3f} ms of {dense:.3f} ms)"
    if wanted < FLOOR_SLACK * floor:
        raise UserInputError(
            f"latency target {target.text()} is under this model's latency floor on {where}: with every unit pruned "
            f"at --max-ratio {max_ratio:g} the latency table predicts {floor_text}, fixed overhead that pruning "
            f"cannot remove: set --latency-target {floor / FLOOR_SLACK:.2f} or more, time a larger --latency-batch "
            "(overhead is amortised), or choose another --device")
    if wanted < floor / FLOOR_SLACK:
        warnings.warn(f"latency target {target.text()} is close to this model's latency floor {floor_text} on {where}: "
                      "only extreme pruning can reach it", RuntimeWarning, stacklevel=2)
    return floor


def precheck_latency_floor(*, model_spec: str, input_shape: tuple[int, ...], num_classes: int,
                           constraints: Constraints, latency: LatencyConfig, max_ratio: float,
                           round_to: int | None, ignore_layers: tuple[str, ...] = (), prune_embed: bool = False,
                           model: nn.Module | None = None, graph: PruningGraph | None = None) -> float | None:
    """:func:`check_latency_floor` on the untrained architecture, before any training.

    Latency does not depend on the weights, and the table is cached by architecture, units, device, batch and
    threads, so the search that follows reuses it: the graph keeps the search's ``ignore_layers`` whole and
    prunes the residual width under ``prune_embed``, as the search will. ``model`` is the untrained architecture
    when the caller has built it already, ``graph`` its graph (from :func:`precheck_targets`: not traced again).
    """
    if constraints.latency_target is None:
        return None
    from ..measure.lut import build_latency_table
    from ..pruning.coverage import build_graph
    from ..tasks.models import build_model

    if graph is None:
        model = model if model is not None else build_model(model_spec, input_shape, num_classes)
        graph = build_graph(model, torch.zeros((1, *input_shape)), ignore_layers=ignore_layers,
                            prune_embed=prune_embed, what=model_spec)
    table = build_latency_table(graph, input_shape=input_shape, config=latency, round_to=round_to)
    return check_latency_floor(graph, table, constraints=constraints, max_ratio=max_ratio, round_to=round_to)


def precheck_targets(*, model_spec: str, input_shape: tuple[int, ...], num_classes: int, constraints: Constraints,
                     max_ratio: float, ignore_layers: tuple[str, ...] = (), prune_embed: bool = False,
                     model: nn.Module | None = None) -> PruningGraph:
    """Fail fast (before any training) on a model that can't be pruned or FLOPs / params targets out of reach.

    Uses the untrained architecture (``model`` if already built): which channels go does not change the MACs left.
    The graph is the search's: the same ``ignore_layers`` and ``prune_embed``.

    Returns:
        The search's graph (its units for :meth:`Searcher.check <agent.searchers.base.Searcher.check>`, and for
        :func:`precheck_latency_floor`).

    Raises:
        UserInputError: Nothing in the model can be pruned (naming what blocks it), the model can't be traced or
            can't have ``prune_embed``, or the targets cannot be met even with every unit pruned at ``max_ratio``.
    """
    from ..pruning.coverage import build_graph, check_prunable
    from ..pruning.plan_cost import predicted_flops_ratio, predicted_params_ratio
    from ..tasks.models import build_model

    model = model if model is not None else build_model(model_spec, input_shape, num_classes)
    graph = build_graph(model, torch.zeros((1, *input_shape)), ignore_layers=ignore_layers, prune_embed=prune_embed,
                        what=model_spec)
    check_prunable(graph, what=model_spec)
    if constraints.flops_target is None and constraints.params_target is None:
        return graph
    scores = {u.name: torch.arange(u.channels, dtype=torch.float32) for u in graph.units}
    plan = graph.select(scores, dict.fromkeys(graph.unit_names(), max_ratio))
    flops, params = predicted_flops_ratio(graph, plan), predicted_params_ratio(graph, plan)
    slack = 0.95  # predictions ignore pooling / activation costs; leave the exact check to the searchers
    issues = constraints.violations(flops_ratio=flops * slack, params_ratio=params * slack, latency_ratio=None,
                                    latency_ms=None, acc_drop=None)
    if issues:
        raise UserInputError(f"target cannot be met even at max pruning (ratio {max_ratio:g} in every unit of "
                             f"{model_spec} gives {'; '.join(issues)}): relax the target or raise --max-ratio")
    return graph
