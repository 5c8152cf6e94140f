"""What a latency model must offer (:class:`LatencyModel`): the methods and fields its callers use.

:class:`~agent.measure.lut.LatencyTable` is the one implementation; the evaluation engine, the budget wall of the
env and the latency-floor check depend only on this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["LatencyModel"]


@runtime_checkable
class LatencyModel(Protocol):
    """Predicts the latency of a pruned model from the channels each unit keeps, on one device.

    Example:
        >>> class Linear:
        ...     device, batch_size, dense_ms, meta = "cpu", 1, 2.0, {}
        ...     def predict(self, kept_channels): return sum(kept_channels.values()) / 100
        ...     def predict_ratio(self, kept_channels): return self.predict(kept_channels) / self.dense_ms
        ...     def observe(self, kept_channels, ratio): pass
        >>> isinstance(Linear(), LatencyModel), Linear().predict_ratio({"conv1": 100})
        (True, 0.5)
    """

    @property
    def device(self) -> str:
        """The device the model was measured on (``cpu``, ``cuda:0``)."""
        ...

    @property
    def batch_size(self) -> int:
        """Batch size of the measurements."""
        ...

    @property
    def dense_ms(self) -> float:
        """Measured latency of the dense model in ms (0 when unknown)."""
        ...

    @property
    def meta(self) -> Mapping[str, object]:
        """Measurement context (e.g. ``threads``)."""
        ...

    def predict(self, kept_channels: Mapping[str, int]) -> float:
        """Predicted latency in ms of the model keeping ``kept_channels`` per unit (missing units: dense)."""
        ...

    def predict_ratio(self, kept_channels: Mapping[str, int]) -> float:
        """Predicted latency relative to the dense model's prediction (self-consistent, no absolute offset)."""
        ...

    def observe(self, kept_channels: Mapping[str, int], ratio: float) -> None:
        """Learn the measured latency ratio to dense of the model keeping ``kept_channels`` (may be a no-op)."""
        ...
