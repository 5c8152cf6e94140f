"""Per-task state shared by every evaluation (:class:`PruningEngine`), built once per task and process."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..constraints import CostProbe
from ..measure.latency import measure_latency, resolve_device
from ..measure.model import LatencyModel
from ..policy import Policy
from ..pruning.coverage import build_graph
from ..pruning.importance import compute_importance
from ..pruning.plan_cost import kept_channels, predicted_flops_ratio, predicted_params_ratio
from ..pruning.thresholds import threshold_to_ratio
from ..tasks.task import Task
from .records import DenseMetrics, EvalSettings

if TYPE_CHECKING:
    from ..measure.lut import LatencyTable

__all__ = ["PruningEngine", "get_engine", "model_mb"]


def model_mb(model: nn.Module) -> float:
    """Size of the model's parameters and buffers in MiB."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20


class PruningEngine:
    """Per-task state shared by every evaluation: graph, importance scores, dense metrics.

    Built once per task and process by :func:`get_engine`; thread-safe for the caches it fills.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.graph = build_graph(task.model, task.example_input(), ignore_layers=task.ignore_layers,
                                 prune_embed=task.prune_embed, what=task.spec.model)
        self._importance: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}
        self._dense: dict[tuple[Any, ...], DenseMetrics] = {}
        self._lock = threading.RLock()
        self.latency_model: LatencyModel | None = None
        """Optional per-device latency model (an ``agent.measure.lut.LatencyTable``) used for predictions."""

    @property
    def units(self) -> list:
        """Prunable units in graph order."""
        return self.graph.units

    def importance(self, name: str, settings: EvalSettings) -> dict[str, torch.Tensor]:
        """Per-unit channel scores of criterion ``name`` (computed once, then cached)."""
        key = (name, settings.seed, settings.importance_batches)
        with self._lock:
            if key not in self._importance:
                self._importance[key] = compute_importance(
                    self.graph, name, data=self.task.data.train, batches=settings.importance_batches,
                    seed=settings.seed, device=settings.device)
            return self._importance[key]

    def plan(self, policy: Policy, settings: EvalSettings) -> dict[str, np.ndarray]:
        """Root channels each unit loses under ``policy``."""
        policy.validate(self.graph.unit_names())
        return self.graph.select(self.importance(policy.importance, settings), policy.ratios, policy.round_to)

    def thresholds_to_policy(self, thresholds: Mapping[str, float], *, importance: str, settings: EvalSettings,
                             max_ratio: float = 0.99) -> Policy:
        """Convert per-unit importance thresholds to ratios: channels with normalised score below go."""
        scores = self.importance(importance, settings)
        return Policy({u.name: threshold_to_ratio(scores[u.name], float(thresholds.get(u.name, 0.0)),
                                                  max_ratio=max_ratio) for u in self.units}, importance)

    def build(self, policy: Policy, settings: EvalSettings) -> nn.Module:
        """The pruned model of ``policy`` (a new module; the dense model is untouched)."""
        return self.graph.apply(self.plan(policy, settings))

    def kept_channels(self, plan: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Channels each unit keeps under a plan (:func:`agent.pruning.plan_cost.kept_channels`)."""
        return kept_channels(self.units, plan)

    def predict(self, plan: Mapping[str, np.ndarray], settings: EvalSettings) -> CostProbe:
        """Predicted FLOPs / params ratios of a plan, and its latency when a latency model is attached.

        The one plan -> kept channels -> predicted cost path (no model is built).
        """
        latency = self.predict_latency(self.kept_channels(plan), settings)
        lat_ms, lat_ratio = latency if latency is not None else (None, None)
        return CostProbe(predicted_flops_ratio(self.graph, plan), predicted_params_ratio(self.graph, plan),
                         lat_ratio, lat_ms)

    def predict_latency(self, kept_channels: Mapping[str, int], settings: EvalSettings, *,
                        dense_ms: float | None = None) -> tuple[float, float] | None:
        """Predicted latency in ms and as a ratio to dense, or None without a latency model.

        The ratio comes from the table alone (self-consistent); the milliseconds scale it by a dense latency
        measured now: ``dense_ms`` when given (the paired rounds of the measurement the prediction is compared
        with), else the session's dense measurement. A table cached under other machine load still predicts
        today's absolute time.
        """
        table = self.latency_model
        if table is None:
            return None
        ratio = float(table.predict_ratio(kept_channels))
        if dense_ms is None:
            dense_ms = self.dense(settings).latency_ms if settings.measure_latency else None
        return ratio * (dense_ms or float(table.predict({}))), ratio

    def observe_latency(self, kept_channels: Mapping[str, int], ratio: float | None) -> None:
        """Teach the attached latency model a measured (paired) latency ratio: later predictions near it follow."""
        observe = getattr(self.latency_model, "observe", None)  # a user's model may predict only
        if observe is not None and ratio is not None and np.isfinite(ratio):
            with self._lock:
                observe(kept_channels, float(ratio))

    def attach_latency_model(self, settings: EvalSettings, *, round_to: int | None = None, cache: bool = True,
                             progress: Callable[[int, int], None] | None = None) -> LatencyTable:
        """Build (or load from cache) the per-device latency table for ``settings.latency``.

        From then on it serves every prediction: ``latency_pred_ms`` in results, budget walls and
        pre-evaluation rejection. ``progress(done, total)`` is called after each timed layer.
        """
        from ..measure.lut import build_latency_table

        with self._lock:
            table = build_latency_table(self.graph, input_shape=self.task.input_shape, config=settings.latency,
                                        round_to=round_to, cache=cache, progress=progress)
            self.latency_model = table
            return table

    def dense(self, settings: EvalSettings) -> DenseMetrics:
        """Dense metrics under ``settings`` (measured once per split / subset / latency setting)."""
        key = (settings.split, settings.eval_limit, settings.device, settings.measure_latency, settings.latency)
        with self._lock:
            if key not in self._dense:
                model = self.task.model
                dev = resolve_device(settings.device)
                acc = self.task.score(model.to(dev), settings.split, device=dev, limit=settings.eval_limit)
                lat = measure_latency(model, self.task.input_shape, config=settings.latency).median_ms \
                    if settings.measure_latency else None
                model.to("cpu")
                self._dense[key] = DenseMetrics(acc, self.graph.dense_macs, self.graph.dense_params, lat)
            return self._dense[key]


_ENGINES: weakref.WeakKeyDictionary[Task, PruningEngine] = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def get_engine(task: Task) -> PruningEngine:
    """The task's :class:`PruningEngine` (built on first use, then reused).

    Example:
        >>> from agent import build_task, get_engine
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> get_engine(task).graph.unit_names()
        ['net.1', 'net.3']

    """
    with _ENGINES_LOCK:
        engine = _ENGINES.get(task)
        if engine is None:
            engine = _ENGINES[task] = PruningEngine(task)
        return engine
