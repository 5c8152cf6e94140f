"""The nouns of the pruning graph: a prunable unit (one dependency group) and a layer's controlled widths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LayerDims", "PrunableUnit"]


@dataclass
class PrunableUnit:
    """One Torch-Pruning dependency group: channels that must be removed together."""

    name: str
    """Name of the group's first layer in forward order, e.g. ``layer2.0.conv1``."""
    index: int
    """Position in forward (graph) order."""
    channels: int
    """Prunable channels of the group (root layer's output channels)."""
    layer_type: str
    """``conv``, ``dwconv`` or ``linear`` (type of the root layer)."""
    in_channels: int
    """Input channels of the root layer."""
    kernel: int
    """Kernel size (product over spatial dims; 1 for linear)."""
    stride: int
    """Stride of the root layer (first spatial dim; 1 for linear)."""
    members: list[str] = field(default_factory=list)
    """Every layer whose output channels this group removes."""
    channel_groups: int = 1
    """Channel grouping (grouped convs): pruning keeps the groups equal-sized."""
    macs_share: float = 0.0
    """Share of the dense model's MACs in layers this unit touches (in or out)."""
    params_share: float = 0.0
    """Share of the dense model's parameters in layers this unit touches."""

    def kept_channels(self, ratio: float, round_to: int | None = None) -> int:
        """Channels kept at pruning ``ratio`` (never zero; rounded down to ``round_to`` when possible)."""
        g = self.channel_groups
        keep = int(np.floor(round((self.channels // g) * (1.0 - ratio), 6)))
        if round_to and round_to > 1 and g == 1 and self.channels > round_to:
            keep = max(round_to, keep - keep % round_to)
        return max(1, keep) * g


@dataclass(frozen=True)
class LayerDims:
    """Which units shrink a layer's input and output dimensions (for cost models)."""

    name: str
    """Layer name."""
    in_size: int | None
    """Dense input width (channels / features)."""
    out_size: int | None
    """Dense output width."""
    in_sources: dict[str, int]
    """Unit -> number of input positions it controls."""
    out_sources: dict[str, int]
    """Unit -> number of output positions it controls."""

    def kept(self, side: str, kept_channels: Mapping[str, int], channels: Mapping[str, int]) -> float:
        """Fraction of the ``side`` ("in"/"out") width kept when each unit keeps ``kept_channels[unit]``."""
        size = self.in_size if side == "in" else self.out_size
        sources = self.in_sources if side == "in" else self.out_sources
        if not size:
            return 1.0
        removed = sum(n * (1.0 - kept_channels.get(u, channels[u]) / channels[u]) for u, n in sources.items())
        return max(0.0, 1.0 - removed / size)
