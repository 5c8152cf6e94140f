"""User constraints (FLOPs / parameter / latency targets, the accuracy-drop budget) and the one cost calculus.

Every comparison of a cost with its target goes through :class:`Constraints`: :meth:`~Constraints.cost_terms`
pairs each measured or predicted cost with its target in the target's unit (the latency ratio against a ratio
target, milliseconds against a millisecond target), and the rules read those pairs:

* :meth:`~Constraints.violations` / :meth:`~Constraints.meets_cost`: feasible or not (with the reasons);
* :meth:`~Constraints.overage`: the largest ``cost / target`` (``<= 1`` within budget), what searchers steer by;
* :meth:`~Constraints.constraint_values`: Optuna's constraint values (``<= 0`` feasible);
* :meth:`~Constraints.far_over`: the costs over their target by more than a margin (rejection before evaluation).

A latency target becomes a ratio of the dense latency only through :meth:`LatencyTarget.as_ratio`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, overload

from .errors import user_error

__all__ = ["Constraints", "LatencyTarget", "CostProbe", "CostTerm", "LATENCY_MARGIN"]

LATENCY_MARGIN = 0.03
"""Searchers aim this fraction under a latency target (measurement noise must not flip the final check)."""

_EPS = 1e-9
"""Absolute tolerance of every ``cost > target`` comparison (rounding in the ratios must not flip a verdict)."""

_LATENCY_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµ]*)\s*$")


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget: a ratio of the dense model's latency, or an absolute time.

    Example:
        >>> from agent import LatencyTarget
        >>> LatencyTarget(12.0, "ms").as_ratio(24.0), LatencyTarget(0.6).as_ratio(24.0)
        (0.5, 0.6)

    """

    value: float
    """The number: a ratio in (0, 1], or milliseconds."""
    unit: Literal["ratio", "ms"] = "ratio"
    """``ratio`` (of dense latency, same device and batch) or ``ms``."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value <= 0:
            raise user_error("latency target must be positive, got", self.text(), "e.g. --latency-target 0.6 or 12ms")
        if self.unit == "ratio" and self.value > 1:
            raise user_error("latency ratio target must be in (0, 1], got", self.value,
                             "give a fraction of dense latency (0.6) or an absolute time with a unit (12ms)")

    @classmethod
    def parse(cls, text: str | float) -> LatencyTarget:
        """Parse ``0.6`` (ratio), ``12ms``, ``12 ms``, ``0.012s`` or ``800us``.

        Raises:
            UserInputError: An unknown unit (``12 parsecs``), a non-positive value (``-3ms``), or a ratio > 1.
        """
        if isinstance(text, (int, float)):
            return cls(float(text), "ratio")
        m = _LATENCY_RE.match(str(text))
        if not m:
            raise user_error("cannot read latency target", text, "write a ratio like 0.6 or a time like 12ms")
        number = float(m.group(1))
        unit = m.group(2).lower()
        scale = {"": None, "x": None, "ms": 1.0, "s": 1000.0, "sec": 1000.0, "us": 1e-3, "µs": 1e-3}
        if unit not in scale:
            raise user_error("unknown latency unit in", text, "use a ratio (0.6) or ms, s or us (12ms)")
        if number <= 0:
            raise user_error("latency target must be positive, got", text, "e.g. --latency-target 0.6 or 12ms")
        factor = scale[unit]
        return cls(number, "ratio") if factor is None else cls(number * factor, "ms")

    def text(self) -> str:
        """Human form: ``0.6x`` or ``12ms``."""
        return f"{self.value:g}x" if self.unit == "ratio" else f"{self.value:g}ms"

    @overload
    def as_ratio(self, dense_latency_ms: float) -> float: ...
    @overload
    def as_ratio(self, dense_latency_ms: None) -> float | None: ...

    def as_ratio(self, dense_latency_ms: float | None) -> float | None:
        """The target as a ratio of the dense latency (the one ratio-or-ms rule).

        A ratio target is its value; a millisecond target is divided by ``dense_latency_ms``, and without a dense
        latency (None or 0) it has no ratio (None).

        Example:
            >>> LatencyTarget(0.6).as_ratio(None), LatencyTarget(5.0, "ms").as_ratio(20.0)
            (0.6, 0.25)
        """
        if self.unit == "ratio":
            return self.value
        return self.value / dense_latency_ms if dense_latency_ms else None


@dataclass(frozen=True)
class CostProbe:
    """Costs of a policy's model, measured or predicted (no accuracy)."""

    flops_ratio: float
    """MACs relative to dense."""
    params_ratio: float
    """Parameters relative to dense."""
    latency_ratio: float | None = None
    """Measured latency relative to dense (when probed: the upper end of its interval, the figure targets are
    checked against; predicted: the table's ratio)."""
    latency_ms: float | None = None
    """Measured (upper end) or predicted latency in ms."""


