"""User-style models of odd topologies, 1-D and 2-D: they prune, run, predict their MACs and never lose a layer."""

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from agent.errors import UserInputError
from agent.outputs import logits_of
from agent.pruning import PruningGraph, compute_importance

from .. import topologies as T

SHAPES = [(2, 48), (3, 20, 20)]
FACTORIES = ["zoo_net", "zoo_net_tuple", "zoo_net_dict", "ds_concat_se"]


def _graph(factory, shape, **kw):
    torch.manual_seed(0)
    model = getattr(T, factory)(shape, 5).eval()
    for m in model.modules():  # non-trivial BN statistics so that pruned outputs are not all alike
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_var.uniform_(0.5, 2.0)
    return model, PruningGraph(model, torch.randn(1, *shape), **kw)


def _cases():
    for factory in FACTORIES:
        for shape in SHAPES:
            if factory == "ds_concat_se" and len(shape) > 2:
                continue
            yield factory, shape


@pytest.mark.parametrize("factory,shape", list(_cases()))
def test_odd_topologies_prune_run_and_predict_their_macs(factory, shape):
    model, g = _graph(factory, shape)
    assert g.units, g.kept_whole
    scores = compute_importance(g, "l2")
    x = torch.randn(3, *shape)
    dense_out = logits_of(model(x)).clone()
    for ratio in (0.5, 0.95):
        plan = g.select(scores, dict.fromkeys(g.unit_names(), ratio))
        pruned = g.apply(plan)
        out = logits_of(pruned(x))
        assert out.shape == (3, 5)
        macs, params = tp.utils.count_ops_and_params(pruned, x[:1])
        assert g.predict_macs(plan) == pytest.approx(macs, rel=1e-3)
        assert g.predict_params(plan) == pytest.approx(params, rel=1e-3)
        for name, m in pruned.named_modules():  # no layer is ever emptied, grouped convs keep a whole group
            if isinstance(m, nn.modules.conv._ConvNd):
                assert m.out_channels >= m.groups >= 1 and m.in_channels >= m.groups, name
            if isinstance(m, nn.Linear):
                assert m.out_features >= 1 and m.in_features >= 1, name
    assert torch.equal(logits_of(model(x)), dense_out), "the dense model must never be modified"


def test_a_concat_unit_never_empties_one_of_its_layers():
    _, g = _graph("ds_concat_se", (1, 40))
    unit = next(u for u in g.units if len(u.members) > 2)  # pw + side concatenated (and what consumes them)
    skewed = torch.cat([torch.zeros(8), torch.arange(1.0, 9.0)])  # every lowest-scored channel is in one layer
    plan = g.select({**compute_importance(g, "l2"), unit.name: skewed}, {unit.name: 0.99})
    pruned = g.apply(plan)
    assert pruned.pw.out_channels >= 1 and pruned.side.out_channels >= 1


def test_channel_shuffle_groups_are_kept_whole_and_the_branch_inside_is_pruned():
    _, g = _graph("zoo_net", (2, 48))
    shuffle = [layer for layer, why in g.kept_whole.items() if "reshape" in why or "group" in why]
    assert shuffle, g.kept_whole
    branch = [u for u in g.units if u.name.startswith("stages.mix.1.branch")]
    assert branch, [u.name for u in g.units]


def test_a_width_hard_coded_in_forward_is_found_and_kept_whole():
    model, g = _graph("hard_coded_width", (2, 48))
    assert "embed" in g.kept_whole and "breaks the model's forward" in g.kept_whole["embed"]
    assert [u.name for u in g.units] == ["mlp.0"]
    pruned = g.apply(g.select(compute_importance(g, "l2"), {"mlp.0": 0.5}))
    assert pruned(torch.randn(2, 2, 48)).shape == (2, 5)


def test_layer_scale_parameters_follow_their_channels():
    for dims, shape in ((1, (2, 48)), (2, (3, 20, 20))):
        conv, _, pool = T._nd(dims)
        model = nn.Sequential(conv(shape[0], 32, 3, padding=1), T.LayerScaleBlock(dims, 32), pool(1), nn.Flatten(),
                              nn.Linear(32, 5)).eval()
        g = PruningGraph(model, torch.randn(1, *shape))
        pruned = g.apply(g.select(compute_importance(g, "l2"), dict.fromkeys(g.unit_names(), 0.5)))
        block = pruned[1]
        assert block.gamma.shape[0] == block.body[2].out_channels == pruned[0].out_channels < 32
        assert pruned(torch.randn(2, *shape)).shape == (2, 5)


def test_a_dead_branch_is_found_by_the_probe():
    """ZooNet's aux head is computed but unused with a tensor output: Torch-Pruning can't see it, the probe can."""
    _, g = _graph("zoo_net", (2, 48))
    assert "breaks the model's forward" in g.kept_whole.get("stages.ds.1.pw", ""), g.kept_whole


def test_ignore_layers_keeps_matching_layers_whole():
    _, full = _graph("zoo_net", (2, 48))
    _, g = _graph("zoo_net", (2, 48), ignored_layers=["stages.ds.*", "stem"])
    names = {m for u in g.units for m in u.members}
    assert not any(n.startswith("stages.ds.") or n.startswith("stem") for n in names)
    assert 0 < len(g.units) < len(full.units)
    with pytest.raises(UserInputError, match="nosuchlayer"):
        _graph("zoo_net", (2, 48), ignored_layers=["nosuchlayer*"])


def test_tuple_and_dict_outputs_train_and_score():
    from agent.tasks.training import TrainConfig, accuracy, train_steps

    data = torch.utils.data.TensorDataset(torch.randn(64, 2, 48), torch.randint(0, 5, (64,)))
    for factory in ("zoo_net_tuple", "zoo_net_dict"):
        model = getattr(T, factory)((2, 48), 5)
        train_steps(model, data, config=TrainConfig(steps=3, batch_size=16, lr=0.01))
        assert 0.0 <= accuracy(model, data) <= 100.0


def test_pruned_units_keep_at_least_one_group_at_any_ratio():
    _, g = _graph("zoo_net", (3, 20, 20))
    scores = compute_importance(g, "l2")
    plan = g.select(scores, dict.fromkeys(g.unit_names(), 0.999))
    for unit in g.units:
        removed = len(plan.get(unit.name, np.empty(0)))
        assert unit.channels - removed >= unit.channel_groups, unit.name
