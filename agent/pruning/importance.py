"""Importance criteria: a registry of name -> Torch-Pruning importance, scored once on the dense model.

Scores are per unit (dependency group) and per channel. Data-driven criteria (``taylor``, ``activation``)
use a few calibration batches from the training split.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.utils.data import Dataset

from ..errors import user_error
from ..outputs import logits_of
from ..tasks.training import infinite_batches
from .graph import PruningGraph
from .tracing import PRUNABLE_TYPES

__all__ = ["IMPORTANCE_CRITERIA", "compute_importance", "check_importance", "normalized"]

Scorer = Callable[[PruningGraph, Dataset | None, int, int, torch.device], dict[str, torch.Tensor]]


def _static(make: Callable[[], tp.importance.Importance]) -> Scorer:
    def score(graph: PruningGraph, data: Dataset | None, batches: int, seed: int,
              device: torch.device) -> dict[str, torch.Tensor]:
        del data, batches, seed, device
        imp = make()
        return {name: imp(group) for name, group in graph.groups.items()}

    return score


def _bn_scale(graph: PruningGraph, data: Dataset | None, batches: int, seed: int,
              device: torch.device) -> dict[str, torch.Tensor]:
    bn, fallback = tp.importance.BNScaleImportance(), tp.importance.MagnitudeImportance(p=1)
    out, missing = {}, []
    for name, group in graph.groups.items():
        s = bn(group)
        if s is None:
            missing.append(name)
            s = fallback(group)
        out[name] = s
    if len(missing) == len(out):
        raise user_error("importance 'bn_scale' needs BatchNorm layers; the model has none, got", "bn_scale",
                         "choose --importance l1, l2, taylor or activation")
    if missing:
        warnings.warn(f"bn_scale: units without BatchNorm fall back to l1 magnitude: {missing[:5]}", stacklevel=2)
    return out


def _random(graph: PruningGraph, data: Dataset | None, batches: int, seed: int,
            device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {u.name: torch.rand(u.channels, generator=gen) for u in graph.units}


@contextmanager
def _on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Temporarily move the dense model to ``device`` (and back to the CPU)."""
    model.to(device)
    try:
        yield model
    finally:
        model.to("cpu")


def _taylor(graph: PruningGraph, data: Dataset | None, batches: int, seed: int,
            device: torch.device) -> dict[str, torch.Tensor]:
    """First-order Taylor (Molchanov et al. 2019): |w * dL/dw| summed over a few training batches."""
    assert data is not None
    model = graph.model
    params = list(model.parameters())
    saved = [p.requires_grad for p in params]
    try:
        with _on_device(model, device):
            for p in params:
                p.requires_grad_(True)
                p.grad = None
            it = infinite_batches(data, 64, seed)
            for _ in range(batches):
                x, y = next(it)
                F.cross_entropy(logits_of(model(x.to(device))), y.to(device)).backward()
            imp = tp.importance.TaylorImportance()
            return {name: imp(group).cpu() for name, group in graph.groups.items()}
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.grad = None
            p.requires_grad_(flag)
        model.eval()


class _MeanActivation(tp.importance.ActivationImportance):
    """Mean |input activation| per channel of each conv / linear layer, accumulated over batches.

    Torch-Pruning's ``ActivationImportance`` keeps only the last batch and only ``Conv2d``; this keeps
    running means for every ``_ConvNd`` and ``nn.Linear``.
    """

    @contextmanager
    def compute_importance(self, model: nn.Module) -> Iterator[None]:  # noqa: D102
        sums: dict[nn.Module, torch.Tensor] = {}
        counts: dict[nn.Module, int] = {}

        @torch.no_grad()
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0].abs()
            per_channel = x.reshape(-1, x.shape[-1]).mean(0) if isinstance(module, nn.Linear) \
                else x.transpose(0, 1).reshape(x.shape[1], -1).mean(1)
            sums[module] = sums.get(module, 0) + per_channel
            counts[module] = counts.get(module, 0) + 1
            module._importance = sums[module] / counts[module]

        hooks = [m.register_forward_hook(hook) for m in model.modules()
                 if isinstance(m, PRUNABLE_TYPES)]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()


def _activation(graph: PruningGraph, data: Dataset | None, batches: int, seed: int,
                device: torch.device) -> dict[str, torch.Tensor]:
    assert data is not None
    model = graph.model
    imp = _MeanActivation()
    with _on_device(model, device), torch.no_grad(), imp.compute_importance(model):
        it = infinite_batches(data, 64, seed)
        for _ in range(batches):
            model(next(it)[0].to(device))
    try:
        fallback = tp.importance.MagnitudeImportance(p=2)
        return {name: (s.cpu() if (s := imp(group)) is not None else fallback(group))
                for name, group in graph.groups.items()}
    finally:
        for m in model.modules():
            if hasattr(m, "_importance"):
                del m._importance


IMPORTANCE_CRITERIA: dict[str, tuple[Scorer, bool, str]] = {
    "l1": (_static(lambda: tp.importance.MagnitudeImportance(p=1)), False, "group L1 norm of the weights"),
    "l2": (_static(lambda: tp.importance.MagnitudeImportance(p=2)), False, "group L2 norm of the weights"),
    "taylor": (_taylor, True, "first-order Taylor |w * grad| on calibration batches"),
    "bn_scale": (_bn_scale, False, "|gamma| of the BatchNorm layers (network slimming)"),
    "activation": (_activation, True, "mean |activation| of the channel on calibration batches"),
    "random": (_random, False, "uniformly random scores (a sanity baseline)"),
    "lamp": (_static(lambda: tp.importance.LAMPImportance(p=2)), False, "layer-adaptive magnitude (LAMP)"),
    "fpgm": (_static(lambda: tp.importance.FPGMImportance(p=2)), False, "geometric median distance (FPGM)"),
}
"""Registry: name -> (scorer, needs data, description)."""


def check_importance(name: str) -> None:
    """Raise a :class:`~agent.errors.UserInputError` unless ``name`` is a registered criterion."""
    if name not in IMPORTANCE_CRITERIA:
        raise user_error("unknown importance", name, f"choose one of {', '.join(IMPORTANCE_CRITERIA)}")


def compute_importance(graph: PruningGraph, name: str, *, data: Dataset | None = None, batches: int = 8,
                       seed: int = 0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Per-unit channel importance of the dense model.

    Args:
        graph: The dense model's pruning graph.
        name: Criterion name (see :data:`IMPORTANCE_CRITERIA`).
        data: Calibration data (training split) for data-driven criteria.
        batches: Calibration batches of 64 samples.
        seed: Seed for data order and for ``random``.
        device: Where to run calibration passes.

    Returns:
        Unit name -> 1-D float tensor of channel scores (higher = more important).
    """
    check_importance(name)
    scorer, needs_data, _ = IMPORTANCE_CRITERIA[name]
    if needs_data and data is None:
        raise ValueError(f"importance {name!r} needs calibration data: pass data=task.data.train")
    scores = scorer(graph, data, batches, seed, torch.device(device))
    for unit in graph.units:
        s = scores[unit.name]
        assert s is not None and len(s) == unit.channels, f"importance {name} gave a bad score for {unit.name}"
        scores[unit.name] = torch.nan_to_num(s.detach().float().cpu(), nan=0.0)
    return scores


def normalized(scores: torch.Tensor) -> torch.Tensor:
    """Scale scores into [0, 1] by the unit's maximum (for importance thresholds)."""
    top = scores.max()
    return scores / top if top > 0 else torch.zeros_like(scores)
