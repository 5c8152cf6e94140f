"""The pruning graph: Torch-Pruning's DependencyGraph of the dense model, built once and reused.

Every candidate policy is applied by *replaying* the pruning plan of the dense graph onto a copy of the dense
model, calling Torch-Pruning's own pruning functions (``dep.handler``) module by module. All indices live in
the dense model's coordinates, so a copy can be pruned without tracing it again. The copy shares the dense
tensors until a pruning function replaces them (it never writes in place); the ones left shared are cloned at
the end, so peak memory is the dense model plus the pruned one.

Groups Torch-Pruning can't follow (see :mod:`.dependency`), layers the user keeps whole, and units whose
pruning would break the model's own forward (a width hard-coded in ``forward``, see :mod:`.probe`) are left
out of :attr:`PruningGraph.units`; :attr:`PruningGraph.kept_whole` says which and why. The groups left are
offered to the registered unit kinds (:mod:`.kinds`) in order; each unit is pruned through its kind.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .copies import own_tensors, shared_copy
from .costs import counted_params, layer_dims, predict_cost
from .dependency import build_dependency, group_barrier, tolerant_mappings
from .kinds import UnitKind, kinds_in_order
from .layers import resolve_layer_patterns
from .reading import layer_features
from .tracing import PRUNABLE_TYPES, trace_layers
from .units import GroupItem, LayerDims, PrunableUnit

__all__ = ["LayerDims", "PrunableUnit", "PruningGraph", "resolve_layer_patterns"]


class PruningGraph:
    """Dense-model dependency graph, prunable units and per-layer costs; applies policies to copies.

    Args:
        model: The dense model (never modified).
        example_input: A batch-1 input used for tracing and MAC counting.
        ignored_layers: Names or glob patterns of layers whose output channels must never be pruned (a
            container name covers the layers inside it). The classifier layer is always kept.
        probe: Check on a weightless copy that pruning each unit leaves a model that still runs; units that
            break it are kept whole (see :attr:`kept_whole`).
        prune_embed: Prune a transformer's residual width too, as one ``embed`` unit (off: it is kept whole).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv1d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 4))
        >>> g = PruningGraph(net, torch.randn(1, 1, 8))
        >>> [u.name for u in g.units]
        ['0']
        >>> g.apply(g.select({"0": torch.arange(8.0)}, {"0": 0.5}))(torch.randn(2, 1, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, *, ignored_layers: Iterable[str] = (),
                 probe: bool = True, prune_embed: bool = False) -> None:
        self.model = model.eval()
        self.example_input = example_input
        self.prune_embed = prune_embed
        """Whether the residual width of a transformer is a unit (the ``embed`` kind) or kept whole."""
        self.modules = dict(model.named_modules())
        self.name_of = {m: n for n, m in model.named_modules()}
        order, self.output_layer = trace_layers(model, example_input)
        self._order = order
        self.user_ignored = resolve_layer_patterns(model, ignored_layers)
        ignored_names = self.user_ignored | ({self.output_layer} if self.output_layer else set())
        unwrapped = [p for kind in kinds_in_order() for p in kind.unwrapped_parameters(self)]
        build = build_dependency(model, example_input, unwrapped_parameters=unwrapped)
        self.dg = build.dg
        self.barriers = build.barriers
        self.kept_whole: dict[str, str] = {}
        """Root layer of a dependency group left out of :attr:`units` -> why."""
        for name in sorted(self.user_ignored):
            self.kept_whole[name] = "kept whole by --ignore-layers"
        self.candidates: dict[str, tp.dependency.Group] = {}
        """Root layer -> Torch-Pruning group of every group offered to the unit kinds."""
        own: dict[str, tp.dependency.Group] = {}
        for kind in kinds_in_order():
            own.update(kind.own_groups(self))
        reserved = {it.dep.target.module for group in own.values() for it in group
                    if self.dg.is_out_channel_pruning_fn(it.dep.handler)}
        for root, group in [*self._all_groups({self.modules[n] for n in ignored_names} | reserved),
                            *((self.modules[n], g) for n, g in own.items())]:
            reason = group_barrier(group, self.barriers)
            if reason is not None:
                self.kept_whole[self.name_of[root]] = f"Torch-Pruning can't follow its channels ({reason})"
                continue
            self.candidates[self.name_of[root]] = group
        self.kinds: dict[str, UnitKind] = {}
        """Unit kind name -> the kind (as registered when the graph was built)."""
        self.units: list[PrunableUnit] = []
        self.groups: dict[str, tp.dependency.Group] = {}
        """Unit -> its primary Torch-Pruning group (the one importance criteria score)."""
        self.root_of: dict[str, str] = {}
        self.items: dict[str, list[GroupItem]] = {}
        """Unit -> every tensor slice it removes."""
        self.member_positions: dict[str, list[np.ndarray]] = {}
        """Unit -> the root positions of each layer output it prunes."""
        for unit, roots, items in sorted(self._claim_units(), key=lambda c: order.get(c[0].name, len(order))):
            self.groups[unit.name] = self.candidates[roots[0]]
            self.root_of[unit.name] = roots[0]
            self.items[unit.name] = items
            self.member_positions[unit.name] = [np.unique(it.roots) for it in items if it.is_out and not it.is_param]
            self.units.append(unit)
        self._index_units()
        self._dense_costs()
        if probe and self.units:
            from .probe import blocking_units

            blocked = blocking_units(self)
            for name, reason in blocked.items():
                self.kept_whole[name] = f"pruning it breaks the model's forward ({reason})"
            self.drop_units(set(blocked))

    # ------------------------------------------------------------------ analysis
    def _claim_units(self) -> Iterator[tuple[PrunableUnit, tuple[str, ...], list[GroupItem]]]:
        """Offer the candidate groups to each unit kind in registry order; a claimed root is not offered again.

        Raises:
            ValueError: A kind claims a root it was not offered (already claimed, kept whole, or unknown).
        """
        order = self._order
        offered = dict(self.candidates)
        for kind in kinds_in_order():
            for root, reason in kind.keep_whole(self, dict(offered)).items():
                self.kept_whole[root] = reason
                offered.pop(root, None)
        for kind in kinds_in_order():
            for roots in kind.claim(self, dict(offered)):
                taken = [r for r in roots if r not in offered] if roots else ["an empty unit"]
                if taken:
                    raise ValueError(f"unit kind {kind.name!r} claims {list(roots)}, but {taken} is not offered to it: "
                                     "a kind claims only offered roots, each once (earlier kinds win)")
                for r in roots:
                    del offered[r]
                unit, items = kind.build(self, tuple(roots))
                assert unit.kind == kind.name, f"unit kind {kind.name!r} built a unit of kind {unit.kind!r}"
                self.kinds[kind.name] = kind
                # name the unit by its earliest member in forward order (TP's root choice is arbitrary)
                unit.members.sort(key=lambda m: order.get(m, len(order)))
                unit.name = unit.members[0] if unit.members else roots[0]
                unit.layer_type, unit.in_channels, unit.kernel, unit.stride = layer_features(self.modules[unit.name])
                yield unit, tuple(roots), items

    def _all_groups(self, ignored: set[nn.Module]) -> Iterator[tuple[nn.Module, tp.dependency.Group]]:
        """Torch-Pruning's groups rooted at conv / linear layers (as ``get_all_groups``), one failure at a time.

        A group Torch-Pruning can't form (its index mapping raises) is kept whole and recorded; the others stand.
        """
        visited: set[nn.Module] = set()
        for m in list(self.dg.module2node):
            if m in ignored or m in visited or not isinstance(m, PRUNABLE_TYPES) or m in self.dg.IGNORED_LAYERS_IN_TRACING:
                continue
            pruner = self.dg.get_pruner_of_module(m)
            n = pruner.get_out_channels(m) if pruner is not None else None
            if n is None or n < 2:
                continue
            try:
                with tolerant_mappings(skip=lambda node: self.barriers.get(node.module)):
                    group = self.dg.get_pruning_group(m, pruner.prune_out_channels, list(range(n)))
            except Exception as exc:  # noqa: BLE001 - this group is kept whole, the search goes on
                self.kept_whole[self.name_of[m]] = f"Torch-Pruning can't form its group ({type(exc).__name__}: {exc})"
                continue
            outs = {it.dep.target.module for it in group if self.dg.is_out_channel_pruning_fn(it.dep.handler)}
            visited |= outs
            if not outs & ignored:
                yield m, group

    def _index_units(self) -> None:
        for idx, unit in enumerate(self.units):
            unit.index = idx
        self.unit_by_name = {u.name: u for u in self.units}

    def drop_units(self, names: set[str]) -> None:
        """Leave units out of the search (they are kept whole); costs are re-derived for the rest."""
        if not names:
            return
        self.units = [u for u in self.units if u.name not in names]
        for name in names:
            self.groups.pop(name, None)
            self.root_of.pop(name, None)
            self.items.pop(name, None)
            self.member_positions.pop(name, None)
        self._index_units()
        self._unit_dims()

    def _dense_costs(self) -> None:
        macs, params, layer_macs, layer_params = tp.utils.count_ops_and_params(
            self.model, self.example_input, layer_wise=True)
        self.dense_macs, self.dense_params = float(macs), float(params)
        self.layer_macs = {self.name_of[m]: float(v) for m, v in layer_macs.items() if v and m in self.name_of}
        # Torch-Pruning counts a container with its children: keep the tensors no traced child holds
        self.traced = {self.name_of[m] for m in self.dg.module2node if isinstance(m, nn.Module) and m in self.name_of}
        """Names of the modules Torch-Pruning's graph traces."""
        self.layer_params = {self.name_of[m]: counted_params(self.name_of[m], self.modules, self.traced)
                                              if next(m.children(), None) is not None else float(v)
                             for m, v in layer_params.items() if v and m in self.name_of}
        self._unit_dims()

    def _unit_dims(self) -> None:
        """Which units shrink which dimension of which layer: ``dims[layer]["in" / "out"] = [(unit, item)]``."""
        self.dims: dict[str, dict[str, list[tuple[str, GroupItem]]]] = defaultdict(lambda: {"in": [], "out": []})
        self.bare_params: dict[str, list[tuple[str, GroupItem]]] = defaultdict(list)
        """Bare parameter (class token, layer scale...) -> the units that prune it, with the slices."""
        self.layer_kinds: dict[str, UnitKind] = {}
        """Layer -> the kind of the unit that prunes its outputs (it predicts the layer's cost)."""
        for unit in self.units:
            touched = set()
            for it in self.items[unit.name]:
                if it.is_param:
                    self.bare_params[it.target].append((unit.name, it))
                    continue
                self.dims[it.target]["out" if it.is_out else "in"].append((unit.name, it))
                if it.is_out or it.handler is None:  # or a kind's bookkeeping: that kind costs the layer
                    self.layer_kinds.setdefault(it.target, self.kinds[unit.kind])
                touched.add(it.target)
            unit.macs_share = sum(self.layer_macs.get(t, 0.0) for t in touched) / max(self.dense_macs, 1.0)
            unit.params_share = sum(self.layer_params.get(t, 0.0) for t in touched) / max(self.dense_params, 1.0)
        self.followers = self._trace_followers()
        self.dim_size = {}
        for layer in self.dims:
            mod = self.modules[layer]
            pruner = self.dg.get_pruner_of_module(mod)
            sizes = (pruner.get_in_channels(mod), pruner.get_out_channels(mod)) if pruner else (None, None)
            # a module only a kind's bookkeeping names (an attention block): the positions it names
            self.dim_size[layer] = tuple(size if size is not None else max(
                (int(it.idxs.max()) + 1 for _, it in self.dims[layer][side]), default=None)
                for size, side in zip(sizes, ("in", "out"), strict=True))

    def _trace_followers(self) -> dict[str, tuple[tuple[str | None, int], ...]]:
        """Leaf layers outside the units' reach (activations, pooling...) -> what their input channels are made of."""
        from .flow import trace_channel_sources

        return trace_channel_sources(self.model, self.example_input, set(self.dims))

    # ------------------------------------------------------------------ planning
    def select(self, scores: Mapping[str, torch.Tensor], ratios: Mapping[str, float],
               round_to: int | None = None) -> dict[str, np.ndarray]:
        """Root channels to remove per unit: the lowest-importance ones at each unit's ratio.

        Every unit keeps at least one element (one per group of a grouped unit), whatever the ratio. Its kind
        reduces the scores to elements, picks the elements to drop and maps them to root channels.

        Args:
            scores: Per-unit channel importance (length = unit channels).
            ratios: Per-unit pruning ratio in [0, 1); missing units are kept whole.
            round_to: Keep a multiple of this many channels where possible.

        Returns:
            Unit name -> sorted root indices to remove (units with nothing to remove are omitted).
        """
        pruned: dict[str, np.ndarray] = {}
        for unit in self.units:
            ratio = float(ratios.get(unit.name, 0.0))
            if ratio <= 0.0:
                continue
            n_prune = unit.elements - unit.kept_channels(ratio, round_to) // unit.granule
            if n_prune <= 0:
                continue
            kind = self.kinds[unit.kind]
            imp = kind.element_scores(unit, scores[unit.name].detach().float().cpu())
            ranked = torch.argsort(imp, stable=True).numpy()
            drop = kind.drop_elements(self, unit, ranked, n_prune)
            pruned[unit.name] = np.sort(kind.to_roots(unit, drop))
        return pruned

    def apply(self, pruned: Mapping[str, np.ndarray]) -> nn.Module:
        """A pruned copy of the dense model: removes the given root channels of each unit.

        Args:
            pruned: Unit name -> root channel indices to remove (from :meth:`select`).

        Returns:
            A new, structurally smaller model with tensors of its own; the dense model is untouched.
        """
        model = self.apply_to(shared_copy(self.model), pruned)
        dense = {id(t) for t in itertools.chain(self.model.parameters(), self.model.buffers())}
        own_tensors(model, dense)
        return model.eval()

    def apply_to(self, model: nn.Module, pruned: Mapping[str, np.ndarray]) -> nn.Module:
        """Prune ``model`` in place, a structural copy of the dense model (same module names), per plan ``pruned``.

        Torch-Pruning's functions slice the tensors; then each unit's kind fixes library attributes
        (:meth:`~agent.pruning.kinds.UnitKind.after_apply`). Every pruned model is made here.
        """
        plan: dict[tuple[str, bool, object], tuple[GroupItem, list[np.ndarray]]] = {}
        for unit_name, roots in pruned.items():
            if len(roots) == 0:
                continue
            unit = self.unit_by_name[unit_name]
            if len(roots) > unit.channels - unit.granule:
                raise ValueError(f"unit {unit_name!r} would lose all its channels: keep at least one per group")
            for it in self.items[unit_name]:
                sel = it.idxs[np.isin(it.roots, roots)]
                if len(sel) == 0 or it.handler is None:
                    continue
                key = (it.target, it.is_param, it.handler)
                plan.setdefault(key, (it, []))[1].append(sel)
        modules = dict(model.named_modules())
        for (target, is_param, handler), (it, parts) in plan.items():
            idxs = np.unique(np.concatenate(parts)).tolist()
            handler.__self__.pruning_dim = it.pruning_dim  # what tp's Dependency.__call__ does before the call
            if is_param:
                owner_name, _, attr = target.rpartition(".")
                owner = modules[owner_name]
                setattr(owner, attr, handler(getattr(owner, attr), idxs))
            else:
                handler(modules[target], idxs)
        for unit_name, roots in pruned.items():
            if len(roots):
                unit = self.unit_by_name[unit_name]
                self.kinds[unit.kind].after_apply(self, modules, unit, np.asarray(roots))
        return model

    def predict_macs(self, pruned: Mapping[str, np.ndarray]) -> float:
        """MACs of the model :meth:`apply` would return, from the dense per-layer counts (no model is built)."""
        return predict_cost(self, pruned, self.layer_macs, self.dense_macs)

    def predict_params(self, pruned: Mapping[str, np.ndarray]) -> float:
        """Parameter count of the model :meth:`apply` would return (no model is built)."""
        return predict_cost(self, pruned, self.layer_params, self.dense_params, metric="params")

    def layer_dims(self) -> dict[str, LayerDims]:
        """Every layer whose width some unit controls: its in/out sizes and how many of each come from which unit."""
        return layer_dims(self)

    def unit_names(self) -> list[str]:
        """Unit names in graph order."""
        return [u.name for u in self.units]

    def ignored_modules(self, model: nn.Module | None = None) -> list[nn.Module]:
        """Layers of ``model`` (default: the dense one) whose groups are not units: for Torch-Pruning's own pruners."""
        modules = dict((model or self.model).named_modules())
        names = set(self.kept_whole) | ({self.output_layer} if self.output_layer else set())
        return [modules[n] for n in sorted(names) if n in modules]
