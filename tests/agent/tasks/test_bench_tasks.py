"""Benchmark tasks: the offline generators (seeded, cached, held-out test sources) and the three model families."""

import copy

import numpy as np
import pytest
import torch
import torch_pruning as tp

from agent.pruning import PruningGraph, compute_importance
from agent.tasks import bench_data, build_model, load_dataset

BENCH = [("rescnn1d", (1, 40)), ("resnet-s", (1, 16, 16)), ("mobilenet-s", (1, 16, 16))]


def test_digits_aug_is_seeded_cached_and_tests_on_held_out_digits(cache_dir):
    a = load_dataset("digits-aug", seed=0)
    assert a.input_shape == (1, 16, 16) and a.num_classes == 10
    assert (len(a.train), len(a.val), len(a.test)) == (12250, 1750, 5000)
    files = sorted((cache_dir / "data").glob("digits-aug-*-seed0.npz"))
    assert len(files) == 1, "generated once, then read from the cache"
    b = load_dataset("digits-aug", seed=0)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert not torch.equal(a.test.tensors[0], load_dataset("digits-aug", seed=1).test.tensors[0])
    # every class is present and balanced-ish in the test split
    counts = torch.bincount(a.test.tensors[1], minlength=10)
    assert counts.min() > 300
    # augmentation: no two training images are identical, and pixels vary beyond the clean [0, 1] range (noise)
    x = a.train.tensors[0][:500].flatten(1)
    assert torch.unique(x, dim=0).shape[0] == 500
    assert x.min() < 0 < 1 < x.max()


def test_digits_aug_settings_change_the_cache_key(cache_dir, monkeypatch):
    load_dataset("digits-aug", seed=3)
    monkeypatch.setitem(bench_data.DIGITS_AUG, "test", 600)
    assert len(load_dataset("digits-aug", seed=3).test) == 600, "changed settings never read stale data"
    assert len(list((cache_dir / "data").glob("digits-aug-*-seed3.npz"))) == 2


def test_mnist1d_hard_uses_its_knobs(monkeypatch):
    monkeypatch.setitem(bench_data.MNIST1D_HARD, "num_samples", 1000)  # the real one is 25,000 (seconds)
    hard = load_dataset("mnist1d-hard", seed=0)
    assert hard.input_shape == (1, 40)
    assert (len(hard.train), len(hard.val), len(hard.test)) == (700, 100, 200)
    monkeypatch.setitem(bench_data.MNIST1D_HARD, "iid_noise_scale", 0.0)
    monkeypatch.setitem(bench_data.MNIST1D_HARD, "corr_noise_scale", 0.0)
    clean = load_dataset("mnist1d-hard", seed=0)
    # same templates and labels, less noise: the noisy version is further from its smooth neighbours
    assert torch.equal(hard.test.tensors[1], clean.test.tensors[1])
    rough = lambda d: float(d.test.tensors[0].diff(dim=-1).abs().mean())  # noqa: E731
    assert rough(hard) > 1.2 * rough(clean)


@pytest.mark.parametrize("spec,shape", BENCH)
def test_bench_models_replay_matches_torch_pruning(spec, shape):
    """A reference test per family: our plan replay equals tp.pruner.BasePruner with the same ratios."""
    torch.manual_seed(0)
    model = build_model(spec, shape, 10)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.2, 1.5)
    g = PruningGraph(model, torch.randn(1, *shape))
    if spec == "mobilenet-s":
        assert any(u.layer_type == "conv" and any("body.1" in n for n in u.members) for u in g.units), \
            "depthwise convs are pruned together with their expansion conv"
    ratios = {u: (0.25 if i % 2 else 0.5) for i, u in enumerate(g.unit_names())}
    ours = g.apply(g.select(compute_importance(g, "l2"), ratios))
    ref = copy.deepcopy(model)
    mods = dict(ref.named_modules())
    tp.pruner.BasePruner(ref, torch.randn(1, *shape), importance=tp.importance.MagnitudeImportance(p=2),
                         pruning_ratio=0.0, pruning_ratio_dict={mods[k]: v for k, v in ratios.items()},
                         ignored_layers=[mods[g.output_layer]]).step()
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    macs, _ = tp.utils.count_ops_and_params(ours, torch.randn(1, *shape))
    assert 0.2 < macs / g.dense_macs < 0.7
    assert np.isfinite(ours(torch.randn(2, *shape)).detach().numpy()).all()
