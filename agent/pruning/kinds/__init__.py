"""Unit kinds: the registry of what a prunable unit can be (``channels`` first; see :mod:`.base`)."""

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
from .heads import AttentionLayer, HeadsKind, attention_layers
from .mlp import MlpKind, transformer_blocks

__all__ = ["AttentionLayer", "ChannelsKind", "HeadsKind", "MlpKind", "UnitKind", "attention_layers", "get_kind",
           "kind_names", "kinds_in_order", "register_kind", "registered_kind", "transformer_blocks", "unregister_kind"]
