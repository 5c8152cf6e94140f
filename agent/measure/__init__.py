"""Measurement: latency on a device (and, in :mod:`.lut`, the per-device latency model; threads in :mod:`.threads`)."""

from .latency import (
    LatencyConfig,
    LatencyStats,
    NoisyMeasurementWarning,
    PairedLatency,
    measure_latency,
    measure_latency_ratio,
    ratio_interval,
    resolve_device,
)

__all__ = ["LatencyConfig", "LatencyStats", "NoisyMeasurementWarning", "PairedLatency", "measure_latency",
           "measure_latency_ratio", "ratio_interval", "resolve_device"]
