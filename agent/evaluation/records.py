"""What an evaluation returns and is run with: :class:`EvalSettings`, :class:`DenseMetrics`, :class:`EvalResult`."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Literal

from ..measure.latency import LatencyConfig
from ..policy import Policy
from ..tasks.metrics import METRICS, Metric
from ..tasks.recipes import Optimizer

__all__ = ["DenseMetrics", "EvalResult", "EvalSettings", "Status"]


class Status(enum.StrEnum):
    """Every state an evaluation can end in (the ``status`` column of ``results.csv``).

    A ``str`` enum: a member equals, prints and serialises as its value (``Status.OK == "ok"``,
    ``f"{Status.OK}" == "ok"``, ``json.dumps(Status.OK) == '"ok"'``), so logs and JSON keep the same text.

    Example:
        >>> Status("pruned") is Status.PRUNED, f"{Status.OK}"
        (True, 'ok')
    """

    OK = "ok"
    """The evaluation ran to the end (it may still be infeasible)."""
    FAILED = "failed"
    """An exception, a NaN loss or out-of-memory inside the evaluation."""
    REJECTED = "rejected"
    """Skipped before evaluation (e.g. predicted far over a cost target)."""
    PRUNED = "pruned"
    """Stopped early during its short fine-tune (an Optuna pruner or Ray's ASHA)."""


@dataclass(frozen=True)
class EvalSettings:
    """How a candidate policy is evaluated (the same for every candidate of a search)."""

    finetune_steps: int = 0
    """Optimizer steps of short fine-tuning after pruning (0 = none, AMC-style)."""
    finetune_lr: float | None = None
    """Peak learning rate of the short fine-tune (cosine schedule); None = the model family's recipe (0.01 for
    CNNs, 2e-4 for transformers, see :mod:`agent.tasks.recipes`)."""
    finetune_optimizer: Optimizer | None = None
    """Optimizer of the short fine-tune; None = the model family's (SGD for CNNs, AdamW for transformers)."""
    finetune_warmup: float | None = None
    """Warm-up fraction of the short fine-tune's steps; None = the model family's (0 for CNNs, 0.1 for
    transformers)."""
    finetune_batch: int = 128
    """Batch size of the short fine-tune."""
    finetune_chunks: int = 1
    """Split fine-tuning into chunks and score accuracy after each (for early stopping)."""
    bn_recalibration_batches: int = 8
    """Without fine-tuning, re-estimate BatchNorm statistics of the pruned model on this many training batches
    (cheap forward passes; pruning shifts activations and stale statistics hide a candidate's quality)."""
    kd_alpha: float = 0.0
    """Knowledge-distillation weight from the dense model during fine-tuning (0 = off)."""
    kd_temperature: float = 4.0
    """Distillation temperature."""
    split: Literal["val", "test"] = "val"
    """Data split scored: searches use ``val``; ``test`` is for final reports."""
    eval_limit: int | None = None
    """Score only the first N samples of the split (a fixed subset; None = all)."""
    device: str = "cpu"
    """Device for fine-tuning, scoring and latency."""
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    """Latency measurement settings (its device is replaced by ``device``)."""
    measure_latency: bool = True
    """Time each candidate (turn off for quick FLOPs-only studies)."""
    seed: int = 0
    """Seed of fine-tuning data order and of data-driven importance."""
    importance_batches: int = 8
    """Calibration batches (64 samples each) for ``taylor`` / ``activation`` importance."""

    def __post_init__(self) -> None:
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}: pass 0 to skip fine-tuning")
        if self.split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got {self.split!r}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be >= 1 or None, got {self.eval_limit}")
        if self.finetune_optimizer is not None:
            object.__setattr__(self, "finetune_optimizer", Optimizer(self.finetune_optimizer))
        if self.finetune_warmup is not None and not 0 <= self.finetune_warmup < 1:
            raise ValueError(f"finetune_warmup must be in [0, 1), got {self.finetune_warmup}: e.g. 0.1")
        if self.latency.device != self.device:
            object.__setattr__(self, "latency", dataclasses.replace(self.latency, device=self.device))


@dataclass(frozen=True)
class DenseMetrics:
    """The dense model's metrics under one :class:`EvalSettings` (the denominators of every ratio)."""

    accuracy: float
    """The task's metric on the scored split (accuracy in percent, or perplexity)."""
    macs: float
    """Multiply-accumulates of one sample."""
    params: float
    """Parameter count."""
    latency_ms: float | None
    """Median latency of one batch (None when latency is not measured)."""


