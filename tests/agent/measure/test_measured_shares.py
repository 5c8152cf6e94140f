"""Measured policies correct the latency table near them, leave it alone far away, and keep dense at exactly 1."""

import pytest
import torch

import agent.measure.lut as lut
from agent.measure import LatencyConfig
from agent.measure.measured_shares import MeasuredShares
from agent.pruning import PruningGraph
from agent.pruning.plan_cost import kept_channels
from agent.tasks import build_model

from . import fake_timing

CFG = LatencyConfig(batch_size=8, warmup=1, repeats=3)
HEAVY = "block2"  # its layers cost 4x more inside the model than alone: the table under-states what cutting them saves


@pytest.fixture
def graph():
    torch.manual_seed(0)
    return PruningGraph(build_model("cnn1d", (1, 40), 10), torch.randn(1, 1, 40))


def _policy(graph, ratios):
    scores = {u.name: torch.arange(u.channels, dtype=torch.float32) for u in graph.units}
    plan = graph.select(scores, {u: ratios.get(u, 0.0) for u in graph.unit_names()}, 8)
    return kept_channels(graph.units, plan), fake_timing.true_ratio(graph.apply(plan), graph.model, heavy=HEAVY,
                                                                    factor=4.0)


def test_a_measured_neighbour_corrects_the_prediction_and_a_far_policy_keeps_the_tables(graph, monkeypatch):
    fake_timing.install(monkeypatch, heavy=HEAVY, factor=4.0)
    table = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, round_to=8, cache=False)
    target, truth = _policy(graph, {"block2.conv_a.0": 0.75, "down2.0": 0.25})
    neighbour, neighbour_truth = _policy(graph, {"block2.conv_a.0": 0.7, "down2.0": 0.3})
    far, _ = _policy(graph, {"stem.0": 0.8, "down1.0": 0.8, "block1.conv_a.0": 0.8})
    before, far_before = table.predict_ratio(target), table.predict_ratio(far)
    assert abs(before - truth) / truth > 0.1, "the table errs on the heavy unit's policies (else nothing to show)"
    table.observe(neighbour, neighbour_truth)
    after = table.predict_ratio(target)
    assert abs(after - truth) < 0.5 * abs(before - truth), (before, after, truth)
    assert table.predict_ratio(far) == pytest.approx(far_before, abs=1e-6), "far from every measurement: the table"
    assert table.predict_ratio({}) == 1.0


def test_the_table_on_disk_keeps_its_calibration_points_not_a_searchs_measurements(graph, monkeypatch, tmp_path):
    fake_timing.install(monkeypatch, heavy=HEAVY, factor=4.0)
    table = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, round_to=8, cache_root=tmp_path)
    assert len(table.calib_kept) == len(table.calib_x) == 6 and len(table.measured) == 6
    target, truth = _policy(graph, {"block2.conv_a.0": 0.75})
    before = table.predict_ratio(target)
    table.observe(target, truth)
    reloaded = lut.build_latency_table(graph, input_shape=(1, 40), config=CFG, round_to=8, cache_root=tmp_path)
    assert len(reloaded.measured) == 6 and reloaded.predict_ratio(target) == pytest.approx(before)


def test_shares_follow_the_kernel_and_ignore_policies_that_barely_prune():
    shares = MeasuredShares({"a": 10, "b": 10})
    shares.add({"a": 9, "b": 10}, layer_time=0.95, ratio=0.5)  # x near 1: (1 - r) / (1 - x) is mostly noise
    assert len(shares) == 0 and shares.share({"a": 9}, prior=0.7) == 0.7
    shares.add({"a": 5, "b": 5}, layer_time=0.5, ratio=0.75)  # share 0.5
    near, mid = shares.share({"a": 5, "b": 5}, prior=0.9), shares.share({"a": 6, "b": 6}, prior=0.9)
    assert 0.5 < near < mid < 0.9 and shares.share({"a": 10, "b": 10}, prior=0.9) == pytest.approx(0.9, abs=1e-3)
    shares.add({"a": 5, "b": 5}, layer_time=0.5, ratio=-3.0)  # a broken reading: clipped, not extrapolated
    assert 0.0 <= shares.share({"a": 5, "b": 5}, prior=0.9) <= 1.25
