"""User constraints: FLOPs / parameter / latency targets and the accuracy-drop budget."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from .errors import user_error

__all__ = ["Constraints", "LatencyTarget"]

_LATENCY_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµ]*)\s*$")


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget: a ratio of the dense model's latency, or an absolute time."""

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

    def as_ratio(self, dense_latency_ms: float) -> float:
        """The target as a ratio of the dense latency."""
        return self.value if self.unit == "ratio" else self.value / dense_latency_ms


@dataclass(frozen=True)
class Constraints:
    """What a feasible pruned model must satisfy (all optional)."""

    flops_target: float | None = None
    """Maximum MACs as a fraction of the dense model (e.g. 0.5)."""
    params_target: float | None = None
    """Maximum parameter count as a fraction of the dense model."""
    latency_target: LatencyTarget | None = None
    """Maximum measured latency (ratio of dense, or milliseconds)."""
    max_acc_drop: float | None = None
    """Maximum accuracy drop in percentage points versus the dense model (e.g. 1.0)."""

    def __post_init__(self) -> None:
        for name in ("flops_target", "params_target"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 < v <= 1):
                flag = "--" + name.replace("_", "-")
                raise user_error(f"{flag} must be a fraction in (0, 1], got", v, f"e.g. {flag} 0.5 for half the dense cost")
        if self.max_acc_drop is not None and not (math.isfinite(self.max_acc_drop) and self.max_acc_drop >= 0):
            raise user_error("--max-acc-drop must be >= 0 percentage points, got", self.max_acc_drop,
                             "e.g. --max-acc-drop 1.0")

    @property
    def has_cost_target(self) -> bool:
        """Whether any of FLOPs, params or latency is constrained."""
        return any(x is not None for x in (self.flops_target, self.params_target, self.latency_target))

    def violations(self, *, flops_ratio: float, params_ratio: float, latency_ratio: float | None,
                   latency_ms: float | None, acc_drop: float | None) -> list[str]:
        """Human-readable list of violated constraints (empty = feasible)."""
        out = []
        eps = 1e-9
        if self.flops_target is not None and flops_ratio > self.flops_target + eps:
            out.append(f"FLOPs {flops_ratio:.3f} > target {self.flops_target:.3f}")
        if self.params_target is not None and params_ratio > self.params_target + eps:
            out.append(f"params {params_ratio:.3f} > target {self.params_target:.3f}")
        if self.latency_target is not None:
            if self.latency_target.unit == "ratio" and latency_ratio is not None \
                    and latency_ratio > self.latency_target.value + eps:
                out.append(f"latency {latency_ratio:.3f}x > target {self.latency_target.text()}")
            if self.latency_target.unit == "ms" and latency_ms is not None and latency_ms > self.latency_target.value + eps:
                out.append(f"latency {latency_ms:.3f}ms > target {self.latency_target.text()}")
        if self.max_acc_drop is not None and acc_drop is not None and acc_drop > self.max_acc_drop + eps:
            out.append(f"accuracy drop {acc_drop:.2f} > {self.max_acc_drop:.2f} points")
        return out

    def check_result(self, result: Any, *, latency_slack: float = 1.0) -> list[str]:
        """Violated constraints of an evaluated result (an ``EvalResult``); empty = feasible.

        The one rule for a measured latency: the target is met only when the upper end of the measured ratio's
        interval (``result.latency_bound``) is under it, so a single noisy reading never passes.
        ``latency_slack`` (>= 1) divides the latency bound, for "only just over" checks.
        """
        ratio, ms = result.latency_bound
        return self.violations(flops_ratio=result.flops_ratio, params_ratio=result.params_ratio,
                               latency_ratio=None if ratio is None else ratio / latency_slack,
                               latency_ms=None if ms is None else ms / latency_slack, acc_drop=result.acc_drop)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "flops_target": self.flops_target, "params_target": self.params_target,
            "latency_target": self.latency_target.text() if self.latency_target else None,
            "max_acc_drop": self.max_acc_drop,
        }
