"""Unit kinds: the registry of what a prunable unit can be (``channels`` first; see :mod:`.base`).

Registered on import: ``heads`` (imported by ``embed``), ``embed``, ``mlp``, then ``channels``, the fallback.
"""

from .base import (
    UnitKind,
    get_kind,
    kind_names,
    kinds_in_order,
    register_kind,
    registered_kind,
    unregister_kind,
)
from .channels import ChannelsKind
from .embed import EmbedKind, residual_roots
from .heads import AttentionLayer, HeadsKind, attention_layers
from .mlp import MlpKind, transformer_blocks

__all__ = ["AttentionLayer", "ChannelsKind", "EmbedKind", "HeadsKind", "MlpKind", "UnitKind", "attention_layers",
           "get_kind", "kind_names", "kinds_in_order", "register_kind", "registered_kind", "residual_roots",
           "transformer_blocks", "unregister_kind"]
