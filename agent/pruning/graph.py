"""The pruning graph: Torch-Pruning's DependencyGraph of the dense model, built once and reused.

Every candidate policy is applied by *replaying* the pruning plan of the dense graph onto a fresh copy of
the dense weights, calling Torch-Pruning's own pruning functions (``dep.handler``) module by module. All
indices live in the dense model's coordinates, so a copy can be pruned without tracing it again: this keeps
policy application to a deepcopy plus a few tensor slices.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .tracing import PRUNABLE_TYPES, find_output_layer, forward_order, trace_forward

__all__ = ["LayerDims", "PrunableUnit", "PruningGraph", "find_output_layer"]



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


@dataclass
class _Item:
    target: str
    is_param: bool
    handler: object
    pruning_dim: int
    is_out: bool
    idxs: np.ndarray
    roots: np.ndarray


class PruningGraph:
    """Dense-model dependency graph, prunable units and per-layer costs; applies policies to copies.

    Args:
        model: The dense model (never modified).
        example_input: A batch-1 input used for tracing and MAC counting.
        ignored_layers: Names of layers whose output channels must never be pruned. The classifier layer is
            always ignored.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, *, ignored_layers: Iterable[str] = ()) -> None:
        self.model = model.eval()
        self.example_input = example_input
        self.name_of = {m: n for n, m in model.named_modules()}
        self.output_layer = find_output_layer(model, example_input)
        ignored_names = set(ignored_layers) | ({self.output_layer} if self.output_layer else set())
        modules = dict(model.named_modules())
        unknown = sorted(ignored_names - set(modules))
        if unknown:
            raise ValueError(f"ignored layers {unknown} are not in the model: use names from model.named_modules()")
        self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
        order = forward_order(model, example_input)
        ignored = [modules[n] for n in ignored_names]
        raw = []
        for group in self.dg.get_all_groups(ignored_layers=ignored, root_module_types=list(PRUNABLE_TYPES)):
            root = group[0].dep.target.module
            n = self.dg.get_out_channels(root)
            if n is None or n < 2:
                continue
            raw.append((0, root, group))
        self.units: list[PrunableUnit] = []
        self.groups: dict[str, tp.dependency.Group] = {}
        self.root_of: dict[str, str] = {}
        self._items: dict[str, list[_Item]] = {}
        described = []
        for _, root, group in raw:
            unit = self._describe(root, group)
            # name the unit by its earliest member in forward order (TP's root choice is arbitrary)
            unit.members.sort(key=lambda n: order.get(n, len(order)))
            unit.name = unit.members[0] if unit.members else self.name_of[root]
            first = dict(model.named_modules())[unit.name]
            unit.layer_type, unit.in_channels, unit.kernel, unit.stride = self._layer_features(first)
            described.append((order.get(unit.name, len(order)), unit, root, group))
        described.sort(key=lambda d: d[0])
        for idx, (_, unit, root, group) in enumerate(described):
            unit.index = idx
            self.groups[unit.name] = group
            self.root_of[unit.name] = self.name_of[root]
            self._items[unit.name] = self._group_items(group)
            self.units.append(unit)
        self.unit_by_name = {u.name: u for u in self.units}
        self._dense_costs()

    # ------------------------------------------------------------------ analysis
    def _group_items(self, group: tp.dependency.Group) -> list[_Item]:
        items = []
        for it in group:
            dep = it.dep
            target = dep.target.module
            if isinstance(target, nn.Parameter):
                name, is_param = self.dg._param_to_name.get(target), True
            else:
                name, is_param = self.name_of.get(target), False
            if name is None:  # Torch-Pruning's internal ops (concat, split, add...): nothing to slice
                continue
            items.append(_Item(name, is_param, dep.handler, dep.target.pruning_dim,
                               self.dg.is_out_channel_pruning_fn(dep.handler),
                               np.asarray(it.idxs, dtype=np.int64), np.asarray(it.root_idxs, dtype=np.int64)))
        return items

    def _channel_groups(self, group: tp.dependency.Group) -> int:
        groups = [1]
        for it in group:
            m = it.dep.target.module
            if not isinstance(m, nn.Module) or (isinstance(m, nn.modules.conv._ConvNd) and m.groups == m.out_channels):
                continue
            pruner = self.dg.get_pruner_of_module(m)
            if pruner is None:
                continue
            fn = pruner.get_out_channel_groups if self.dg.is_out_channel_pruning_fn(it.dep.handler) \
                else pruner.get_in_channel_groups
            g = fn(m)
            if g and g > 1:
                groups.append(g)
        return max(groups)

    @staticmethod
    def _layer_features(layer: nn.Module) -> tuple[str, int, int, int]:
        """(type, input channels, kernel size, stride) of a conv / linear layer."""
        if isinstance(layer, nn.Linear):
            return "linear", layer.in_features, 1, 1
        kind = "dwconv" if layer.groups > 1 and layer.groups == layer.in_channels else "conv"
        return kind, layer.in_channels, int(np.prod(layer.kernel_size)), int(layer.stride[0])

    def _describe(self, root: nn.Module, group: tp.dependency.Group) -> PrunableUnit:
        kind, cin, kernel, stride = self._layer_features(root)
        members = [self.name_of[it.dep.target.module] for it in group
                   if isinstance(it.dep.target.module, PRUNABLE_TYPES) and self.dg.is_out_channel_pruning_fn(it.dep.handler)]
        return PrunableUnit(self.name_of[root], 0, self.dg.get_out_channels(root), kind, cin, kernel, stride,
                            sorted(set(members), key=members.index), self._channel_groups(group))

    def _dense_costs(self) -> None:
        macs, params, layer_macs, layer_params = tp.utils.count_ops_and_params(
            self.model, self.example_input, layer_wise=True)
        self.dense_macs, self.dense_params = float(macs), float(params)
        self.layer_macs = {self.name_of[m]: float(v) for m, v in layer_macs.items() if v and m in self.name_of}
        self.layer_params = {self.name_of[m]: float(v) for m, v in layer_params.items() if v and m in self.name_of}
        # which units shrink which dimension of which layer: {layer: {"in"/"out": [(unit, idxs, roots)]}}
        self._dims: dict[str, dict[str, list[tuple[str, _Item]]]] = defaultdict(lambda: {"in": [], "out": []})
        modules = dict(self.model.named_modules())
        for unit in self.units:
            touched = set()
            for it in self._items[unit.name]:
                if it.is_param:
                    continue
                self._dims[it.target]["out" if it.is_out else "in"].append((unit.name, it))
                touched.add(it.target)
            unit.macs_share = sum(self.layer_macs.get(t, 0.0) for t in touched) / max(self.dense_macs, 1.0)
            unit.params_share = sum(self.layer_params.get(t, 0.0) for t in touched) / max(self.dense_params, 1.0)
        self._followers = self._trace_followers()
        self._dim_size = {}
        for layer in self._dims:
            mod = modules[layer]
            pruner = self.dg.get_pruner_of_module(mod)
            self._dim_size[layer] = (pruner.get_in_channels(mod) if pruner else None,
                                     pruner.get_out_channels(mod) if pruner else None)

    def _trace_followers(self) -> dict[str, str]:
        """Leaf layers outside the units' reach (ReLU, pooling...) -> the tracked layer whose output they consume."""
        owner: dict[int, str] = {}
        keep_alive: list[torch.Tensor] = []  # no address reuse while tracing
        followers: dict[str, str] = {}

        def hook(name: str, inputs: tuple, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                return
            keep_alive.append(output)
            src = owner.get(inputs[0].data_ptr()) if inputs and isinstance(inputs[0], torch.Tensor) else None
            if name in self._dims:
                owner[output.data_ptr()] = name
            elif src is not None:
                owner[output.data_ptr()] = src
                followers[name] = src

        trace_forward(self.model, self.example_input, lambda n, m, i, o: hook(n, i, o),
                      lambda n, m: not list(m.children()))
        return {k: v for k, v in followers.items() if k not in self._dims}

    # ------------------------------------------------------------------ planning
    def select(self, scores: Mapping[str, torch.Tensor], ratios: Mapping[str, float],
               round_to: int | None = None) -> dict[str, np.ndarray]:
        """Root channels to remove per unit: the lowest-importance ones at each unit's ratio.

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
            g = unit.channel_groups
            size = unit.channels // g
            keep = unit.kept_channels(ratio, round_to) // g
            n_prune = size - keep
            if n_prune <= 0:
                continue
            imp = scores[unit.name].detach().float().cpu()
            if g > 1:
                imp = imp.view(g, -1).mean(0)
            order = torch.argsort(imp, stable=True)[:n_prune].numpy()
            roots = np.concatenate([order + k * size for k in range(g)]) if g > 1 else order
            pruned[unit.name] = np.sort(roots)
        return pruned

    def apply(self, pruned: Mapping[str, np.ndarray]) -> nn.Module:
        """A pruned copy of the dense model: removes the given root channels of each unit.

        Args:
            pruned: Unit name -> root channel indices to remove (from :meth:`select`).

        Returns:
            A new, structurally smaller model; the dense model is untouched.
        """
        plan: dict[tuple[str, bool, object], tuple[_Item, set[int]]] = {}
        for unit_name, roots in pruned.items():
            if len(roots) == 0:
                continue
            if len(roots) >= self.unit_by_name[unit_name].channels:
                raise ValueError(f"unit {unit_name!r} would lose all its channels: keep at least one")
            for it in self._items[unit_name]:
                sel = it.idxs[np.isin(it.roots, roots)]
                if len(sel) == 0:
                    continue
                key = (it.target, it.is_param, it.handler)
                entry = plan.setdefault(key, (it, set()))
                entry[1].update(int(i) for i in sel)
        pruned_model = copy.deepcopy(self.model)
        modules = dict(pruned_model.named_modules())
        for (target, is_param, handler), (it, idxs) in plan.items():
            handler.__self__.pruning_dim = it.pruning_dim  # what tp's Dependency.__call__ does before the call
            if is_param:
                owner_name, _, attr = target.rpartition(".")
                owner = modules[owner_name]
                setattr(owner, attr, handler(getattr(owner, attr), sorted(idxs)))
            else:
                handler(modules[target], sorted(idxs))
        return pruned_model.eval()

    def predict_macs(self, pruned: Mapping[str, np.ndarray]) -> float:
        """MACs of the model :meth:`apply` would return, from the dense per-layer counts (no model is built)."""
        return self._predict(pruned, self.layer_macs, self.dense_macs)

    def predict_params(self, pruned: Mapping[str, np.ndarray]) -> float:
        """Parameter count of the model :meth:`apply` would return (no model is built)."""
        return self._predict(pruned, self.layer_params, self.dense_params)

    def _keep(self, layer: str, side: str, pruned: Mapping[str, np.ndarray]) -> float:
        size = self._dim_size[layer][0 if side == "in" else 1]
        removed: set[int] = set()
        for unit_name, it in self._dims[layer][side]:
            roots = pruned.get(unit_name)
            if roots is not None and len(roots):
                removed.update(it.idxs[np.isin(it.roots, roots)].tolist())
        return 1.0 - len(removed) / size if size else 1.0

    def _predict(self, pruned: Mapping[str, np.ndarray], per_layer: Mapping[str, float], dense: float) -> float:
        modules = dict(self.model.named_modules())
        total = dense
        out_keep: dict[str, float] = {}
        for layer in self._dims:
            kin, kout = self._keep(layer, "in", pruned), self._keep(layer, "out", pruned)
            out_keep[layer] = kout
            base = per_layer.get(layer, 0.0)
            if base == 0.0:
                continue
            mod = modules[layer]
            depthwise = isinstance(mod, nn.modules.conv._ConvNd) and mod.groups > 1 and mod.groups == mod.in_channels
            if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear)) and not depthwise:
                # weights scale with in x out; a bias (one term per output) only with out
                fan_in = mod.weight[0].numel()
                bias = 1.0 / (fan_in + 1) if mod.bias is not None else 0.0
                factor = (1.0 - bias) * kin * kout + bias * kout
            else:
                factor = min(kin, kout)
            total -= base * (1.0 - factor)
        for layer, source in self._followers.items():  # activations / pooling scale with their input's width
            total -= per_layer.get(layer, 0.0) * (1.0 - out_keep.get(source, 1.0))
        return total

    def layer_dims(self) -> dict[str, LayerDims]:
        """Every layer whose width some unit controls: its in/out sizes and how many of each come from which unit."""
        out = {}
        for layer, dims in self._dims.items():
            size_in, size_out = self._dim_size[layer]
            src = {side: {} for side in ("in", "out")}
            for side in ("in", "out"):
                for unit_name, it in dims[side]:
                    src[side][unit_name] = src[side].get(unit_name, 0) + len(it.idxs)
            out[layer] = LayerDims(layer, size_in, size_out, src["in"], src["out"])
        return out

    def unit_names(self) -> list[str]:
        """Unit names in graph order."""
        return [u.name for u in self.units]
