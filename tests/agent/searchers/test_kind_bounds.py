"""Search spaces that bound each unit kind reach the Optuna and Ray searchers' spaces."""

from __future__ import annotations

import json

import pytest

from agent.errors import UserInputError
from agent.evaluation import EvalSettings
from agent.search.session import SearchConfig
from agent.searchers.optuna.options import OptunaOptions
from agent.searchers.optuna.search import OptunaSearcher
from agent.searchers.ray.tune import RaySearcher

UNITS = {"blocks.0.attn": "heads", "blocks.0.mlp.fc1": "mlp", "stem": "channels"}


@pytest.fixture()
def kind_space(tmp_path):
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps({"kinds": {"heads": [0.0, 0.5], "mlp": [0.0, 0.7]}}))
    return str(path)


def test_the_optuna_space_takes_each_units_kind_bound(kind_space):
    config = SearchConfig(method="optuna", options={"search_space": kind_space})
    opts = OptunaOptions.from_options(config.options)
    space = OptunaSearcher._space(opts, config, list(UNITS), UNITS)
    bounds = {unit: (d.low, d.high) for d in space.dimensions for unit in d.units}
    assert bounds == {"blocks.0.attn": (0.0, 0.5), "blocks.0.mlp.fc1": (0.0, 0.7), "stem": (0.0, 0.9)}
    OptunaSearcher.check(config=config, settings=EvalSettings(), constraints=None, unit_names=list(UNITS),
                         unit_kinds=UNITS)
    with pytest.raises(UserInputError, match="unit_kinds"):
        OptunaSearcher._space(opts, config, list(UNITS))


def test_the_ray_space_takes_each_units_kind_bound(kind_space):
    config = SearchConfig(method="ray", options={"search_space": kind_space})
    space = RaySearcher._space(config, list(UNITS), UNITS)
    bounds = {unit: (d.low, d.high) for d in space.dimensions for unit in d.units}
    assert bounds == {"blocks.0.attn": (0.0, 0.5), "blocks.0.mlp.fc1": (0.0, 0.7), "stem": (0.0, 0.9)}
