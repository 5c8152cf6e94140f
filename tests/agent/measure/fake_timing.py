"""Deterministic stand-ins for the latency table's timers: a layer costs its width, a model its layers' widths.

Tests that compare predictions (floors, corrections) must not hang on a loaded machine's noise: with these every
build gives the same table. Layers named ``heavy...`` cost ``factor`` x more inside the model than their isolated
timing says: the kind of policy where the table errs.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

import agent.measure.lut as lut
from agent.measure.latency import LatencyStats, PairedLatency

OVERHEAD = 0.1
"""Share of the dense model's time no pruning removes."""


def width(layer: nn.Module) -> int:
    """A timed layer's output width (its isolated cost, in hundredths of a millisecond)."""
    return getattr(layer, "out_channels", getattr(layer, "num_features", getattr(layer, "out_features", 1)))


def true_ratio(model: nn.Module, reference: nn.Module, *, heavy: str = "", factor: float = 1.0) -> float:
    """What the patched paired timer measures for ``model`` against ``reference`` (without a burst)."""
    def total(m: nn.Module) -> float:
        return sum(width(x) * (factor if heavy and n.startswith(heavy) else 1.0)
                   for n, x in m.named_modules() if isinstance(x, lut._TIMED))

    return OVERHEAD + (1 - OVERHEAD) * total(model) / total(reference)


def install(monkeypatch, *, heavy: str = "", factor: float = 1.0,
            burst: Callable[[int], float] | None = None) -> list[nn.Module]:
    """Patch the table's two timers; returns the models the paired timer was called with.

    ``burst(n)`` is a factor on the n-th paired reading (1-based): a burst of other work.
    """
    calls: list[nn.Module] = []

    def cost(layer, shape, config):
        return LatencyStats(0.01 * width(layer), 0.0, 3, None)

    def paired(model, reference, shape, *, config):
        calls.append(model)
        ratio = true_ratio(model, reference, heavy=heavy, factor=factor) * (burst(len(calls)) if burst else 1.0)
        return PairedLatency(ratio, ratio, ratio, 1.0, 2, 1, LatencyStats(1.0, 0.0, 3, None),
                             LatencyStats(1.0, 0.0, 3, None))

    monkeypatch.setattr(lut, "measure_latency", cost)
    monkeypatch.setattr(lut, "measure_latency_ratio", paired)
    return calls