@dataclass
class EvalResult:
    """Everything measured about one candidate policy."""

    policy: Policy
    """The evaluated policy."""
    status: Status = Status.OK
    """How the evaluation ended (a plain string such as ``"failed"`` is converted to its :class:`Status`)."""
    accuracy: float = float("nan")
    """The task's metric on the scored split: top-1 accuracy in percent, or perplexity (see ``metric``)."""
    dense_accuracy: float = float("nan")
    """The dense model's metric on the same split."""
    acc_drop: float = float("nan")
    """How much worse than dense (:meth:`Metric.drop`): ``dense_accuracy - accuracy`` points for accuracy,
    ``accuracy - dense_accuracy`` for perplexity."""
    metric: str = "accuracy"
    """Name of the metric in ``accuracy`` (see :data:`agent.tasks.metrics.METRICS`)."""
    macs: float = float("nan")
    """MACs of one sample (Torch-Pruning's counter)."""
    params: float = float("nan")
    """Parameter count."""
    flops_ratio: float = float("nan")
    """MACs relative to dense."""
    params_ratio: float = float("nan")
    """Parameters relative to dense."""
    latency_ms: float | None = None
    """Measured latency of one batch: ``latency_ratio * dense_latency_ms`` (the same paired rounds)."""
    latency_ratio: float | None = None
    """Measured latency relative to dense (geometric mean of paired rounds)."""
    latency_ratio_lo: float | None = None
    """Lower end of the measured ratio's 90% interval."""
    latency_ratio_hi: float | None = None
    """Upper end of the measured ratio's 90% interval: a latency target is met only when this is under it."""
    dense_latency_ms: float | None = None
    """The dense model's latency in the same paired rounds (the reference of ``latency_ms`` and
    ``latency_pred_ms``)."""
    latency_rounds: int | None = None
    """Paired rounds the latency measurement took."""
    threads: int | None = None
    """Torch threads the latency was measured with."""
    latency_pred_ms: float | None = None
    """Latency predicted by the per-device latency model (when one is attached): the predicted ratio times
    ``dense_latency_ms``, so prediction and measurement share one dense reference."""
    peak_mem_mb: float | None = None
    """Peak GPU memory while timing (None on CPU)."""
    model_mb: float = float("nan")
    """Size of parameters and buffers in MiB."""
    feasible: bool = False
    """Whether all constraints hold."""
    reason: str = ""
    """Why it is infeasible / failed / rejected (empty when feasible)."""
    kept_channels: dict[str, int] = field(default_factory=dict)
    """Channels kept per unit."""
    intermediate: list[float] = field(default_factory=list)
    """Accuracy after each fine-tune chunk (when chunks > 1)."""
    times: dict[str, float] = field(default_factory=dict)
    """Wall seconds per phase: apply, finetune, score, measure, total."""
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    """``EvalSettings`` fields this candidate was evaluated with instead of the search's own (e.g. a searched
    ``finetune_steps``); empty for almost every result."""

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a JSON-ready dict (``best_policy.json``, ``summary.json``, ``evaluate``)."""
        r = self
        return {
            "status": r.status.value, "accuracy": r.accuracy, "dense_accuracy": r.dense_accuracy, "acc_drop": r.acc_drop,
            **({"metric": r.metric} if r.metric != "accuracy" else {}),
            "flops_ratio": r.flops_ratio, "params_ratio": r.params_ratio, "macs": r.macs, "params": r.params,
            "latency_ms": r.latency_ms, "latency_ratio": r.latency_ratio, "latency_pred_ms": r.latency_pred_ms,
            "latency_ratio_lo": r.latency_ratio_lo, "latency_ratio_hi": r.latency_ratio_hi,
            "dense_latency_ms": r.dense_latency_ms, "latency_rounds": r.latency_rounds, "threads": r.threads,
            "peak_mem_mb": r.peak_mem_mb, "model_mb": r.model_mb, "feasible": r.feasible, "reason": r.reason,
            "kept_channels": r.kept_channels, "wall_s": r.wall_s,
            **({"settings_overrides": r.settings_overrides} if r.settings_overrides else {}),
        }

    @property
    def quality(self) -> float:
        """The metric oriented so that larger is better: what every ranking of results sorts by."""
        return self.metric_info.quality(self.accuracy)

    @property
    def metric_info(self) -> Metric:
        """The :class:`Metric` named by ``metric``."""
        return METRICS[self.metric]

    @property
    def wall_s(self) -> float:
        """Total wall time of the evaluation."""
        return self.times.get("total", 0.0)

    @property
    def ok(self) -> bool:
        """True when the evaluation ran to the end."""
        return self.status is Status.OK

    @property
    def latency_bound(self) -> tuple[float | None, float | None]:
        """``(ratio, ms)`` a latency target is checked against: the upper end of the measured interval.

        This is the one rule for "latency target met" (see :meth:`Constraints.check_result`). Rows logged before
        intervals existed fall back to the point estimate.
        """
        if self.latency_ratio is None:
            return None, self.latency_ms
        hi = self.latency_ratio_hi if self.latency_ratio_hi is not None else self.latency_ratio
        ms = hi * self.dense_latency_ms if self.dense_latency_ms else self.latency_ms
        return hi, ms
