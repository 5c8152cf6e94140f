"""The one evaluation core: apply a policy -> optional short fine-tune -> accuracy, MACs, params, latency.

The Gymnasium env, every searcher, Optuna objectives and Ray Tune trainables call :func:`evaluate_policy`.
Per-task state that is expensive to build (dependency graph, importance scores, dense metrics) lives in a
:class:`PruningEngine`, built once per task and process and reused.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch_pruning as tp
from torch import nn

from ..constraints import Constraints
from ..measure.latency import measure_latency_ratio, resolve_device
from ..policy import Policy
from ..tasks.recipes import recipe_for
from ..tasks.task import Task
from ..tasks.training import TrainConfig, recalibrate_batchnorm, train_steps
from .engine import get_engine, model_mb
from .records import EvalResult, EvalSettings, Status

__all__ = ["evaluate_policy"]


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

    Example:
        >>> from agent import Constraints, EvalSettings, Policy, build_task, evaluate_policy, get_engine
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> policy = Policy.uniform(get_engine(task).graph.unit_names(), 0.5)
        >>> result = evaluate_policy(task, policy, settings=EvalSettings(measure_latency=False),
        ...                          constraints=Constraints(flops_target=0.6))
        >>> str(result.status), result.flops_ratio < 0.6, result.feasible
        ('ok', True, True)

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
    result = EvalResult(policy, dense_accuracy=dense.accuracy, kept_channels=engine.kept_channels(plan),
                        metric=task.metric.name)

    t0 = time.perf_counter()
    if settings.finetune_steps > 0:
        def chunk_done(chunk: int, _steps: int) -> None:
            acc = task.score(model, settings.split, device=dev, limit=settings.eval_limit)
            result.intermediate.append(acc)
            if on_chunk is not None:
                on_chunk(chunk, acc)

        recipe = recipe_for(task.model, optimizer=settings.finetune_optimizer, finetune_lr=settings.finetune_lr,
                            warmup=settings.finetune_warmup)
        config = TrainConfig(steps=settings.finetune_steps, lr=recipe.finetune_lr, optimizer=recipe.optimizer,
                             warmup=recipe.warmup, weight_decay=recipe.weight_decay,
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
        task.score(model, settings.split, device=dev, limit=settings.eval_limit)
    result.acc_drop = task.metric.drop(dense=dense.accuracy, value=result.accuracy)
    macs, params = tp.utils.count_ops_and_params(model, task.example_input(device=dev))
    result.macs, result.params = float(macs), float(params)
    result.flops_ratio, result.params_ratio = result.macs / dense.macs, result.params / dense.params
    result.model_mb = model_mb(model)
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
        result.latency_pred_ms = predicted[0]  # predicted before the table learns this measurement
        engine.observe_latency(result.kept_channels, result.latency_ratio)
    times["total"] = time.perf_counter() - t_start
    result.times = times

    if not math.isfinite(result.accuracy):
        result.status, result.reason = Status.FAILED, f"{task.metric.name} is not finite"
    else:
        issues = constraints.check_result(result)
        result.feasible, result.reason = not issues, "; ".join(issues)
    model = model.to("cpu").eval()
    return (result, model) if return_model else result
