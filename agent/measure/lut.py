"""Per-device latency model (NetAdapt-style lookup table).

Every layer whose width a prunable unit controls (conv, linear, batch norm) is timed *in isolation* on the
target device and batch size over a grid of kept input/output fractions. A policy's layer time ``x`` is the sum of
the bilinearly interpolated layer times relative to the dense sum. The rest of the model's time (activations,
pooling, adds, framework overhead) does not shrink with the layers, so the predicted latency ratio is
``1 - w * (1 - x)``: ``w``, the share of the model's time that pruning can remove, is calibrated from paired
measurements of the whole model against the dense one at a few uniform and mixed policies. Only ratios are
calibrated (the dense point is exact: ratio 1), so drift between the build's timings cannot bias it; milliseconds
are the ratio times a dense measurement. Tables are cached on disk keyed by architecture, input shape, device,
batch size, thread count and torch version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..pruning.costs import is_depthwise
from ..pruning.graph import LayerDims, PruningGraph
from ..pruning.tracing import trace_forward
from ..storage import atomic_write_json
from ..tasks.datasets import cache_dir
from .latency import LatencyConfig, NoisyMeasurementWarning, measure_latency, measure_latency_ratio
from .measured_shares import MeasuredShares
from .threads import torch_threads

__all__ = ["LatencyTable", "LayerTable", "build_latency_table", "DEFAULT_GRID"]

DEFAULT_GRID = (0.1, 0.25, 0.5, 0.75, 1.0)
"""Kept fractions timed per layer dimension."""

_TIMED = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)
CALIBRATION_MAX_ROUNDS = 6
"""Paired rounds per calibration policy: the prunable share is a median over the policies, which absorbs one
policy's noise, so each needs fewer rounds than a target's confirmation (at batch 512 a round is about a second)."""


@dataclass
class LayerTable:
    """Timed latency of one layer over kept fractions of its input (rows) and output (columns)."""

    name: str
    """Layer name."""
    in_grid: list[float]
    """Kept input fractions (ascending; ``[1.0]`` when no unit controls the input)."""
    out_grid: list[float]
    """Kept output fractions (ascending; ``[1.0]`` when no unit controls the output)."""
    ms: list[list[float]]
    """Median milliseconds, ``ms[i][j]`` at ``in_grid[i]`` / ``out_grid[j]``."""
    noise: float = 0.0
    """Median relative inter-quartile range of the timings."""

    def at(self, kin: float, kout: float) -> float:
        """Bilinear interpolation (clamped to the grid)."""
        table = np.asarray(self.ms)
        rows = [np.interp(kout, self.out_grid, table[i]) for i in range(len(self.in_grid))]
        return float(np.interp(kin, self.in_grid, rows))


@dataclass
class LatencyTable:
    """Latency lookup table of one model on one device and batch size."""

    key: str
    """Cache key."""
    device: str
    """Device the layers were timed on."""
    batch_size: int
    """Batch size of the timings."""
    dense_ms: float
    """Measured latency of the whole dense model."""
    layers: dict[str, LayerTable]
    """Per-layer tables."""
    calib_x: list[float]
    """Calibration points: the table's layer time relative to the dense layer time (``x``)."""
    calib_ratio: list[float]
    """The whole model's measured latency ratio to dense at each calibration point (paired rounds)."""
    dims: dict[str, dict[str, object]] = field(default_factory=dict)
    """Layer -> which units control its in/out width (serialised :class:`LayerDims`)."""
    channels: dict[str, int] = field(default_factory=dict)
    """Unit -> dense channel count."""
    build_s: float = 0.0
    """Seconds it took to build the table."""
    meta: dict[str, object] = field(default_factory=dict)
    """Torch version, threads, input shape, grid."""
    calib_kept: list[dict[str, int]] = field(default_factory=list)
    """Channels each unit keeps at each calibration point."""

    def __post_init__(self) -> None:
        self.measured = MeasuredShares(self.channels)
        """Shares measured at whole policies (the calibration points, then every :meth:`observe`)."""
        for kept, x, ratio in zip(self.calib_kept, self.calib_x, self.calib_ratio, strict=False):
            self.measured.add(kept, layer_time=x, ratio=ratio)

    def _layer_sum(self, kept_channels: Mapping[str, int]) -> float:
        total = 0.0
        for name, table in self.layers.items():
            d = LayerDims(**self.dims[name])  # type: ignore[arg-type]
            total += table.at(d.kept("in", kept_channels, self.channels), d.kept("out", kept_channels, self.channels))
        return total

    def layer_time(self, kept_channels: Mapping[str, int]) -> float:
        """The table's layer time ``x`` of a policy, relative to the dense layer time (1.0 = dense)."""
        dense_layers = self._layer_sum({})
        return self._layer_sum(kept_channels) / dense_layers if dense_layers > 0 else 1.0

    @property
    def prunable_share(self) -> float:
        """``w``: the share of the model's time that shrinks with the layers, in [0, 1].

        The median over the calibration points of ``(1 - ratio) / (1 - x)`` (one outlying measurement moves a
        median little); 1.0 without calibration points. ``1 - w`` is the time no pruning removes.
        """
        shares = [(1.0 - r) / (1.0 - x) for x, r in zip(self.calib_x, self.calib_ratio, strict=True) if x < 0.98]
        return float(np.clip(np.median(shares), 0.0, 1.0)) if shares else 1.0

    def predict_ratio(self, kept_channels: Mapping[str, int]) -> float:
        """Predicted latency relative to the dense model: ``1 - w * (1 - x)``.

        ``w`` is the policy's local share: :attr:`prunable_share`, corrected by the shares measured at policies
        near this one (:mod:`agent.measure.measured_shares`).
        """
        share = self.measured.share(kept_channels, prior=self.prunable_share)
        return max(1.0 - share * (1.0 - self.layer_time(kept_channels)), 1e-6)

    def observe(self, kept_channels: Mapping[str, int], ratio: float) -> None:
        """Learn a measured latency ratio (paired, against the dense model) of the policy keeping ``kept_channels``.

        Later predictions of policies near it follow the measurement; the table on disk is not changed.
        """
        self.measured.add(kept_channels, layer_time=self.layer_time(kept_channels), ratio=ratio)

    def predict(self, kept_channels: Mapping[str, int]) -> float:
        """Predicted latency (ms) of the model in which each unit keeps ``kept_channels[unit]`` channels.

        The ratio times this table's dense measurement (:attr:`dense_ms`); searches rescale the ratio by the
        dense model measured with them instead.
        """
        return self.predict_ratio(kept_channels) * self.dense_ms

    def to_json(self, path: str | Path) -> None:
        """Save (the cache format)."""
        atomic_write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> LatencyTable:
        """Load a table saved by :meth:`to_json`."""
        raw = json.loads(Path(path).read_text())
        raw["layers"] = {k: LayerTable(**v) for k, v in raw["layers"].items()}
        return cls(**raw)


