"""Mixed heads / mlp policies through the whole stack: searchers, kind bounds in search spaces, env features."""

import numpy as np
import pytest
import torch_pruning as tp

from agent.constraints import Constraints
from agent.errors import UserInputError
from agent.evaluation import EvalSettings, get_engine
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig
from agent.tasks import build_task
from search_spaces import SearchSpace

FACTORY = "tests.agent.pruning.transformer_models:timm_vit"


@pytest.fixture(scope="module")
def task():
    return build_task(model=FACTORY, dataset="digits32", train_epochs=1)


@pytest.mark.parametrize("method", ["uniform", "greedy", "knapsack", "optuna"])
def test_searchers_search_mixed_heads_and_mlp_policies(task, method, tmp_path):
    settings = EvalSettings(measure_latency=False)
    out = run_search(task=task, out_dir=tmp_path / method, constraints=Constraints(flops_target=0.7),
                     settings=settings, config=SearchConfig(method=method, trials=3), final=FinalTuneConfig(epochs=0))
    engine = get_engine(task)
    assert sorted({u.kind for u in engine.units}) == ["heads", "mlp"]
    assert out.best is not None and out.best.flops_ratio <= 0.7
    pruned = engine.build(out.best.policy, settings)
    macs, params = tp.utils.count_ops_and_params(pruned, task.example_input())
    plan = engine.plan(out.best.policy, settings)
    assert engine.graph.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
    assert engine.graph.predict_params(plan) == pytest.approx(params, rel=1e-9)
    heads = [u for u in engine.units if u.kind == "heads"]
    for unit in heads:  # whole heads only
        assert len(plan.get(unit.name, ())) % unit.granule == 0


def test_a_search_space_bounds_each_kind(task):
    units = get_engine(task).units
    kinds = {u.name: u.kind for u in units}
    space = SearchSpace.from_dict({"kinds": {"heads": [0, 0.5], "mlp": [0, 0.7]}})
    assert SearchSpace.from_dict(space.to_dict()) == space
    bound = space.bind(unit_names=list(kinds), unit_kinds=kinds)
    his = {d.units[0]: (d.low, d.high) for d in bound.dimensions}
    assert {his[n] for n, k in kinds.items() if k == "heads"} == {(0.0, 0.5)}
    assert {his[n] for n, k in kinds.items() if k == "mlp"} == {(0.0, 0.7)}
    first = next(n for n, k in kinds.items() if k == "mlp")
    override = SearchSpace.from_dict({"kinds": {"mlp": [0, 0.7]}, "units": {first: [0.1, 0.2]}})
    dims = {d.units[0]: (d.low, d.high) for d in override.bind(unit_names=list(kinds), unit_kinds=kinds).dimensions}
    assert dims[first] == (0.1, 0.2)
    with pytest.raises(UserInputError, match="kind the model does not have"):
        SearchSpace.from_dict({"kinds": {"channels": [0, 0.5]}}).bind(unit_names=list(kinds), unit_kinds=kinds)
    with pytest.raises(UserInputError, match="gave no kinds"):
        space.bind(unit_names=list(kinds))


def test_the_env_observation_states_each_units_kind(task):
    from agent.evaluation.sensitivity import SensitivityProfile
    from env.features import UNIT_FEATURES, unit_features

    units = get_engine(task).units
    names = [u.name for u in units]
    profile = SensitivityProfile(ratios=[], units=names, dense_accuracy=1.0, accuracy=dict.fromkeys(names, []),
                                 flops_ratio={}, latency_ratio={}, macs_share={}, latency_share={})
    rows = unit_features(units, profile)
    col = rows[:, UNIT_FEATURES.index("kind")]
    by_kind = {u.kind: set() for u in units}
    for u, v in zip(units, col, strict=True):
        by_kind[u.kind].add(float(v))
    assert all(len(v) == 1 for v in by_kind.values()) and len({next(iter(v)) for v in by_kind.values()}) == 2
    assert np.all((col >= 0) & (col <= 1))
