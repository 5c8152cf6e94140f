"""Topology-aware cleanup of a sparse model: channels that no longer contribute are removed structurally.

A channel of a prunable unit (a Torch-Pruning dependency group) is *dead* when

* every outgoing connection is zero (each consumer layer's input slice for it is all zero): whatever it
  computes is ignored; or
* every incoming connection is zero (each producer layer's output row for it is all zero): it is then a
  constant, measured at its consumers' inputs on two random probes. A constant 0 is dropped as is; a non-zero
  constant is folded into the consumers' biases when that is exact (linear consumers, convolutions without
  padding, both with a bias), otherwise the channel is kept.

Dead channels are removed by replaying the unit's dependency group (:meth:`PruningGraph.apply`), so every
coupled layer (BatchNorm, residual branches, the flattened classifier input) shrinks with them. The model's
outputs are checked to be unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..pruning.graph import PruningGraph

__all__ = ["CleanupReport", "remove_dead_channels"]

_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class CleanupReport:
    """What the cleanup removed."""

    removed: dict[str, list[int]] = field(default_factory=dict)
    """Unit name -> removed root channel indices (in the input model's coordinates)."""
    outgoing_dead: int = 0
    """Removed channels whose outgoing connections were all zero."""
    incoming_dead: int = 0
    """Removed channels whose incoming connections were all zero (constant output)."""
    folded: int = 0
    """Of those, channels with a non-zero constant folded into the consumers' biases."""
    kept_constant: int = 0
    """Channels with all incoming connections zero but a constant that could not be folded exactly (kept)."""
    skipped_units: list[str] = field(default_factory=list)
    """Units not examined (grouped convolutions)."""
    params_before: int = 0
    """Parameters before the cleanup."""
    params_after: int = 0
    """Parameters after the cleanup."""
    max_output_change: float = 0.0
    """Largest absolute change of the model's outputs on the probe inputs."""

    @property
    def channels_removed(self) -> int:
        """Total channels removed."""
        return sum(len(v) for v in self.removed.values())


@dataclass
class _Slice:
    module: nn.Module
    idxs: torch.Tensor
    roots: torch.Tensor


_Fold = list[tuple[_Slice, torch.Tensor, torch.Tensor]]
"""How one constant channel folds into its consumers: (consumer, input positions, constant values)."""


def _members(graph: PruningGraph, unit: str) -> tuple[list[_Slice], list[_Slice]] | None:
    """Producer (out-channel) and consumer (in-channel) conv / linear slices of a unit; None if unsupported."""
    producers, consumers = [], []
    for item in graph.groups[unit]:
        mod = item.dep.target.module
        if not isinstance(mod, _LAYERS):
            continue
        if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups > 1:
            return None
        s = _Slice(mod, torch.as_tensor(np.asarray(item.idxs, dtype=np.int64)),
                   torch.as_tensor(np.asarray(item.root_idxs, dtype=np.int64)))
        if graph.dg.is_out_channel_pruning_fn(item.dep.handler):
            producers.append(s)
        elif graph.dg.is_in_channel_pruning_fn(item.dep.handler):
            consumers.append(s)
    return producers, consumers


def _all_zero_per_root(slices: list[_Slice], channels: int, *, dim: int) -> torch.Tensor:
    """Root channels whose weight slices along ``dim`` are zero in every slice (False without slices)."""
    dead = torch.full((channels,), bool(slices))
    for s in slices:
        w = s.module.weight.detach().transpose(0, dim).flatten(1)
        nonzero = (w != 0).any(1)
        dead[s.roots[nonzero[s.idxs]]] = False
    return dead


def _inputs_of(model: nn.Module, modules: list[nn.Module],
               probes: list[torch.Tensor]) -> list[dict[nn.Module, torch.Tensor]]:
    """Each module's input on each probe (feature dim last, flattened to rows)."""
    seen: list[dict[nn.Module, torch.Tensor]] = []
    for x in probes:
        got: dict[nn.Module, torch.Tensor] = {}

        def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], got: dict = got) -> None:
            inp = args[0].detach()
            if isinstance(mod, nn.modules.conv._ConvNd):
                inp = inp.movedim(1, -1)
            got[mod] = inp.reshape(-1, inp.shape[-1])

        handles = [m.register_forward_pre_hook(hook) for m in set(modules)]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in handles:
                h.remove()
        seen.append(got)
    return seen


