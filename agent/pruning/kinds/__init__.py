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

__all__ = ["ChannelsKind", "UnitKind", "get_kind", "kind_names", "kinds_in_order", "register_kind",
           "registered_kind", "unregister_kind"]
