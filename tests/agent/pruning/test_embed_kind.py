"""The optional ``embed`` kind: a transformer's residual width as one unit, exact costs, attributes that follow."""

import numpy as np
import pytest
import torch
import torch_pruning as tp

from agent.errors import UserInputError
from agent.outputs import logits_of
from agent.pruning import PruningGraph, compute_importance
from agent.pruning.coverage import build_graph

from . import transformer_models as M


def _graph(name, *, prune_embed=True):
    torch.manual_seed(0)
    model = getattr(M, name)().eval()
    return model, PruningGraph(model, M.example(name), prune_embed=prune_embed)


def _embed(graph):
    (unit,) = [u for u in graph.units if u.kind == "embed"]
    return unit


def _assert_exact_costs(graph, plan, x):
    macs, params = tp.utils.count_ops_and_params(graph.apply(plan), x)
    assert graph.predict_macs(plan) == pytest.approx(macs, rel=1e-9)
    assert graph.predict_params(plan) == pytest.approx(params, rel=1e-9)


@pytest.mark.parametrize("name", ["tv_vit", "timm_vit"])
def test_off_by_default_and_on_it_adds_exactly_one_unit(name):
    _, off = _graph(name, prune_embed=False)
    _, on = _graph(name)
    assert "embed" not in {u.kind for u in off.units}
    assert any("--prune-embed" in why for why in off.kept_whole.values())
    embed = _embed(on)
    assert embed.channels == 64 and embed.name in ("conv_proj", "patch_embed.proj")
    rest = [(u.name, u.kind, u.channels, u.granule) for u in on.units if u is not embed]
    assert rest == [(u.name, u.kind, u.channels, u.granule) for u in off.units]


def test_torchvision_vit_residual_goes_in_whole_head_positions_and_hidden_dim_follows():
    model, g = _graph("tv_vit")  # 4 heads of 16 in each nn.MultiheadAttention
    unit = _embed(g)
    assert (unit.channel_groups, unit.element_size, unit.elements) == (4, 1, 16)
    scores = compute_importance(g, "l2")
    plan = g.select(scores, {unit.name: 0.3})
    dropped = plan[unit.name]
    positions = {int(r) % 16 for r in dropped}
    assert sorted(dropped.tolist()) == sorted(h * 16 + p for h in range(4) for p in positions)  # same in every head
    kept = 64 - len(dropped)
    assert kept == 4 * 11  # floor(16 * 0.7) positions in each head
    pruned = g.apply(plan)
    assert pruned.hidden_dim == kept and pruned.conv_proj.out_channels == kept
    assert pruned.class_token.shape[-1] == kept and pruned.encoder.pos_embedding.shape[-1] == kept
    keep = np.setdiff1d(np.arange(64), dropped)
    for layer in pruned.encoder.layers:
        mha = layer.self_attention
        assert (mha.embed_dim, mha.num_heads, mha.head_dim, mha.kdim, mha.vdim) == (kept, 4, 11, kept, kept)
        assert mha.in_proj_weight.shape == (3 * kept, kept)
    dense_q = model.encoder.layers[0].self_attention.in_proj_weight[:64]
    assert torch.equal(pruned.encoder.layers[0].self_attention.in_proj_weight[:kept], dense_q[keep][:, keep])
    x = torch.randn(2, 3, 32, 32)
    assert pruned(x).shape == (2, 10)
    _assert_exact_costs(g, plan, M.example("tv_vit"))
    with torch.no_grad():  # nothing pruned: the very same outputs
        assert torch.equal(g.apply({})(x), model(x))


def test_timm_vit_residual_with_heads_and_mlp_costs_exactly_and_its_widths_follow():
    model, g = _graph("timm_vit")
    unit = _embed(g)
    assert {u.kind for u in g.units} == {"embed", "heads", "mlp"} and unit.granule == 1
    scores = compute_importance(g, "l1")
    plan = g.select(scores, {unit.name: 0.25})
    pruned = g.apply(plan)
    assert pruned.embed_dim == pruned.num_features == pruned.head_hidden_size == 48
    assert pruned.cls_token.shape[-1] == pruned.pos_embed.shape[-1] == 48
    assert all(b.attn.qkv.in_features == 48 and b.attn.num_heads == 4 for b in pruned.blocks)
    assert logits_of(pruned(torch.randn(2, 3, 32, 32))).shape == (2, 10)
    x = M.example("timm_vit")
    _assert_exact_costs(g, plan, x)
    rng = np.random.default_rng(0)
    for _ in range(3):  # heads, MLP widths and the residual together
        plan = g.select(scores, {u.name: float(rng.uniform(0, 0.8)) for u in g.units})
        assert unit.name in plan
        _assert_exact_costs(g, plan, x)


