"""Reinforcement-learning searcher: DDPG / TD3 (AMC-style) or PPO on the ``PrunePilot/LayerPruning-v0`` env.

Each episode prunes every unit once and ends with one evaluation, made through the
:class:`~agent.search.session.SearchSession` (so it is logged to ``results.csv``, cached, and failures are recorded),
which also keeps the trial and wall-time budgets and the best feasible policy.

AMC's recipe for the off-policy agents (DDPG, TD3):

* **warm-up**: the first ``warmup_episodes`` episodes take uniformly random actions;
* **exploration**: Gaussian action noise whose scale decays by ``noise_decay`` per episode after warm-up;
* **credit**: every step of an episode gets the episode's reward (a Monte-Carlo return; ``gamma = 0`` in the
  TD target), minus a moving baseline and divided by a moving scale;
* **demonstration** (PrunePilot's addition): the first episode plays the uniform policy that meets the targets,
  and its transitions seed the replay buffer, so learning starts from the standard baseline.

PPO uses the same demonstration episode (evaluated, not learned from: it is on-policy), the sparse terminal
reward with the same moving baseline, and ``gamma = 1``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from ...evaluation import EvalResult
from ...policy import Policy
from ...search.session import BudgetExhausted, SearchSession
from ..base import Searcher
from .options import RL_ALGOS, RLConfig

__all__ = ["RLConfig", "RLSearcher", "RL_ALGOS"]

class _DecayingNoise:
    """Gaussian action noise (SB3's ``ActionNoise`` protocol) decaying per episode once warm-up is over."""

    def __init__(self, *, sigma: float, decay: float, warmup: int, size: int, seed: int) -> None:
        self.sigma, self.decay, self.warmup, self.size = sigma, decay, warmup, size
        self.episode = 0
        self.rng = np.random.default_rng(seed)

    @property
    def current(self) -> float:
        """Noise std of the running episode."""
        return self.sigma * self.decay ** max(0, self.episode - self.warmup)

    def __call__(self) -> np.ndarray:
        return self.rng.normal(0.0, self.current, size=self.size).astype(np.float32)

    def reset(self, **_: Any) -> None:
        self.episode += 1


class _AgentView(gym.Wrapper):
    """What the agent sees of the env.

    Actions in [-1, 1] are spread over the env's active half [0, 1] (the env reads non-positive actions as
    "keep"); the terminal reward becomes ``(reward - moving mean) / moving std`` (AMC's baseline).
    """

    def __init__(self, env: gym.Env, *, decay: float) -> None:
        super().__init__(env)
        self.decay = decay
        self.mean: float | None = None
        self.var = 0.0
        self.last_shaped = 0.0

    @staticmethod
    def to_env(action: np.ndarray) -> np.ndarray:
        """Agent action -> env action."""
        return ((np.asarray(action, dtype=np.float32) + 1.0) / 2.0).astype(np.float32)

    @staticmethod
    def to_agent(env_action: np.ndarray) -> np.ndarray:
        """Env action (in [0, 1]) -> agent action."""
        return (np.asarray(env_action, dtype=np.float32) * 2.0 - 1.0).astype(np.float32)

    def shape(self, reward: float) -> float:
        """AMC's baseline: ``(reward - moving mean) / moving std``, then update the moving statistics."""
        if self.mean is None:
            self.mean, shaped = reward, 0.0
        else:
            shaped = (reward - self.mean) / max(math.sqrt(self.var), 1e-3)
            delta = reward - self.mean
            self.mean += (1 - self.decay) * delta
            self.var = self.decay * (self.var + (1 - self.decay) * delta * delta)
        return float(np.clip(shaped, -10.0, 10.0))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # noqa: D102
        obs, reward, terminated, truncated, info = self.env.step(self.to_env(action))
        if terminated:
            reward = self.last_shaped = self.shape(float(reward))
        return obs, float(reward), terminated, truncated, info


class RLSearcher(Searcher):
    """Stable-baselines3 agent searching per-unit ratios on the pruning env (see the module docstring)."""

    name = "rl"

    def __init__(self, config: RLConfig | None = None) -> None:
        self.rl_config = config
        self.best: EvalResult | None = None
        self.episodes_run = 0
        self.rewards: list[float] = []
        self._demo_episodes = 0
        self._warmup = 0

    def describe(self) -> str:  # noqa: D102
        c = self.rl_config or RLConfig()
        best = f", best feasible {self.best.metric_info.text(self.best.accuracy)}" if self.best is not None else ""
        return (f"rl({c.algo}, reward={c.reward or 'auto'}, action_mode={c.action_mode}, "
                f"episodes={self.episodes_run}{best})")

    # ------------------------------------------------------------------ env and evaluation
    def _phase(self, episode: int) -> str:
        if episode <= self._demo_episodes:
            return "demo"
        return "warm-up" if episode - self._demo_episodes <= self._warmup else "learn"

    def _evaluate(self, session: SearchSession, policy: Policy) -> EvalResult:
        self.episodes_run += 1
        phase = self._phase(self.episodes_run)
        result = session.evaluate(session.make_policy(policy.ratios),
                                  note=f"rl-{self.rl_config.algo} episode {self.episodes_run} ({phase})")
        if result.ok and result.feasible and (self.best is None or result.quality > self.best.quality):
            self.best = result
        return result

    def make_env(self, session: SearchSession, config: RLConfig) -> gym.Env:
        """The pruning env on the session's task, settings and constraints, evaluating through the session."""
        from env import LayerPruningEnv

        c = session.config
        return LayerPruningEnv(
            session.task, session.constraints, importance=c.importance, reward=config.reward,
            action_mode=config.action_mode, min_ratio=c.min_ratio, max_ratio=c.max_ratio, round_to=c.round_to,
            settings=session.settings, sensitivity_ratios=c.sensitivity_ratios, profile=session.sensitivity(),
            evaluator=lambda p: self._evaluate(session, p))

    @staticmethod
    def uniform_ratio(env: Any) -> float:
        """Smallest uniform ratio whose predicted costs meet the targets (``min_ratio`` without targets)."""
        wall, names = env.wall, [u.name for u in env.units]
        lo, hi = env.config.min_ratio, env.config.max_ratio
        if not wall.active or wall.meets(dict.fromkeys(names, lo)):
            return lo
        for _ in range(20):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if wall.meets(dict.fromkeys(names, mid)) else (mid, hi)
        return hi

    # ------------------------------------------------------------------ the search
    def run(self, session: SearchSession) -> None:  # noqa: D102
        config = self.rl_config or RLConfig.from_options(session.config.options)
        config = replace(config, reward=config.reward_for(session.constraints))
        episodes = config.episodes or session.trials_left()
        if episodes <= 0 or session.should_stop():
            return
        if episodes > session.trials_left():
            warnings.warn(f"--episodes {episodes} exceeds the {session.trials_left()} trials left: the search stops "
                          f"when they are spent (raise --trials to run every episode)", stacklevel=2)
        self.rl_config = replace(config, episodes=episodes)
        env = self.make_env(session, config)
        view = _AgentView(env, decay=config.baseline_decay)
        self._demo_episodes = 1 if config.demonstration else 0
        self._warmup = min(config.warmup(episodes - self._demo_episodes), episodes - self._demo_episodes)
        try:
            demo = self._demonstrate(view, env, session) if config.demonstration else []
            self._learn(view, env, session, config, episodes - self._demo_episodes, demo)
        except BudgetExhausted:
            return

    def _demonstrate(self, view: _AgentView, env: Any, session: SearchSession) -> list[tuple]:
        """Play the uniform policy meeting the targets; return its transitions for the replay buffer."""
        ratio = self.uniform_ratio(env)
        obs, _ = view.reset(seed=session.config.seed)
        transitions, done = [], False
        while not done:
            action = view.to_agent(env.action_for_ratio(ratio))
            next_obs, reward, done, _, info = view.step(action)
            transitions.append((obs, next_obs, action, done))
            obs = next_obs
        self.rewards.append(float(info["episode_reward"]))
        return [(o, n, a, view.last_shaped, d) for o, n, a, d in transitions]

    def _learn(self, view: _AgentView, env: Any, session: SearchSession, config: RLConfig, episodes: int,
               demo: list[tuple]) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        if episodes <= 0:
            return
        steps = env.num_units
        warmup = self._warmup
        searcher = self
        off_policy = config.algo != "ppo"

        class EpisodeCallback(BaseCallback):
            """Counts episodes, stops on budget, and (off-policy) gives every step its episode's return."""

            def __init__(self) -> None:
                super().__init__()
                self.done_episodes = 0
                self.pending = False

            def _on_step(self) -> bool:
                if not self.locals["dones"][0]:
                    return True
                self.done_episodes += 1
                searcher.rewards.append(float(self.locals["infos"][0]["episode_reward"]))
                self.pending = off_policy
                return self.done_episodes < episodes and not session.should_stop()

            def _on_rollout_end(self) -> None:
                if self.pending:
                    buf = self.model.replay_buffer
                    idx = [(buf.pos - 1 - k) % buf.buffer_size for k in range(steps)]
                    buf.rewards[idx, 0] = view.last_shaped
                    self.pending = False

        model = self._model(view, env, session, config, episodes, warmup, len(demo))
        for obs, next_obs, action, reward, done in demo if off_policy else []:
            model.replay_buffer.add(obs[None], next_obs[None], action[None], np.asarray([reward]),
                                    np.asarray([done]), [{}])
        model.learn(total_timesteps=episodes * steps, callback=EpisodeCallback())

    def _model(self, view: _AgentView, env: Any, session: SearchSession, config: RLConfig, episodes: int,
               warmup: int, demo_len: int) -> Any:
        try:
            import stable_baselines3 as sb3
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ImportError("the rl searcher needs stable-baselines3: pip install stable-baselines3") from exc
        steps, seed = env.num_units, session.config.seed
        if config.algo == "ppo":
            n_steps = steps * max(1, config.ppo_episodes_per_update)
            return sb3.PPO("MlpPolicy", view, n_steps=n_steps, batch_size=n_steps, n_epochs=10, gamma=1.0,
                           gae_lambda=1.0, learning_rate=config.learning_rate / 3, seed=seed, verbose=0,
                           device=config.agent_device,
                           policy_kwargs={"net_arch": {"pi": list(config.hidden), "vf": list(config.hidden)}})
        algo = sb3.TD3 if config.algo == "td3" else sb3.DDPG
        noise = _DecayingNoise(sigma=config.noise_sigma, decay=config.noise_decay, warmup=warmup, size=1, seed=seed)
        return algo("MlpPolicy", view, learning_rate=config.learning_rate, buffer_size=(episodes + 2) * steps + demo_len,
                    learning_starts=warmup * steps, batch_size=config.batch_size, gamma=0.0, tau=0.01,
                    train_freq=(1, "episode"), gradient_steps=config.gradient_steps, action_noise=noise,
                    policy_kwargs={"net_arch": list(config.hidden)}, seed=seed, verbose=0,
                    device=config.agent_device)
