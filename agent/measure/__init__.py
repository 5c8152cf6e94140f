"""Measurement: latency on a device (and, in :mod:`.lut`, the per-device latency model)."""

from .latency import LatencyConfig, LatencyStats, measure_latency, measure_latency_ratio, resolve_device

__all__ = ["LatencyConfig", "LatencyStats", "measure_latency", "measure_latency_ratio", "resolve_device"]
