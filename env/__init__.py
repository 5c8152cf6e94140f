"""The pruning environment: importing ``env`` registers ``PrunePilot/LayerPruning-v0`` with Gymnasium.

``gymnasium.make("PrunePilot/LayerPruning-v0")`` builds the env on the embedded default task (cnn1d-wide on
MNIST-1D, 50% FLOPs target); keyword arguments are those of :class:`LayerPruningEnv`.
"""

import gymnasium

from .budget import BudgetWall
from .config import ACTION_MODES, EnvConfig
from .features import feature_names
from .pruning_env import LayerPruningEnv
from .rewards import REWARDS, get_reward, reward_names

ENV_ID = "PrunePilot/LayerPruning-v0"
"""The registered Gymnasium id."""

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="env.pruning_env:LayerPruningEnv")

__all__ = ["ENV_ID", "ACTION_MODES", "BudgetWall", "EnvConfig", "LayerPruningEnv", "REWARDS", "feature_names",
           "get_reward", "reward_names"]