def _constant(rows: list[torch.Tensor], positions: torch.Tensor) -> torch.Tensor | None:
    """The constant value of input features ``positions`` across every row of every probe, or None."""
    cols = [r[:, positions] for r in rows]
    value = cols[0][0]
    if all(bool((c == value).all()) for c in cols):
        return value
    return None


def _foldable(mod: nn.Module) -> bool:
    if getattr(mod, "bias", None) is None:
        return False
    if isinstance(mod, nn.Linear):
        return True
    pad = mod.padding
    return isinstance(pad, tuple) and all(p == 0 for p in pad)


def remove_dead_channels(model: nn.Module, example_input: torch.Tensor, *, probe_batch: int = 4, seed: int = 0,
                         atol: float = 1e-4) -> tuple[nn.Module, CleanupReport]:
    """Structurally remove channels that cannot change the model's output.

    Args:
        model: A (sparse) model; not modified.
        example_input: A batch-1 input of the model's shape.
        probe_batch: Batch size of the two random probes used to measure constants and check the outputs.
        seed: Seed of the probes.
        atol: Largest tolerated output change (relative to the output scale) before the cleanup is refused.

    Returns:
        The smaller model and a report (its ``removed`` is the plan in ``model``'s coordinates).
    """
    work = copy.deepcopy(model).eval()
    graph = PruningGraph(work, example_input)
    gen = torch.Generator().manual_seed(seed)
    probes = [torch.randn((probe_batch, *example_input.shape[1:]), generator=gen) for _ in range(2)]
    with torch.no_grad():
        reference = work(probes[0])
    report = CleanupReport(params_before=sum(p.numel() for p in model.parameters()))
    decisions: dict[str, tuple[torch.Tensor, dict[int, _Fold]]] = {}
    examined: list[tuple[str, list[_Slice], torch.Tensor, torch.Tensor]] = []
    for unit in graph.units:
        members = _members(graph, unit.name)
        if members is None:
            report.skipped_units.append(unit.name)
            continue
        producers, consumers = members
        out_dead = _all_zero_per_root(consumers, unit.channels, dim=1)
        in_dead = _all_zero_per_root(producers, unit.channels, dim=0) & ~out_dead
        examined.append((unit.name, consumers, out_dead, in_dead))
    inputs = _inputs_of(work, [s.module for _, cons, _, in_dead in examined if in_dead.any() for s in cons], probes)
    for unit, consumers, out_dead, in_dead in examined:
        folds: dict[int, _Fold] = {}
        removable = out_dead.clone()
        for c in torch.nonzero(in_dead).flatten().tolist():
            plan = []
            for s in consumers:
                pos = s.idxs[s.roots == c]
                value = _constant([seen[s.module] for seen in inputs], pos)
                if value is None or (bool(value.any()) and not _foldable(s.module)):
                    plan = None
                    break
                plan.append((s, pos, value))
            if plan is None:
                report.kept_constant += 1
                continue
            removable[c] = True
            folds[c] = [p for p in plan if bool(p[2].any())]
        if bool(removable.all()):  # a unit keeps at least one channel: keep one that needs no folding if any
            keep = int(torch.nonzero(removable).flatten()[-1])
            removable[keep] = False
            folds.pop(keep, None)
        decisions[unit] = (removable, folds)
    for unit, (removable, folds) in decisions.items():
        idx = torch.nonzero(removable).flatten().tolist()
        if not idx:
            continue
        report.removed[unit] = idx
        report.incoming_dead += sum(1 for c in idx if c in folds)
        report.outgoing_dead += sum(1 for c in idx if c not in folds)
        with torch.no_grad():
            for plan in folds.values():
                report.folded += int(bool(plan))
                for s, pos, value in plan:
                    w = s.module.weight[:, pos]
                    s.module.bias += (w.flatten(2).sum(2) if w.dim() > 2 else w) @ value
    pruned = graph.apply({u: np.asarray(v, dtype=np.int64) for u, v in report.removed.items()})
    with torch.no_grad():
        after = pruned(probes[0])
    assert after.shape == reference.shape, f"cleanup changed the output shape {reference.shape} -> {after.shape}"
    report.max_output_change = float((after - reference).abs().max())
    scale = 1.0 + float(reference.abs().max())
    assert report.max_output_change <= atol * scale, f"cleanup changed outputs by {report.max_output_change:g}"
    report.params_after = sum(p.numel() for p in pruned.parameters())
    return pruned.eval(), report
