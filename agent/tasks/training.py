"""One training loop for dense training, the short fine-tune inside evaluations and the final fine-tune.

Step-based (``steps`` optimizer updates), SGD with Nesterov momentum or AdamW (the model family's recipe, see
:mod:`agent.tasks.recipes`), an optional linear warm-up and a cosine learning-rate schedule, optional knowledge
distillation from a teacher (the dense model), and a callback after each chunk of steps
(used by Optuna / Ray Tune to stop bad candidates early).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..measure.threads import ThroughputWatch
from ..outputs import logits_of
from .recipes import Optimizer

__all__ = [
    "TrainConfig", "train_steps", "accuracy", "infinite_batches", "recalibrate_batchnorm", "NonFiniteLossError",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the candidate is recorded as failed)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training / fine-tuning run."""

    steps: int
    """Number of optimizer updates (0 = no training)."""
    lr: float = 0.05
    """Peak learning rate, annealed to 0 with a cosine schedule (after the warm-up)."""
    optimizer: Optimizer = Optimizer.SGD
    """SGD (Nesterov momentum 0.9) or AdamW."""
    warmup: float = 0.0
    """Fraction of the steps with a linear warm-up from 0 to ``lr`` (0 = none)."""
    batch_size: int = 128
    """Mini-batch size."""
    weight_decay: float = 5e-4
    """Weight decay (L2 for SGD, decoupled for AdamW)."""
    kd_alpha: float = 0.0
    """Weight of the distillation loss (0 = plain cross-entropy; 1 = distillation only)."""
    kd_temperature: float = 4.0
    """Softmax temperature of the distillation loss."""
    seed: int = 0
    """Seed of the data order."""
    chunks: int = 1
    """Number of equal chunks; ``on_chunk`` is called after each."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"training steps must be >= 0, got {self.steps}: pass a non-negative step count")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive finite number, got {self.lr}")
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}: e.g. --kd-alpha 0.5")
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}: e.g. --kd-temperature 4")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}: e.g. --warmup 0.1")
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        if self.batch_size < 1 or self.chunks < 1:
            raise ValueError(f"batch_size and chunks must be >= 1, got {self.batch_size} and {self.chunks}")


def infinite_batches(dataset: Dataset, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield shuffled mini-batches forever, reshuffling each epoch with a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen, drop_last=len(dataset) > batch_size)
    while True:
        yield from loader


def train_steps(
    model: nn.Module,
    dataset: Dataset,
    *,
    config: TrainConfig,
    device: torch.device | str = "cpu",
    teacher: nn.Module | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Train ``model`` in place for ``config.steps`` updates.

    Args:
        model: The model to train (moved to ``device`` by the caller).
        dataset: Training data.
        config: Hyper-parameters.
        device: Where the batches go.
        teacher: Dense model for knowledge distillation (used when ``config.kd_alpha > 0``).
        on_chunk: Called as ``on_chunk(chunk_index, steps_done)`` after each chunk; may raise to stop early.
        progress: Called with the step count after each step (for progress bars).

    Returns:
        The mean training loss over the last chunk.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.
    """
    if config.steps == 0:
        return 0.0
    device = torch.device(device)
    opt, sched = _optimizer(model, config)
    use_kd = teacher is not None and config.kd_alpha > 0
    if use_kd:
        teacher.eval()
    chunk_len = max(1, math.ceil(config.steps / config.chunks))
    batches = infinite_batches(dataset, config.batch_size, config.seed)
    model.train()
    running, count, last = 0.0, 0, 0.0
    watch = ThroughputWatch("training") if config.steps >= 100 else None
    try:
        for step in range(1, config.steps + 1):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits, y = _per_target(logits_of(model(x)), y)
            loss = F.cross_entropy(logits, y)
            if use_kd:
                with torch.no_grad():
                    t_logits = _per_target(logits_of(teacher(x)), y)[0]
                t = config.kd_temperature
                kd = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(t_logits / t, 1), reduction="batchmean") * t * t
                loss = (1 - config.kd_alpha) * loss + config.kd_alpha * kd
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"training loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
            count += 1
            if watch is not None:
                watch.step()
            if progress is not None:
                progress(step)
            if on_chunk is not None and (step % chunk_len == 0 or step == config.steps):
                model.eval()
                on_chunk((step - 1) // chunk_len, step)
                model.train()
                last, running, count = running / max(count, 1), 0.0, 0
        return running / count if count else last
    finally:
        model.eval()


def _optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    if config.optimizer is Optimizer.ADAMW:
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                                       weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                              weight_decay=config.weight_decay)
    warm = int(config.warmup * config.steps)
    if warm == 0:
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)

    def factor(step: int) -> float:  # linear warm-up to the peak, then cosine decay to 0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step + 1 - warm) / (config.steps + 1 - warm)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _per_target(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` and targets ``[N]``: a sequence model's ``[N, L, C]`` / ``[N, L]`` are flattened."""
    if logits.dim() > 2:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


@torch.inference_mode()
def accuracy(model: nn.Module, dataset: Dataset, *, device: torch.device | str = "cpu",
             batch_size: int = 1024, limit: int | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` in percent.

    Args:
        model: The classifier (set to eval mode here).
        dataset: Samples ``(x, y)``.
        device: Where to run.
        batch_size: Evaluation batch size.
        limit: Use only the first ``limit`` samples (a fixed subset, same for every candidate).

    Returns:
        Accuracy in percent (0-100).
    """
    model.eval()
    device = torch.device(device)
    if limit is not None and limit < len(dataset):  # type: ignore[arg-type]
        dataset = torch.utils.data.Subset(dataset, range(limit))
    correct, total = 0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pred = logits_of(model(x.to(device))).argmax(1)
        correct += (pred.cpu() == y).sum().item()
        total += len(y)
    return 100.0 * correct / max(total, 1)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: Dataset, *, batches: int, batch_size: int = 128, seed: int = 0,
                          device: torch.device | str = "cpu") -> None:
    """Re-estimate every BatchNorm's running statistics on ``batches`` training batches (no weight update).

    Args:
        model: The (pruned) model, modified in place.
        dataset: Training data.
        batches: Number of batches.
        batch_size: Samples per batch.
        seed: Seed of the batch order.
        device: Where to run.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches < 1:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    try:
        it = infinite_batches(dataset, batch_size, seed)
        for _ in range(batches):
            model(next(it)[0].to(device))
    finally:
        for m, mom in zip(norms, saved, strict=True):
            m.momentum = mom
        model.eval()
