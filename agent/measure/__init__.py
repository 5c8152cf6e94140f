"""Measurement: latency on a device; the per-device latency model (:mod:`.lut`) and its protocol (:mod:`.model`).

Threads are chosen in :mod:`.threads`.
"""

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
from .model import LatencyModel

__all__ = ["LatencyConfig", "LatencyModel", "LatencyStats", "NoisyMeasurementWarning", "PairedLatency", "measure_latency",
           "measure_latency_ratio", "ratio_interval", "resolve_device"]
