"""Iterative pruning: reach a policy in K steps along a sparsity schedule, fine-tuning between steps.

Each unit's ratio grows from ``initial_fraction * r`` to its final ratio ``r`` along TF-MOT's PolynomialDecay,
``s_t = s_f + (s_i - s_f) (1 - t/T)^p`` (``linear`` is ``p = 1``). Channels are ranked once, on the dense
model, so the plans of successive steps nest (step ``t`` removes a superset of step ``t-1``'s channels) and the
last step's plan is exactly the one-shot plan of the policy.

Step ``t`` prunes the *fine-tuned* model of step ``t-1`` further: the channels new in the plan are mapped
from dense coordinates to the current model's and removed by replaying Torch-Pruning's dependency graph of
that model (:meth:`PruningGraph.apply`). A step whose plan equals the previous one (e.g. channel rounding kept
every count unchanged) prunes nothing and skips its fine-tune; its record says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserInputError
from ..evaluation import EvalSettings, get_engine
from ..measure.latency import resolve_device
from ..policy import Policy
from ..pruning.graph import PruningGraph
from ..pruning.plan_cost import predicted_flops_ratio, predicted_params_ratio
from ..tasks.task import Task
from ..tasks.training import recalibrate_batchnorm
from .finetune import SCHEDULES, FinalTuneConfig, finetune_model

__all__ = ["IterativeStep", "IterativeOutcome", "polynomial_decay", "schedule_fractions", "step_ratios",
           "iterative_prune", "describe_steps"]

Plan = dict[str, np.ndarray]


def polynomial_decay(step: int, total: int, *, initial: float, final: float, power: float = 3.0) -> float:
    """TF-MOT's PolynomialDecay sparsity at ``step`` of ``total``: ``final + (initial - final)(1 - step/total)^power``."""
    if total < 1 or not 0 <= step <= total:
        raise ValueError(f"step must be in [0, total] with total >= 1, got step={step} total={total}")
    return final + (initial - final) * (1.0 - step / total) ** power


def schedule_fractions(*, steps: int, schedule: str = "poly", power: float = 3.0, initial: float = 0.0) -> list[float]:
    """Fraction of the final sparsity reached after each of ``steps`` steps (the last is always 1).

    Args:
        steps: Number of pruning steps K.
        schedule: ``linear`` (power 1) or ``poly``.
        power: Exponent of the ``poly`` schedule.
        initial: Fraction at step 0 (before the first step), in [0, 1).
    """
    if schedule not in SCHEDULES:
        raise UserInputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}: e.g. poly")
    if not 0 <= initial < 1:
        raise UserInputError(f"initial sparsity fraction must be in [0, 1), got {initial!r}: e.g. 0")
    p = 1.0 if schedule == "linear" else power
    return [polynomial_decay(t, steps, initial=initial, final=1.0, power=p) for t in range(1, steps + 1)]


def step_ratios(policy: Policy, fraction: float) -> dict[str, float]:
    """Per-unit ratios of one step: each unit's final ratio scaled by ``fraction`` (non-decreasing in it)."""
    return {unit: ratio * fraction for unit, ratio in policy.ratios.items()}


@dataclass
class IterativeStep:
    """What one pruning step did."""

    step: int
    """1-based step index."""
    fraction: float
    """Fraction of the final per-unit ratios reached by this step."""
    pruned: bool
    """Whether the step removed any channel (False: its fine-tune was skipped)."""
    channels_removed: int
    """Channels removed by this step."""
    channels_removed_total: int
    """Channels removed so far (dense coordinates)."""
    kept_channels: dict[str, int]
    """Channels kept per unit after the step."""
    flops_ratio: float
    """MACs of the step's model relative to dense."""
    params_ratio: float
    """Parameters of the step's model relative to dense."""
    finetuned: bool
    """Whether the step fine-tuned."""
    finetune_steps: int
    """Optimizer steps of its fine-tune (0 when skipped)."""
    accuracy: float
    """Accuracy (percent, val split) after the step and its fine-tune."""
    note: str = ""
    """Why the fine-tune was skipped, if it was."""
    wall_s: float = 0.0
    """Wall seconds of the step."""


