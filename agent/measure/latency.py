"""Measured latency: warm-up, then the median of repeated timed forward passes (CUDA synchronised)."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import user_error

__all__ = ["AUTO_BATCHES", "AUTO_BATCH_MACS", "LatencyConfig", "LatencyStats", "PairedLatency",
           "NoisyMeasurementWarning", "auto_batch_size", "measure_latency", "measure_latency_ratio", "ratio_interval",
           "resolve_device"]

AUTO_BATCHES = (64, 128, 256, 512)
"""Batch sizes ``--latency-batch auto`` chooses from."""
AUTO_BATCH_MACS = 2**31
"""Dense multiply-adds (about 2.1 G) a timed batch should hold before ``auto`` stops growing it."""


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


def auto_batch_size(dense_macs: float) -> int:
    """The smallest of :data:`AUTO_BATCHES` whose batch holds :data:`AUTO_BATCH_MACS` of dense work (else the largest).

    A small model timed at a small batch is bound by per-call overhead (dispatch, allocation), which pruning cannot
    remove: its latency ratio then stays far above its FLOPs ratio. A batch with a fixed minimum of work amortises
    the overhead; larger models keep the smallest batch. The rule depends on the model only (MACs per sample), not
    on the machine's load, so a quiet and a busy run time the same batch.

    Example:
        >>> auto_batch_size(7.4e6), auto_batch_size(50e6)  # MACs per sample: the default 1-D CNN, a mid-size CNN
        (512, 64)
    """
    for batch in AUTO_BATCHES:
        if batch * dense_macs >= AUTO_BATCH_MACS:
            return batch
    return AUTO_BATCHES[-1]


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
    rounds: int = 3
    """Timing rounds: for one model, the fastest round's median is reported (interference only adds time); for a
    paired ratio (:func:`measure_latency_ratio`), the minimum number of paired rounds."""
    max_rounds: int = 10
    """Cap on paired rounds while the ratio's interval is wider than ``tolerance``."""
    tolerance: float = 0.03
    """Paired rounds stop once the ratio's 90% interval has a relative half-width within this."""
    threads: int | None = None
    """Torch intra-op threads while timing (None: the process's current setting). Part of the device: the ratio
    differs with it, and more threads than free cores breaks it."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise user_error("latency batch size must be >= 1, got", self.batch_size, "e.g. --latency-batch 1")
        if self.repeats < 1 or self.warmup < 0 or self.min_repeats < 1 or self.rounds < 1 or self.max_rounds < 1:
            raise ValueError(f"bad latency repeats/warmup/rounds: {self.repeats}/{self.warmup}/{self.min_repeats}/"
                             f"{self.rounds}/{self.max_rounds}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise user_error("latency tolerance must be > 0, got", self.tolerance, "e.g. --latency-tolerance 0.03")
        if self.threads is not None and self.threads < 1:
            raise user_error("--threads must be >= 1, got", self.threads, "e.g. --threads 1")


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


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], *, config: LatencyConfig) -> LatencyStats:
    """Time ``model`` on a random batch (with ``config.threads`` torch threads).

    Example:
        >>> import torch
        >>> from agent import LatencyConfig, measure_latency
        >>> stats = measure_latency(torch.nn.Linear(64, 10), (64,), config=LatencyConfig(batch_size=8, repeats=5))
        >>> stats.median_ms > 0
        True

    Args:
        model: Model to time (moved to ``config.device``; left there).
        input_shape: Per-sample input shape.
        config: Batch size, device, warm-up, repeats and rounds (the fastest round's median counts).

    Returns:
        Median and spread of the per-batch forward time.
    """
    from .threads import torch_threads

    with torch_threads(config.threads):
        return _measure(model, input_shape, config)


@torch.inference_mode()
def _measure(model: nn.Module, input_shape: tuple[int, ...], config: LatencyConfig) -> LatencyStats:
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


@dataclass(frozen=True)
class PairedLatency:
    """A latency ratio measured in paired rounds, with its confidence interval (one source of truth).

    ``dense_ms`` and ``model_ms`` come from the same rounds as the ratio: ``dense_ms`` is the median of the
    reference's per-round medians and ``model_ms = ratio * dense_ms``, so the milliseconds printed beside a ratio
    always agree with it.
    """

    ratio: float
    """Point estimate: geometric mean of the per-round ratios (model / reference)."""
    lo: float
    """Lower end of the ratio's confidence interval."""
    hi: float
    """Upper end of the ratio's confidence interval (what a latency target is checked against)."""
    dense_ms: float
    """The reference's latency in these rounds (median of its per-round medians)."""
    rounds: int
    """Paired rounds timed."""
    threads: int
    """Torch intra-op threads the rounds ran with."""
    model_stats: LatencyStats
    """The model's fastest round (peak memory, IQR)."""
    reference_stats: LatencyStats
    """The reference's fastest round."""

    @property
    def model_ms(self) -> float:
        """The model's latency on the same reference: ``ratio * dense_ms``."""
        return self.ratio * self.dense_ms

    @property
    def half_width(self) -> float:
        """Relative half-width of the interval: ``(hi - lo) / (2 * ratio)``."""
        return (self.hi - self.lo) / (2 * self.ratio) if self.ratio > 0 else math.inf

    def tight(self, tolerance: float) -> bool:
        """Whether the interval's relative half-width is within ``tolerance``."""
        return self.half_width <= tolerance


# two-sided 90% Student-t quantiles by degrees of freedom (an upper bound is then a 95% one-sided bound)
_T90 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812,
        12: 1.782, 15: 1.753, 20: 1.725, 30: 1.697}


