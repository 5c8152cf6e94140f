"""Unstructured and threshold pruning, for users who want sparsity (smaller compressed files) rather than speed.

Masks come from :mod:`torch.nn.utils.prune` (global or layer-wise L1 magnitude, Ln-structured rows, or
per-layer adaptive thresholds ``|w| < q * std(W_layer)`` with one quality factor ``q`` bisected to the
target), optionally fine-tuned *with the masks in place*, then made permanent with ``prune.remove``.
:func:`remove_dead_channels` (in :mod:`agent.deploy.cleanup`) then removes channels that no longer contribute.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune

from ..errors import UserInputError
from ..pruning.tracing import find_output_layer
from ..tasks.task import Task
from ..tasks.training import recalibrate_batchnorm
from .finetune import FinalTuneConfig, finetune_model

__all__ = ["SparsifyConfig", "LayerSparsity", "SparsifyResult", "sparsify", "layer_sparsity", "prunable_weights",
           "SPARSIFY_METHODS"]

SPARSIFY_METHODS = ("l1", "ln_structured", "threshold")
"""Mask criteria: L1 magnitude (unstructured), Ln norm of output rows (structured), per-layer threshold."""

_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class SparsifyConfig:
    """How weights are masked."""

    sparsity: float
    """Target fraction of zero weights, in (0, 1): over all masked layers (global scope, threshold) or in each
    layer (layer scope)."""
    scope: Literal["global", "layer"] = "global"
    """``global``: one magnitude ranking across layers; ``layer``: the same fraction in every layer."""
    method: Literal["l1", "ln_structured", "threshold"] = "l1"
    """``l1`` (unstructured magnitude), ``ln_structured`` (whole output rows by Ln norm; layer scope only,
    output layer excluded) or ``threshold`` (per-layer adaptive thresholds ``q * std``)."""
    norm: float = 2.0
    """The ``n`` of ``ln_structured``."""
    include_output_layer: bool = True
    """Mask the classifier's weights too (never for ``ln_structured``: that would delete classes)."""
    finetune_epochs: float = 0.0
    """Fine-tune with the masks applied before making them permanent (0 = no fine-tune)."""
    finetune_lr: float | None = None
    """Peak LR of that fine-tune (default: 1/10 of the dense training LR)."""
    bn_recalibration_batches: int = 8
    """Re-estimate BatchNorm statistics of the sparse model on this many training batches when a task is given
    (masking shifts activations; stale statistics cost far more accuracy than the zeros themselves)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.sparsity, (int, float)) and 0 < self.sparsity < 1):
            raise UserInputError(f"--sparsity must be in (0, 1), got {self.sparsity!r}: e.g. --sparsity 0.8")
        if self.scope not in ("global", "layer"):
            raise UserInputError(f"--scope must be global or layer, got {self.scope!r}")
        if self.method not in SPARSIFY_METHODS:
            raise UserInputError(f"--method must be one of {', '.join(SPARSIFY_METHODS)}, got {self.method!r}")
        if self.method == "ln_structured" and self.scope == "global":
            raise UserInputError("--method ln_structured prunes each layer separately, got --scope 'global': "
                                 "pass --scope layer")
        if not (math.isfinite(self.norm) and self.norm > 0):
            raise UserInputError(f"--norm must be > 0, got {self.norm!r}: e.g. --norm 2")
        if not (math.isfinite(self.finetune_epochs) and self.finetune_epochs >= 0):
            raise UserInputError(f"--finetune-epochs must be >= 0, got {self.finetune_epochs!r}")
        if self.finetune_lr is not None and not (math.isfinite(self.finetune_lr) and self.finetune_lr > 0):
            raise UserInputError(f"--finetune-lr must be > 0, got {self.finetune_lr!r}: e.g. --finetune-lr 0.005")
        if self.bn_recalibration_batches < 0:
            raise UserInputError(f"--bn-batches must be >= 0, got {self.bn_recalibration_batches!r}: e.g. 8")


@dataclass
class LayerSparsity:
    """Zeros in one layer's weight."""

    layer: str
    """Module name."""
    kind: str
    """Module type, e.g. ``Conv1d``."""
    shape: list[int]
    """Weight shape."""
    weights: int
    """Weight count."""
    zeros: int
    """Exactly-zero weights."""
    threshold: float | None = None
    """Magnitude threshold used for this layer (``threshold`` method)."""

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return self.zeros / max(self.weights, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``sparsity``)."""
        return {"layer": self.layer, "kind": self.kind, "shape": self.shape, "weights": self.weights,
                "zeros": self.zeros, "sparsity": self.sparsity, "threshold": self.threshold}


@dataclass
class SparsifyResult:
    """The masked model and its per-layer sparsity."""

    model: nn.Module
    """The sparse model (masks permanent: plain ``weight`` tensors with zeros; same architecture)."""
    layers: list[LayerSparsity] = field(default_factory=list)
    """Per-layer sparsity."""
    finetune: dict[str, Any] | None = None
    """What the masked fine-tune did (None without one)."""

    @property
    def sparsity(self) -> float:
        """Zero fraction over all masked layers' weights."""
        return sum(s.zeros for s in self.layers) / max(sum(s.weights for s in self.layers), 1)


