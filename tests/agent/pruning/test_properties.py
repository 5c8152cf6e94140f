"""Property tests: any valid policy on the built-in models gives a working, smaller model as predicted."""

import pytest
import torch
import torch_pruning as tp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.pruning import PruningGraph, compute_importance
from agent.tasks import build_model

SPECS = {"cnn1d": (1, 40), "mlp": (1, 12, 12), "lenet": (1, 16, 16), "resnet20": (3, 16, 16)}
_GRAPHS: dict[str, tuple[PruningGraph, dict]] = {}


def _graph(spec):
    if spec not in _GRAPHS:
        torch.manual_seed(0)
        g = PruningGraph(build_model(spec, SPECS[spec], 6), torch.randn(1, *SPECS[spec]))
        _GRAPHS[spec] = (g, compute_importance(g, "l1"))
    return _GRAPHS[spec]


@st.composite
def policies(draw):
    spec = draw(st.sampled_from(sorted(SPECS)))
    g, _ = _graph(spec)
    ratios = {u: draw(st.floats(0.0, 0.95, allow_nan=False)) for u in g.unit_names()}
    round_to = draw(st.sampled_from([None, None, 2, 4]))
    return spec, ratios, round_to


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_any_valid_policy_yields_a_working_model_with_predicted_flops(case):
    spec, ratios, round_to = case
    g, scores = _graph(spec)
    plan = g.select(scores, ratios, round_to)
    model = g.apply(plan)
    x = torch.randn(2, *SPECS[spec])
    assert model(x).shape == (2, 6), "output classes must be kept"
    for unit in g.units:  # every unit keeps at least one channel and loses what the ratio says
        removed = len(plan.get(unit.name, ()))
        assert 0 <= removed < unit.channels
        assert unit.channels - removed == unit.kept_channels(ratios[unit.name], round_to)
    macs, params = tp.utils.count_ops_and_params(model, torch.randn(1, *SPECS[spec]))
    assert g.predict_macs(plan) / g.dense_macs == pytest.approx(macs / g.dense_macs, abs=0.03)
    assert g.predict_params(plan) == pytest.approx(params, rel=0.02)
