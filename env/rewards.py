"""Episode rewards: a registry of small pure functions ``(EvalResult, Constraints, DenseMetrics) -> float``.

Every function scores the evaluation of a finished episode's policy; larger is better. Failed evaluations
get the function's worst value so an agent learns to avoid them.

=============== ==========================================================================================
name            reward
=============== ==========================================================================================
``acc``         AMC's ``R_err = -error`` (error as a fraction); a hard budget: a result that misses a cost
                target (FLOPs / params / latency) gets ``-1 - error``, below every feasible one.
``acc_flops``   AMC's ``R_FLOPs = -error * log(MACs)``: trades error against (log) compute.
``acc_latency`` ``accuracy - penalty * max(0, latency_ratio / target - 1)``: accuracy (fraction) with a linear
                penalty above the latency target (the FLOPs ratio stands in when latency is not known).
``lagrangian``  ``accuracy - mu_acc * max(0, drop - max_drop) / 100 - mu_lat * max(0, lat / target - 1)``:
                accuracy with fixed multipliers on accuracy-drop and latency violations.
=============== ==========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

from agent.constraints import Constraints
from agent.errors import user_error
from agent.evaluation import DenseMetrics, EvalResult

__all__ = ["REWARDS", "RewardFn", "get_reward", "reward_names", "latency_ratio_of", "latency_target_ratio",
           "acc_reward", "acc_flops_reward", "acc_latency_reward", "lagrangian_reward"]

RewardFn = Callable[[EvalResult, Constraints, DenseMetrics], float]
"""A reward: ``fn(result, constraints, dense) -> float`` (pure; larger is better)."""

LATENCY_PENALTY = 1.0
"""Reward lost per unit of relative latency overshoot (``acc_latency`` and ``lagrangian``)."""
ACC_DROP_MULTIPLIER = 1.0
"""Lagrange multiplier of the accuracy-drop violation, per point of drop over the budget (``lagrangian``)."""


def _error(result: EvalResult) -> float:
    """The metric's bounded error in [0, 1]: top-1 error, or 1 - 1/perplexity (1 for a failed evaluation)."""
    if not result.ok:
        return 1.0
    return result.metric_info.error(result.accuracy)


def latency_ratio_of(result: EvalResult, dense: DenseMetrics) -> float:
    """The result's latency relative to dense: measured, else predicted, else its FLOPs ratio (proxy)."""
    if result.latency_ratio is not None and math.isfinite(result.latency_ratio):
        return float(result.latency_ratio)
    reference = result.dense_latency_ms or dense.latency_ms
    if result.latency_pred_ms is not None and reference:
        return float(result.latency_pred_ms / reference)
    return float(result.flops_ratio)


def latency_target_ratio(constraints: Constraints, dense: DenseMetrics) -> float | None:
    """The latency target as a ratio of dense latency (None without a target or a dense latency to divide by)."""
    target = constraints.latency_target
    return None if target is None else target.as_ratio(dense.latency_ms)


def _latency_overshoot(result: EvalResult, constraints: Constraints, dense: DenseMetrics) -> float:
    """Relative excess over the latency target (0 when met or when there is no target)."""
    target = latency_target_ratio(constraints, dense)
    if target is None:
        return 0.0
    return max(0.0, latency_ratio_of(result, dense) / target - 1.0)


def _misses_cost(result: EvalResult, constraints: Constraints) -> bool:
    bound_ratio, bound_ms = result.latency_bound  # the upper end of the measured interval (one rule)
    return bool(constraints.violations(flops_ratio=result.flops_ratio, params_ratio=result.params_ratio,
                                       latency_ratio=bound_ratio, latency_ms=bound_ms, acc_drop=None))


def acc_reward(result: EvalResult, constraints: Constraints, dense: DenseMetrics) -> float:
    """AMC ``R_err``: ``-error``; ``-1 - error`` when a cost target is missed (hard budget)."""
    del dense
    err = _error(result)
    if not result.ok:
        return -2.0
    return -err - (1.0 if _misses_cost(result, constraints) else 0.0)


def acc_flops_reward(result: EvalResult, constraints: Constraints, dense: DenseMetrics) -> float:
    """AMC ``R_FLOPs``: ``-error * log(MACs)`` (a failure scores as error 1 at the dense MACs)."""
    del constraints
    if not result.ok or not (math.isfinite(result.macs) and result.macs > 1):
        return -math.log(max(dense.macs, math.e))
    return -_error(result) * math.log(result.macs)


def acc_latency_reward(result: EvalResult, constraints: Constraints, dense: DenseMetrics) -> float:
    """Accuracy (fraction) minus :data:`LATENCY_PENALTY` times the relative overshoot of the latency target."""
    if not result.ok:
        return -1.0
    return 1.0 - _error(result) - LATENCY_PENALTY * _latency_overshoot(result, constraints, dense)


def lagrangian_reward(result: EvalResult, constraints: Constraints, dense: DenseMetrics) -> float:
    """Accuracy with multipliers on the accuracy-drop and latency violations."""
    if not result.ok:
        return -1.0
    drop_excess = 0.0
    if constraints.max_acc_drop is not None and math.isfinite(result.acc_drop):
        drop_excess = max(0.0, result.acc_drop - constraints.max_acc_drop)
    return (1.0 - _error(result) - ACC_DROP_MULTIPLIER * drop_excess / result.metric_info.scale
            - LATENCY_PENALTY * _latency_overshoot(result, constraints, dense))


REWARDS: dict[str, RewardFn] = {
    "acc": acc_reward,
    "acc_flops": acc_flops_reward,
    "acc_latency": acc_latency_reward,
    "lagrangian": lagrangian_reward,
}
"""Registry: reward name -> function."""


def reward_names() -> list[str]:
    """Registered reward names."""
    return list(REWARDS)


def get_reward(name: str) -> RewardFn:
    """The reward registered as ``name``.

    Raises:
        UserInputError: Unknown name.
    """
    if name not in REWARDS:
        raise user_error("unknown reward", name, f"choose one of {', '.join(REWARDS)}")
    return REWARDS[name]
