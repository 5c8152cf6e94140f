"""Measured latency: warm-up, then the median of repeated timed forward passes (CUDA synchronised)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import user_error

__all__ = ["LatencyConfig", "LatencyStats", "measure_latency", "measure_latency_ratio", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """Validate a device string (``cpu``, ``cuda``, ``cuda:1``) against what this machine has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise user_error("unknown device", device, "use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise user_error("CUDA is not available on this machine, got --device", str(device), "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise user_error("no such GPU:", str(device), f"this machine has {torch.cuda.device_count()} GPU(s)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise user_error("unsupported device", str(device), "use cpu or cuda")
    return dev


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is measured."""

    batch_size: int = 64
    """Batch size of the timed forward passes."""
    device: str = "cpu"
    """Device to time on (``cpu``, ``cuda``, ``cuda:N``)."""
    warmup: int = 3
    """Untimed forward passes before timing."""
    repeats: int = 15
    """Timed forward passes (the median is reported)."""
    max_seconds: float = 2.0
    """Stop timing after this long (at least ``min_repeats`` passes are always timed)."""
    min_repeats: int = 5
    """Lower bound on timed passes when ``max_seconds`` cuts timing short."""
    rounds: int = 1
    """Independent timing rounds; the fastest round's median is reported. Interference from other processes
    only ever adds time, so several rounds make a measurement robust to bursts (used to confirm results)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise user_error("latency batch size must be >= 1, got", self.batch_size, "e.g. --latency-batch 1")
        if self.repeats < 1 or self.warmup < 0 or self.min_repeats < 1 or self.rounds < 1:
            raise ValueError(f"bad latency repeats/warmup/rounds: {self.repeats}/{self.warmup}/{self.min_repeats}/"
                             f"{self.rounds}")


@dataclass(frozen=True)
class LatencyStats:
    """Result of one latency measurement."""

    median_ms: float
    """Median time of one forward pass of ``batch_size`` samples."""
    iqr_ms: float
    """Inter-quartile range of the timed passes (a noise estimate)."""
    repeats: int
    """Number of timed passes."""
    peak_mem_mb: float | None
    """Peak GPU memory during the passes (None on CPU)."""

    @property
    def noise(self) -> float:
        """Relative noise (IQR / median)."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, config: LatencyConfig) -> LatencyStats:
    """Time ``model`` on a random batch.

    Args:
        model: Model to time (moved to ``config.device``; left there).
        input_shape: Per-sample input shape.
        config: Batch size, device, warm-up and repeats.

    Returns:
        Median and spread of the per-batch forward time.
    """
    device = resolve_device(config.device)
    model = model.to(device).eval()
    x = torch.randn((config.batch_size, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best: tuple[float, float, int] | None = None
    for _ in range(config.rounds):
        for _ in range(max(1, config.warmup)):
            model(x)
        _sync(device)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < config.repeats:
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1000.0)
            if len(times) >= config.min_repeats and time.perf_counter() - start > config.max_seconds:
                break
        q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
        round_stats = (statistics.median(times), q[2] - q[0], len(times))
        if best is None or round_stats[0] < best[0]:
            best = round_stats
    assert best is not None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return LatencyStats(best[0], best[1], best[2], peak)


def measure_latency_ratio(model: nn.Module, reference: nn.Module, input_shape: tuple[int, ...], *,
                          config: LatencyConfig) -> tuple[LatencyStats, LatencyStats, float]:
    """Time ``model`` against ``reference`` (the dense model) in alternating rounds (AB, BA, AB, ...).

    Shared machines drift and burst: a reference timed minutes earlier can be off by a factor of two. Each round
    times both models back to back, so their ratio is measured under the same conditions; the reported ratio is
    the median of the per-round ratios, the reported times the fastest round's.

    Returns:
        ``(model stats, reference stats, latency ratio)``.
    """
    one = dataclasses.replace(config, rounds=1)
    ours, refs, ratios = [], [], []
    for r in range(config.rounds):
        first_ref = r % 2 == 0
        a = measure_latency(reference if first_ref else model, input_shape, config=one)
        b = measure_latency(model if first_ref else reference, input_shape, config=one)
        mine, ref = (b, a) if first_ref else (a, b)
        ours.append(mine)
        refs.append(ref)
        ratios.append(mine.median_ms / ref.median_ms if ref.median_ms > 0 else float("nan"))
    best = min(ours, key=lambda st: st.median_ms)
    return best, min(refs, key=lambda st: st.median_ms), float(statistics.median(ratios))