@dataclass
class IterativeOutcome:
    """The final model of iterative pruning and how it got there."""

    model: nn.Module
    """The pruned, fine-tuned model (CPU, eval mode); its channels are exactly ``plan``'s complement."""
    plan: Plan
    """Root channels removed per unit in dense coordinates (equals the one-shot plan of the policy)."""
    steps: list[IterativeStep] = field(default_factory=list)
    """One record per step."""

    def records(self) -> list[dict[str, Any]]:
        """The step records as JSON-ready dicts."""
        return [dataclasses.asdict(s) for s in self.steps]


def _nests(inner: Plan, outer: Plan) -> bool:
    return all(set(idx.tolist()) <= set(outer.get(u, np.empty(0, np.int64)).tolist()) for u, idx in inner.items())


def _to_current(dense: PruningGraph, current: PruningGraph, unit: str, removed_before: np.ndarray,
                new: np.ndarray) -> np.ndarray:
    """Map dense root indices ``new`` of ``unit`` to root indices of the already-pruned ``current`` graph."""
    kept = np.setdiff1d(np.arange(dense.unit_by_name[unit].channels), removed_before)
    position = {int(c): i for i, c in enumerate(kept)}
    idx = np.asarray([position[int(c)] for c in new], dtype=np.int64)
    root = dense.root_of[unit]
    if current.root_of.get(unit) == root:
        return idx
    # Torch-Pruning chose another root layer for the pruned model's group: translate through the layer that
    # was the dense root (its index -> root index mapping is in the group's items)
    for item in current.groups[unit]:
        mod = item.dep.target.module
        if current.name_of.get(mod) == root and current.dg.is_out_channel_pruning_fn(item.dep.handler):
            mapping = {int(i): int(r) for i, r in zip(item.idxs, item.root_idxs, strict=True)}
            return np.asarray(sorted(mapping[int(i)] for i in idx), dtype=np.int64)
    raise AssertionError(f"unit {unit!r}: dense root layer {root!r} not found in the pruned model's group")


def _prune_further(model: nn.Module, dense: PruningGraph, example: torch.Tensor, before: Plan, after: Plan) -> nn.Module:
    """Remove the channels of ``after`` not yet removed in ``before`` from ``model`` (pruned per ``before``)."""
    current = PruningGraph(model, example, prune_embed=dense.prune_embed)
    increment: Plan = {}
    for unit, idx in after.items():
        done = before.get(unit, np.empty(0, np.int64))
        new = np.setdiff1d(idx, done)
        if len(new):
            if unit not in current.unit_by_name:
                raise AssertionError(f"unit {unit!r} is not prunable in the pruned model any more")
            increment[unit] = _to_current(dense, current, unit, done, new)
    return current.apply(increment)


