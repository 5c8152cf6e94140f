"""Measured policies correct the latency table near them: a kernel-weighted local prunable share.

The table predicts a policy's latency ratio as ``1 - w * (1 - x)``: ``x`` is its summed layer time from the
isolated timings, ``w`` one share for the whole model. The policies a search walks to can sit where the isolated
timings err (at batch 512 a narrow layer can run faster alone than inside the model), and one ``w`` cannot follow
that. Every paired measurement of a whole pruned model gives that policy's own share ``(1 - ratio) / (1 - x)``.
:class:`MeasuredShares` predicts a policy's share as the Nadaraya-Watson average of the measured shares, weighted by
a Gaussian kernel of the distance between the policies' kept fractions, with the table's ``w`` as a prior of weight
:data:`PRIOR_WEIGHT`. Far from every measurement the prediction is the table's; next to one it is nearly what was
measured there; the dense model stays exactly 1 (``x = 1``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

__all__ = ["MeasuredShares", "KERNEL_LENGTH", "PRIOR_WEIGHT", "MAX_SHARE", "MAX_LAYER_TIME"]

KERNEL_LENGTH = 0.1
"""Kernel length scale, in root-mean-square kept fraction over the units (0.1: every unit 10% of its width apart)."""
PRIOR_WEIGHT = 0.2
"""Weight of the table's global share against the kernel weights (1.0 at a measured policy itself)."""
MAX_SHARE = 1.25
"""Shares are clipped to [0, MAX_SHARE]: above 1 the isolated timings over-state the layers' time in the model."""
MAX_LAYER_TIME = 0.9
"""Policies whose layer time ``x`` is above this teach nothing: their share divides noise by ``1 - x``."""


class MeasuredShares:
    """Shares ``(1 - ratio) / (1 - x)`` measured at policies, spread to policies near them.

    Args:
        channels: Unit -> dense channel count (the kept fractions' denominators; units in this order).
        length: Kernel length scale (:data:`KERNEL_LENGTH`).
        prior_weight: Weight of the prior share (:data:`PRIOR_WEIGHT`).

    Example:
        >>> m = MeasuredShares({"conv": 64})
        >>> m.share({"conv": 32}, prior=0.9)  # nothing measured: the prior
        0.9
        >>> m.add({"conv": 32}, layer_time=0.5, ratio=0.6)  # measured share (1 - 0.6) / (1 - 0.5) = 0.8
        >>> round(m.share({"conv": 32}, prior=0.9), 3), round(m.share({"conv": 8}, prior=0.9), 3)
        (0.817, 0.9)
    """

    def __init__(self, channels: Mapping[str, int], *, length: float = KERNEL_LENGTH,
                 prior_weight: float = PRIOR_WEIGHT) -> None:
        assert length > 0 and prior_weight > 0
        self.channels = dict(channels)
        self.length, self.prior_weight = length, prior_weight
        self._points: list[np.ndarray] = []
        self._shares: list[float] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._shares)

    def fractions(self, kept: Mapping[str, int]) -> np.ndarray:
        """Kept fraction of every unit (missing units: dense)."""
        return np.array([kept.get(u, c) / c if c else 1.0 for u, c in self.channels.items()], dtype=float)

    def add(self, kept: Mapping[str, int], *, layer_time: float, ratio: float) -> None:
        """Record a measured latency ratio of the policy keeping ``kept`` (with table layer time ``layer_time``)."""
        if not (np.isfinite(ratio) and np.isfinite(layer_time)) or layer_time > MAX_LAYER_TIME:
            return
        share = float(np.clip((1.0 - ratio) / (1.0 - layer_time), 0.0, MAX_SHARE))
        with self._lock:
            self._points.append(self.fractions(kept))
            self._shares.append(share)

    def share(self, kept: Mapping[str, int], *, prior: float) -> float:
        """The policy's share: kernel-weighted measured shares, shrunk towards ``prior``."""
        with self._lock:
            points, shares = list(self._points), list(self._shares)
        if not points:
            return prior
        d2 = np.mean((np.stack(points) - self.fractions(kept)) ** 2, axis=1)
        weights = np.exp(-d2 / (2.0 * self.length**2))
        value = (self.prior_weight * prior + float(weights @ np.asarray(shares))) / (self.prior_weight + weights.sum())
        return float(np.clip(value, 0.0, MAX_SHARE))
