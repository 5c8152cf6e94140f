"""The ``heads`` and ``mlp`` kinds on each transformer family: whole heads by index, attributes, exact costs."""

import numpy as np
import pytest
import torch
import torch_pruning as tp

from agent.outputs import logits_of
from agent.pruning import PruningGraph, compute_importance
from agent.pruning.kinds import get_kind

from . import transformer_models as M

FAMILIES = ["timm_vit", "hf_bert", "hf_vit", "hf_llama"]


def _graph(name):
    torch.manual_seed(0)
    model = getattr(M, name)().eval()
    return model, PruningGraph(model, M.example(name))


def _heads(graph):
    kind = get_kind("heads")
    return [(u, kind.layer_of(graph, u)) for u in graph.units if u.kind == "heads"]


@pytest.mark.parametrize("name", FAMILIES)
def test_heads_and_mlp_units_with_the_residual_kept_whole(name):
    model, g = _graph(name)
    kinds = [u.kind for u in g.units]
    assert kinds.count("heads") == 2 and kinds.count("mlp") == 2 and "channels" not in kinds[:-1]
    assert any("residual width" in why for why in g.kept_whole.values())
    for unit, layer in _heads(g):
        assert layer.heads == 4 and unit.elements == layer.kv_heads == (2 if name == "hf_llama" else 4)
    x = M.example(name)
    with torch.no_grad():  # nothing pruned: the very same outputs
        assert torch.equal(logits_of(g.apply({})(x)), logits_of(model(x)))


@pytest.mark.parametrize("name", FAMILIES)
def test_kept_heads_are_whole_original_heads_by_index(name):
    """q / k / v rows of the pruned model are exactly the kept heads' dense rows (GQA: whole KV groups)."""
    model, g = _graph(name)
    scores = compute_importance(g, "l2")
    plan = g.select(scores, {u.name: 0.5 for u, _ in _heads(g)})
    pruned = g.apply(plan)
    dense_mods, pruned_mods = dict(model.named_modules()), dict(pruned.named_modules())
    for unit, layer in _heads(g):
        d, per = layer.head_dim, layer.heads // layer.kv_heads
        assert unit.elements == layer.kv_heads and unit.element_size == d * per
        block = unit.channels // unit.channel_groups
        dropped = plan[unit.name]
        gone = sorted({int(r % block) // unit.element_size for r in dropped})
        assert len(dropped) == len(gone) * unit.granule  # only whole elements go
        kept = [e for e in range(unit.elements) if e not in gone]
        assert len(kept) == unit.elements // 2
        q_rows = np.concatenate([np.arange(e * per * d, (e + 1) * per * d) for e in kept])
        kv_rows = np.concatenate([np.arange(e * d, (e + 1) * d) for e in kept])
        for i, proj in enumerate(layer.projections):
            dense_w, w = dense_mods[proj].weight, pruned_mods[proj].weight
            if layer.packed:
                want = torch.cat([dense_w[b * block + q_rows] for b in range(3)])
            else:
                want = dense_w[q_rows if i == 0 else kv_rows]
            assert torch.equal(w, want), proj
        attn = pruned_mods[layer.name]
        for attr in ("num_heads", "num_attention_heads"):
            if hasattr(attn, attr):
                assert getattr(attn, attr) == len(kept) * per
        if hasattr(attn, "all_head_size"):
            assert attn.all_head_size == len(kept) * per * d
        if hasattr(attn, "num_key_value_groups"):
            assert attn.num_key_value_groups == per
    x = torch.cat([M.example(name)] * 2)
    assert logits_of(pruned(x)).shape[0] == 2


@pytest.mark.parametrize("name", FAMILIES)
def test_predicted_costs_equal_the_counted_ones_on_mixed_policies(name):
    _, g = _graph(name)
    scores = compute_importance(g, "l1")
    x = M.example(name)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ratios = {u.name: float(rng.uniform(0, 0.8)) for u in g.units}
        plan = g.select(scores, ratios)
        macs, params = tp.utils.count_ops_and_params(g.apply(plan), x)
        assert g.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
        assert g.predict_params(plan) == pytest.approx(params, rel=1e-9)


def test_torchvision_vit_prunes_its_mlp_widths_and_says_why_its_heads_stay():
    """nn.MultiheadAttention ties its inner width to the residual: its heads stay whole, named in kept_whole."""
    model, g = _graph("tv_vit")
    assert [u.kind for u in g.units] == ["mlp", "mlp"]
    assert any("MultiheadAttention" in why for name, why in g.kept_whole.items() if name.endswith("self_attention"))
    x = M.example("tv_vit")
    scores = compute_importance(g, "l2")
    plan = g.select(scores, dict.fromkeys(g.unit_names(), 0.5))
    pruned = g.apply(plan)
    assert pruned.encoder.layers[0].mlp[0].out_features == 64
    macs, params = tp.utils.count_ops_and_params(pruned, x)
    assert g.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
    assert g.predict_params(plan) == pytest.approx(params, rel=1e-9)
    with torch.no_grad():
        assert torch.equal(g.apply({})(x), model(x))
