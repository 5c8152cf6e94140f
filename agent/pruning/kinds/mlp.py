"""The ``mlp`` kind: the hidden width of one transformer MLP / FFN block, one channel per element.

A group is an MLP hidden width when its root is a linear layer, every layer whose outputs it prunes is a linear
(``fc1``; ``gate_proj`` and ``up_proj`` of a gated FFN), exactly one linear reads them (``fc2`` / ``down_proj``)
and nothing else (no norm, no residual) is in the group, all in one block (BERT's ``intermediate`` and
``output`` are siblings) that holds an attention layer
(:func:`~agent.pruning.kinds.heads.attention_layers` or ``nn.MultiheadAttention``). Channels are pruned as by
the ``channels`` kind; the kind only names them, so policies and search spaces can treat them apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch_pruning as tp
from torch import nn

from ..reading import describe_group, group_items
from ..units import GroupItem, PrunableUnit
from .base import register_kind
from .channels import ChannelsKind
from .heads import attention_layers

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["MlpKind", "transformer_blocks"]


def transformer_blocks(model: nn.Module) -> set[str]:
    """Names of the modules that hold an attention layer directly or one level down (transformer blocks)."""
    names = {a.name for a in attention_layers(model)}
    names |= {n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    blocks = set()
    for name in names:
        parent = name.rpartition(".")[0]
        blocks |= {parent, parent.rpartition(".")[0]}
    return blocks


class MlpKind(ChannelsKind):
    """The hidden channels of one MLP / FFN block (fc1 out = fc2 in; gate / up out = down in)."""

    name = "mlp"
    fallback = False

    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:  # noqa: D102
        blocks = transformer_blocks(graph.model)
        claims = []
        for root, group in offered.items():
            parent = root.rpartition(".")[0]
            if not isinstance(graph.modules[root], nn.Linear) or parent.rpartition(".")[0] not in blocks:
                continue
            items = [it for it in group_items(graph, group) if not it.is_param]
            outs = {it.target for it in items if it.is_out}
            ins = {it.target for it in items if not it.is_out}
            if 1 <= len(outs) <= 2 and len(ins) == 1 and (ins | outs) <= {n for n, m in graph.modules.items()
                                                                      if isinstance(m, nn.Linear)} \
                    and all(t.rpartition(".")[0].rpartition(".")[0] == parent.rpartition(".")[0] for t in ins | outs):
                claims.append((root,))
        return claims

    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:  # noqa: D102
        (root,) = roots
        group = graph.candidates[root]
        return describe_group(graph, graph.modules[root], group, kind=self.name), group_items(graph, group)


register_kind(MlpKind)