def _t90(df: int) -> float:
    return _T90[max(k for k in _T90 if k <= df)] if df < 30 else 1.645


def ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios and its 90% Student-t interval on the log scale: ``(ratio, lo, hi)``."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    assert logs, ratios
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), 0.0, math.inf
    half = _t90(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


class NoisyMeasurementWarning(RuntimeWarning):
    """Paired rounds hit their cap before the ratio's interval was as tight as asked."""


def measure_latency_ratio(model: nn.Module, reference: nn.Module, input_shape: tuple[int, ...], *,
                          config: LatencyConfig) -> PairedLatency:
    """Time ``model`` against ``reference`` (the dense model) in alternating paired rounds (AB, BA, AB, ...).

    Shared machines drift and burst: a reference timed minutes earlier can be off by a factor of two. Each round
    times both models back to back, so their ratio is measured under the same conditions. Rounds go on (at least
    ``config.rounds``) until the ratio's 90% interval has a relative half-width within ``config.tolerance``, or
    ``config.max_rounds`` is reached; then a :class:`NoisyMeasurementWarning` names the spread.

    Returns:
        The ratio, its interval, and the paired milliseconds.
    """
    from .threads import torch_threads

    one = dataclasses.replace(config, rounds=1)
    ours, refs, ratios = [], [], []
    cap = max(config.rounds, config.max_rounds)
    with torch_threads(config.threads) as threads:
        for r in range(cap):
            first_ref = r % 2 == 0
            a = measure_latency(reference if first_ref else model, input_shape, config=one)
            b = measure_latency(model if first_ref else reference, input_shape, config=one)
            mine, ref = (b, a) if first_ref else (a, b)
            ours.append(mine)
            refs.append(ref)
            ratios.append(mine.median_ms / ref.median_ms if ref.median_ms > 0 else float("nan"))
            if len(ratios) >= max(2, config.rounds):
                mid, lo, hi = ratio_interval(ratios)
                if (hi - lo) / (2 * mid) <= config.tolerance:
                    break
    ratio, lo, hi = ratio_interval(ratios)
    result = PairedLatency(ratio, lo, hi, float(statistics.median(st.median_ms for st in refs)), len(ratios), threads,
                           min(ours, key=lambda st: st.median_ms), min(refs, key=lambda st: st.median_ms))
    if len(ratios) > 1 and not result.tight(config.tolerance):
        warnings.warn(
            f"latency ratio {ratio:.3f} has a 90% interval of {lo:.3f}-{hi:.3f} (+/-{result.half_width:.1%}) after "
            f"{len(ratios)} paired rounds, wider than the {config.tolerance:.0%} tolerance: the machine is too noisy "
            f"(per-round ratios {min(ratios):.3f}-{max(ratios):.3f}); a target is met only when the upper end is "
            f"under it. Free cores, lower --threads, or raise the tolerance", NoisyMeasurementWarning, stacklevel=2)
    return result
