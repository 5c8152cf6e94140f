"""Exact cost prediction of a pruning plan from the dense model's per-layer MACs and parameter counts.

A layer's cost scales with the widths some unit controls: weights with ``in x out`` (depthwise and grouped
convs with the kept groups), a bias and norm layers with ``out``, and activations / pooling that follow a layer
with its output width; a bare parameter (a ViT's class token) with the positions it keeps. No model is built.
The unit kind whose units prune a layer's outputs may say otherwise for that layer
(:meth:`~agent.pruning.kinds.UnitKind.cost_factor`).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from .tracing import PRUNABLE_TYPES
from .units import LayerDims

if TYPE_CHECKING:
    from .graph import PruningGraph

__all__ = ["channel_cost_factor", "counted_params", "is_depthwise", "kept_fraction", "layer_cost_factor", "layer_dims",
           "predict_cost"]


def is_depthwise(layer: nn.Module) -> bool:
    """A convolution with one group per input channel (depthwise; its in and out widths move together)."""
    return isinstance(layer, nn.modules.conv._ConvNd) and layer.groups > 1 and layer.groups == layer.in_channels


def channel_cost_factor(layer: nn.Module, kin: float, kout: float, *, bias_share: float | None = None) -> float:
    """Fraction of ``layer``'s cost left when ``kin`` / ``kout`` of its in / out channels survive.

    A conv / linear weight scales with in x out and its bias with out (``bias_share`` of the cost; default one
    term per output, as for parameters); a depthwise conv, a norm layer and any other op with the narrower side.
    """
    if isinstance(layer, PRUNABLE_TYPES) and not is_depthwise(layer):
        fan_in = layer.weight[0].numel()
        bias = 0.0 if layer.bias is None else 1.0 / (fan_in + 1) if bias_share is None else bias_share
        return (1.0 - bias) * kin * kout + bias * kout
    return min(kin, kout)


def layer_cost_factor(graph: PruningGraph, layer: str, kin: float, kout: float, *, metric: str = "macs") -> float:
    """:func:`channel_cost_factor` of a dense layer for ``metric`` (``"macs"`` or ``"params"``).

    Torch-Pruning counts a linear layer's bias MACs once per call, not per token: on a ``[batch, tokens,
    features]`` input its share is ``out_features`` of the layer's counted MACs.
    """
    module = graph.modules[layer]
    share = None
    if metric == "macs" and isinstance(module, nn.Linear) and module.bias is not None and graph.layer_macs.get(layer):
        share = module.out_features / graph.layer_macs[layer]
    return channel_cost_factor(module, kin, kout, bias_share=share)


def counted_params(name: str, modules: Mapping[str, nn.Module], tracked: Set[str]) -> float:
    """Parameters the cost model gives layer ``name``: its own and those of descendants not in ``tracked``.

    ``tracked`` names the modules Torch-Pruning's graph traces; they are counted on their own. A block it prunes
    as a whole (``nn.MultiheadAttention``, whose ``out_proj`` its pruner slices) holds its untraced children's
    tensors; an attention block whose projections are traced (timm's ``qkv`` / ``proj``) holds only its own.
    """
    prefix = f"{name}." if name else ""
    inner = {id(p) for n, m in modules.items() if n.startswith(prefix) and n != name and n in tracked
             for p in m.parameters()}
    return float(sum(p.numel() for p in modules[name].parameters() if id(p) not in inner))


def kept_fraction(graph: PruningGraph, layer: str, side: str, pruned: Mapping[str, np.ndarray]) -> float:
    """Fraction of ``layer``'s ``side`` ("in" / "out") width that survives plan ``pruned``."""
    size = graph.dim_size[layer][0 if side == "in" else 1]
    removed: set[int] = set()
    for unit_name, it in graph.dims[layer][side]:
        roots = pruned.get(unit_name)
        if roots is not None and len(roots):
            removed.update(it.idxs[np.isin(it.roots, roots)].tolist())
    return 1.0 - len(removed) / size if size else 1.0


def predict_cost(graph: PruningGraph, pruned: Mapping[str, np.ndarray], per_layer: Mapping[str, float],
                 dense: float, *, metric: str = "macs") -> float:
    """Cost (``per_layer`` MACs or parameters, as ``metric`` names) of the model ``graph.apply(pruned)`` returns."""
    total = dense
    out_keep: dict[str, float] = {}
    for layer in graph.dims:
        kin, kout = kept_fraction(graph, layer, "in", pruned), kept_fraction(graph, layer, "out", pruned)
        out_keep[layer] = kout
        base = per_layer.get(layer, 0.0)
        if base == 0.0:
            continue
        kind = graph.layer_kinds.get(layer)
        factor = kind.cost_factor(graph, layer, kin, kout, metric=metric) if kind is not None \
            else layer_cost_factor(graph, layer, kin, kout, metric=metric)
        total -= base * (1.0 - factor)
    for layer, sources in graph.followers.items():  # activations / pooling scale with their input's width
        width = sum(n for _, n in sources)
        kept = sum(n * out_keep.get(src, 1.0) if src is not None else n for src, n in sources)
        total -= per_layer.get(layer, 0.0) * (1.0 - kept / width if width else 0.0)
    if metric == "params":
        total -= _bare_params_removed(graph, pruned)
    return total


def _bare_params_removed(graph: PruningGraph, pruned: Mapping[str, np.ndarray]) -> float:
    """Elements of the bare parameters (class token, position embedding, layer scale) that plan ``pruned`` removes."""
    removed = 0.0
    for name, items in graph.bare_params.items():
        param = graph.model.get_parameter(name)
        gone: dict[int, set[int]] = {}
        for unit_name, it in items:
            roots = pruned.get(unit_name)
            if roots is not None and len(roots):
                gone.setdefault(it.pruning_dim, set()).update(it.idxs[np.isin(it.roots, roots)].tolist())
        keep = float(np.prod([1.0 - len(idx) / param.shape[dim] for dim, idx in gone.items()]))
        removed += param.numel() * (1.0 - keep)
    return removed


def layer_dims(graph: PruningGraph) -> dict[str, LayerDims]:
    """Every layer whose width some unit controls: its in/out sizes and how many of each come from which unit."""
    out = {}
    for layer, dims in graph.dims.items():
        size_in, size_out = graph.dim_size[layer]
        src: dict[str, dict[str, int]] = {"in": {}, "out": {}}
        for side in ("in", "out"):
            for unit_name, it in dims[side]:
                src[side][unit_name] = src[side].get(unit_name, 0) + len(it.idxs)
        out[layer] = LayerDims(layer, size_in, size_out, src["in"], src["out"])
    return out
