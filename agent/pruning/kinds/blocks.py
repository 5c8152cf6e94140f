"""Exact costs of a block Torch-Pruning's counter takes as a whole (an attention module), from its pruned copy.

Torch-Pruning's op counter hooks ``nn.MultiheadAttention`` and timm's ``Attention`` as one module: their MACs
(projections, ``q @ k``, ``attn @ v``) follow from the widths they see, not layer by layer. Such a block is costed
by counting it in a pruned copy of the dense model with each unit that controls one of its sides (its heads,
its residual width) keeping the same share, once per combination of kept elements (cached per graph). The
``heads`` and ``embed`` kinds both price blocks with :func:`counted_block_factor`, so the two widths combine.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch_pruning as tp

from ..costs import counted_params

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["counted_block_factor"]

_Kept = tuple[tuple[str, int], ...]
_COUNTS: weakref.WeakKeyDictionary[PruningGraph, dict[tuple[str, _Kept], tuple[float, float]]] = \
    weakref.WeakKeyDictionary()


def counted_block_factor(graph: PruningGraph, layer: str, kin: float, kout: float, *, metric: str = "macs") -> float:
    """Fraction of block ``layer``'s own MACs / parameters left when ``kin`` / ``kout`` of its sides survive.

    A block with no MACs of its own (a container whose children are counted on their own) keeps all of them.
    """
    kept = _kept_elements(graph, layer, kin, kout)
    value = _count(graph, layer, kept)
    dense = _count(graph, layer, tuple((name, graph.unit_by_name[name].elements) for name, _ in kept))
    i = 0 if metric == "macs" else 1
    return value[i] / dense[i] if dense[i] else 1.0


def _kept_elements(graph: PruningGraph, layer: str, kin: float, kout: float) -> _Kept:
    """Elements each unit on a side of ``layer`` keeps, when that side keeps ``kin`` / ``kout`` of its width."""
    kept: dict[str, int] = {}
    for side, fraction in (("in", kin), ("out", kout)):
        units = {name for name, _ in graph.dims[layer][side]}
        assert len(units) <= 1, f"block {layer!r}: its {side} width is cut by several units {sorted(units)}"
        for name in units:
            kept[name] = round(fraction * graph.unit_by_name[name].elements)
    return tuple(sorted(kept.items()))


def _count(graph: PruningGraph, layer: str, kept: _Kept) -> tuple[float, float]:
    """Torch-Pruning's count of block ``layer`` alone in the model whose units keep ``kept``: own MACs, params."""
    cache = _COUNTS.setdefault(graph, {})
    if (layer, kept) not in cache:
        from ..copies import shared_copy

        plan = {}
        for name, k in kept:
            unit = graph.unit_by_name[name]
            if k < unit.elements:
                plan[name] = graph.kinds[unit.kind].to_roots(unit, np.arange(unit.elements - k))
        model = graph.apply_to(shared_copy(graph.model), plan)
        modules = dict(model.named_modules())
        block = modules[layer]
        macs, _, layer_macs, _ = tp.utils.count_ops_and_params(block, _block_inputs(model, block, graph.example_input),
                                                               layer_wise=True)
        # a container's count includes its children's (counted on their own): keep the block's own hook
        macs = (layer_macs.get(block) or 0.0) - sum(layer_macs.get(c) or 0.0 for c in block.children())
        cache[(layer, kept)] = (float(macs), counted_params(layer, modules, graph.traced))
    return cache[(layer, kept)]


def _block_inputs(model: torch.nn.Module, block: torch.nn.Module,
                  example: torch.Tensor) -> tuple[torch.Tensor, ...] | dict[str, object]:
    """The inputs ``block`` gets in ``model``'s example forward (positional, else by keyword)."""
    seen: list[tuple[torch.Tensor, ...] | dict[str, object]] = []
    handle = block.register_forward_hook(lambda m, args, kwargs, out: seen.append(args or kwargs), with_kwargs=True)
    try:
        with torch.no_grad():
            model(example)
    finally:
        handle.remove()
    return seen[0]
