"""The threshold codec: a threshold on a unit's normalised importance <-> the pruning ratio it gives.

Threshold-mode search spaces and the env's threshold actions remove the channels whose score, scaled into
[0, 1] by the unit's maximum (:func:`~agent.pruning.importance.normalized`), falls under the threshold. Both
directions live here so that a policy encoded as thresholds decodes to the ratios it came from.
"""

from __future__ import annotations

import torch

from .importance import normalized

__all__ = ["threshold_to_ratio", "ratio_to_threshold"]


def threshold_to_ratio(scores: torch.Tensor, threshold: float, *, min_ratio: float = 0.0,
                       max_ratio: float = 1.0) -> float:
    """The share of channels whose normalised score is under ``threshold``, within ``[min_ratio, max_ratio]``.

    A threshold ``<= 0`` removes nothing; one channel always stays.

    Example:
        >>> threshold_to_ratio(torch.tensor([1.0, 2.0, 3.0, 4.0]), 0.6)
        0.5
    """
    frac = float((normalized(scores) < threshold).float().mean()) if threshold > 0 else 0.0
    return min(max_ratio, max(min_ratio, frac), (len(scores) - 1) / len(scores))


def ratio_to_threshold(scores: torch.Tensor, ratio: float) -> float:
    """The threshold removing ``round(ratio * channels)`` channels: midway between the scores either side of the cut.

    0 removes nothing; at most all channels but the top one are removed.

    Example:
        >>> scores = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> ratio_to_threshold(scores, 0.5), threshold_to_ratio(scores, ratio_to_threshold(scores, 0.5))
        (0.625, 0.5)
    """
    s = normalized(scores).sort().values
    k = min(len(s) - 1, round(ratio * len(s)))
    return float(s[k - 1] + s[k]) / 2 if k > 0 else 0.0
