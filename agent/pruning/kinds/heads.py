"""The ``heads`` kind: whole attention heads of one attention layer (the residual width is the ``embed`` kind's).

An attention layer is found by its projections (:func:`attention_layers`): a packed ``qkv`` linear beside
``num_heads`` (timm), or separate ``query``/``key``/``value`` or ``q_proj``/``k_proj``/``v_proj`` linears beside
``head_dim`` / ``attention_head_size`` (Hugging Face transformers, which in 5.x infer the head count from the
projection widths). Its unit is the Torch-Pruning group that prunes the projections' outputs together with the
output projection's inputs. The claim is *checked by index*: every projection's pruned positions must be its
root channels (packed: ``q | k | v`` blocks of ``heads * head_dim``), so an element, one head, is ``head_dim``
consecutive roots in each block and every kept head comes whole from one original head.

Grouped-query attention (fewer key/value heads than query heads) is pruned by whole KV groups: an element is one
key/value head with the query heads that read it, so ``num_key_value_groups`` stays the same and a layer-uniform
policy keeps shapes a stock ``from_pretrained`` config can describe (query heads a multiple of the KV heads).

:meth:`HeadsKind.after_apply` derives the library's attributes from the kept heads inside the one apply path.
A counted attention block (timm's ``Attention``: Torch-Pruning's counter hooks it as a whole) is costed exactly
by counting its pruned copy once per kept head count and residual width (:mod:`.blocks`, cached per graph).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..reading import describe_group, group_items
from ..units import GroupItem, PrunableUnit
from .base import UnitKind, register_kind
from .blocks import counted_block_factor

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["AttentionLayer", "HeadsKind", "attention_layers"]

_SEPARATE = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
_HEAD_COUNTS = ("num_heads", "num_attention_heads")
_KV_COUNTS = ("num_key_value_heads",)


@dataclass(frozen=True)
class AttentionLayer:
    """Where one attention layer's heads live."""

    name: str
    """The attention module (parent of the projections)."""
    projections: tuple[str, ...]
    """Query, key, value linears (one packed ``qkv`` linear for timm)."""
    heads: int
    """Query heads."""
    kv_heads: int
    """Key / value heads (``heads`` without grouped-query attention)."""
    head_dim: int
    """Channels per head."""

    @property
    def packed(self) -> bool:
        """Whether q, k and v come out of one linear."""
        return len(self.projections) == 1


