"""The ``channels`` kind: one unit per dependency group left, its elements single channels (the default)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch_pruning as tp

from ..reading import describe_group, group_items
from ..units import GroupItem, PrunableUnit
from .base import UnitKind, register_kind

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["ChannelsKind"]


class ChannelsKind(UnitKind):
    """Channels of one Torch-Pruning group; a grouped conv in it keeps its groups equal-sized.

    The fallback kind: it claims every root the other kinds left.
    """

    name = "channels"
    fallback = True

    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:  # noqa: D102
        del graph
        return [(root,) for root in offered]

    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:  # noqa: D102
        (root,) = roots
        group = graph.candidates[root]
        return describe_group(graph, graph.modules[root], group, kind=self.name), group_items(graph, group)

    def element_scores(self, unit: PrunableUnit, scores: torch.Tensor) -> torch.Tensor:
        """A channel's score, averaged over the channel groups (the same position goes in every group)."""
        g = unit.channel_groups
        return scores.view(g, -1).mean(0) if g > 1 else scores

    def drop_elements(self, graph: PruningGraph, unit: PrunableUnit, ranked: np.ndarray, n_drop: int) -> np.ndarray:
        """The ``n_drop`` lowest-ranked positions, minus any that would empty one member layer.

        A unit spanning a concat owns several layers' outputs; the lowest-scoring channels may all sit in one of
        them. Its best channel is kept instead, so no layer is ever left with zero outputs.
        """
        size = unit.elements
        drop = ranked[:n_drop]
        for member in graph.member_positions[unit.name]:
            positions = member % size
            if np.isin(positions, drop).all():
                best = ranked[np.isin(ranked, positions)][-1]
                drop = drop[drop != best]
        return drop

    def to_roots(self, unit: PrunableUnit, elements: np.ndarray) -> np.ndarray:
        """The same positions in every channel group."""
        g, size = unit.channel_groups, unit.elements
        return np.concatenate([elements + k * size for k in range(g)]) if g > 1 else elements


register_kind(ChannelsKind)
