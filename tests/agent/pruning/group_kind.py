"""A toy unit kind: the groups of a grouped convolution as whole elements (one file plus a registration).

A conv with ``G`` groups maps input block ``j`` to output block ``j``. Dropping group ``j`` removes both: the
conv's output block (its own Torch-Pruning group carries the BN and the next layer's inputs along) and the input
block, i.e. the matching channels of the layer feeding it (that layer's group). So one unit spans two groups:
the conv's (primary: scored, root coordinates) and its producer's, whose roots are mapped onto the conv's
blocks. Torch-Pruning's input-channel function assumes equal pruning inside every group, so the conv's input
side is bookkeeping only and :meth:`GroupsKind.after_apply` sets ``in_channels`` and ``groups`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from agent.pruning.costs import is_depthwise
from agent.pruning.graph import PruningGraph
from agent.pruning.kinds import UnitKind
from agent.pruning.reading import channel_groups, describe_group, group_items
from agent.pruning.units import GroupItem, PrunableUnit

__all__ = ["GroupsKind"]


def _grouped(layer: nn.Module) -> bool:
    return isinstance(layer, nn.modules.conv._ConvNd) and 1 < layer.groups and not is_depthwise(layer)


class GroupsKind(UnitKind):
    """Whole groups of a grouped conv: element ``j`` = output block ``j`` and input block ``j``."""

    name = "conv_groups"

    def _producer(self, graph: PruningGraph, conv: str, offered: Mapping[str, tp.dependency.Group]) -> str | None:
        """The offered group that feeds all of ``conv``'s input, channel for channel, and nothing else grouped."""
        for root, group in offered.items():
            items = group_items(graph, group)
            feeds = [it for it in items if it.target == conv and not it.is_out]
            if len(feeds) == 1 and np.array_equal(feeds[0].idxs, feeds[0].roots) \
                    and len(feeds[0].idxs) == graph.modules[conv].in_channels \
                    and not any(_grouped(graph.modules[it.target]) for it in items if it.target != conv and not it.is_param):
                return root
        return None

    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:  # noqa: D102
        claims = []
        for root, group in offered.items():
            if not _grouped(graph.modules[root]) or channel_groups(graph, group) != graph.modules[root].groups:
                continue  # another grouped conv downstream would need its groups dropped too: not this toy's job
            producer = self._producer(graph, root, offered)
            if producer is not None and producer not in {r for c in claims for r in c}:
                claims.append((root, producer))
        return claims

    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:  # noqa: D102
        conv_name, producer = roots
        conv = graph.modules[conv_name]
        out_block, in_block = conv.out_channels // conv.groups, conv.in_channels // conv.groups
        unit = describe_group(graph, conv, graph.candidates[conv_name], kind=self.name)
        unit.channel_groups, unit.element_size = 1, out_block
        items = group_items(graph, graph.candidates[conv_name])
        feeding = describe_group(graph, graph.modules[producer], graph.candidates[producer], kind=self.name)
        unit.members += [m for m in feeding.members if m not in unit.members]
        for it in group_items(graph, graph.candidates[producer]):
            it.roots = (it.roots // in_block) * out_block  # input block j goes with output block j
            if it.target == conv_name:
                it.handler = None  # the conv's weights keep their per-group width: after_apply reshapes it
            items.append(it)
        return unit, items

    def element_scores(self, unit: PrunableUnit, scores: torch.Tensor) -> torch.Tensor:
        """A group's score: the mean score of its output channels."""
        return scores.view(-1, unit.element_size).mean(1)

    def to_roots(self, unit: PrunableUnit, elements: np.ndarray) -> np.ndarray:  # noqa: D102
        size = unit.element_size
        return np.concatenate([np.arange(e * size, (e + 1) * size) for e in elements]).astype(np.int64)

    def cost_factor(self, graph: PruningGraph, layer: str, kin: float, kout: float, *, metric: str = "macs") -> float:
        """A grouped conv losing whole groups keeps its per-group width: its cost scales with its outputs only."""
        if _grouped(graph.modules[layer]):
            return kout
        return super().cost_factor(graph, layer, kin, kout, metric=metric)

    def after_apply(self, graph: PruningGraph, modules: Mapping[str, nn.Module], unit: PrunableUnit,
                    roots: np.ndarray) -> None:
        """Fewer groups, and the inputs of the dropped ones gone (their producer lost those channels)."""
        name = graph.root_of[unit.name]
        dense, pruned = graph.modules[name], modules[name]
        dropped = len(roots) // unit.element_size
        pruned.groups = dense.groups - dropped
        pruned.in_channels = dense.in_channels - dropped * (dense.in_channels // dense.groups)