def test_hugging_face_models_are_refused_with_the_fix():
    pytest.importorskip("transformers")
    model = M.hf_bert().eval()
    with pytest.raises(UserInputError, match="BertForSequenceClassification.*drop --prune-embed"):
        build_graph(model, M.example("hf_bert"), prune_embed=True, what="hf_bert")
    assert "embed" not in {u.kind for u in build_graph(model, M.example("hf_bert")).units}


def test_the_env_and_search_spaces_tell_embed_apart():
    from agent.evaluation.sensitivity import SensitivityProfile
    from env.features import UNIT_FEATURES, unit_features
    from search_spaces import SearchSpace

    _, g = _graph("timm_vit")
    names, kinds = g.unit_names(), {u.name: u.kind for u in g.units}
    profile = SensitivityProfile(ratios=[], units=names, dense_accuracy=1.0, accuracy=dict.fromkeys(names, []),
                                 flops_ratio={}, latency_ratio={}, macs_share={}, latency_share={})
    col = unit_features(g.units, profile)[:, UNIT_FEATURES.index("kind")]
    codes = {}
    for u, v in zip(g.units, col, strict=True):
        codes.setdefault(u.kind, set()).add(float(v))
    assert all(len(v) == 1 for v in codes.values()) and len({next(iter(v)) for v in codes.values()}) == 3
    space = SearchSpace.from_dict({"kinds": {"embed": [0, 0.3], "mlp": [0, 0.7]}})
    bounds = {d.units[0]: (d.low, d.high) for d in space.bind(unit_names=names, unit_kinds=kinds).dimensions}
    assert bounds[_embed(g).name] == (0.0, 0.3)
    assert {bounds[n] for n, k in kinds.items() if k == "mlp"} == {(0.0, 0.7)}


def test_a_vit_tiny_pruned_with_embed_reloads_and_prunes_iteratively_to_the_same_model(tmp_path):
    """pruned_model.pt records --prune-embed; iterative pruning re-graphs the pruned model with it."""
    from agent import EvalSettings, Policy, build_task, get_engine, load_pruned_model, save_pruned_model
    from agent.deploy.finetune import FinalTuneConfig
    from agent.deploy.iterative import iterative_prune

    task = build_task(model="vit-tiny", dataset="digits32", train_epochs=1, prune_embed=True)
    engine, settings = get_engine(task), EvalSettings()
    assert _embed(engine.graph).channel_groups == 3  # vit-tiny: 3 heads of 32
    policy = Policy.uniform(engine.graph.unit_names(), 0.4)
    plan = engine.plan(policy, settings)
    model = engine.graph.apply(plan)
    path = save_pruned_model(tmp_path / "pruned.pt", task=task, model=model, removed=plan, policy=policy.to_dict())
    loaded = load_pruned_model(path)
    x = task.example_input(2)
    with torch.no_grad():
        assert loaded.hidden_dim == model.hidden_dim == 96 - len(plan[_embed(engine.graph).name])
        assert torch.equal(loaded(x), model(x))
    out = iterative_prune(task, policy, steps=2, schedule="linear", finetune=FinalTuneConfig(epochs=0),
                          settings=settings)
    a, b = out.model.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_timm_hub_vit_built_by_our_source_prunes_its_residual_exactly():
    pytest.importorskip("timm")
    from agent.tasks.models import build_model

    torch.manual_seed(0)
    model = build_model("timm:vit_tiny_patch16_224", (1, 32, 32), 10).eval()  # 12 blocks of 3 heads, width 192
    x = torch.zeros(1, 1, 32, 32)
    g = PruningGraph(model, x, prune_embed=True)
    unit = _embed(g)
    assert unit.channels == 192 and [u.kind for u in g.units].count("heads") == 12
    plan = g.select(compute_importance(g, "l2"), dict.fromkeys(g.unit_names(), 0.5))
    pruned = g.apply(plan)
    assert pruned.embed_dim == pruned.num_features == 96 and pruned.blocks[11].attn.qkv.in_features == 96
    assert pruned(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    _assert_exact_costs(g, plan, x)
