"""Declarative pruning-policy search spaces, presets, and renderers to Optuna and Ray Tune.

Typical use::

    space = load_space("grouped")                      # or a .yaml / .json file
    bound = space.bind(unit_names=engine.graph.unit_names(), max_ratio=0.9)
    params = suggest_params(trial, bound)              # Optuna define-by-run
    candidate = bound.decode(params)                   # -> Policy (+ eval-setting overrides)
"""

from .bound import CHOICE_PARAMS, BoundSpace, Candidate, Dimension, bind_space
from .optuna_render import optuna_distributions, suggest_params
from .presets import PRESETS, STAGE_RULES, load_space, preset_names
from .ray_render import from_ray_config, to_ray_keys, to_ray_tune
from .space import SPACE_MODES, GroupRule, SearchSpace

__all__ = [
    "BoundSpace", "CHOICE_PARAMS", "Candidate", "Dimension", "GroupRule", "PRESETS", "SPACE_MODES", "STAGE_RULES",
    "SearchSpace", "bind_space", "from_ray_config", "load_space", "optuna_distributions", "preset_names",
    "suggest_params", "to_ray_keys", "to_ray_tune",
]