@dataclass(frozen=True)
class CostTerm:
    """One cost beside its target, both in the target's unit."""

    name: Literal["flops", "params", "latency"]
    """Which target."""
    value: float
    """The cost: a ratio of dense, or milliseconds for a millisecond latency target."""
    target: float
    """The target in the same unit."""
    unit: Literal["ratio", "ms"] = "ratio"
    """``ratio`` or ``ms``."""


@dataclass(frozen=True)
class Constraints:
    """What a feasible pruned model must satisfy (all optional).

    Example:
        >>> from agent import Constraints, LatencyTarget
        >>> c = Constraints(flops_target=0.5, latency_target=LatencyTarget(0.6), max_acc_drop=1.0)
        >>> c.has_cost_target
        True

    """

    flops_target: float | None = None
    """Maximum MACs as a fraction of the dense model (e.g. 0.5)."""
    params_target: float | None = None
    """Maximum parameter count as a fraction of the dense model."""
    latency_target: LatencyTarget | None = None
    """Maximum measured latency (ratio of dense, or milliseconds)."""
    max_acc_drop: float | None = None
    """Maximum drop of the task's metric versus the dense model, in the metric's units (``--max-metric-drop``,
    alias ``--max-acc-drop``): accuracy points (e.g. 1.0), or a perplexity increase (e.g. 0.5)."""

    def __post_init__(self) -> None:
        for name in ("flops_target", "params_target"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                flag = "--" + name.replace("_", "-")
                raise user_error(f"{flag} must be a fraction in (0, 1], got", v, f"e.g. {flag} 0.5 for half the dense cost")
        if self.max_acc_drop is not None and not (math.isfinite(self.max_acc_drop) and self.max_acc_drop >= 0):
            raise user_error("--max-metric-drop must be >= 0 (accuracy points or perplexity), got", self.max_acc_drop,
                             "e.g. --max-metric-drop 1.0")

    @property
    def has_cost_target(self) -> bool:
        """Whether any of FLOPs, params or latency is constrained."""
        return any(x is not None for x in (self.flops_target, self.params_target, self.latency_target))

    def cost_terms(self, *, flops_ratio: float, params_ratio: float, latency_ratio: float | None = None,
                   latency_ms: float | None = None) -> list[CostTerm]:
        """Each cost target beside its cost, in the target's unit; a latency without that figure is left out.

        Example:
            >>> c = Constraints(flops_target=0.5, latency_target=LatencyTarget(4.0, "ms"))
            >>> [(t.name, t.value, t.target) for t in c.cost_terms(flops_ratio=0.4, params_ratio=0.3, latency_ms=5.0)]
            [('flops', 0.4, 0.5), ('latency', 5.0, 4.0)]
        """
        out = []
        if self.flops_target is not None:
            out.append(CostTerm("flops", flops_ratio, self.flops_target))
        if self.params_target is not None:
            out.append(CostTerm("params", params_ratio, self.params_target))
        lt = self.latency_target
        if lt is not None:
            value = latency_ratio if lt.unit == "ratio" else latency_ms
            if value is not None:
                out.append(CostTerm("latency", value, lt.value, lt.unit))
        return out

    def _text(self, term: CostTerm) -> str:
        """``FLOPs 0.600 > target 0.500`` / ``latency 0.700x > target 0.6x``."""
        if term.name == "latency":
            assert self.latency_target is not None
            unit = "x" if term.unit == "ratio" else "ms"
            return f"latency {term.value:.3f}{unit} > target {self.latency_target.text()}"
        return f"{'FLOPs' if term.name == 'flops' else 'params'} {term.value:.3f} > target {term.target:.3f}"

    def violations(self, *, flops_ratio: float, params_ratio: float, latency_ratio: float | None,
                   latency_ms: float | None, acc_drop: float | None, metric: str = "accuracy") -> list[str]:
        """Human-readable list of violated constraints (empty = feasible); a cost not given is not checked.

        ``acc_drop`` is the drop of the task's ``metric`` (named in the text).
        """
        out = [self._text(t) for t in self.cost_terms(flops_ratio=flops_ratio, params_ratio=params_ratio,
                                                       latency_ratio=latency_ratio, latency_ms=latency_ms)
               if t.value > t.target + _EPS]
        if self.max_acc_drop is not None and acc_drop is not None and acc_drop > self.max_acc_drop + _EPS:
            unit = " points" if metric == "accuracy" else ""
            out.append(f"{metric} drop {acc_drop:.2f} > {self.max_acc_drop:.2f}{unit}")
        return out

    def meets_cost(self, cost: CostProbe, *, latency_margin: float = 0.0) -> bool:
        """Whether ``cost`` meets the FLOPs / params / latency targets (accuracy not considered).

        Latency is held to ``1 - latency_margin`` of its target: searchers steer by one measurement (or a
        prediction), while the result must still meet the target when it is measured again.

        Example:
            >>> c = Constraints(latency_target=LatencyTarget(0.5))
            >>> c.meets_cost(CostProbe(1.0, 1.0, latency_ratio=0.49)), c.meets_cost(CostProbe(1.0, 1.0, 0.49),
            ...                                                                     latency_margin=0.03)
            (True, False)
        """
        assert 0.0 <= latency_margin < 1.0, latency_margin
        shrink = 1.0 - latency_margin
        return not self.violations(
            flops_ratio=cost.flops_ratio, params_ratio=cost.params_ratio,
            latency_ratio=None if cost.latency_ratio is None else cost.latency_ratio / shrink,
            latency_ms=None if cost.latency_ms is None else cost.latency_ms / shrink, acc_drop=None)

    def check_result(self, result: Any, *, latency_slack: float = 1.0) -> list[str]:
        """Violated constraints of an evaluated result (an ``EvalResult``); empty = feasible.

        The one rule for a measured latency: the target is met only when the upper end of the measured ratio's
        interval (``result.latency_bound``) is under it, so a single noisy reading never passes.
        ``latency_slack`` (>= 1) divides the latency bound, for "only just over" checks.
        """
        ratio, ms = result.latency_bound
        return self.violations(flops_ratio=result.flops_ratio, params_ratio=result.params_ratio,
                               latency_ratio=None if ratio is None else ratio / latency_slack,
                               latency_ms=None if ms is None else ms / latency_slack, acc_drop=result.acc_drop,
                               metric=getattr(result, "metric", "accuracy"))

    def latency_miss(self, result: Any) -> float | None:
        """How far a result's measured latency is from its target: bound / target (above 1 = missed).

        Read by the one rule of :meth:`check_result` (the upper end of the measured interval); None without a
        latency target or a measured latency.

        Example:
            >>> from types import SimpleNamespace
            >>> Constraints(latency_target=LatencyTarget(0.5)).latency_miss(SimpleNamespace(latency_bound=(0.55, 5.5)))
            1.1
        """
        lt = self.latency_target
        if lt is None:
            return None
        ratio, ms = result.latency_bound
        value = ratio if lt.unit == "ratio" else ms
        return None if value is None else round(value / lt.value, 12)

    def overage(self, cost: CostProbe, *, margin: float = 0.0, latency_margin: float = 0.0,
                dense_latency_ms: float | None = None) -> float:
        """Largest ``cost / target`` over the cost targets: at most 1 within budget, above 1 over it.

        Every target is shrunk by ``margin`` (a fraction), latency by ``latency_margin`` besides, and latency is
        read in the target's unit. A cost without that latency figure is read by its latency ratio, else its
        FLOPs ratio (proxy), against the target as a ratio of ``dense_latency_ms`` (a millisecond target without
        one is read against 1 ms). Without any cost target: the FLOPs ratio.

        Example:
            >>> Constraints(flops_target=0.5, params_target=0.8).overage(CostProbe(0.6, 0.4))
            1.2
        """
        aim, shrink = 1.0 - latency_margin, 1.0 - margin
        terms = [t.value / (t.target * aim * shrink) if t.name == "latency" else t.value / (t.target * shrink)
                 for t in self.cost_terms(flops_ratio=cost.flops_ratio, params_ratio=cost.params_ratio,
                                          latency_ratio=cost.latency_ratio, latency_ms=cost.latency_ms)]
        lt = self.latency_target
        if lt is not None and (cost.latency_ratio if lt.unit == "ratio" else cost.latency_ms) is None:
            lat = cost.latency_ratio if cost.latency_ratio is not None else cost.flops_ratio
            terms.append(lat / (lt.as_ratio(dense_latency_ms or 1.0) * aim * shrink))
        return max(terms) if terms else cost.flops_ratio

    def constraint_values(self, *, flops_ratio: float, params_ratio: float, latency_ratio: float | None,
                          latency_ms: float | None, acc_drop: float | None,
                          latency_margin: float = LATENCY_MARGIN) -> dict[str, float]:
        """Optuna constraint values, one per checked target: feasible when all are ``<= 0``.

        Consistent with :meth:`violations`; latency is held ``latency_margin`` under its target (like every
        searcher's steering): one timing round is noisy, and candidates right at the edge tend to fail the final
        re-measurement. The accuracy value is in fractions (points / 100), a millisecond latency relative to its
        target.

        Example:
            >>> Constraints(flops_target=0.5).constraint_values(flops_ratio=0.4, params_ratio=1.0, latency_ratio=None,
            ...                                               latency_ms=None, acc_drop=None)["flops"] < 0
            True
        """
        out = {}
        if self.max_acc_drop is not None and acc_drop is not None:
            out["acc_drop"] = (acc_drop - self.max_acc_drop - _EPS) / 100.0
        aim = 1.0 - latency_margin
        for t in self.cost_terms(flops_ratio=flops_ratio, params_ratio=params_ratio, latency_ratio=latency_ratio,
                                 latency_ms=latency_ms):
            if t.name != "latency":
                out[t.name] = t.value - t.target - _EPS
            elif t.unit == "ratio":
                out["latency"] = t.value - t.target * aim - _EPS
            else:
                out["latency"] = (t.value - t.target * aim - _EPS) / t.target
        return out

    def far_over(self, cost: CostProbe, *, margin: float) -> list[str]:
        """The costs over their target by more than ``margin`` (a fraction of the target), worded.

        Example:
            >>> Constraints(flops_target=0.5).far_over(CostProbe(0.6, 1.0), margin=0.1)
            ['FLOPs 0.600 > target 0.500 by over 10%']
        """
        return [f"{self._text(t)} by over {margin:.0%}"
                for t in self.cost_terms(flops_ratio=cost.flops_ratio, params_ratio=cost.params_ratio,
                                         latency_ratio=cost.latency_ratio, latency_ms=cost.latency_ms)
                if t.value > t.target * (1 + margin)]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "flops_target": self.flops_target, "params_target": self.params_target,
            "latency_target": self.latency_target.text() if self.latency_target else None,
            "max_acc_drop": self.max_acc_drop,
        }
