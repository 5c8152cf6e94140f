"""Unstructured / threshold masks made permanent; topology cleanup removes dead channels structurally."""

import json

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from agent.cli import main
from agent.deploy.artifacts import load_pruned_model
from agent.deploy.cleanup import remove_dead_channels
from agent.deploy.unstructured import SparsifyConfig, layer_sparsity, sparsify
from agent.errors import UserInputError
from agent.tasks.models import build_model
from agent.tasks.training import accuracy


def _layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d,
                                                                        torch.nn.Linear))]


def _permanent(model):
    names = [k for k in model.state_dict() if k.endswith(("weight_orig", "weight_mask"))]
    hooks = [m for _, m in model.named_modules() if m._forward_pre_hooks]
    return not names and not hooks and all(not prune.is_pruned(m) for _, m in _layers(model))


def test_global_l1_hits_the_target_and_is_permanent(tiny_task):
    dense_before = {k: v.clone() for k, v in tiny_task.model.state_dict().items()}
    res = sparsify(tiny_task.model, config=SparsifyConfig(0.7, scope="global"), example_input=tiny_task.example_input())
    total = sum(s.weights for s in res.layers)
    assert abs(res.sparsity - 0.7) <= 1 / total + 1e-9
    assert _permanent(res.model)
    assert len({round(s.sparsity, 2) for s in res.layers}) > 2, "global ranking spreads sparsity unevenly"
    # the zeros are the smallest magnitudes overall
    all_w = torch.cat([m.weight.detach().abs().flatten() for _, m in _layers(tiny_task.model)])
    kept = torch.cat([m.weight.detach().flatten() for _, m in _layers(res.model)]) != 0
    assert all_w[~kept].max() <= all_w[kept].min()
    assert all(torch.equal(v, tiny_task.model.state_dict()[k]) for k, v in dense_before.items()), "input untouched"


def test_layer_scope_gives_every_layer_the_target(tiny_task):
    res = sparsify(tiny_task.model, config=SparsifyConfig(0.5, scope="layer"), example_input=tiny_task.example_input())
    for s in res.layers:
        assert s.sparsity == pytest.approx(0.5, abs=1 / s.weights + 1e-9), s.layer
    assert layer_sparsity(res.model) == res.layers


def test_adaptive_thresholds_are_per_layer(tiny_task):
    res = sparsify(tiny_task.model, config=SparsifyConfig(0.6, method="threshold"),
                   example_input=tiny_task.example_input())
    assert res.sparsity == pytest.approx(0.6, abs=0.01)
    thresholds = {s.layer: s.threshold for s in res.layers}
    assert len(set(thresholds.values())) == len(thresholds), "one threshold per layer"
    dense = dict(tiny_task.model.named_modules())
    for name, m in _layers(res.model):
        w = dense[name].weight.detach().abs()
        assert torch.equal(m.weight == 0, w < thresholds[name]), name
        std = float(dense[name].weight.detach().std())
        assert thresholds[name] / std == pytest.approx(next(iter(thresholds.values())) / float(
            dense[res.layers[0].layer].weight.detach().std()), rel=1e-6), "same quality factor q in every layer"


def test_ln_structured_zeroes_whole_rows_and_spares_the_classifier(tiny_task):
    res = sparsify(tiny_task.model, config=SparsifyConfig(0.25, scope="layer", method="ln_structured"),
                   example_input=tiny_task.example_input())
    assert "fc" not in {s.layer for s in res.layers}
    for name, m in _layers(res.model):
        if name == "fc":
            assert bool((m.weight != 0).all())
            continue
        dead_rows = int((m.weight.flatten(1) == 0).all(1).sum())
        assert dead_rows == round(0.25 * m.weight.shape[0]), name
    with pytest.raises(UserInputError, match="--scope layer"):
        SparsifyConfig(0.5, scope="global", method="ln_structured")


