"""The ``embed`` kind: a transformer's residual width, one global unit (off unless the graph's ``prune_embed``).

The residual (embedding) width runs through every block: the patch or token embedding, each norm, each
attention's input and output projections, each MLP's input and output, the final norm and the classifier's
input. Torch-Pruning couples all of it in one dependency group (:func:`residual_roots`: a group that prunes an
attention projection's inputs, or an ``nn.MultiheadAttention``'s ``embed_dim``). With ``prune_embed`` off the
group is kept whole and named; with it on, it is one unit of this kind.

Channels are pruned as by the ``channels`` kind, with two transformer rules:

- ``nn.MultiheadAttention`` ties its inner width to ``embed_dim``: Torch-Pruning's pruner removes the same
  positions from q, k and v, so the residual is cut in ``num_heads`` equal groups (one per head) and an element
  is one position in every head; each head keeps the same ``head_dim``, whole from its own original head.
- Widths a model stores and reads in ``forward`` (torchvision's ``VisionTransformer.hidden_dim``, timm's
  ``embed_dim`` / ``num_features`` / ``head_hidden_size``) follow in :meth:`EmbedKind.after_apply`; the class
  token and position embedding are named to Torch-Pruning as bare parameters pruned on their last dimension.

Hugging Face models are refused (their config's ``hidden_size`` would have to follow for ``save_pretrained``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch_pruning as tp
from torch import nn

from ...errors import UserInputError
from ..reading import describe_group, group_items
from ..units import GroupItem, PrunableUnit
from .base import register_kind
from .blocks import counted_block_factor
from .channels import ChannelsKind
from .heads import attention_layers

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["EmbedKind", "residual_roots"]

KEPT_WHOLE = ("the residual width of a transformer is kept whole (heads and MLP widths are pruned; "
              "--prune-embed prunes it too)")
"""Why the residual is kept whole when ``prune_embed`` is off."""

_WIDTH_ATTRS = ("hidden_dim", "embed_dim", "num_features", "head_hidden_size")
"""Integer attributes of a model that hold its residual width (torchvision ViT, timm ViT)."""
_TOKEN_PARAMS = ("class_token", "cls_token", "reg_token", "pos_embedding", "pos_embed")
"""Bare ``[1, tokens, width]`` parameters of a ViT: the class / register tokens and the position embedding."""


def residual_roots(graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[str]:
    """The offered roots whose groups carry a transformer's residual width.

    Such a group prunes the inputs of an attention layer's projections (timm, Hugging Face) or the
    ``embed_dim`` of an ``nn.MultiheadAttention``.
    """
    projections = {p for layer in attention_layers(graph.model) for p in layer.projections}
    mha = {n for n, m in graph.modules.items() if isinstance(m, nn.MultiheadAttention)}
    return [root for root, group in offered.items()
            if any((not it.is_out and it.target in projections) or it.target in mha
                   for it in group_items(graph, group))]


def _refuse_hugging_face(graph: PruningGraph) -> None:
    """Raise for a Hugging Face model: its config and saved checkpoints would not follow a pruned residual."""
    model = graph.model
    hf = next((m for m in model.modules() if type(m).__module__.startswith("transformers.")), None)
    if hf is not None:
        raise UserInputError(
            f"--prune-embed can't prune the residual width of {type(model).__name__} (a Hugging Face model, "
            f"{type(hf).__name__}): its config's hidden_size, embeddings and saved checkpoints would have to follow, "
            "which PrunePilot does not derive yet: drop --prune-embed (its heads and MLP widths are still pruned)")


class EmbedKind(ChannelsKind):
    """The residual width of a transformer: one unit, its channels cut in ``num_heads`` groups under MHA."""

    name = "embed"
    fallback = False

    def __init__(self) -> None:
        self._attrs: weakref.WeakKeyDictionary[PruningGraph, dict[str, list[tuple[str, str]]]] = \
            weakref.WeakKeyDictionary()

    def unwrapped_parameters(self, graph: PruningGraph) -> list[tuple[nn.Parameter, int]]:
        """A ViT's class / register tokens and position embedding, pruned on their last (width) dimension."""
        if not graph.prune_embed:
            return []
        return [(param, 2) for module in graph.modules.values() for attr in _TOKEN_PARAMS
                if isinstance(param := getattr(module, attr, None), nn.Parameter) and param.dim() == 3]

    def keep_whole(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> dict[str, str]:
        """The residual width, named, unless the graph prunes it."""
        return {} if graph.prune_embed else dict.fromkeys(residual_roots(graph, offered), KEPT_WHOLE)

    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:
        """The residual group (one in a transformer) as one unit, when the graph prunes it.

        Raises:
            UserInputError: The model is a Hugging Face model.
        """
        if not graph.prune_embed:
            return []
        roots = residual_roots(graph, offered)
        if roots:
            _refuse_hugging_face(graph)
        return [(root,) for root in roots]

    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:
        """The residual unit; bookkeeping for the counted attention blocks it feeds (their output width)."""
        (root,) = roots
        group = graph.candidates[root]
        unit = describe_group(graph, graph.modules[root], group, kind=self.name)
        items = group_items(graph, group)
        heads = [m.num_heads for m in graph.modules.values() if isinstance(m, nn.MultiheadAttention)
                 and any(it.target == graph.name_of[m] for it in items)]
        unit.channel_groups = math.lcm(unit.channel_groups, *heads)
        inputs = {it.target for it in items if not it.is_out and not it.is_param}
        width = np.arange(unit.channels)
        items += [GroupItem(layer.name, False, None, 0, True, width, width) for layer in attention_layers(graph.model)
                  if set(layer.projections) <= inputs and layer.name in graph.modules]
        return unit, items

    def width_attrs(self, graph: PruningGraph, unit: PrunableUnit) -> list[tuple[str, str]]:
        """``(module, attribute)`` of every stored residual width in a container of the unit's layers (cached)."""
        cache = self._attrs.setdefault(graph, {})
        if unit.name not in cache:
            cache[unit.name] = self._find_width_attrs(graph, unit)
        return cache[unit.name]

    def _find_width_attrs(self, graph: PruningGraph, unit: PrunableUnit) -> list[tuple[str, str]]:
        targets = {it.target for it in graph.items[unit.name]}
        found = []
        for name, module in graph.modules.items():
            prefix = f"{name}." if name else ""
            if module in graph.dg.module2node or not any(t.startswith(prefix) for t in targets):
                continue  # a layer Torch-Pruning prunes keeps its own attributes
            found += [(name, attr) for attr in _WIDTH_ATTRS
                      if isinstance(getattr(module, attr, None), int) and getattr(module, attr) == unit.channels]
        return found

    def cost_factor(self, graph: PruningGraph, layer: str, kin: float, kout: float, *,
                    metric: str = "macs") -> float:
        """A block Torch-Pruning counts as a whole (an attention module) from its pruned copy; else a layer's."""
        if next(graph.modules[layer].children(), None) is not None:
            return counted_block_factor(graph, layer, kin, kout, metric=metric)
        return super().cost_factor(graph, layer, kin, kout, metric=metric)

    def after_apply(self, graph: PruningGraph, modules: Mapping[str, nn.Module], unit: PrunableUnit,
                    roots: np.ndarray) -> None:
        """Stored residual widths (``hidden_dim``, ``embed_dim``...) follow the kept width."""
        kept = unit.channels - len(roots)
        for name, attr in self.width_attrs(graph, unit):
            setattr(modules[name], attr, kept)


register_kind(EmbedKind)