def iterative_prune(task: Task, policy: Policy, *, steps: int, schedule: str = "poly", power: float = 3.0,
                    initial_fraction: float = 0.0, finetune: FinalTuneConfig | None = None,
                    settings: EvalSettings | None = None,
                    on_step: Callable[[IterativeStep], None] | None = None) -> IterativeOutcome:
    """Prune ``task``'s dense model to ``policy`` in ``steps`` steps, fine-tuning after each step that pruned.

    Example:
        >>> from agent import EvalSettings, FinalTuneConfig, Policy, build_task, get_engine, iterative_prune
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> policy = Policy.uniform(get_engine(task).graph.unit_names(), 0.5)
        >>> outcome = iterative_prune(task, policy, steps=2, finetune=FinalTuneConfig(epochs=1),
        ...                           settings=EvalSettings(measure_latency=False))
        >>> len(outcome.steps)
        2

    Args:
        task: The dense model and data.
        policy: The final policy (per-unit ratios, importance, rounding).
        steps: Number of pruning steps K (1 = one-shot).
        schedule: ``linear`` or ``poly``.
        power: Exponent of ``poly``.
        initial_fraction: Fraction of the final ratios before the first step.
        finetune: Fine-tune of each step (``epochs`` is per step; None or 0 epochs = no fine-tune, only
            BatchNorm re-estimation on ``settings.bn_recalibration_batches`` training batches).
        settings: Importance criterion data, device, batch size, seed and the val subset used for the
            per-step accuracy.
        on_step: Called with each step's record as it finishes.

    Returns:
        The final model, its plan (dense coordinates) and the step records.
    """
    settings = settings or EvalSettings()
    finetune = finetune or FinalTuneConfig()
    engine = get_engine(task)
    dense = engine.graph
    policy.validate(dense.unit_names())
    scores = engine.importance(policy.importance, settings)
    fractions = schedule_fractions(steps=steps, schedule=schedule, power=power, initial=initial_fraction)
    dev = resolve_device(settings.device)
    example = task.example_input()
    plan: Plan = {}
    model: nn.Module | None = None
    records: list[IterativeStep] = []
    for t, frac in enumerate(fractions, start=1):
        t0 = time.monotonic()
        ratios = policy.ratios if t == len(fractions) else step_ratios(policy, frac)
        new_plan = dense.select(scores, ratios, policy.round_to)
        if not _nests(plan, new_plan):
            raise AssertionError(f"step {t}: plans do not nest (ratios must not shrink between steps)")
        removed = sum(len(v) for v in new_plan.values()) - sum(len(v) for v in plan.values())
        if model is None:
            model = dense.apply(new_plan)
        elif removed:
            model = _prune_further(model, dense, example, plan, new_plan)
        plan = new_plan
        rec = IterativeStep(
            step=t, fraction=frac, pruned=removed > 0, channels_removed=removed,
            channels_removed_total=sum(len(v) for v in plan.values()), kept_channels=engine.kept_channels(plan),
            flops_ratio=predicted_flops_ratio(dense, plan), params_ratio=predicted_params_ratio(dense, plan),
            finetuned=False, finetune_steps=0,
            accuracy=float("nan"))
        if removed > 0:
            done = finetune_model(model, task, config=finetune, device=str(dev), batch_size=settings.finetune_batch,
                                  seed=settings.seed + t)
            rec.finetuned, rec.finetune_steps = done["steps"] > 0, done["steps"]
            if not rec.finetuned:
                rec.note = "no fine-tune configured (BatchNorm statistics re-estimated instead)"
                recalibrate_batchnorm(model, task.data.train, batches=settings.bn_recalibration_batches,
                                      batch_size=settings.finetune_batch, seed=settings.seed)
            rec.accuracy = task.score(model.to(dev), "val", device=dev, limit=settings.eval_limit)
            model.to("cpu")
        else:
            rec.note = "pruned nothing (channel rounding left every kept count unchanged): fine-tune skipped"
            rec.accuracy = records[-1].accuracy if records else task.score(model.to(dev), "val", device=dev,
                                                                            limit=settings.eval_limit)
            model.to("cpu")
        rec.wall_s = round(time.monotonic() - t0, 3)
        records.append(rec)
        if on_step is not None:
            on_step(rec)
    assert model is not None
    return IterativeOutcome(model.eval(), plan, records)


def describe_steps(records: list[Mapping[str, Any]]) -> list[str]:
    """One human-readable line per step record (for the CLI and reports)."""
    lines = []
    for r in records:
        what = f"removed {r['channels_removed']} channels" if r["pruned"] else "pruned nothing"
        tune = f"fine-tuned {r['finetune_steps']} steps" if r["finetuned"] else "no fine-tune"
        lines.append(f"step {r['step']}: {what} (FLOPs {r['flops_ratio']:.3f}x), {tune}, acc {r['accuracy']:.2f}%")
    return lines
