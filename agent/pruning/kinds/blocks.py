"""Exact costs of a block Torch-Pruning's counter takes as a whole (an attention module), from its pruned copy.

Torch-Pruning's op counter hooks ``nn.MultiheadAttention`` and timm's ``Attention`` as one module: their MACs
(projections, ``q @ k``, ``attn @ v``) follow from the widths they see, not layer by layer. Such a block is costed
by counting it in a pruned copy of the dense model with each unit that controls one of its sides (its heads,
its residual width) keeping the same share, once per combination of kept elements (cached per graph). The
``heads`` and ``embed`` kinds both price blocks with :func:`counted_block_factor`, so the two widths combine.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch_pruning as tp

from ..costs import counted_params
from ..tracing import trace_forward

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["counted_block_factor"]

_Kept = tuple[int | None, int | None]
"""Elements kept by the unit on a block's input side and on its output side (None: no unit there)."""
_COUNTS: weakref.WeakKeyDictionary[PruningGraph, dict[tuple[str, _Kept], tuple[float, float]]] = \
    weakref.WeakKeyDictionary()


def counted_block_factor(graph: PruningGraph, layer: str, kin: float, kout: float, *, metric: str = "macs") -> float:
    """Fraction of block ``layer``'s own MACs / parameters left when ``kin`` / ``kout`` of its sides survive.

    A block with no MACs of its own (a container whose children are counted on their own) keeps all of them.
    """
    sides = _sides(graph, layer)
    kept = tuple(round(f * graph.unit_by_name[u].elements) if u else None for u, f in zip(sides, (kin, kout), strict=True))
    value, dense = _count(graph, layer, kept), _count(graph, layer, _elements(graph, layer))
    i = 0 if metric == "macs" else 1
    return value[i] / dense[i] if dense[i] else 1.0


def _sides(graph: PruningGraph, layer: str) -> tuple[str | None, str | None]:
    """The unit that cuts ``layer``'s input width and the one that cuts its output width (None where none does)."""
    found = []
    for side in ("in", "out"):
        units = {name for name, _ in graph.dims[layer][side]}
        assert len(units) <= 1, f"block {layer!r}: its {side} width is cut by several units {sorted(units)}"
        found.append(next(iter(units), None))
    return found[0], found[1]


def _elements(graph: PruningGraph, layer: str) -> _Kept:
    """Elements of the units on ``layer``'s sides (its dense widths, in elements)."""
    a, b = (graph.unit_by_name[u].elements if u else None for u in _sides(graph, layer))
    return a, b


def _count(graph: PruningGraph, layer: str, kept: _Kept) -> tuple[float, float]:
    """Torch-Pruning's count of block ``layer`` alone in the model whose units keep ``kept``: own MACs, params."""
    cache = _COUNTS.setdefault(graph, {})
    if (layer, kept) not in cache:
        cache.update(_count_alike(graph, layer, kept, cache))
    return cache[(layer, kept)]


def _count_alike(graph: PruningGraph, layer: str, kept: _Kept,
                 done: Mapping[tuple[str, _Kept], object]) -> dict[tuple[str, _Kept], tuple[float, float]]:
    """Count ``layer`` at ``kept``, and in the same pruned copy every block shaped like it at the same ``kept``.

    Blocks are alike when their side units have the same element counts (the layers of one ViT), so one copy
    serves all of them under a uniform policy; a unit two blocks share (the residual) keeps one count.
    """
    from ..copies import shared_copy

    keep: dict[str, int] = {}
    served = []
    for other in [layer, *graph.dims]:
        if other in served or (other, kept) in done or next(graph.modules[other].children(), None) is None \
                or _elements(graph, other) != _elements(graph, layer):
            continue
        wanted = {u: k for u, k in zip(_sides(graph, other), kept, strict=True) if u is not None}
        if any(keep.get(u, k) != k for u, k in wanted.items()):
            continue
        keep.update(wanted)
        served.append(other)
    plan = {}
    for name, k in keep.items():
        unit = graph.unit_by_name[name]
        if k < unit.elements:
            plan[name] = graph.kinds[unit.kind].to_roots(unit, np.arange(unit.elements - k))
    model = graph.apply_to(shared_copy(graph.model), plan)
    modules = dict(model.named_modules())
    inputs = _block_inputs(model, set(served), graph.example_input)
    counts = {}
    for name in served:
        block = modules[name]
        _, _, layer_macs, _ = tp.utils.count_ops_and_params(block, inputs[name], layer_wise=True)
        # a container's count includes its children's (counted on their own): keep the block's own hook
        macs = (layer_macs.get(block) or 0.0) - sum(layer_macs.get(c) or 0.0 for c in block.children())
        counts[(name, kept)] = (float(macs), counted_params(name, modules, graph.traced))
    return counts


def _block_inputs(model: torch.nn.Module, blocks: set[str],
                  example: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...] | dict[str, object]]:
    """The inputs each named block gets (first call) in ``model``'s example forward (positional, else by keyword)."""
    seen: dict[str, tuple[torch.Tensor, ...] | dict[str, object]] = {}
    trace_forward(model, example, lambda n, m, i, o: seen.setdefault(n, i), lambda n, m: n in blocks, keywords=True)
    return seen