def prunable_weights(model: nn.Module, *, example_input: torch.Tensor | None = None,
                     include_output_layer: bool = True) -> list[tuple[str, nn.Module]]:
    """Conv / linear layers whose ``weight`` gets a mask (the output layer optionally excluded)."""
    skip = find_output_layer(model, example_input) if (example_input is not None and not include_output_layer) else None
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _LAYERS) and n != skip]


def layer_sparsity(model: nn.Module, *, layers: list[str] | None = None,
                   thresholds: dict[str, float] | None = None) -> list[LayerSparsity]:
    """Zero counts of every conv / linear weight (or only of ``layers``)."""
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, _LAYERS) or (layers is not None and name not in layers):
            continue
        w = m.weight.detach()
        out.append(LayerSparsity(name, type(m).__name__, list(w.shape), w.numel(), int((w == 0).sum()),
                                 (thresholds or {}).get(name)))
    return out


def _threshold_masks(layers: list[tuple[str, nn.Module]], sparsity: float) -> tuple[dict[str, torch.Tensor],
                                                                                     dict[str, float]]:
    """Per-layer thresholds ``q * std(W)`` with one ``q`` bisected so the overall zero fraction hits ``sparsity``."""
    weights = {n: m.weight.detach().abs() for n, m in layers}
    stds = {n: float(m.weight.detach().std()) or 1e-12 for n, m in layers}
    total = sum(w.numel() for w in weights.values())

    def zero_fraction(q: float) -> float:
        return sum(int((w < q * stds[n]).sum()) for n, w in weights.items()) / total

    lo, hi = 0.0, 1.0
    while zero_fraction(hi) < sparsity and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if zero_fraction(mid) < sparsity else (lo, mid)
    thresholds = {n: hi * stds[n] for n in weights}
    return {n: (w >= thresholds[n]).to(w.dtype) for n, w in weights.items()}, thresholds


def _apply_masks(layers: list[tuple[str, nn.Module]], config: SparsifyConfig) -> dict[str, float]:
    """Attach ``torch.nn.utils.prune`` masks; returns the per-layer thresholds (``threshold`` method only)."""
    if config.method == "threshold":
        masks, thresholds = _threshold_masks(layers, config.sparsity)
        for name, m in layers:
            prune.custom_from_mask(m, "weight", masks[name])
        return thresholds
    if config.method == "ln_structured":
        for _, m in layers:
            prune.ln_structured(m, "weight", amount=config.sparsity, n=config.norm, dim=0)
    elif config.scope == "global":
        prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured,
                                  amount=config.sparsity)
    else:
        for _, m in layers:
            prune.l1_unstructured(m, "weight", amount=config.sparsity)
    return {}


def sparsify(model: nn.Module, *, config: SparsifyConfig, example_input: torch.Tensor, task: Task | None = None,
             device: str = "cpu", seed: int = 0) -> SparsifyResult:
    """Mask the weights of a copy of ``model`` and make the masks permanent.

    Example:
        >>> import torch
        >>> from agent import SparsifyConfig, sparsify
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> result = sparsify(model, config=SparsifyConfig(sparsity=0.5), example_input=torch.randn(1, 8))
        >>> round(result.sparsity, 2)
        0.5

    Args:
        model: The dense model (not modified).
        config: Sparsity target, scope and method.
        example_input: A batch-1 input (finds the output layer).
        task: Data for the masked fine-tune (needed when ``config.finetune_epochs > 0``) and for BatchNorm
            re-estimation (skipped without a task).
        device: Fine-tune device.
        seed: Fine-tune data order.

    Returns:
        The sparse model and its per-layer sparsity.
    """
    if config.finetune_epochs > 0 and task is None:
        raise UserInputError("a masked fine-tune needs the task's data, got task=None: pass task= or finetune_epochs=0")
    sparse = copy.deepcopy(model).eval()
    include = config.include_output_layer and config.method != "ln_structured"
    layers = prunable_weights(sparse, example_input=example_input, include_output_layer=include)
    if not layers:
        raise UserInputError(f"the model {type(model).__name__!r} has no conv / linear layer to sparsify: "
                             "pass a model with nn.Conv*d or nn.Linear layers")
    thresholds = _apply_masks(layers, config)
    tuned = None
    if config.finetune_epochs > 0:
        assert task is not None
        tuned = finetune_model(sparse, task, config=FinalTuneConfig(epochs=config.finetune_epochs, lr=config.finetune_lr),
                               device=device, seed=seed)
    for _, m in layers:
        prune.remove(m, "weight")
    if task is not None and config.bn_recalibration_batches > 0:
        recalibrate_batchnorm(sparse, task.data.train, batches=config.bn_recalibration_batches, seed=seed)
    names = [n for n, _ in layers]
    return SparsifyResult(sparse.eval(), layer_sparsity(sparse, layers=names, thresholds=thresholds), tuned)
