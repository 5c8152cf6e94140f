"""Torch threads on a shared machine: how many cores are free, the default thread count, and collapse warnings.

More torch threads than free cores is what breaks a latency measurement on a shared CPU (docs/BENCHMARKS.md,
"Latency under load"): with one of two cores busy, a 2-thread dense model runs 2.8x slower and its ratio to a
pruned copy collapses from ~0.6 to 0.24, while at 1 thread both are unchanged. The thread count is therefore part
of the device, like the batch size: it is recorded with every measurement and keys the latency table.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Iterator

import torch

__all__ = ["available_cores", "free_cores", "default_threads", "check_threads", "torch_threads", "ThroughputWatch"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat`` (None where unavailable)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_cores(sample_s: float = 0.2) -> float:
    """Cores kept busy by running work right now: ``/proc/stat`` sampled over ``sample_s`` seconds.

    Falls back to the 1-minute load average where ``/proc/stat`` is unavailable (it lags by about a minute).
    """
    a = _cpu_times()
    if a is not None:
        time.sleep(sample_s)
        b = _cpu_times()
        if b is not None and b[1] > a[1]:
            return (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - no load figure on this platform
        return 0.0


def free_cores(*, own_threads: int = 0) -> int:
    """Cores not kept busy by other work right now (at least 1).

    The CPU sample counts this process's own running threads too; pass ``own_threads`` (threads this process
    keeps busy itself at the moment of the call) to leave them out. A core counts as busy when it is more than
    half used.
    """
    others = max(0.0, _busy_cores() - own_threads)
    return max(1, available_cores() - math.floor(others + 0.5))


def default_threads() -> int:
    """The default torch thread count: the cores free right now (``--threads`` overrides it)."""
    return free_cores()


def check_threads(threads: int, *, what: str = "timing") -> int | None:
    """Warn when fewer cores are free than ``threads``; returns the free-core figure when it warned.

    Args:
        threads: Torch threads about to be used.
        what: What they are used for (in the message).
    """
    free = free_cores()
    if free < threads:
        warnings.warn(
            f"{threads} torch threads for {what}, but only {free} of {available_cores()} cores are free: "
            f"oversubscribed measurements are slow and their ratios unreliable; pass --threads {free}",
            RuntimeWarning, stacklevel=2)
        return free
    return None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op torch threads (None: unchanged); yields the count in effect."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield before
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


class ThroughputWatch:
    """Warns once when a loop's throughput collapses against its own early rate (e.g. oversubscribed training).

    Args:
        what: Name of the loop in the message.
        baseline_steps: Steps (after a short warm-up) that set the reference rate.
        factor: Warn when the recent rate falls below ``1 / factor`` of the reference.
        window: Steps per comparison window.
    """

    def __init__(self, what: str, *, baseline_steps: int = 20, factor: float = 4.0, window: int = 25) -> None:
        self.what, self.baseline_steps, self.factor, self.window = what, baseline_steps, factor, window
        self.reference: float | None = None
        self.warned = False
        self._t0 = time.perf_counter()
        self._n = 0
        self._warmup = 3

    def step(self) -> None:
        """Count one step (call after each one)."""
        if self.warned:
            return
        self._n += 1
        if self._warmup:
            self._warmup -= 1
            self._t0, self._n = time.perf_counter(), 0
            return
        span = self.baseline_steps if self.reference is None else self.window
        if self._n < span:
            return
        rate = self._n / max(time.perf_counter() - self._t0, 1e-9)
        self._t0, self._n = time.perf_counter(), 0
        if self.reference is None:
            self.reference = rate
        elif rate * self.factor < self.reference:
            self.warned = True
            warnings.warn(
                f"{self.what} slowed from {self.reference:.1f} to {rate:.2f} steps/s with "
                f"{torch.get_num_threads()} torch threads and {free_cores()} of {available_cores()} cores free: "
                "other work is competing for the cores; pass --threads with the free-core count (e.g. --threads 1)",
                RuntimeWarning, stacklevel=2)
