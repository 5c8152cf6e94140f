"""A fast subset of the torchvision zoo (every family) through the graph: build, prune, run, exact MACs.

``scripts/benchmark.py zoo`` sweeps every model with memory and time beside Torch-Pruning alone.
"""

import pytest
import torch
import torch_pruning as tp
import torchvision

from agent.outputs import logits_of
from agent.pruning import PruningGraph, compute_importance

FAMILIES = [
    "resnet18", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf",
    "densenet121", "convnext_tiny", "squeezenet1_1", "googlenet", "shufflenet_v2_x0_5", "mnasnet0_5",
]


@pytest.mark.parametrize("name", FAMILIES)
def test_zoo_family_prunes_runs_and_predicts_macs(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    g = PruningGraph(model, x)
    assert g.units
    plan = g.select(compute_importance(g, "l2"), dict.fromkeys(g.unit_names(), 0.5))
    pruned = g.apply(plan)
    assert logits_of(pruned(torch.randn(2, 3, 32, 32))).shape == (2, 10)
    macs, _ = tp.utils.count_ops_and_params(pruned, x)
    assert macs < 0.8 * g.dense_macs
    assert g.predict_macs(plan) == pytest.approx(macs, rel=0.01)
    if name.startswith("shufflenet"):  # the shuffle's groups are kept whole, the branches inside are pruned
        assert any("reshape" in why or "group" in why for why in g.kept_whole.values())
