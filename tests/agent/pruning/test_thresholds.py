"""The threshold codec and the plan -> kept channels path (agent.pruning.thresholds / plan_cost)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agent.pruning.plan_cost import kept_channels
from agent.pruning.thresholds import ratio_to_threshold, threshold_to_ratio


@pytest.mark.parametrize("channels", [3, 8, 17])
def test_a_ratio_encoded_as_a_threshold_decodes_to_the_same_channel_count(channels):
    scores = torch.rand(channels, generator=torch.Generator().manual_seed(channels)) + 0.01
    for ratio in np.linspace(0.0, 0.95, 20):
        removed = min(channels - 1, round(ratio * channels))
        back = threshold_to_ratio(scores, ratio_to_threshold(scores, float(ratio)))
        assert back == pytest.approx(removed / channels)


def test_the_threshold_removes_the_least_important_channels():
    scores = torch.tensor([4.0, 1.0, 3.0, 2.0])
    t = ratio_to_threshold(scores, 0.5)
    assert sorted((scores / scores.max() < t).nonzero().flatten().tolist()) == [1, 3]


def test_threshold_to_ratio_keeps_one_channel_and_respects_the_bounds():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert threshold_to_ratio(scores, 0.0) == 0.0
    assert threshold_to_ratio(scores, -1.0) == 0.0
    assert threshold_to_ratio(scores, 2.0) == pytest.approx(0.75)  # everything under it, yet one channel stays
    assert threshold_to_ratio(scores, 2.0, max_ratio=0.5) == pytest.approx(0.5)
    assert threshold_to_ratio(scores, 0.3, min_ratio=0.5) == pytest.approx(0.5)
    assert ratio_to_threshold(scores, 1.0) < 1.0  # never asks for all channels: the top one stays


def test_kept_channels_of_a_plan():
    units = [SimpleNamespace(name="a", channels=8), SimpleNamespace(name="b", channels=4)]
    assert kept_channels(units, {"a": np.array([0, 5, 6])}) == {"a": 5, "b": 4}
    assert kept_channels(units, {}) == {"a": 8, "b": 4}
