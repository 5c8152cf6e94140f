"""Options of the RL searcher (:class:`RLConfig`, ``--method rl``): the one place a new option is added.

Each field with a docstring is a ``search`` flag unless declared ``cli=False`` (see :mod:`agent.searchers.options`);
this module imports no heavy library (the env's names are checked when a config is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ...errors import user_error
from ..options import from_options, option, positive_int

if TYPE_CHECKING:
    from ...constraints import Constraints

__all__ = ["RLConfig", "RL_ALGOS"]

RL_ALGOS = ("td3", "ddpg", "ppo")
"""Supported stable-baselines3 algorithms."""


@dataclass(frozen=True)
class RLConfig:
    """Settings of the RL searcher (from ``SearchConfig.options``; CLI ``--rl-algo``, ``--episodes`` ...)."""

    cli_group: ClassVar[str] = "rl (--method rl)"
    """Title of the flag group in ``search --help``."""

    algo: Literal["td3", "ddpg", "ppo"] = option("td3", key="rl_algo")
    """Stable-baselines3 agent (default ``td3``)."""
    episodes: int | None = option(parse=positive_int)
    """Episodes, one evaluation each, the demonstration included (default: ``--trials``); each also counts as a
    trial."""
    action_mode: Literal["ratio", "threshold"] = option("ratio", choices="env.config:ACTION_MODES")
    """Actions set per-unit ratios (default) or normalised-importance thresholds."""
    reward: str | None = option(choices="env.rewards:reward_names")
    """Episode reward (default ``acc`` with a cost target, else ``acc_flops``, since ``acc`` alone would learn not
    to prune)."""
    warmup_episodes: int | None = option(cli=False)
    """Random-action episodes before learning (None: a quarter of ``episodes``, as AMC's 100 of 400)."""
    noise_sigma: float = option(0.5, cli=False)
    """Initial exploration noise (std, in action units) after warm-up."""
    noise_decay: float = option(0.95, cli=False)
    """Noise multiplier per episode after warm-up."""
    baseline_decay: float = option(0.9, cli=False)
    """Decay of the moving reward baseline (and scale)."""
    demonstration: bool = option(True, cli=False)
    """Play the uniform policy meeting the targets as the first episode (and learn from it off-policy)."""
    gradient_steps: int = option(32, cli=False)
    """Off-policy gradient steps after each episode."""
    batch_size: int = option(64, cli=False)
    """Minibatch size."""
    learning_rate: float = option(1e-3, cli=False)
    """Adam learning rate (PPO uses a third of it)."""
    hidden: tuple[int, ...] = option((64, 64), cli=False)
    """Hidden layer sizes of actor and critic."""
    ppo_episodes_per_update: int = option(4, cli=False)
    """Episodes per PPO rollout."""
    agent_device: str = option("cpu", cli=False)
    """Device of the agent's small networks (the env evaluates on the session's device)."""

    def __post_init__(self) -> None:
        from env.config import ACTION_MODES
        from env.rewards import get_reward

        if self.algo not in RL_ALGOS:
            raise user_error("unknown --rl-algo", self.algo, f"choose one of {', '.join(RL_ALGOS)}")
        if self.action_mode not in ACTION_MODES:
            raise user_error("unknown --action-mode", self.action_mode, f"choose one of {', '.join(ACTION_MODES)}")
        if self.reward is not None:
            get_reward(self.reward)
        if self.episodes is not None and (not isinstance(self.episodes, int) or self.episodes < 1):
            raise user_error("--episodes must be a positive integer, got", self.episodes, "e.g. --episodes 60")
        if self.warmup_episodes is not None and self.warmup_episodes < 0:
            raise user_error("warmup_episodes must be >= 0, got", self.warmup_episodes, "e.g. 15")
        if not (0 < self.noise_decay <= 1 and 0 <= self.baseline_decay < 1 and self.noise_sigma >= 0):
            raise user_error("noise/baseline settings out of range, got",
                             (self.noise_sigma, self.noise_decay, self.baseline_decay),
                             "need sigma >= 0, 0 < noise_decay <= 1, 0 <= baseline_decay < 1")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RLConfig:
        """Read the searcher's keys from ``SearchConfig.options`` (others are ignored)."""
        return from_options(cls, options)

    def reward_for(self, constraints: Constraints) -> str:
        """The reward name to use under ``constraints``."""
        if self.reward is not None:
            return self.reward
        return "acc" if constraints.has_cost_target else "acc_flops"

    def warmup(self, episodes: int) -> int:
        """Warm-up episodes for a run of ``episodes``."""
        return self.warmup_episodes if self.warmup_episodes is not None else max(1, episodes // 4)
