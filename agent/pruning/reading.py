"""Reading a Torch-Pruning dependency group: the slices it removes and the unit it describes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch_pruning as tp
from torch import nn

from .costs import is_depthwise
from .tracing import PRUNABLE_TYPES
from .units import GroupItem, PrunableUnit

if TYPE_CHECKING:
    from .graph import PruningGraph

__all__ = ["channel_groups", "describe_group", "group_items", "layer_features"]


def group_items(graph: PruningGraph, group: tp.dependency.Group) -> list[GroupItem]:
    """The named tensor slices of ``group`` (Torch-Pruning's internal ops have nothing to slice)."""
    items = []
    for it in group:
        dep = it.dep
        target = dep.target.module
        if isinstance(target, nn.Parameter):
            name, is_param = graph.dg._param_to_name.get(target), True
        else:
            name, is_param = graph.name_of.get(target), False
        if name is None:  # concat, split, add...
            continue
        items.append(GroupItem(name, is_param, dep.handler, dep.target.pruning_dim,
                               graph.dg.is_out_channel_pruning_fn(dep.handler),
                               np.asarray(it.idxs, dtype=np.int64), np.asarray(it.root_idxs, dtype=np.int64)))
    return items


def channel_groups(graph: PruningGraph, group: tp.dependency.Group) -> int:
    """The largest channel grouping among ``group``'s layers (grouped convs; depthwise ones don't count)."""
    groups = [1]
    for it in group:
        m = it.dep.target.module
        if not isinstance(m, nn.Module) or (is_depthwise(m) and m.groups == m.out_channels):
            continue
        pruner = graph.dg.get_pruner_of_module(m)
        if pruner is None:
            continue
        fn = pruner.get_out_channel_groups if graph.dg.is_out_channel_pruning_fn(it.dep.handler) \
            else pruner.get_in_channel_groups
        g = fn(m)
        if g and g > 1:
            groups.append(g)
    return max(groups)


def layer_features(layer: nn.Module) -> tuple[str, int, int, int]:
    """(type, input channels, kernel size, stride) of a conv / linear layer."""
    if isinstance(layer, nn.Linear):
        return "linear", layer.in_features, 1, 1
    kind = "dwconv" if is_depthwise(layer) else "conv"
    return kind, layer.in_channels, int(np.prod(layer.kernel_size)), int(layer.stride[0])


def describe_group(graph: PruningGraph, root: nn.Module, group: tp.dependency.Group, *, kind: str) -> PrunableUnit:
    """The unit of one group rooted at ``root``: its channels, its member layers, its channel grouping."""
    layer_type, cin, kernel, stride = layer_features(root)
    members = [graph.name_of[it.dep.target.module] for it in group
               if isinstance(it.dep.target.module, PRUNABLE_TYPES) and graph.dg.is_out_channel_pruning_fn(it.dep.handler)]
    return PrunableUnit(graph.name_of[root], 0, graph.dg.get_out_channels(root), layer_type, cin, kernel, stride,
                        sorted(set(members), key=members.index), channel_groups(graph, group), kind=kind)
