"""``--latency-batch auto``: small models are timed at a batch that amortises per-call overhead."""

from __future__ import annotations

import argparse

import pytest
from torch import nn

from agent.cli import build_parser
from agent.cli.common import settings_from_args, with_latency_batch
from agent.measure.latency import AUTO_BATCH_MACS, AUTO_BATCHES, auto_batch_size
from agent.tasks import build_model
from agent.tasks.task import DEFAULT_MODEL


def _args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["search", "--out", "x", *flags])


def test_auto_batch_grows_with_smaller_models_and_stops_at_the_largest():
    assert auto_batch_size(AUTO_BATCH_MACS / AUTO_BATCHES[0]) == AUTO_BATCHES[0]  # enough work at the smallest
    assert auto_batch_size(AUTO_BATCH_MACS / AUTO_BATCHES[1]) == AUTO_BATCHES[1]
    assert auto_batch_size(1.0) == AUTO_BATCHES[-1]
    sizes = [auto_batch_size(m) for m in (1e4, 1e6, 3e6, 1e8)]
    assert sizes == sorted(sizes, reverse=True)


def test_auto_resolves_from_the_models_macs_and_an_explicit_batch_wins():
    model = build_model(DEFAULT_MODEL, (1, 40), 10)  # about 7.4 M MACs per sample: overhead-bound at 64
    auto = _args()
    assert auto.latency_batch == "auto"
    settings = with_latency_batch(auto, settings_from_args(auto), model, (1, 40))
    assert settings.latency.batch_size == auto_batch_size(7.44e6) == 512
    big = nn.Sequential(nn.Flatten(), nn.Linear(40, 1_000_000))  # 40 M MACs per sample
    assert with_latency_batch(auto, settings_from_args(auto), big, (1, 40)).latency.batch_size == 64
    explicit = _args("--latency-batch", "1")
    assert with_latency_batch(explicit, settings_from_args(explicit), model, (1, 40)).latency.batch_size == 1


@pytest.mark.parametrize("bad", ["0", "-4", "many", "2.5"])
def test_a_bad_latency_batch_is_refused_with_the_fix(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        _args("--latency-batch", bad)
    assert exc.value.code == 2
    assert "--latency-batch 64" in capsys.readouterr().err
