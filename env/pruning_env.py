"""``PrunePilot/LayerPruning-v0``: pruning a trained network as a Gymnasium environment (AMC's problem design).

One episode walks the task's prunable units (Torch-Pruning dependency groups) in graph order; each step
chooses how much of one unit to prune. After the last unit the episode terminates: the policy is built and
evaluated by the shared evaluation core (``agent.evaluation.core.evaluate_policy``, or an injected evaluator such as
``SearchSession.evaluate``), the reward function scores the :class:`~agent.evaluation.EvalResult`, and
``info["result"]`` / ``info["policy"]`` carry both. Intermediate steps give reward 0.

Action: ``Box(-1, 1, (1,))``. Non-positive actions mean "keep the unit" (``min_ratio``; in threshold mode a zero
threshold), so an all-zero episode is the dense model. ``a in (0, 1]`` maps linearly to a ratio in
``(min_ratio, max_ratio]`` (``action_mode="ratio"``) or to a normalised-importance threshold in ``(0, 1]``
(``action_mode="threshold"``: channels scoring below ``a`` are removed). The chosen ratio is then clipped by
AMC's budget wall (:mod:`env.budget`), so the finished policy meets the cost targets by prediction and does
not prune past them. Observation: see :mod:`env.features`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agent.constraints import Constraints
from agent.errors import UserInputError
from agent.evaluation import EvalResult, EvalSettings, evaluate_policy, get_engine
from agent.evaluation.sensitivity import DEFAULT_SENSITIVITY_RATIOS, SensitivityProfile, analyse_sensitivity
from agent.measure.latency import resolve_device
from agent.policy import DEFAULT_MAX_RATIO, Policy
from agent.pruning.thresholds import ratio_to_threshold, threshold_to_ratio
from agent.tasks.task import Task

from .budget import BudgetWall
from .config import DEFAULT_EVAL_LIMIT, EnvConfig
from .features import BUDGET_FEATURES, feature_names, observation, unit_features
from .rewards import get_reward

__all__ = ["LayerPruningEnv", "Evaluator", "DEFAULT_FLOPS_TARGET"]

Evaluator = Callable[[Policy], EvalResult]
"""Scores a finished episode's policy (default: :func:`agent.evaluation.core.evaluate_policy`)."""
DEFAULT_FLOPS_TARGET = 0.5
"""FLOPs target when neither ``constraints`` nor ``flops_target`` is given."""


def _build_task() -> Task:
    """The embedded default task (cnn1d-wide on MNIST-1D; trained once, then cached)."""
    from agent.tasks import build_task

    return build_task()


