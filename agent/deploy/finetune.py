"""Final fine-tuning of a pruned model: epochs, cosine-annealed LR, optional distillation from the dense model.

Used by the search's final stage (:func:`agent.search.run.finalize`), by iterative pruning between steps and by
``prunepilot finetune``. The training loop itself is :func:`agent.tasks.training.train_steps`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..errors import UserInputError
from ..measure.latency import resolve_device
from ..tasks.recipes import Optimizer, recipe_for
from ..tasks.task import Task
from ..tasks.training import TrainConfig, train_steps

__all__ = ["FinalTuneConfig", "SCHEDULES", "finetune_model", "default_finetune_lr"]

SCHEDULES = ("linear", "poly")
"""Sparsity schedules of iterative pruning (see :mod:`agent.deploy.iterative`)."""


@dataclass(frozen=True)
class FinalTuneConfig:
    """Fine-tuning of the chosen policy after the search."""

    epochs: float = 0.0
    """Passes over the training split (0 = keep the evaluation's model). With ``iterative_steps > 1`` this is
    the total, split evenly between the steps."""
    lr: float | None = None
    """Peak learning rate (default: 1/10 of the dense training LR)."""
    optimizer: Optimizer | None = None
    """Optimizer (default: the model family's recipe: SGD for CNNs, AdamW for transformers)."""
    warmup: float | None = None
    """Warm-up fraction of the steps (default: the model family's recipe: 0 for CNNs, 0.1 for transformers)."""
    kd_alpha: float = 0.0
    """Knowledge-distillation weight from the dense model (0 = off, 1 = distillation loss only)."""
    kd_temperature: float = 4.0
    """Distillation temperature."""
    iterative_steps: int = 1
    """Reach the policy in this many pruning steps, fine-tuning between them (1 = one-shot)."""
    schedule: Literal["linear", "poly"] = "poly"
    """Sparsity schedule of iterative pruning: ``linear`` or ``poly`` (TF-MOT PolynomialDecay)."""
    power: float = 3.0
    """Exponent of the ``poly`` schedule (TF-MOT's default is 3)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs >= 0):
            raise UserInputError(f"--final-epochs must be >= 0, got {self.epochs!r}: e.g. --final-epochs 5")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise UserInputError(f"--final-lr must be > 0, got {self.lr!r}: e.g. --final-lr 0.005")
        if self.warmup is not None and not 0 <= self.warmup < 1:
            raise UserInputError(f"--final-warmup must be in [0, 1), got {self.warmup!r}: e.g. --final-warmup 0.1")
        if self.optimizer is not None:
            try:
                object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
            except ValueError:
                raise UserInputError(f"--final-optimizer must be one of {', '.join(Optimizer)}, got "
                                     f"{self.optimizer!r}: e.g. --final-optimizer adamw") from None
        if not 0 <= self.kd_alpha <= 1:
            raise UserInputError(f"--kd-alpha must be in [0, 1], got {self.kd_alpha!r}: e.g. --kd-alpha 0.5")
        if not (math.isfinite(self.kd_temperature) and self.kd_temperature > 0):
            raise UserInputError(f"--kd-temperature must be > 0, got {self.kd_temperature!r}: e.g. --kd-temperature 4")
        if not isinstance(self.iterative_steps, int) or self.iterative_steps < 1:
            raise UserInputError(f"--iterative-steps must be an integer >= 1, got {self.iterative_steps!r}: "
                                 "e.g. --iterative-steps 4 (1 = one-shot)")
        if self.schedule not in SCHEDULES:
            raise UserInputError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}: "
                                 "e.g. --schedule poly")
        if not (math.isfinite(self.power) and self.power > 0):
            raise UserInputError(f"--schedule-power must be > 0, got {self.power!r}: e.g. --schedule-power 3")


def default_finetune_lr(task: Task) -> float:
    """1/10 of the dense model's training LR (its family recipe's when the checkpoint does not say: 0.05 for CNNs)."""
    return float(task.meta.get("lr", recipe_for(task.model).lr)) / 10


def finetune_model(model: nn.Module, task: Task, *, config: FinalTuneConfig, device: str = "cpu",
                   batch_size: int = 128, seed: int = 0, epochs: float | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fine-tune a pruned ``model`` in place on the task's training split.

    The model family's optimizer and warm-up (SGD with Nesterov momentum for CNNs, AdamW with a linear warm-up
    for transformers; ``config`` overrides them) and a cosine schedule from ``config.lr`` to 0; with
    ``config.kd_alpha > 0`` the loss mixes cross-entropy and distillation from the dense model (``task.model``) as teacher.

    Example:
        >>> from agent import EvalSettings, FinalTuneConfig, Policy, build_task, finetune_model, get_engine
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> engine = get_engine(task)
        >>> pruned = engine.build(Policy.uniform(engine.graph.unit_names(), 0.5), EvalSettings())
        >>> record = finetune_model(pruned, task, config=FinalTuneConfig(epochs=1))
        >>> record["epochs"], record["steps"] > 0
        (1, True)

    Args:
        model: The pruned model (any device; it ends on the CPU in eval mode).
        task: The dense model (teacher) and data.
        config: Epochs, LR and distillation settings.
        device: Training device.
        batch_size: Mini-batch size.
        seed: Seed of the data order.
        epochs: Overrides ``config.epochs`` (iterative pruning passes its per-step share).
        progress: Called as ``progress(done, total)`` after each training step.

    Returns:
        What was done: ``epochs``, ``steps``, ``lr``, ``kd_alpha``, ``kd_temperature``, ``loss`` (mean training
        loss of the run), ``wall_s``. ``steps`` is 0 when there was nothing to do.
    """
    epochs = config.epochs if epochs is None else epochs
    lr = config.lr or default_finetune_lr(task)
    recipe = recipe_for(model, optimizer=config.optimizer, warmup=config.warmup)
    record: dict[str, Any] = {"epochs": epochs, "steps": 0, "lr": lr, "kd_alpha": config.kd_alpha,
                              "kd_temperature": config.kd_temperature, "loss": None, "wall_s": 0.0}
    if epochs <= 0:
        return record
    steps = max(1, int(epochs * len(task.data.train) // batch_size))  # type: ignore[arg-type]
    dev = resolve_device(device)
    teacher = task.model.to(dev) if config.kd_alpha > 0 else None
    t0 = time.monotonic()
    try:
        loss = train_steps(model.to(dev), task.data.train, device=dev, teacher=teacher,
                           config=TrainConfig(steps=steps, lr=lr, optimizer=recipe.optimizer, warmup=recipe.warmup,
                                              weight_decay=recipe.weight_decay, batch_size=batch_size, seed=seed,
                                              kd_alpha=config.kd_alpha, kd_temperature=config.kd_temperature),
                           progress=(lambda s: progress(s, steps)) if progress else None)
    finally:
        task.model.to("cpu")
        model.to("cpu").eval()
    record.update(steps=steps, loss=loss, wall_s=round(time.monotonic() - t0, 3))
    return record
