"""The one evaluation core: apply a policy -> optional short fine-tune -> accuracy, MACs, params, latency.

The Gymnasium env, every searcher, Optuna objectives and Ray Tune trainables call :func:`evaluate_policy`.
Per-task state that is expensive to build (dependency graph, importance scores, dense metrics) lives in a
:class:`PruningEngine`, built once per task and process and reused.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .constraints import Constraints
from .measure.latency import LatencyConfig, measure_latency, measure_latency_ratio, resolve_device
from .policy import Policy
from .pruning.coverage import build_graph
from .pruning.importance import compute_importance, normalized
from .tasks.task import Task
from .training import TrainConfig, accuracy, recalibrate_batchnorm, train_steps

__all__ = ["EvalSettings", "EvalResult", "DenseMetrics", "PruningEngine", "evaluate_policy", "get_engine"]


@dataclass(frozen=True)
class EvalSettings:
    """How a candidate policy is evaluated (the same for every candidate of a search)."""

    finetune_steps: int = 0
    """Optimizer steps of short fine-tuning after pruning (0 = none, AMC-style)."""
    finetune_lr: float = 0.01
    """Peak learning rate of the short fine-tune (cosine schedule)."""
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
        if self.latency.device != self.device:
            object.__setattr__(self, "latency", dataclasses.replace(self.latency, device=self.device))


@dataclass(frozen=True)
class DenseMetrics:
    """The dense model's metrics under one :class:`EvalSettings` (the denominators of every ratio)."""

    accuracy: float
    """Accuracy in percent on the scored split."""
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
    status: Literal["ok", "failed", "rejected"] = "ok"
    """``ok``; ``failed`` (an exception, NaN loss, OOM); ``rejected`` (skipped before evaluation, e.g. predicted
    far over the latency budget)."""
    accuracy: float = float("nan")
    """Top-1 accuracy in percent on the scored split."""
    dense_accuracy: float = float("nan")
    """The dense model's accuracy on the same split."""
    acc_drop: float = float("nan")
    """``dense_accuracy - accuracy`` in percentage points."""
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

    @property
    def wall_s(self) -> float:
        """Total wall time of the evaluation."""
        return self.times.get("total", 0.0)

    @property
    def ok(self) -> bool:
        """True when the evaluation ran to the end."""
        return self.status == "ok"

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


def _model_mb(model: nn.Module) -> float:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20