class LayerPruningEnv(gym.Env):
    """Layer-wise pruning of a trained model under cost targets (see the module docstring).

    Args:
        task: The dense model and data (default: the embedded default task, cnn1d-wide on MNIST-1D).
        constraints: Cost targets and accuracy budget (default: ``flops_target`` or 50% FLOPs).
        flops_target: Shortcut for ``Constraints(flops_target=...)`` (replaces the FLOPs target of ``constraints``).
        importance: Criterion ranking channels inside a unit.
        reward: Reward function name (``acc``, ``acc_flops``, ``acc_latency``, ``lagrangian``).
        action_mode: ``ratio`` or ``threshold``.
        min_ratio: Smallest per-unit ratio.
        max_ratio: Largest per-unit ratio.
        round_to: Keep a multiple of this many channels per unit where possible.
        finetune_steps: Short fine-tune steps per episode evaluation (default 0: BatchNorm recalibration only).
        device: Device of evaluations (default ``cpu``, or that of ``settings``).
        eval_limit: Validation samples scored per episode (default 512 without ``settings``).
        measure_latency: Time each episode's model (default: only when there is a latency target).
        settings: Full evaluation settings (the keyword shortcuts above override its fields).
        sensitivity_ratios: Analysed ratios whose accuracy drops enter the observation.
        profile: A ready sensitivity profile (default: ``analyse_sensitivity``, cached on disk).
        evaluator: Scores the finished policy (default: ``evaluate_policy`` with these settings/constraints).
        render_mode: ``None`` or ``"ansi"``.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, task: Task | None = None, constraints: Constraints | None = None, *,
                 flops_target: float | None = None, importance: str = "l2", reward: str = "acc",
                 action_mode: Literal["ratio", "threshold"] = "ratio", min_ratio: float = 0.0,
                 max_ratio: float = DEFAULT_MAX_RATIO, round_to: int | None = None, finetune_steps: int | None = None,
                 device: str | None = None, eval_limit: int | None = None, measure_latency: bool | None = None,
                 settings: EvalSettings | None = None,
                 sensitivity_ratios: tuple[float, ...] = DEFAULT_SENSITIVITY_RATIOS,
                 profile: SensitivityProfile | None = None, evaluator: Evaluator | None = None,
                 render_mode: str | None = None) -> None:
        super().__init__()
        # 1. everything checkable without a model
        self.config = EnvConfig(importance=importance, reward=reward, action_mode=action_mode, min_ratio=min_ratio,
                                max_ratio=max_ratio, round_to=round_to, sensitivity_ratios=tuple(sensitivity_ratios))
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise UserInputError(f"unknown render_mode {render_mode!r}: use None or 'ansi'")
        self.render_mode = render_mode
        if constraints is None:
            constraints = Constraints(flops_target=DEFAULT_FLOPS_TARGET if flops_target is None else flops_target)
        elif flops_target is not None:
            constraints = dataclasses.replace(constraints, flops_target=flops_target)
        self.constraints = constraints
        self.settings = self._settings(settings, finetune_steps, device, eval_limit, measure_latency)
        self.reward_fn = get_reward(self.config.reward)
        # 2. the task and everything derived from it (graph, importance, sensitivity, wall)
        self.task = task if task is not None else _build_task()
        self.engine = get_engine(self.task)
        self.units = list(self.engine.units)
        self.scores = self.engine.importance(self.config.importance, self.settings)
        self.profile = profile if profile is not None else analyse_sensitivity(
            self.task, ratios=self.config.sensitivity_ratios, importance=self.config.importance,
            settings=dataclasses.replace(self.settings, finetune_steps=0))
        missing = [u.name for u in self.units if u.name not in self.profile.accuracy]
        if missing:
            raise UserInputError(f"sensitivity profile does not cover units {missing[:3]}: analyse this task's "
                                 "sensitivity (or pass profile=None)")
        dense_latency = self.engine.dense(self.settings).latency_ms if constraints.latency_target is not None and \
            self.settings.measure_latency else None
        self.wall = BudgetWall(engine=self.engine, scores=self.scores, constraints=constraints,
                               min_ratio=self.config.min_ratio, max_ratio=self.config.max_ratio,
                               round_to=self.config.round_to, dense_latency_ms=dense_latency)
        if not self.wall.reachable():
            raise UserInputError(
                f"target cannot be met even at max pruning (ratio {self.config.max_ratio:g} in every unit misses "
                f"{constraints.to_dict()}): relax the target or raise max_ratio")
        self.evaluator: Evaluator = evaluator or functools.partial(
            evaluate_policy, self.task, settings=self.settings, constraints=constraints)
        self._static = unit_features(self.units, self.profile)
        self.feature_names = feature_names(self.profile.ratios)
        total_share = sum(u.macs_share for u in self.units) or 1.0
        self._remaining = [sum(u.macs_share for u in self.units[i:]) / total_share for i in range(len(self.units))]
        width = len(self.feature_names)
        assert self._static.shape[1] == width - len(BUDGET_FEATURES)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(width,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._t = 0
        self._ratios: dict[str, float] = {}
        self._bounds = (0.0, self.config.max_ratio)
        self.last_result: EvalResult | None = None

    @staticmethod
    def _settings(settings: EvalSettings | None, finetune_steps: int | None, device: str | None,
                  eval_limit: int | None, measure_latency: bool | None) -> EvalSettings:
        base = settings or EvalSettings(eval_limit=DEFAULT_EVAL_LIMIT, measure_latency=False)
        overrides: dict[str, Any] = {}
        if finetune_steps is not None:
            if not isinstance(finetune_steps, int) or finetune_steps < 0:
                raise UserInputError(f"finetune_steps must be an integer >= 0, got {finetune_steps!r}: 0 skips it")
            overrides["finetune_steps"] = finetune_steps
        if device is not None:
            overrides["device"] = str(resolve_device(device))
        if eval_limit is not None:
            if eval_limit < 1:
                raise UserInputError(f"eval_limit must be >= 1, got {eval_limit!r}: e.g. eval_limit=512")
            overrides["eval_limit"] = eval_limit
        if measure_latency is not None:
            overrides["measure_latency"] = bool(measure_latency)
        return dataclasses.replace(base, **overrides) if overrides else base

    # ------------------------------------------------------------------ action mapping
    @property
    def num_units(self) -> int:
        """Steps per episode."""
        return len(self.units)

    def ratio_of_action(self, action: float, index: int) -> float:
        """The ratio action ``action`` asks for at unit ``index`` (before the budget wall)."""
        a = float(np.clip(action, -1.0, 1.0))
        lo, hi = self.config.min_ratio, self.config.max_ratio
        if a <= 0:
            return lo
        if self.config.action_mode == "ratio":
            return lo + a * (hi - lo)
        return threshold_to_ratio(self.scores[self.units[index].name], a, min_ratio=lo, max_ratio=hi)

    def action_for_ratio(self, ratio: float, index: int | None = None) -> np.ndarray:
        """An action that asks for ``ratio`` at unit ``index`` (default: the current unit); for demonstrations."""
        i = self._t if index is None else index
        lo, hi = self.config.min_ratio, self.config.max_ratio
        r = float(np.clip(ratio, lo, hi))
        if r <= lo:
            return np.zeros(1, dtype=np.float32)
        if self.config.action_mode == "ratio":
            a = (r - lo) / (hi - lo)
        else:
            a = ratio_to_threshold(self.scores[self.units[i].name], r)
        return np.asarray([min(1.0, a)], dtype=np.float32)

    # ------------------------------------------------------------------ gym API
    def _observe(self) -> np.ndarray:
        n = len(self.units)
        prev = self._ratios.get(self.units[self._t - 1].name, 0.0) if self._t > 0 else 0.0
        reduced = 1.0 - self.wall.flops_ratio(self._ratios)
        target = self.constraints.flops_target or 1.0
        if self._t >= n:
            return observation(None, reduced=reduced, remaining=0.0, prev_action=prev, wall_low=0.0, wall_high=0.0,
                               target=target, width=len(self.feature_names))
        self._bounds = self.wall.bounds(self._ratios, self._t)
        m = self.config.max_ratio or 1.0
        return observation(self._static[self._t], reduced=reduced, remaining=self._remaining[self._t],
                           prev_action=prev, wall_low=self._bounds[0] / m, wall_high=self._bounds[1] / m,
                           target=target, width=len(self.feature_names))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode at the first unit."""
        super().reset(seed=seed)
        self._t = 0
        self._ratios = {}
        return self._observe(), {"unit": self.units[0].name}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Prune the current unit by ``action``; after the last unit, evaluate the policy and reward it."""
        if self._t >= len(self.units):
            raise RuntimeError("episode is over: call reset() before step()")
        unit = self.units[self._t]
        wanted = self.ratio_of_action(float(np.asarray(action, dtype=np.float64).reshape(-1)[0]), self._t)
        low, high = self._bounds
        ratio = float(min(high, max(low, wanted)))
        self._ratios[unit.name] = ratio
        self._t += 1
        info: dict[str, Any] = {"unit": unit.name, "ratio": ratio, "wanted_ratio": wanted, "wall": (low, high)}
        obs = self._observe()
        if self._t < len(self.units):
            return obs, 0.0, False, False, info
        policy = Policy(dict(self._ratios), self.config.importance, self.config.round_to)
        result = self.evaluator(policy)
        self.last_result = result
        reward = float(self.reward_fn(result, self.constraints, self.engine.dense(self.settings)))
        info.update(policy=policy, result=result, episode_reward=reward)
        return obs, reward, True, False, info

    def render(self) -> str | None:
        """``ansi``: the ratios chosen so far, one ``unit=ratio`` per unit."""
        if self.render_mode != "ansi":
            return None
        return " ".join(f"{u}={r:.3f}" for u, r in self._ratios.items()) or "(no unit pruned yet)"