def _head_dim(module: nn.Module) -> int | None:
    for attr in ("head_dim", "attention_head_size"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """The attention layers of ``model`` whose heads the ``heads`` kind can prune (see the module docstring)."""
    found = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        qkv = getattr(module, "qkv", None)
        heads = getattr(module, "num_heads", None)
        if isinstance(qkv, nn.Linear) and isinstance(heads, int) and heads > 0 \
                and qkv.out_features % (3 * heads) == 0:
            found.append(AttentionLayer(name, (f"{prefix}qkv",), heads, heads, qkv.out_features // 3 // heads))
            continue
        hd = _head_dim(module)
        for names in _SEPARATE:
            layers = [getattr(module, n, None) for n in names]
            if hd and all(isinstance(layer, nn.Linear) for layer in layers) \
                    and all(layer.out_features % hd == 0 for layer in layers):
                q, k, _ = layers
                found.append(AttentionLayer(name, tuple(prefix + n for n in names), q.out_features // hd,
                                            k.out_features // hd, hd))
                break
    return found


def _group_of(graph: PruningGraph, layer: AttentionLayer,
              offered: Mapping[str, tp.dependency.Group]) -> list[str] | None:
    """The offered roots whose groups prune ``layer``'s projections' outputs, if they do so head by head."""
    roots = []
    for root, group in offered.items():
        outs = {it.target: it for it in group_items(graph, group) if it.is_out and not it.is_param}
        if outs.keys() & set(layer.projections):
            roots.append((root, outs))
    width = layer.heads * layer.head_dim
    kv_width = layer.kv_heads * layer.head_dim
    if layer.packed:
        if len(roots) != 1 or layer.heads != layer.kv_heads:
            return None
        (root, outs), = roots
        it = outs.get(layer.projections[0])
        ok = it is not None and np.array_equal(it.idxs, it.roots) and len(it.idxs) == 3 * width
        return [root] if ok else None
    q, k, v = layer.projections
    if layer.heads == layer.kv_heads:  # one group prunes q, k and v by the same root channels
        if len(roots) != 1:
            return None
        (root, outs), = roots
        ok = all(p in outs and np.array_equal(outs[p].idxs, outs[p].roots) and len(outs[p].idxs) == width
                 for p in layer.projections)
        return [root] if ok else None
    del k, v, kv_width
    if len(roots) != 1 or roots[0][0] != q:  # grouped-query attention: the group HeadsKind.own_groups formed
        return None
    return [q]


def _gqa_group(graph: PruningGraph, layer: AttentionLayer, out_proj: str) -> tp.dependency.Group:
    """Grouped-query attention's group, rooted at the query projection: element = one KV group.

    Root ``r`` (a query channel) belongs to query head ``r // head_dim``, which reads KV head ``r // (group *
    head_dim)``; the key / value rows of that KV head go with it, so each key / value row is named by the
    ``group`` query heads that read it.
    """
    from torch_pruning._helpers import GroupItem as TPItem

    dg = graph.dg
    q, k, v = (graph.modules[n] for n in layer.projections)
    d, per = layer.head_dim, layer.heads // layer.kv_heads
    roots = np.arange(layer.heads * d)
    kv_rows = (roots // (per * d)) * d + roots % d
    group = tp.dependency.Group()
    group._DG = dg
    trigger = dg.get_pruner_of_module(q).prune_out_channels
    for module, out, rows in ((q, True, roots), (k, True, kv_rows), (v, True, kv_rows),
                              (graph.modules[out_proj], False, roots)):
        pruner = dg.get_pruner_of_module(module)
        handler = pruner.prune_out_channels if out else pruner.prune_in_channels
        dep = tp.dependency.Dependency(trigger, handler, dg.module2node[q], dg.module2node[module])
        item = TPItem(dep, rows.tolist())  # plain indices plus their roots, as Torch-Pruning's groups hold them
        item.root_idxs = roots.tolist()
        group.items.append(item)
    return group


class HeadsKind(UnitKind):
    """Whole heads of one attention layer: an element is ``head_dim`` roots in each of the q / k / v blocks."""

    name = "heads"

    def __init__(self) -> None:
        self._layers: weakref.WeakKeyDictionary[PruningGraph, dict[str, AttentionLayer]] = weakref.WeakKeyDictionary()

    def layers(self, graph: PruningGraph) -> dict[str, AttentionLayer]:
        """Attention module name -> its layer, for ``graph``'s dense model (found once)."""
        if graph not in self._layers:
            self._layers[graph] = {a.name: a for a in attention_layers(graph.model)}
        return self._layers[graph]

    def layer_of(self, graph: PruningGraph, unit: PrunableUnit) -> AttentionLayer:
        """The attention layer a unit of this kind prunes."""
        root = graph.root_of.get(unit.name, unit.name)
        return self.layers(graph)[root.rpartition(".")[0]]

    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:  # noqa: D102
        claims = []
        for layer in self.layers(graph).values():
            roots = _group_of(graph, layer, offered)
            if roots and all(r.rpartition(".")[0] == layer.name for r in roots):
                claims.append(tuple(roots))
        return claims

    def own_groups(self, graph: PruningGraph) -> dict[str, tp.dependency.Group]:
        """Grouped-query attention layers' groups (Torch-Pruning's mapping can't follow ``repeat_kv``)."""
        out = {}
        for layer in self.layers(graph).values():
            o_proj = f"{layer.name}.o_proj" if layer.name else "o_proj"
            if layer.kv_heads >= layer.heads or layer.heads % layer.kv_heads or o_proj not in graph.modules \
                    or any(p in graph.user_ignored for p in layer.projections) \
                    or not all(graph.modules[n] in graph.dg.module2node for n in (*layer.projections, o_proj)):
                continue
            out[layer.projections[0]] = _gqa_group(graph, layer, o_proj)
        return out

    def keep_whole(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> dict[str, str]:
        """Every ``nn.MultiheadAttention``'s heads (named, so the user learns why; the residual is ``embed``'s)."""
        del offered
        return {name: "heads of nn.MultiheadAttention are kept whole: its inner width is tied to its "
                      "embed_dim (the residual), so a head can't go without a module swap"
                for name, m in graph.modules.items() if isinstance(m, nn.MultiheadAttention)}

    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:  # noqa: D102
        root = roots[0]
        layer = self.layers(graph)[root.rpartition(".")[0]]
        group = graph.candidates[root]
        unit = describe_group(graph, graph.modules[root], group, kind=self.name)
        # an element: one head, or under grouped-query attention one KV group with its query heads
        unit.channel_groups = 3 if layer.packed else 1
        unit.element_size = layer.head_dim * (layer.heads // layer.kv_heads)
        items = group_items(graph, group)
        width = layer.heads * layer.head_dim  # bookkeeping: a counted block's cost follows its kept heads (its
        items.append(GroupItem(layer.name, False, None, 0, False, np.arange(width), np.arange(width)))  # inner width)
        return unit, items

    def element_scores(self, unit: PrunableUnit, scores: torch.Tensor) -> torch.Tensor:
        """A head's score: the mean of its channels' scores over the q / k / v blocks."""
        return scores.view(unit.channel_groups, unit.elements, unit.element_size).mean((0, 2))

    def to_roots(self, unit: PrunableUnit, elements: np.ndarray) -> np.ndarray:
        """Each dropped head's ``head_dim`` roots in every block."""
        size, block = unit.element_size, unit.channels // unit.channel_groups
        idx = [np.arange(k * block + e * size, k * block + (e + 1) * size)
               for k in range(unit.channel_groups) for e in elements]
        return np.concatenate(idx).astype(np.int64)

    def after_apply(self, graph: PruningGraph, modules: Mapping[str, nn.Module], unit: PrunableUnit,
                    roots: np.ndarray) -> None:
        """The attention module's head counts and widths, derived from the heads it kept."""
        layer = self.layer_of(graph, unit)
        kept = unit.elements - len(roots) // unit.granule
        set_head_counts(modules[layer.name], layer, kept)

    def cost_factor(self, graph: PruningGraph, layer: str, kin: float, kout: float, *,
                    metric: str = "macs") -> float:
        """An attention block's cost from its kept heads (``kin``) and residual width (``kout``); else a layer's."""
        if layer in self.layers(graph):
            return counted_block_factor(graph, layer, kin, kout, metric=metric)
        return super().cost_factor(graph, layer, kin, kout, metric=metric)


def set_head_counts(module: nn.Module, layer: AttentionLayer, kept: int) -> None:
    """Derive ``module``'s head attributes (those it has) from ``kept`` heads (KV groups under GQA)."""
    heads, kv_heads = kept * (layer.heads // layer.kv_heads), kept
    for attr in _HEAD_COUNTS:
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads)
    for attr in _KV_COUNTS:
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, kv_heads)
    for attr in ("all_head_size", "attn_dim"):
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads * layer.head_dim)


register_kind(HeadsKind)