def _input_shapes(model: nn.Module, example: torch.Tensor, names: set[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    trace_forward(model, example, lambda n, m, i, o: shapes.setdefault(n, tuple(i[0].shape[1:])),
                  lambda n, m: n in names)
    return shapes


def _layer_at(mod: nn.Module, cin: int, cout: int) -> nn.Module:
    """A fresh layer like ``mod`` with ``cin`` inputs and ``cout`` outputs (random weights)."""
    if isinstance(mod, nn.modules.conv._ConvNd):
        if is_depthwise(mod):
            cin = cout = max(cin, cout) if cin != cout else cin
            groups = cin
        else:
            groups = mod.groups
            cin, cout = max(groups, cin - cin % groups), max(groups, cout - cout % groups)
        return type(mod)(cin, cout, mod.kernel_size, mod.stride, mod.padding, mod.dilation, groups,
                         mod.bias is not None, mod.padding_mode)
    if isinstance(mod, nn.Linear):
        return nn.Linear(cin, cout, bias=mod.bias is not None)
    return type(mod)(cout)  # batch norm: one width


MAX_ALIGNED_POINTS = 12
"""At most this many multiples of ``round_to`` are timed per dimension (evenly spread, ends included)."""


def _grid(size: int | None, controlled: bool, grid: Sequence[float], round_to: int | None = None) -> list[float]:
    """Kept fractions timed for one dimension.

    With ``round_to`` the points are multiples of it — exactly the widths rounded policies produce. CPU kernels
    run in channel blocks, so latency is a staircase in the width and interpolating between aligned points is
    accurate while interpolating odd widths is not (docs/BENCHMARKS.md quantifies both).
    """
    if not controlled or not size:
        return [1.0]
    if round_to and round_to > 1 and size > round_to:
        counts = list(range(round_to, size, round_to)) + [size]
        if len(counts) > MAX_ALIGNED_POINTS:
            idx = np.unique(np.round(np.linspace(0, len(counts) - 1, MAX_ALIGNED_POINTS)).astype(int))
            counts = [counts[i] for i in idx]
        return sorted({c / size for c in counts})
    return sorted({max(1, round(size * f)) / size for f in grid} | {1.0})


def _monotone(ms: list[list[float]]) -> list[list[float]]:
    """Each cell at most every cell of equal or larger widths: a narrower layer is never slower.

    Load only ever slows a timing down, so a cell slower than a wider one is a burst of other work; it takes the
    wider cell's time (a suffix minimum along both axes).
    """
    table = np.asarray(ms, dtype=float)
    table = np.minimum.accumulate(table[::-1, ::-1], axis=0)
    table = np.minimum.accumulate(table, axis=1)[::-1, ::-1]
    return table.tolist()


def _signature(graph: PruningGraph, input_shape: Sequence[int]) -> str:
    """Architecture, input shape and which units there are (layers kept whole change the table)."""
    return hashlib.sha1((repr(graph.model) + repr(tuple(input_shape)) + repr(graph.unit_names())).encode()).hexdigest()[:12]


def build_latency_table(
    graph: PruningGraph,
    *,
    input_shape: Sequence[int],
    config: LatencyConfig,
    grid: Sequence[float] = DEFAULT_GRID,
    round_to: int | None = None,
    calibration_ratios: Sequence[float] = (0.25, 0.5, 0.75),
    mixed_calibrations: int = 3,
    cache: bool = True,
    cache_root: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LatencyTable:
    """Build (or load from cache) the latency table of ``graph``'s dense model.

    Args:
        graph: The dense model's pruning graph (units and the layers they control).
        input_shape: Per-sample input shape.
        config: Device, batch size and repeats of each timing.
        grid: Kept fractions timed per controlled dimension (without ``round_to``).
        round_to: Policies keep multiples of this many channels: time exactly those widths.
        calibration_ratios: Uniform ratios at which the whole model is timed against the dense one to calibrate
            the share of time pruning removes.
        mixed_calibrations: Seeded random per-unit policies (ratios in [0, 0.9]) timed besides: searched policies
            are not uniform.
        cache: Read / write the on-disk cache.
        cache_root: Cache directory (default ``$PRUNEPILOT_CACHE/latency``).
        progress: Called as ``progress(done, total)`` after each layer.

    Returns:
        The table.
    """
    with torch_threads(config.threads):
        return _build(graph, input_shape=input_shape, config=config, grid=grid, round_to=round_to,
                      calibration_ratios=calibration_ratios, mixed=mixed_calibrations, cache=cache,
                      cache_root=cache_root, progress=progress)


def _build(graph: PruningGraph, *, input_shape: Sequence[int], config: LatencyConfig, grid: Sequence[float],
           round_to: int | None, calibration_ratios: Sequence[float], mixed: int, cache: bool,
           cache_root: str | Path | None, progress: Callable[[int, int], None] | None) -> LatencyTable:
    device = torch.device(config.device)
    key_src = json.dumps({"sig": _signature(graph, input_shape), "device": str(device),
                          "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
                          "batch": config.batch_size, "threads": torch.get_num_threads(), "torch": torch.__version__,
                          "grid": list(grid), "round_to": round_to, "cal": list(calibration_ratios), "mixed": mixed,
                          "cal_rounds": CALIBRATION_MAX_ROUNDS, "v": 6}, sort_keys=True)
    key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    path = (Path(cache_root) if cache_root else cache_dir() / "latency") / f"{key}.json"
    if cache and path.exists():
        return LatencyTable.from_json(path)
    t0 = time.perf_counter()
    modules = dict(graph.model.named_modules())
    dims = {n: d for n, d in graph.layer_dims().items() if isinstance(modules[n], _TIMED)}
    shapes = _input_shapes(graph.model, graph.example_input, set(dims))
    timing = dataclasses.replace(config, warmup=max(1, config.warmup), repeats=min(config.repeats, 9), rounds=1,
                                 max_seconds=min(config.max_seconds, 0.5), min_repeats=min(config.min_repeats, 3))
    layers: dict[str, LayerTable] = {}
    for done, (name, d) in enumerate(dims.items(), 1):
        mod = modules[name]
        in_grid = _grid(d.in_size, bool(d.in_sources), grid, round_to)
        out_grid = _grid(d.out_size, bool(d.out_sources), grid, round_to)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            in_grid = [1.0]
        ms, noise = [], []
        for kin in in_grid:
            row = []
            for kout in out_grid:
                cin = max(1, round((d.in_size or 1) * kin))
                cout = max(1, round((d.out_size or 1) * kout))
                layer = _layer_at(mod, cin, cout).eval()
                shape = list(shapes[name])
                if isinstance(mod, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)):
                    shape[0] = layer.in_channels if hasattr(layer, "in_channels") else cout
                else:
                    shape[-1] = cin
                stats = measure_latency(layer, tuple(shape), config=timing)
                row.append(stats.median_ms)
                noise.append(stats.noise)
            ms.append(row)
        layers[name] = LayerTable(name, in_grid, out_grid, _monotone(ms), float(np.median(noise)))
        if progress:
            progress(done, len(dims))
    table = LatencyTable(key, str(device), config.batch_size, 0.0, layers, [], [],
                         {n: dataclasses.asdict(d) for n, d in dims.items()}, {u.name: u.channels for u in graph.units})
    scores = {u.name: torch.arange(u.channels, dtype=torch.float32) for u in graph.units}
    full = dataclasses.replace(config, repeats=max(config.repeats, 9), rounds=max(config.rounds, 2))
    calibration = dataclasses.replace(full, max_rounds=max(full.rounds, min(full.max_rounds, CALIBRATION_MAX_ROUNDS)))
    table.dense_ms = measure_latency(graph.model, tuple(input_shape), config=full).median_ms
    rng = np.random.default_rng(0)
    policies = [dict.fromkeys(graph.unit_names(), r) for r in calibration_ratios]
    policies += [{u: float(rng.uniform(0.0, 0.9)) for u in graph.unit_names()} for _ in range(mixed)]
    for ratios in policies:
        plan = graph.select(scores, ratios, round_to)
        # paired with the dense model so machine drift during the build cannot skew the calibration; one noisy
        # policy is the median's to absorb, not the user's to be warned about
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoisyMeasurementWarning)
            rel = measure_latency_ratio(graph.apply(plan), graph.model, tuple(input_shape), config=calibration).ratio
        kept = {u.name: u.channels - len(plan.get(u.name, ())) for u in graph.units}
        table.calib_x.append(table.layer_time(kept))
        table.calib_ratio.append(float(rel))
        table.calib_kept.append(kept)
        table.measured.add(kept, layer_time=table.calib_x[-1], ratio=table.calib_ratio[-1])
    table.build_s = time.perf_counter() - t0
    table.meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "input_shape": list(input_shape),
                  "grid": list(grid), "round_to": round_to, "calibration_ratios": list(calibration_ratios),
                  "mixed_calibrations": mixed}
    if cache:
        table.to_json(path)
    return table
