"""The latency table on a tiny ViT: the linear layers of head and MLP units are timed at their kept widths."""

import torch

import agent.measure.lut as lut
from agent.measure import LatencyConfig
from agent.pruning import PruningGraph, compute_importance
from tests.agent.pruning import transformer_models as M

CFG = LatencyConfig(batch_size=8, warmup=1, repeats=5, threads=1)


def test_head_and_mlp_layers_are_timed_and_shrink_the_prediction(tmp_path):
    torch.manual_seed(0)
    graph = PruningGraph(M.timm_vit().eval(), M.example("timm_vit"))
    table = lut.build_latency_table(graph, input_shape=(3, 32, 32), config=CFG, cache_root=tmp_path,
                                    calibration_ratios=(0.0, 0.5))
    for b in (0, 1):
        assert {f"blocks.{b}.attn.qkv", f"blocks.{b}.attn.proj", f"blocks.{b}.mlp.fc1", f"blocks.{b}.mlp.fc2"} \
            <= set(table.layers)
        assert f"blocks.{b}.attn" not in table.layers  # the attention block's matmuls are in the residual
    qkv = lut.LayerDims(**table.dims["blocks.0.attn.qkv"])
    assert qkv.out_sources == {"blocks.0.attn.qkv": 192} and qkv.in_sources == {}
    scores = compute_importance(graph, "l2")
    for kind in ("heads", "mlp"):
        plan = graph.select(scores, {u.name: 0.75 for u in graph.units if u.kind == kind})
        kept = {u.name: u.channels - len(plan.get(u.name, ())) for u in graph.units}
        assert table._layer_sum(kept) < table._layer_sum({}), kind
        assert table.predict_ratio(kept) < 1.0, kind