def test_masked_finetune_keeps_the_zeros(tiny_task):
    plain = sparsify(tiny_task.model, config=SparsifyConfig(0.8), example_input=tiny_task.example_input())
    tuned = sparsify(tiny_task.model, config=SparsifyConfig(0.8, finetune_epochs=0.05), task=tiny_task,
                     example_input=tiny_task.example_input())
    assert tuned.finetune["steps"] > 0 and _permanent(tuned.model)
    for (_, a), (_, b) in zip(_layers(plain.model), _layers(tuned.model), strict=True):
        assert torch.equal(a.weight == 0, b.weight == 0), "the same weights stay zero through training"
    assert not all(torch.equal(a.weight, b.weight) for (_, a), (_, b) in zip(_layers(plain.model),
                                                                           _layers(tuned.model), strict=True))
    assert accuracy(tuned.model, tiny_task.data.val) > 50


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_cleanup_mlp_removes_dead_neurons_and_folds_constants():
    torch.manual_seed(0)
    m = build_model("mlp", (1, 40), 10)  # Flatten, 40-256, ReLU, 256-128, ReLU, 128-10
    with torch.no_grad():
        m.net[1].weight[:4] = 0            # neurons 0-3: no inputs, output relu(bias): a constant
        m.net[1].bias[:2] = 0.5            # two positive constants: folded into net.3's bias
        m.net[1].bias[2:4] = -0.5          # two zero constants (ReLU): dropped as they are
        m.net[3].weight[:, 10:13] = 0      # neurons 10-12: no outputs
        m.net[3].weight[7] = 0             # layer-2 neuron 7: no inputs, bias -1 -> relu 0
        m.net[3].bias[7] = -1.0
    x = torch.randn(64, 1, 40)
    with torch.no_grad():
        ref = m(x)
    pruned, rep = remove_dead_channels(m, torch.zeros(1, 1, 40))
    assert rep.removed == {"net.1": [0, 1, 2, 3, 10, 11, 12], "net.3": [7]}
    assert (rep.incoming_dead, rep.outgoing_dead, rep.folded) == (5, 3, 2)
    expected_drop = 7 * (40 + 1 + 128) + (256 - 7 + 1 + 10)  # net.3 row 7 minus the columns already gone
    assert rep.params_before - rep.params_after == expected_drop == _params(m) - _params(pruned)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), ref, atol=1e-5, rtol=1e-5)


def test_cleanup_keeps_constant_channels_it_cannot_fold(tiny_task):
    """cnn1d: a stem channel with no inputs emits relu(BN(0)); a non-zero constant feeds padded convs (where
    folding into a bias is not exact), so it is kept; a zero constant (ReLU-clipped) is removed."""
    import copy

    m = copy.deepcopy(tiny_task.model)
    bn = m.stem[1]
    const = torch.relu(bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach()
    live = [c for c in range(4, 32) if const[c] > 1e-3][:2]
    zero = [c for c in range(4, 32) if const[c] == 0][:1]
    assert len(live) == 2 and len(zero) == 1, "the trained stem has both kinds of channels"
    with torch.no_grad():
        m.down1[0].weight[:, [1, 2, 3]] = 0    # stem channels 1-3 feed nothing: removable
        m.stem[0].weight[live + zero] = 0      # no inputs: constant outputs
    x = torch.randn(32, 1, 40)
    with torch.no_grad():
        ref = m(x)
    pruned, rep = remove_dead_channels(m, tiny_task.example_input())
    assert rep.removed == {"stem.0": sorted([1, 2, 3, *zero])} and rep.kept_constant == 2
    assert (rep.outgoing_dead, rep.incoming_dead, rep.folded) == (3, 1, 0)
    assert rep.params_before - rep.params_after == 4 * (5 + 2 + 64 * 3)  # stem rows, BN affine, down1 inputs
    assert pruned.stem[0].out_channels == 28 and pruned.down1[0].in_channels == 28
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), ref, atol=1e-5, rtol=1e-5)


def test_cleanup_through_flatten_into_a_linear_layer():
    """LeNet: a conv channel with no inputs is a constant that reaches fc through pooling + flatten: folded."""
    torch.manual_seed(0)
    m = build_model("lenet", (1, 8, 8), 10)
    with torch.no_grad():
        m.features[3].weight[[0, 4]] = 0
        m.features[3].bias[0], m.features[3].bias[4] = 0.7, -0.3
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        ref = m(x)
    pruned, rep = remove_dead_channels(m, torch.zeros(1, 1, 8, 8))
    assert rep.removed == {"features.3": [0, 4]} and rep.folded == 1
    assert pruned.classifier[1].in_features == 14 * 16
    assert rep.params_before - rep.params_after == 2 * (6 * 9 + 1) + 2 * 16 * 120
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), ref, atol=1e-5, rtol=1e-5)


def test_sparsify_cli_writes_model_and_per_layer_report(tiny_checkpoint, tmp_path):
    out = tmp_path / "sp"
    assert main(["sparsify", "--checkpoint", str(tiny_checkpoint), "--sparsity", "0.9", "--scope", "layer",
                 "--method", "ln_structured", "--cleanup", "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "sparsity.json").read_text())
    rows = (out / "sparsity.csv").read_text().splitlines()
    assert rows[0].startswith("layer,kind,shape,weights,zeros,sparsity") and len(rows) == 1 + len(info["layers"])
    assert info["cleanup"]["channels_removed"] > 0
    assert info["cleanup"]["params_after"] < info["cleanup"]["params_before"]
    model = load_pruned_model(out / "pruned_model.pt")
    assert _params(model) == info["cleanup"]["params_after"]
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
    assert np.isfinite(info["val_accuracy"])


@pytest.mark.parametrize("argv,needle", [
    (["--sparsity", "1.2"], "--sparsity"), (["--sparsity", "0.5", "--scope", "net"], "--scope"),
    (["--sparsity", "0.5", "--method", "random"], "--method"), (["--sparsity", "0.5", "--finetune-lr", "0"], "lr"),
])
def test_sparsify_bad_input_exits_2(argv, needle, tmp_path, capsys):
    assert main(["sparsify", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not (tmp_path / "o").exists()