class PruningEngine:
    """Per-task state shared by every evaluation: graph, importance scores, dense metrics.

    Built once per task and process by :func:`get_engine`; thread-safe for the caches it fills.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.graph = build_graph(task.model, task.example_input(), ignore_layers=task.ignore_layers, what=task.spec.model)
        self._importance: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}
        self._dense: dict[tuple[Any, ...], DenseMetrics] = {}
        self._lock = threading.RLock()
        self.latency_model: Any = None
        """Optional per-device latency model (``agent.measure.lut.LatencyTable``) used for predictions."""

    @property
    def units(self) -> list:
        """Prunable units in graph order."""
        return self.graph.units

    def importance(self, name: str, settings: EvalSettings) -> dict[str, torch.Tensor]:
        """Per-unit channel scores of criterion ``name`` (computed once, then cached)."""
        key = (name, settings.seed, settings.importance_batches)
        with self._lock:
            if key not in self._importance:
                self._importance[key] = compute_importance(
                    self.graph, name, data=self.task.data.train, batches=settings.importance_batches,
                    seed=settings.seed, device=settings.device)
            return self._importance[key]

    def plan(self, policy: Policy, settings: EvalSettings) -> dict[str, np.ndarray]:
        """Root channels each unit loses under ``policy``."""
        policy.validate(self.graph.unit_names())
        return self.graph.select(self.importance(policy.importance, settings), policy.ratios, policy.round_to)

    def thresholds_to_policy(self, thresholds: Mapping[str, float], *, importance: str, settings: EvalSettings,
                             max_ratio: float = 0.99) -> Policy:
        """Convert per-unit importance thresholds to ratios: channels with normalised score below go."""
        scores = self.importance(importance, settings)
        ratios = {}
        for unit in self.units:
            t = float(thresholds.get(unit.name, 0.0))
            frac = float((normalized(scores[unit.name]) < t).float().mean()) if t > 0 else 0.0
            ratios[unit.name] = min(frac, max_ratio, (unit.channels - 1) / unit.channels)
        return Policy(ratios, importance)

    def build(self, policy: Policy, settings: EvalSettings) -> nn.Module:
        """The pruned model of ``policy`` (a new module; the dense model is untouched)."""
        return self.graph.apply(self.plan(policy, settings))

    def kept_channels(self, plan: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Channels each unit keeps under a plan."""
        return {u.name: u.channels - len(plan.get(u.name, ())) for u in self.units}

    def predict_flops_ratio(self, policy: Policy, settings: EvalSettings) -> float:
        """MACs ratio of ``policy`` predicted from the dense per-layer counts (no model is built)."""
        return self.graph.predict_macs(self.plan(policy, settings)) / self.graph.dense_macs

    def predict_latency(self, kept_channels: Mapping[str, int], settings: EvalSettings, *,
                        dense_ms: float | None = None) -> tuple[float, float] | None:
        """Predicted latency in ms and as a ratio to dense, or None without a latency model.

        The ratio comes from the table alone (self-consistent); the milliseconds scale it by a dense latency
        measured now: ``dense_ms`` when given (the paired rounds of the measurement the prediction is compared
        with), else the session's dense measurement. A table cached under other machine load still predicts
        today's absolute time.
        """
        table = self.latency_model
        if table is None:
            return None
        ratio = float(table.predict_ratio(kept_channels))
        if dense_ms is None:
            dense_ms = self.dense(settings).latency_ms if settings.measure_latency else None
        return ratio * (dense_ms or float(table.predict({}))), ratio

    def attach_latency_model(self, settings: EvalSettings, *, round_to: int | None = None, cache: bool = True,
                             progress: Callable[[int, int], None] | None = None) -> Any:
        """Build (or load from cache) the per-device latency table for ``settings.latency``.

        From then on it serves every prediction: ``latency_pred_ms`` in results, budget walls and
        pre-evaluation rejection. ``progress(done, total)`` is called after each timed layer.
        """
        from .measure.lut import build_latency_table

        with self._lock:
            self.latency_model = build_latency_table(self.graph, input_shape=self.task.input_shape,
                                                     config=settings.latency, round_to=round_to, cache=cache,
                                                     progress=progress)
            return self.latency_model

    def dense(self, settings: EvalSettings) -> DenseMetrics:
        """Dense metrics under ``settings`` (measured once per split / subset / latency setting)."""
        key = (settings.split, settings.eval_limit, settings.device, settings.measure_latency, settings.latency)
        with self._lock:
            if key not in self._dense:
                model = self.task.model
                data = self.task.data.val if settings.split == "val" else self.task.data.test
                dev = resolve_device(settings.device)
                acc = accuracy(model.to(dev), data, device=dev, limit=settings.eval_limit)
                lat = measure_latency(model, self.task.input_shape, config=settings.latency).median_ms \
                    if settings.measure_latency else None
                model.to("cpu")
                self._dense[key] = DenseMetrics(acc, self.graph.dense_macs, self.graph.dense_params, lat)
            return self._dense[key]


