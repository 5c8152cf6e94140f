import copy

import numpy as np
import pytest
import torch
import torch_pruning as tp

from agent.errors import UserInputError
from agent.policy import Policy
from agent.pruning import IMPORTANCE_CRITERIA, PruningGraph, compute_importance
from agent.tasks import build_model, load_dataset

MODELS = [("cnn1d", (1, 40)), ("resnet20", (3, 32, 32)), ("mlp", (1, 28, 28)), ("tv:mobilenet_v2", (3, 32, 32)),
          ("tv:resnet18", (3, 32, 32))]


def _graph(spec, shape, classes=10):
    torch.manual_seed(0)
    model = build_model(spec, shape, classes)
    for m in model.modules():  # non-trivial BN so that bn_scale and pruning choices differ per channel
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.2, 1.5)
            m.running_var.uniform_(0.5, 2.0)
    return model, PruningGraph(model, torch.randn(1, *shape))


@pytest.mark.parametrize("spec,shape", MODELS)
def test_policy_application_shrinks_flops_and_keeps_classes(spec, shape):
    model, g = _graph(spec, shape, classes=7)
    scores = compute_importance(g, "l2")
    x = torch.randn(3, *shape)
    dense_out = model(x)
    previous = 1.0
    for ratio in (0.25, 0.5, 0.75):
        plan = g.select(scores, dict.fromkeys(g.unit_names(), ratio))
        pruned = g.apply(plan)
        macs, params = tp.utils.count_ops_and_params(pruned, torch.randn(1, *shape))
        flops_ratio = macs / g.dense_macs
        assert pruned(x).shape == dense_out.shape == (3, 7)
        assert flops_ratio < previous - 0.05, "more pruning must remove more MACs"
        assert params < g.dense_params
        # the cheap prediction used by budget walls tracks Torch-Pruning's count
        assert abs(g.predict_macs(plan) / g.dense_macs - flops_ratio) < 0.03
        previous = flops_ratio
    # keeping 1/4 of the channels leaves ~1/16 of inner-layer MACs; layers fed by the input keep 1/4
    assert previous < 0.3
    assert torch.equal(model(x), dense_out), "the dense model must never be modified"


@pytest.mark.parametrize("spec,shape", MODELS[:4])
def test_replay_matches_torch_pruning_base_pruner(spec, shape):
    """Applying the plan to a copy gives exactly what tp.pruner.BasePruner produces with the same ratios."""
    model, g = _graph(spec, shape)
    ratios = {u: (0.25 if i % 2 else 0.5) for i, u in enumerate(g.unit_names())}
    ours = g.apply(g.select(compute_importance(g, "l2"), ratios))
    ref = copy.deepcopy(model)
    mods = dict(ref.named_modules())
    pruner = tp.pruner.BasePruner(ref, torch.randn(1, *shape), importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=0.0, pruning_ratio_dict={mods[k]: v for k, v in ratios.items()},
                                  ignored_layers=[mods[g.output_layer]])
    pruner.step()
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_units_are_named_in_forward_order_and_classifier_is_never_pruned():
    _, g = _graph("cnn1d", (1, 40))
    assert g.output_layer == "fc"
    assert g.unit_names() == ["stem.0", "down1.0", "block1.conv_a.0", "down2.0", "block2.conv_a.0"]
    assert set(g.unit_by_name["down1.0"].members) == {"down1.0", "block1.conv_b.0"}  # coupled by the residual add
    pruned = g.apply(g.select(compute_importance(g, "l1"), dict.fromkeys(g.unit_names(), 0.9)))
    assert pruned.fc.out_features == 10
    assert all(c.out_channels >= 1 for c in pruned.modules() if isinstance(c, torch.nn.Conv1d))


def test_empty_policy_gives_an_identical_copy():
    model, g = _graph("resnet20", (3, 32, 32))
    copy_ = g.apply({})
    x = torch.randn(2, 3, 32, 32)
    assert copy_ is not model and torch.equal(copy_(x), model(x))


def test_round_to_keeps_multiples():
    _, g = _graph("resnet20", (3, 32, 32))
    plan = g.select(compute_importance(g, "l2"), dict.fromkeys(g.unit_names(), 0.3), round_to=8)
    for u in g.units:
        kept = u.channels - len(plan.get(u.name, ()))
        assert kept % 8 == 0 and kept >= 8


@pytest.mark.parametrize("name", sorted(IMPORTANCE_CRITERIA))
def test_each_importance_criterion_scores_every_channel(name):
    _, g = _graph("cnn1d", (1, 40))
    data = load_dataset("mnist1d").train
    scores = compute_importance(g, name, data=data, batches=2, seed=0)
    assert set(scores) == set(g.unit_names())
    for u in g.units:
        s = scores[u.name]
        assert s.shape == (u.channels,) and torch.isfinite(s).all()
    assert len({tuple(np.round(scores[u].numpy(), 6)) for u in scores}) == len(scores)


def test_criteria_rank_channels_differently():
    _, g = _graph("cnn1d", (1, 40))
    data = load_dataset("mnist1d").train
    ratios = dict.fromkeys(g.unit_names(), 0.5)
    plans = {n: g.select(compute_importance(g, n, data=data, batches=2), ratios) for n in ("l1", "taylor", "random")}
    key = "block1.conv_a.0"
    assert not np.array_equal(plans["l1"][key], plans["random"][key])
    assert not np.array_equal(plans["taylor"][key], plans["random"][key])


def test_data_driven_criteria_need_data():
    _, g = _graph("cnn1d", (1, 40))
    with pytest.raises(ValueError, match="calibration data"):
        compute_importance(g, "taylor")


def test_bn_scale_without_batchnorm_is_a_user_error():
    _, g = _graph("mlp", (1, 40))
    with pytest.raises(UserInputError, match="BatchNorm"):
        compute_importance(g, "bn_scale")


@pytest.mark.parametrize("bad", [{"stem.0": 1.0}, {"stem.0": -0.1}, {"stem.0": float("nan")}])
def test_policy_ratios_outside_unit_interval(bad):
    with pytest.raises(UserInputError, match=r"\[0, 1\)"):
        Policy(bad)


def test_policy_unknown_units_and_importance():
    with pytest.raises(UserInputError, match="unknown importance 'l7'"):
        Policy({}, "l7")
    with pytest.raises(UserInputError, match="layer9"):
        Policy({"layer9": 0.5}).validate(["stem.0"])


def test_policy_json_roundtrip(tmp_path):
    p = Policy({"a": 0.25, "b": 0.5}, "taylor", 4)
    path = tmp_path / "p.json"
    path.write_text(__import__("json").dumps(p.to_dict()))
    q = Policy.load(path)
    assert q == p and q.key() == p.key()
    path.write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON"):
        Policy.load(path)
