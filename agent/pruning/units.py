"""The nouns of the pruning graph: a prunable unit, the slices it removes, and a layer's controlled widths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["GroupItem", "LayerDims", "PrunableUnit"]


@dataclass
class GroupItem:
    """One tensor slice a unit removes: a layer (or parameter) dimension, in dense coordinates."""

    target: str
    """Module name, or parameter name when ``is_param``."""
    is_param: bool
    """Whether ``target`` is a bare ``nn.Parameter`` (layer-scale ``gamma``...)."""
    handler: object | None
    """Torch-Pruning's bound pruning function for it, or None for bookkeeping only (counted by the cost
    prediction; the unit's kind reshapes the layer in :meth:`~agent.pruning.kinds.UnitKind.after_apply`)."""
    pruning_dim: int
    """The dimension the handler prunes."""
    is_out: bool
    """Whether it prunes the target's output channels (else its input channels)."""
    idxs: np.ndarray
    """Positions in the target's dimension."""
    roots: np.ndarray
    """The unit's root index each position belongs to (same length as ``idxs``)."""


@dataclass
class PrunableUnit:
    """Channels that must be removed together: one Torch-Pruning dependency group or more, of one unit kind."""

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
    kind: str = "channels"
    """Name of the unit kind (see :mod:`agent.pruning.kinds`) that found the unit and prunes it."""
    element_size: int = 1
    """Root channels per element, the smallest thing the kind removes (1 for ``channels``)."""

    @property
    def granule(self) -> int:
        """Root channels removed together: one element in every channel group."""
        return self.channel_groups * self.element_size

    @property
    def elements(self) -> int:
        """Elements per channel group: what the kind ranks and drops."""
        return self.channels // self.granule

    def kept_channels(self, ratio: float, round_to: int | None = None) -> int:
        """Root channels kept at pruning ``ratio`` (never zero; rounded down to ``round_to`` when possible)."""
        keep = int(np.floor(round(self.elements * (1.0 - ratio), 6)))
        if round_to and round_to > 1 and self.granule == 1 and self.channels > round_to:
            keep = max(round_to, keep - keep % round_to)
        return max(1, keep) * self.granule


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
