"""Torch-Pruning's dependency graph for any model that runs, with *barriers* where its index mapping can't follow.

Torch-Pruning follows channels through concat, split, reshape and friends by index mappings. Two kinds of op
break that bookkeeping: one whose mapping routine raises (ShuffleNet's channel shuffle divides by zero), and a
reshape that splits the channel axis into two (a channel shuffle, a group split) whose mapping Torch-Pruning
leaves as the identity though channels are permuted. Both are recorded here as barriers: every dependency
group that passes through one is kept whole, so the channels on either side stay correct. Everything else is
Torch-Pruning's own graph, built by its own ``build_dependency``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["DependencyBuild", "build_dependency", "group_barrier"]

_MAPPING_STEPS = (
    "update_concat_index_mapping", "update_split_index_mapping", "update_reshape_index_mapping",
    "update_unbind_index_mapping", "update_expand_index_mapping", "update_slice_index_mapping",
)
"""Torch-Pruning's per-op index-mapping routines (``torch_pruning.dependency.index_mapping``)."""

_RESHAPES = (torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.unflatten, torch.unflatten)


@dataclass
class DependencyBuild:
    """A built dependency graph and the ops whose groups must be kept whole."""

    dg: tp.DependencyGraph
    """Torch-Pruning's graph of the model."""
    barriers: dict[object, str] = field(default_factory=dict)
    """Torch-Pruning op object -> why channels can't be followed through it."""


class _ReshapeShapes(TorchFunctionMode):
    """Records (input shape, output shape) of every reshape-like call, keyed by the output's autograd node."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: dict[object, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204, D105
        out = func(*args, **(kwargs or {}))
        if func in _RESHAPES and isinstance(out, torch.Tensor) and out.grad_fn is not None \
                and args and isinstance(args[0], torch.Tensor):
            self.shapes[out.grad_fn] = (tuple(args[0].shape), tuple(out.shape))
        return out


def _splits_channels(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> bool:
    """Whether a reshape of a channels-first tensor splits its channel axis into two axes."""
    if len(shape_in) < 3 or len(shape_out) <= len(shape_in):
        return False
    c = shape_in[1]
    return shape_out[1] not in (1, c) and shape_out[1] * shape_out[2] == c


@contextlib.contextmanager
def _guarded_mapping(failed: dict[object, str]) -> Iterator[None]:
    """Run Torch-Pruning's index-mapping routines so that one that raises marks its op instead of aborting."""
    steps = tp.dependency.index_mapping
    saved = {name: getattr(steps, name) for name in _MAPPING_STEPS if hasattr(steps, name)}

    def guard(name: str):  # noqa: ANN202
        original = saved[name]

        def run(graph: tp.DependencyGraph, node: object) -> None:
            try:
                original(graph, node)
            except Exception as exc:  # noqa: BLE001 - the op becomes a barrier, the rest of the graph stands
                failed[node.module] = f"{type(exc).__name__} in Torch-Pruning's {name.split('_')[1]} mapping"

        return run

    for name in saved:
        setattr(steps, name, guard(name))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(steps, name, fn)


def build_dependency(model: nn.Module, example_input: torch.Tensor, *,
                     customized_pruners: dict | None = None) -> DependencyBuild:
    """Torch-Pruning's ``DependencyGraph`` of ``model`` plus the barrier ops found while building it.

    Args:
        model: The model (traced once with ``example_input``; not modified).
        example_input: A batch-1 input.
        customized_pruners: Torch-Pruning custom pruners by module type, passed through.

    Returns:
        The graph and its barriers.
    """
    failed: dict[object, str] = {}
    recorder = _ReshapeShapes()
    with _guarded_mapping(failed), recorder:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                   customized_pruners=customized_pruners, verbose=False)
    barriers = dict(failed)
    for node in dg.module2node.values():
        shapes = recorder.shapes.get(node.grad_fn)
        if node.type == tp.ops.OPTYPE.RESHAPE and shapes and _splits_channels(*shapes):
            barriers.setdefault(node.module, f"reshape {list(shapes[0])} -> {list(shapes[1])} splits the channels")
    return DependencyBuild(dg, barriers)


def group_barrier(group: tp.dependency.Group, barriers: dict[object, str]) -> str | None:
    """Why ``group`` must be kept whole (it passes through a barrier op), or None."""
    if not barriers:
        return None
    for item in group:
        for node in (item.dep.source, item.dep.target):
            reason = barriers.get(node.module)
            if reason is not None:
                return reason
    return None
