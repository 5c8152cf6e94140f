"""Training recipes by model family: CNNs train with SGD, transformers with AdamW, linear warm-up and cosine decay.

A model's family is read off its modules (:func:`model_family`: any attention module makes it a transformer).
Each family has one :class:`Recipe` in :data:`RECIPES`; every field can be overridden per run (``train``'s
``--optimizer`` / ``--lr`` / ``--weight-decay`` / ``--warmup``, the evaluation's ``--finetune-*`` flags and the
final fine-tune's ``--final-*`` flags), and ``--family`` picks a family's recipe for a model of the other one.

Example:
    >>> from torch import nn
    >>> model_family(nn.TransformerEncoderLayer(16, 2)), model_family(nn.Conv2d(1, 4, 3))
    (<Family.TRANSFORMER: 'transformer'>, <Family.CNN: 'cnn'>)
    >>> RECIPES[Family.TRANSFORMER].optimizer
    <Optimizer.ADAMW: 'adamw'>
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from torch import nn

__all__ = ["Family", "Optimizer", "RECIPES", "Recipe", "model_family", "recipe_for"]


class Optimizer(enum.StrEnum):
    """The optimizers of the training loop."""

    SGD = "sgd"
    """SGD with Nesterov momentum 0.9."""
    ADAMW = "adamw"
    """AdamW (betas 0.9 / 0.999, decoupled weight decay)."""


class Family(enum.StrEnum):
    """Model families with their own default recipe."""

    CNN = "cnn"
    """Everything without attention (convolutional and plain MLP models)."""
    TRANSFORMER = "transformer"
    """Models with attention modules (torchvision ViT, timm, Hugging Face)."""


@dataclass(frozen=True)
class Recipe:
    """How one family trains: optimizer, learning rates, weight decay and warm-up."""

    optimizer: Optimizer
    """The optimizer."""
    lr: float
    """Peak learning rate of dense training (cosine-annealed to 0 after the warm-up)."""
    finetune_lr: float
    """Peak learning rate of the short per-candidate fine-tune."""
    weight_decay: float
    """Weight decay (L2 for SGD, decoupled for AdamW)."""
    warmup: float
    """Fraction of the steps with a linear learning-rate warm-up from 0 (0 = none)."""
    batch_size: int
    """Mini-batch size of dense training."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}: e.g. --warmup 0.1")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}: e.g. --batch-size 64")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}: e.g. --weight-decay 0.05")


RECIPES: dict[Family, Recipe] = {
    Family.CNN: Recipe(Optimizer.SGD, lr=0.05, finetune_lr=0.01, weight_decay=5e-4, warmup=0.0, batch_size=128),
    Family.TRANSFORMER: Recipe(Optimizer.ADAMW, lr=2e-3, finetune_lr=2e-4, weight_decay=0.05, warmup=0.1,
                                 batch_size=64),
}
"""The default recipe of each family."""

_QKV_NAMES = frozenset({"q", "k", "v", "qkv", "q_proj", "k_proj", "v_proj", "query", "key", "value", "in_proj"})


def model_family(model: nn.Module) -> Family:
    """``TRANSFORMER`` when ``model`` holds an attention module, else ``CNN``.

    Attention is ``nn.MultiheadAttention`` or a module whose class name ends in ``Attention`` with query / key /
    value projections among its children (timm's ``Attention``, Hugging Face's ``*SelfAttention`` /
    ``*Attention``), so squeeze-and-excitation "attention" blocks of CNNs do not count.
    """
    for mod in model.modules():
        if isinstance(mod, nn.MultiheadAttention):
            return Family.TRANSFORMER
        if type(mod).__name__.endswith("Attention") and _QKV_NAMES & {n for n, _ in mod.named_children()}:
            return Family.TRANSFORMER
    return Family.CNN


def recipe_for(model: nn.Module, *, family: Family | str | None = None, optimizer: Optimizer | str | None = None,
               lr: float | None = None, finetune_lr: float | None = None, weight_decay: float | None = None,
               warmup: float | None = None, batch_size: int | None = None) -> Recipe:
    """The recipe of ``model``'s family (or of ``family``), with every given field overriding it.

    Raises:
        ValueError: An override is out of range, or ``family`` / ``optimizer`` names none.
    """
    try:
        fam = Family(family) if family is not None else model_family(model)
        opt = None if optimizer is None else Optimizer(optimizer)
    except ValueError:
        raise ValueError(f"unknown family {family!r} or optimizer {optimizer!r}: families are "
                         f"{', '.join(Family)}, optimizers {', '.join(Optimizer)}") from None
    given = {"optimizer": opt, "lr": lr, "finetune_lr": finetune_lr, "weight_decay": weight_decay, "warmup": warmup,
             "batch_size": batch_size}
    return dataclasses.replace(RECIPES[fam], **{k: v for k, v in given.items() if v is not None})
