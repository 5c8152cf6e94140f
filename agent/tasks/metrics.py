"""Quality metrics of tasks: top-1 accuracy for classifiers, perplexity for language models.

A task's metric is named by its data (:attr:`agent.tasks.datasets.DataSplits.metric`). Every stage that compares
a pruned model with the dense one goes through :meth:`Metric.drop` (positive = worse, in the metric's units), so
``--max-metric-drop`` means "at most this much worse" whatever the metric's direction.

Example:
    >>> METRICS["accuracy"].drop(dense=90.0, value=88.5), METRICS["perplexity"].drop(dense=4.0, value=4.5)
    (1.5, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..outputs import logits_of
from .training import accuracy

__all__ = ["METRICS", "Metric", "perplexity", "score"]


@dataclass(frozen=True)
class Metric:
    """One quality metric: its name, direction and display unit."""

    name: str
    """The name (``accuracy``, ``perplexity``): the ``metric`` column of ``results.csv``."""
    higher_is_better: bool
    """Direction: accuracy goes up, perplexity goes down."""
    unit: str
    """Display suffix of a value (``%`` or empty)."""
    drop_unit: str
    """Display suffix of a drop (``points``)."""
    scale: float
    """A drop that counts as the whole range (100 accuracy points; 10 perplexity): normalises violations and
    rewards across metrics."""

    def drop(self, *, dense: float, value: float) -> float:
        """How much worse ``value`` is than ``dense`` (negative when better)."""
        return dense - value if self.higher_is_better else value - dense

    def quality(self, value: float) -> float:
        """``value`` oriented so that larger is better (for ranking)."""
        return value if self.higher_is_better else -value

    def error(self, value: float) -> float:
        """A bounded error in [0, 1] (1 - accuracy, or 1 - 1/perplexity); 1 for a non-finite value."""
        if not math.isfinite(value):
            return 1.0
        raw = 1.0 - value / 100.0 if self.higher_is_better else 1.0 - 1.0 / max(value, 1.0)
        return min(1.0, max(0.0, raw))

    def text(self, value: float) -> str:
        """``value`` for display (``87.50%``, ``4.123``)."""
        return f"{value:.2f}{self.unit}" if self.unit else f"{value:.3f}"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, "%", "points", 100.0),
    "perplexity": Metric("perplexity", False, "", "", 10.0),
}
"""Registry of metrics by name."""


@torch.inference_mode()
def perplexity(model: nn.Module, dataset: Dataset, *, device: torch.device | str = "cpu", batch_size: int = 256,
               limit: int | None = None) -> float:
    """Per-token perplexity ``exp(mean cross-entropy)`` of a next-token model on ``(ids, next ids)`` windows.

    Args:
        model: Maps ``[N, L]`` token ids to ``[N, L, vocab]`` logits (set to eval mode here).
        dataset: Samples ``(ids, targets)`` of equal length.
        device: Where to run.
        batch_size: Evaluation batch size.
        limit: Use only the first ``limit`` windows.

    Returns:
        The perplexity (>= 1; inf when the loss overflows).
    """
    model.eval()
    device = torch.device(device)
    if limit is not None and limit < len(dataset):  # type: ignore[arg-type]
        dataset = Subset(dataset, range(limit))
    total, count = 0.0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits = logits_of(model(x.to(device)))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum").item()
        count += y.numel()
    mean = total / max(count, 1)
    return math.exp(mean) if mean < 700 else math.inf


def score(model: nn.Module, dataset: Dataset, *, metric: str = "accuracy", device: torch.device | str = "cpu",
          limit: int | None = None) -> float:
    """The value of ``metric`` for ``model`` on ``dataset`` (accuracy in percent, or perplexity)."""
    if metric == "perplexity":
        return perplexity(model, dataset, device=device, limit=limit)
    return accuracy(model, dataset, device=device, limit=limit)