_ENGINES: weakref.WeakKeyDictionary[Task, PruningEngine] = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def get_engine(task: Task) -> PruningEngine:
    """The task's :class:`PruningEngine` (built on first use, then reused)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(task)
        if engine is None:
            engine = _ENGINES[task] = PruningEngine(task)
        return engine


def evaluate_policy(
    task: Task,
    policy: Policy,
    *,
    settings: EvalSettings | None = None,
    constraints: Constraints | None = None,
    finetune_steps: int | None = None,
    device: str | None = None,
    on_chunk: Callable[[int, float], None] | None = None,
    return_model: bool = False,
) -> EvalResult | tuple[EvalResult, nn.Module]:
    """Evaluate one pruning policy on a task.

    Args:
        task: The dense model and its data.
        policy: Per-unit ratios and importance criterion.
        settings: Evaluation settings (defaults: no fine-tune, val split, CPU latency at batch 64).
        constraints: Feasibility rules; the result's ``feasible`` / ``reason`` follow them.
        finetune_steps: Shortcut overriding ``settings.finetune_steps``.
        device: Shortcut overriding ``settings.device``.
        on_chunk: Called as ``on_chunk(chunk, accuracy)`` after each fine-tune chunk; may raise to stop.
        return_model: Also return the pruned (and fine-tuned) model.

    Returns:
        The :class:`EvalResult` (and the model when ``return_model``).
    """
    settings = settings or EvalSettings()
    overrides: dict[str, Any] = {}
    if finetune_steps is not None:
        overrides["finetune_steps"] = finetune_steps
    if device is not None:
        overrides["device"] = device
    if overrides:
        settings = dataclasses.replace(settings, **overrides)
    constraints = constraints or Constraints()
    engine = get_engine(task)
    times: dict[str, float] = {}
    t_start = time.perf_counter()
    dense = engine.dense(settings)
    dev = resolve_device(settings.device)

    t0 = time.perf_counter()
    plan = engine.plan(policy, settings)
    model = engine.graph.apply(plan).to(dev)
    times["apply"] = time.perf_counter() - t0
    result = EvalResult(policy, dense_accuracy=dense.accuracy, kept_channels=engine.kept_channels(plan))

    split = task.data.val if settings.split == "val" else task.data.test
    t0 = time.perf_counter()
    if settings.finetune_steps > 0:
        def chunk_done(chunk: int, _steps: int) -> None:
            acc = accuracy(model, split, device=dev, limit=settings.eval_limit)
            result.intermediate.append(acc)
            if on_chunk is not None:
                on_chunk(chunk, acc)

        config = TrainConfig(steps=settings.finetune_steps, lr=settings.finetune_lr,
                             batch_size=settings.finetune_batch, kd_alpha=settings.kd_alpha,
                             kd_temperature=settings.kd_temperature, seed=settings.seed,
                             chunks=settings.finetune_chunks)
        teacher = task.model.to(dev) if settings.kd_alpha > 0 else None
        try:
            train_steps(model, task.data.train, config=config, device=dev, teacher=teacher,
                        on_chunk=chunk_done if (settings.finetune_chunks > 1 or on_chunk) else None)
        finally:
            if teacher is not None:
                task.model.to("cpu")
    elif settings.bn_recalibration_batches > 0 and plan:
        recalibrate_batchnorm(model, task.data.train, batches=settings.bn_recalibration_batches,
                              batch_size=settings.finetune_batch, seed=settings.seed, device=dev)
    times["finetune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result.accuracy = result.intermediate[-1] if result.intermediate else \
        accuracy(model, split, device=dev, limit=settings.eval_limit)
    result.acc_drop = dense.accuracy - result.accuracy
    macs, params = tp.utils.count_ops_and_params(model, task.example_input(device=dev))
    result.macs, result.params = float(macs), float(params)
    result.flops_ratio, result.params_ratio = result.macs / dense.macs, result.params / dense.params
    result.model_mb = _model_mb(model)
    times["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if settings.measure_latency:
        try:  # timed against the dense model in alternating rounds: the ratio survives machine drift
            paired = measure_latency_ratio(model, task.model, task.input_shape, config=settings.latency)
        finally:
            task.model.to("cpu")
        result.latency_ratio, result.latency_ratio_lo, result.latency_ratio_hi = paired.ratio, paired.lo, paired.hi
        result.latency_ms, result.dense_latency_ms = paired.model_ms, paired.dense_ms
        result.latency_rounds, result.threads = paired.rounds, paired.threads
        result.peak_mem_mb = paired.model_stats.peak_mem_mb
    times["measure"] = time.perf_counter() - t0
    predicted = engine.predict_latency(result.kept_channels, settings, dense_ms=result.dense_latency_ms)
    if predicted is not None:
        result.latency_pred_ms = predicted[0]
    times["total"] = time.perf_counter() - t_start
    result.times = times

    if not math.isfinite(result.accuracy):
        result.status, result.reason = "failed", "accuracy is not finite"
    else:
        issues = constraints.check_result(result)
        result.feasible, result.reason = not issues, "; ".join(issues)
    model = model.to("cpu").eval()
    return (result, model) if return_model else result
