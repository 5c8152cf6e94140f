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
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch.overrides import TorchFunctionMode

from ..outputs import logits_of

__all__ = ["DependencyBuild", "MappingRunaway", "barrier_aware", "build_dependency", "group_barrier",
           "tolerant_mappings"]

_MAPPING_STEPS = (
    "update_concat_index_mapping", "update_split_index_mapping", "update_reshape_index_mapping",
    "update_unbind_index_mapping", "update_expand_index_mapping", "update_slice_index_mapping",
)
"""Torch-Pruning's per-op index-mapping routines (``torch_pruning.dependency.index_mapping``)."""

MAX_MAPPED_INDICES = 250_000
"""A flatten mapping that yields more indices than this is running away (a channels-last reshape misread as a
channels-first flatten multiplies indices on every pass); the group it belongs to is kept whole. A real flatten
of a conv map into a linear layer (VGG: 512 x 7 x 7) stays far below it."""


MAX_MAPPING_WORK = 1_000_000
"""Indices all flatten mappings may yield inside one guarded context (one group's formation): past it the
mappings are cycling through a channels-last model's reshapes (MaxViT), and the group is kept whole."""


class MappingRunaway(RuntimeError):
    """Torch-Pruning's index mapping expanded past :data:`MAX_MAPPED_INDICES`."""


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


def _reshape_barrier(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> str | None:
    """Why Torch-Pruning's mapping can't follow channels through this reshape, or None where it can.

    It can follow a reshape that keeps axis 1, and a channels-first flatten (``[B, C, *S] -> [B, C * prod(S)]``,
    a conv feature map into a linear layer) or its inverse. A reshape that splits axis 1 into two (a channel
    shuffle, a window partition of a channels-last map) permutes channels in ways its mapping can't express.
    """
    if len(shape_in) < 2 or len(shape_out) < 2 or shape_in[1] == shape_out[1]:
        return None
    if len(shape_out) == 2 and len(shape_in) > 2 and shape_out[1] == math.prod(shape_in[1:]):
        return None
    if len(shape_in) == 2 and len(shape_out) > 2 and shape_in[1] == math.prod(shape_out[1:]):
        return None
    what = "splits axis 1" if len(shape_out) > len(shape_in) else "regroups axis 1"
    return f"reshape {list(shape_in)} -> {list(shape_out)} {what}"


@contextlib.contextmanager
def tolerant_mappings(failed: dict[object, str] | None = None,
                      skip: Callable[[object], str | None] | None = None) -> Iterator[None]:
    """Run Torch-Pruning's index-mapping routines so that one that raises marks its op instead of aborting.

    Torch-Pruning re-runs them whenever it forms a group (``get_all_groups``, its pruners' ``step``), so every
    such call on a model with barriers goes inside this context.

    Args:
        failed: Filled with op object -> reason for each routine that raised or was skipped.
        skip: ``skip(node)`` -> a reason to leave that node's mapping out (a known barrier), or None. A mapping
            through a channel split can expand into millions of indices, so barriers are never mapped.
    """
    failed = {} if failed is None else failed
    steps = tp.dependency.index_mapping
    saved = {name: getattr(steps, name) for name in _MAPPING_STEPS if hasattr(steps, name)}

    def guard(name: str):  # noqa: ANN202
        original = saved[name]

        def run(graph: tp.DependencyGraph, node: object) -> None:
            reason = skip(node) if skip is not None else None
            if reason is not None:
                failed[node.module] = reason
                return
            try:
                original(graph, node)
            except Exception as exc:  # noqa: BLE001 - the op becomes a barrier, the rest of the graph stands
                failed[node.module] = f"{type(exc).__name__} in Torch-Pruning's {name.split('_')[1]} mapping"

        return run

    mappings = [cls for name, cls in vars(steps).items() if name.endswith("IndexMapping") and isinstance(cls, type)]
    calls = {cls: cls.__call__ for cls in mappings}
    work = [0]

    def bounded(original: Callable[[object, list], list]) -> Callable[[object, list], list]:
        def call(mapping: object, idxs: list) -> list:
            if len(idxs) > MAX_MAPPED_INDICES:
                raise MappingRunaway(f"an index mapping was handed {len(idxs):,} channel indices")
            out = original(mapping, idxs)
            work[0] += len(idxs) + len(out)
            if len(out) > MAX_MAPPED_INDICES:
                raise MappingRunaway(f"a {type(mapping).__name__} expanded {len(idxs)} channel indices to {len(out):,}")
            if work[0] > MAX_MAPPING_WORK:
                raise MappingRunaway(f"index mappings handled over {MAX_MAPPING_WORK:,} indices for one group")
            return out

        return call

    for name in saved:
        setattr(steps, name, guard(name))
    for cls, original in calls.items():
        cls.__call__ = bounded(original)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(steps, name, fn)
        for cls, original in calls.items():
            cls.__call__ = original


def build_dependency(model: nn.Module, example_input: torch.Tensor, *, customized_pruners: dict | None = None,
                     unwrapped_parameters: Sequence[tuple[nn.Parameter, int]] = ()) -> DependencyBuild:
    """Torch-Pruning's ``DependencyGraph`` of ``model`` plus the barrier ops found while building it.

    Args:
        model: The model (traced once with ``example_input``; not modified).
        example_input: A batch-1 input.
        customized_pruners: Torch-Pruning custom pruners by module type, passed through.
        unwrapped_parameters: Bare parameters with the dimension to prune, passed through (Torch-Pruning guesses
            the last non-singleton dimension of the others).

    Returns:
        The graph and its barriers.
    """
    failed: dict[object, str] = {}
    unwrapped = list(unwrapped_parameters) or None  # a fresh list: Torch-Pruning appends the ones it detects
    with barrier_aware(failed):
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, output_transform=logits_of,
                                                   customized_pruners=customized_pruners,
                                                   unwrapped_parameters=unwrapped, verbose=False)
    return DependencyBuild(dg, failed)


@contextlib.contextmanager
def barrier_aware(failed: dict[object, str] | None = None) -> Iterator[None]:
    """Any Torch-Pruning graph built and grouped inside (its own pruners' too) skips barriers and bounds mappings.

    Args:
        failed: Filled with op object -> reason for each barrier met.
    """
    recorder = _ReshapeShapes()

    def channel_split(node: object) -> str | None:
        shapes = recorder.shapes.get(node.grad_fn)
        return _reshape_barrier(*shapes) if node.type == tp.ops.OPTYPE.RESHAPE and shapes else None

    with tolerant_mappings(failed, skip=channel_split), recorder:
        yield


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
