"""Unit kinds: the registry, claims resolved by registry order, and a toy kind (whole conv groups) that searches."""

import json

import pytest
import torch
import torch_pruning as tp

from agent.constraints import Constraints
from agent.evaluation import EvalSettings, get_engine
from agent.policy import Policy
from agent.pruning import PruningGraph, compute_importance
from agent.pruning.kinds import ChannelsKind, get_kind, kind_names, register_kind, registered_kind, unregister_kind
from agent.search.results import ResultLog
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig
from agent.tasks import build_task

from .. import topologies as T
from .group_kind import GroupsKind

SHAPE = (1, 40)


@pytest.fixture()
def groups_kind():
    """The toy kind, registered for one test and unregistered in teardown."""
    with registered_kind(GroupsKind) as kind:
        yield kind
    assert "conv_groups" not in kind_names()


def _graph():
    torch.manual_seed(0)
    model = T.grouped_conv_net(SHAPE, 5).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    return model, PruningGraph(model, torch.randn(1, *SHAPE))


def test_the_registry_asks_channels_last_and_refuses_misuse():
    assert kind_names()[-1] == "channels" and isinstance(get_kind("channels"), ChannelsKind)
    with registered_kind(GroupsKind):
        assert kind_names() == ["heads", "embed", "mlp", "conv_groups", "channels"]
        with pytest.raises(ValueError, match="already registered"):
            register_kind(GroupsKind())
    assert kind_names() == ["heads", "embed", "mlp", "channels"]
    with pytest.raises(ValueError, match="fallback"):
        unregister_kind("channels")
    with pytest.raises(ValueError, match="unknown unit kind 'conv_groups'"):
        get_kind("conv_groups")
    with pytest.raises(TypeError, match="UnitKind"):
        register_kind(object())


class _First(ChannelsKind):
    """Claims the first root it is offered, as a channel unit."""

    name = "first"
    fallback = False

    def claim(self, graph, offered):
        return [(next(iter(offered)),)]

    def build(self, graph, roots):
        unit, items = super().build(graph, roots)
        unit.kind = self.name
        return unit, items


class _AlsoFirst(_First):
    name = "also_first"


class _Twice(_First):
    name = "twice"

    def claim(self, graph, offered):
        root = next(iter(offered))
        return [(root,), (root,)]


def test_two_kinds_wanting_the_same_root_are_resolved_by_registry_order():
    """An earlier kind's claim wins: the root is not offered to later kinds; claiming a root twice is an error."""
    _, plain = _graph()
    with registered_kind(_First), registered_kind(_AlsoFirst):
        _, g = _graph()
    first_roots = list(plain.candidates)[:2]
    kinds = {g.root_of[u.name]: u.kind for u in g.units}
    assert kinds[first_roots[0]] == "first" and kinds[first_roots[1]] == "also_first"
    assert sorted(kinds.values()).count("channels") == len(plain.units) - 2
    with registered_kind(_Twice), pytest.raises(ValueError, match="not offered"):
        _graph()


def test_whole_groups_go_and_costs_are_predicted_exactly(groups_kind):
    model, g = _graph()
    unit = g.unit_by_name["stem.0"]
    assert (unit.kind, unit.elements, unit.element_size, unit.members) == ("conv_groups", 4, 8, ["stem.0", "grouped.0"])
    assert [u.kind for u in g.units] == ["conv_groups", "channels"]
    scores = compute_importance(g, "l2")
    x = torch.randn(3, *SHAPE)
    for ratio in (0.25, 0.5, 0.75):
        plan = g.select(scores, dict.fromkeys(g.unit_names(), ratio))
        pruned = g.apply(plan)
        conv = pruned.grouped[0]
        assert conv.groups == 4 - round(4 * ratio) and conv.out_channels == 8 * conv.groups
        assert conv.in_channels == pruned.stem[0].out_channels == 4 * conv.groups
        macs, params = tp.utils.count_ops_and_params(pruned, x[:1])
        assert g.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
        assert g.predict_params(plan) == pytest.approx(params, rel=1e-9)
        assert pruned(x).shape == (3, 5)
    # dropping a group = the dense model with that group's outputs unread: the weights kept are the right ones
    plan = g.select(scores, {"stem.0": 0.5})
    dropped = plan["stem.0"]
    masked = T.grouped_conv_net(SHAPE, 5).eval()
    masked.load_state_dict(model.state_dict())
    masked.pw[0].weight.data[:, dropped] = 0.0
    with torch.no_grad():
        assert torch.allclose(g.apply(plan)(x), masked(x), atol=1e-5)


def test_a_search_with_the_toy_kind_drops_whole_groups(groups_kind, tmp_path):
    task = build_task(model="tests.agent.topologies:grouped_conv_net", dataset="mnist1d", train_epochs=1)
    settings = EvalSettings(measure_latency=False)
    out = run_search(task=task, out_dir=tmp_path / "s", constraints=Constraints(flops_target=0.6), settings=settings,
                     config=SearchConfig(method="uniform", trials=4), final=FinalTuneConfig(epochs=0))
    engine = get_engine(task)
    assert [u.kind for u in engine.units] == ["conv_groups", "channels"]
    assert out.best is not None and out.best.flops_ratio <= 0.6
    plan = engine.plan(out.best.policy, settings)
    pruned = engine.build(out.best.policy, settings)
    conv = pruned.grouped[0]
    assert conv.groups < 4 and conv.out_channels % 8 == 0 and conv.out_channels // 8 == conv.groups
    assert pruned(task.example_input(batch_size=2)).shape == (2, task.num_classes)
    macs, _ = tp.utils.count_ops_and_params(pruned, task.example_input())
    assert engine.graph.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
    ok = [r for r in ResultLog.open(tmp_path / "s" / "results.csv", resume=True).rows if r["status"] == "ok"]
    assert ok
    for row in ok:  # every candidate: whole groups kept, and its counted MACs predicted exactly
        assert json.loads(row["kept_channels"])["stem.0"] % 8 == 0
        policy = Policy(json.loads(row["ratios"]), row["importance"])
        assert engine.graph.predict_macs(engine.plan(policy, settings)) == pytest.approx(float(row["macs"]), rel=1e-9)
