"""Typed configuration of the pruning env (validated before any task is built or model evaluated)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from agent.errors import user_error
from agent.evaluation.sensitivity import DEFAULT_SENSITIVITY_RATIOS
from agent.policy import DEFAULT_MAX_RATIO
from agent.pruning.importance import check_importance

from .rewards import get_reward

__all__ = ["EnvConfig", "ACTION_MODES", "DEFAULT_EVAL_LIMIT"]

ACTION_MODES = ("ratio", "threshold")
"""How an action is read: a pruning ratio, or a normalised-importance threshold."""
DEFAULT_EVAL_LIMIT = 512
"""Validation samples scored per episode when the caller gives no evaluation settings (AMC: a subset)."""


@dataclass(frozen=True)
class EnvConfig:
    """What the agent controls and how an episode is scored."""

    importance: str = "l2"
    """Importance criterion ranking channels inside a unit (and defining thresholds in threshold mode)."""
    reward: str = "acc"
    """Reward function name (see ``env.rewards.REWARDS``)."""
    action_mode: Literal["ratio", "threshold"] = "ratio"
    """``ratio``: the action sets the unit's pruning ratio; ``threshold``: it sets a normalised-importance
    threshold and channels scoring below it are removed."""
    min_ratio: float = 0.0
    """Smallest per-unit pruning ratio."""
    max_ratio: float = DEFAULT_MAX_RATIO
    """Largest per-unit pruning ratio (< 1)."""
    round_to: int | None = None
    """Keep a multiple of this many channels per unit where possible."""
    sensitivity_ratios: tuple[float, ...] = DEFAULT_SENSITIVITY_RATIOS
    """Ratios of the sensitivity analysis whose accuracy drops enter the observation."""

    def __post_init__(self) -> None:
        check_importance(self.importance)
        get_reward(self.reward)
        if self.action_mode not in ACTION_MODES:
            raise user_error("unknown action_mode", self.action_mode, f"choose one of {', '.join(ACTION_MODES)}")
        for name in ("min_ratio", "max_ratio"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1):
                raise user_error(f"{name} must be in [0, 1), got", v, "e.g. min_ratio=0.0, max_ratio=0.9")
        if self.min_ratio > self.max_ratio:
            raise user_error("min_ratio must not exceed max_ratio, got", (self.min_ratio, self.max_ratio),
                             "e.g. min_ratio=0.0, max_ratio=0.9")
        if self.round_to is not None and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise user_error("round_to must be a positive integer, got", self.round_to, "e.g. round_to=8")
        ratios = tuple(float(r) for r in self.sensitivity_ratios)
        if not ratios or any(not 0 < r < 1 for r in ratios):
            raise user_error("sensitivity_ratios must be in (0, 1), got", self.sensitivity_ratios,
                             "e.g. (0.1, 0.3, 0.5, 0.7, 0.9)")
        object.__setattr__(self, "sensitivity_ratios", tuple(sorted(ratios)))
