"""The unit-kind extension point: what a kind of prunable unit knows, and the registry that holds the kinds.

A kind finds its units among Torch-Pruning's dependency groups, reduces channel importance to its elements,
maps dropped elements to root channels, predicts each layer's cost and fixes library attributes after
pruning. :class:`~agent.pruning.graph.PruningGraph` asks the registered kinds in order (:func:`kinds_in_order`:
registration order, the fallback kind ``channels`` last); a root one kind claims is not offered to the next.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..costs import layer_cost_factor
from ..units import GroupItem, PrunableUnit

if TYPE_CHECKING:
    from ..graph import PruningGraph

__all__ = ["UnitKind", "get_kind", "kind_names", "kinds_in_order", "register_kind", "registered_kind",
           "unregister_kind"]


class UnitKind(ABC):
    """One kind of prunable unit (channels, the groups of a grouped conv, attention heads...).

    Subclasses set :attr:`name` and implement the four abstract methods; the others have the channel
    behaviour as default. All indices are in the dense model's coordinates.
    """

    name: ClassVar[str]
    """Registry key, stored in :attr:`PrunableUnit.kind`."""
    fallback: ClassVar[bool] = False
    """Asked last, whatever the registration order (only ``channels``: it claims every root left)."""

    @abstractmethod
    def claim(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> list[tuple[str, ...]]:
        """The units of this kind among the ``offered`` groups (root layer name -> Torch-Pruning group).

        Returns:
            One tuple of offered root names per unit: the groups it spans, the first being its primary group
            (the one importance criteria score; its root channels are the unit's root coordinates).
        """

    def own_groups(self, graph: PruningGraph) -> dict[str, tp.dependency.Group]:
        """Groups this kind forms itself, root layer name -> group, for layers Torch-Pruning can't group.

        Asked before Torch-Pruning forms its groups; the layers whose outputs these groups prune are not used as
        roots by it, and the groups are offered like its own. Default none (``heads`` forms grouped-query
        attention's, whose ``repeat_kv`` Torch-Pruning's index mapping can't follow).
        """
        del graph
        return {}

    def unwrapped_parameters(self, graph: PruningGraph) -> list[tuple[nn.Parameter, int]]:
        """Bare parameters (outside any layer Torch-Pruning knows) this kind prunes, each with its pruned dimension.

        Asked before Torch-Pruning's graph is built (``graph`` has its model, modules and options, nothing more)
        and passed to it as ``unwrapped_parameters``; default none (Torch-Pruning then guesses each one's last
        non-singleton dimension). The ``embed`` kind names a ViT's class token and position embedding this way.
        """
        del graph
        return []

    def keep_whole(self, graph: PruningGraph, offered: Mapping[str, tp.dependency.Group]) -> dict[str, str]:
        """Offered roots no kind may prune, with why (asked before any claim); default none.

        The ``embed`` kind keeps a transformer's residual width whole this way unless the graph prunes it.
        """
        del graph, offered
        return {}

    @abstractmethod
    def build(self, graph: PruningGraph, roots: tuple[str, ...]) -> tuple[PrunableUnit, list[GroupItem]]:
        """The unit spanning the groups of ``roots`` (as claimed) and every slice it removes.

        The graph then names the unit by its earliest member in forward order and fills in its layer features.
        """

    @abstractmethod
    def element_scores(self, unit: PrunableUnit, scores: torch.Tensor) -> torch.Tensor:
        """Reduce root-channel importance (length ``unit.channels``) to one score per element (``unit.elements``)."""

    def drop_elements(self, graph: PruningGraph, unit: PrunableUnit, ranked: np.ndarray, n_drop: int) -> np.ndarray:
        """Which elements go: ``ranked`` lists them by ascending score; default the ``n_drop`` lowest."""
        del graph, unit
        return ranked[:n_drop]

    @abstractmethod
    def to_roots(self, unit: PrunableUnit, elements: np.ndarray) -> np.ndarray:
        """Root channel indices of the dropped ``elements`` (in every channel group of the unit)."""

    def cost_factor(self, graph: PruningGraph, layer: str, kin: float, kout: float, *, metric: str = "macs") -> float:
        """Fraction of a layer's MACs / parameters left when ``kin`` / ``kout`` of its in / out width survive.

        Asked for the layers whose outputs this kind's units prune, once per ``metric`` (``"macs"`` or
        ``"params"``); default :func:`~agent.pruning.costs.layer_cost_factor`.
        """
        return layer_cost_factor(graph, layer, kin, kout, metric=metric)

    def after_apply(self, graph: PruningGraph, modules: Mapping[str, nn.Module], unit: PrunableUnit,
                    roots: np.ndarray) -> None:
        """Keep library attributes consistent once Torch-Pruning's functions removed ``roots`` of ``unit``.

        Called inside :meth:`PruningGraph.apply_to` (every pruned model goes through it) on ``modules``, the
        pruned copy's ``named_modules()``. Default: nothing (Torch-Pruning's functions keep conv / linear
        attributes right).
        """
        del graph, modules, unit, roots


_KINDS: dict[str, UnitKind] = {}


def register_kind(kind: UnitKind | type[UnitKind]) -> UnitKind | type[UnitKind]:
    """Register a unit kind (an instance, or a class to instantiate: usable as a class decorator).

    Raises:
        TypeError: ``kind`` is not a :class:`UnitKind`.
        ValueError: Its name is taken, or a second fallback kind is registered.
    """
    instance = kind() if isinstance(kind, type) and issubclass(kind, UnitKind) else kind
    if not isinstance(instance, UnitKind):
        raise TypeError(f"a unit kind must subclass agent.pruning.kinds.UnitKind, got {type(kind).__name__}")
    name = getattr(instance, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"unit kind {type(instance).__name__} needs a non-empty class attribute `name`")
    if name in _KINDS:
        raise ValueError(f"unit kind {name!r} is already registered: unregister_kind({name!r}) first or pick a new name")
    if instance.fallback and any(k.fallback for k in _KINDS.values()):
        raise ValueError(f"unit kind {name!r} is a second fallback kind; only one kind may claim what is left")
    _KINDS[name] = instance
    return kind


def unregister_kind(name: str) -> None:
    """Remove a registered kind (graphs built with it keep their own reference).

    Raises:
        ValueError: ``name`` is not registered, or is the fallback kind.
    """
    kind = get_kind(name)
    if kind.fallback:
        raise ValueError(f"unit kind {name!r} is the fallback kind and can't be unregistered")
    del _KINDS[name]


@contextlib.contextmanager
def registered_kind(kind: UnitKind | type[UnitKind]) -> Iterator[UnitKind]:
    """Register ``kind`` for the duration of a ``with`` block (tests, experiments), then unregister it."""
    register_kind(kind)
    name = kind.name
    try:
        yield _KINDS[name]
    finally:
        unregister_kind(name)


def get_kind(name: str) -> UnitKind:
    """The registered kind called ``name``.

    Raises:
        ValueError: No kind has that name.
    """
    if name not in _KINDS:
        raise ValueError(f"unknown unit kind {name!r}: registered kinds are {', '.join(kind_names())}")
    return _KINDS[name]


def kinds_in_order() -> Sequence[UnitKind]:
    """The kinds in the order the graph asks them: registration order, the fallback kind last."""
    kinds = list(_KINDS.values())
    return [k for k in kinds if not k.fallback] + [k for k in kinds if k.fallback]


def kind_names() -> list[str]:
    """Names of the registered kinds, in the order the graph asks them.

    Example:
        >>> from agent.pruning.kinds import kind_names
        >>> kind_names()
        ['heads', 'embed', 'mlp', 'channels']
    """
    return [k.name for k in kinds_in_order()]
