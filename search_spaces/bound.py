"""A search space bound to one task's units: concrete dimensions, stable parameter names, decode / encode.

Parameter names are stable across runs and processes (they derive from unit / group names only), so a resumed
Optuna study, an enqueued warm-start trial and a Ray Tune trial all speak the same language:

* ``ratio/<unit or group>`` or ``threshold/<unit or group>``: one float per dimension;
* ``importance``, ``finetune_steps``, ``finetune_lr``: categorical choices (only when there is a choice).
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.errors import user_error
from agent.policy import DEFAULT_MAX_RATIO, Policy
from agent.pruning.importance import check_importance

if TYPE_CHECKING:
    from .space import SearchSpace


__all__ = ["BoundSpace", "Dimension", "Candidate", "bind_space", "CHOICE_PARAMS"]

CHOICE_PARAMS = ("importance", "finetune_steps", "finetune_lr")
"""Names of the categorical parameters (and, for the fine-tune ones, of the ``EvalSettings`` fields they set)."""

ThresholdsToPolicy = Callable[[Mapping[str, float], str], Policy]
"""``(unit -> threshold, importance) -> Policy``, e.g. wrapping ``PruningEngine.thresholds_to_policy``."""


@dataclass(frozen=True)
class Dimension:
    """One searched float: a ratio or threshold shared by ``units``."""

    name: str
    """Stable parameter name (``ratio/layer1`` or ``threshold/stem.0``)."""
    units: tuple[str, ...]
    """Units that take this value."""
    low: float
    """Lower bound."""
    high: float
    """Upper bound (after snapping to ``step``)."""
    step: float | None = None
    """Grid step (None = continuous)."""

    def clip(self, value: float) -> float:
        """``value`` clipped into the bounds and snapped to the grid."""
        v = min(self.high, max(self.low, float(value)))
        if self.step:
            v = self.low + round((v - self.low) / self.step) * self.step
            v = min(self.high, max(self.low, round(v, 10)))
        return v


@dataclass(frozen=True)
class Candidate:
    """What a set of sampled parameters means."""

    policy: Policy
    """The pruning policy to evaluate."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """``EvalSettings`` fields to replace for this candidate (``finetune_steps``, ``finetune_lr``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The parameters it was decoded from."""


@dataclass(frozen=True)
class BoundSpace:
    """A :class:`SearchSpace` resolved against a task's unit names."""

    space: SearchSpace
    """The declarative definition."""
    unit_names: tuple[str, ...]
    """The task's units in graph order."""
    dimensions: tuple[Dimension, ...]
    """Searched floats, in a stable order (graph order of their first unit)."""
    fixed: dict[str, float]
    """Units held at a constant value (bounds with low == high)."""
    choices: dict[str, tuple[Any, ...]]
    """Categorical parameters with at least two options."""
    constants: dict[str, Any]
    """Choices with a single option (not searched): ``importance`` always, fine-tune ones when given."""
    ratio_bounds: tuple[float, float]
    """Bounds every final ratio is clipped into (threshold mode; ratio mode uses the dimension bounds)."""
    round_to: int | None = None
    """Channel rounding copied into every policy."""

    @property
    def mode(self) -> str:
        """``ratio`` or ``threshold``."""
        return self.space.mode

    def param_names(self) -> list[str]:
        """Every searched parameter name, dimensions first."""
        return [d.name for d in self.dimensions] + list(self.choices)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (stored with a study to detect a changed space on resume)."""
        return {"space": self.space.to_dict(), "units": list(self.unit_names),
                "dimensions": [[d.name, list(d.units), d.low, d.high, d.step] for d in self.dimensions],
                "fixed": self.fixed, "choices": {k: list(v) for k, v in self.choices.items()},
                "constants": self.constants, "ratio_bounds": list(self.ratio_bounds), "round_to": self.round_to}

    # ------------------------------------------------------------------ params -> policy
    def decode(self, params: Mapping[str, Any], *, thresholds_to_policy: ThresholdsToPolicy | None = None) -> Candidate:
        """Turn sampled parameters into a :class:`Candidate` (policy + evaluation-setting overrides).

        Args:
            params: Parameter name -> value (missing dimensions raise ``KeyError``).
            thresholds_to_policy: Needed in threshold mode: converts per-unit thresholds to a policy.
        """
        picked = {**self.constants, **{k: params[k] for k in self.choices}}
        importance = str(picked["importance"])
        values = dict(self.fixed)
        for d in self.dimensions:
            v = d.clip(params[d.name])
            values.update(dict.fromkeys(d.units, v))
        if self.mode == "ratio":
            policy = Policy(values, importance, self.round_to)
        else:
            if thresholds_to_policy is None:
                raise ValueError("threshold-mode spaces need thresholds_to_policy to decode parameters")
            lo, hi = self.ratio_bounds
            raw = thresholds_to_policy(values, importance)
            policy = Policy({u: min(hi, max(lo, raw.ratio(u))) for u in self.unit_names}, importance, self.round_to)
        overrides = {k: picked[k] for k in ("finetune_steps", "finetune_lr") if k in picked}
        return Candidate(policy, overrides, {k: params[k] for k in self.param_names()})

    # ------------------------------------------------------------------ policy -> params
    def encode(self, policy: Policy, *, ratio_to_threshold: Callable[[str, float], float] | None = None
               ) -> dict[str, Any]:
        """Parameters that reproduce ``policy`` as closely as the space allows (e.g. for warm-start trials).

        A group takes the mean of its members' ratios (thresholds); values are clipped into the bounds.

        Args:
            policy: The policy to express.
            ratio_to_threshold: Needed in threshold mode: ``(unit, ratio) -> threshold`` giving that ratio.
        """
        if self.mode == "threshold" and ratio_to_threshold is None:
            raise ValueError("threshold-mode spaces need ratio_to_threshold to encode a policy")
        params: dict[str, Any] = {}
        for d in self.dimensions:
            vals = [policy.ratio(u) if self.mode == "ratio" else ratio_to_threshold(u, policy.ratio(u))  # type: ignore[misc]
                    for u in d.units]
            params[d.name] = d.clip(sum(vals) / len(vals))
        if "importance" in self.choices and policy.importance in self.choices["importance"]:
            params["importance"] = policy.importance
        return params


def _matches(key: str, names: Sequence[str]) -> list[str]:
    if key in names:
        return [key]
    if any(ch in key for ch in "*?["):
        return [n for n in names if fnmatch.fnmatchcase(n, key)]
    return []


def bind_space(space: SearchSpace, *, unit_names: Sequence[str], min_ratio: float = 0.0,
               max_ratio: float = DEFAULT_MAX_RATIO,
               importance: str = "l2", round_to: int | None = None,
               unit_kinds: Mapping[str, str] | None = None) -> BoundSpace:
    """Resolve ``space`` for a task.

    Args:
        space: The declarative space.
        unit_names: The task's prunable units in graph order.
        min_ratio: Default lower ratio bound (``SearchConfig.min_ratio``).
        max_ratio: Default upper ratio bound (``SearchConfig.max_ratio``).
        importance: Criterion used when the space offers no choice.
        round_to: Channel rounding copied into every policy.
        unit_kinds: Unit name -> its kind (``PrunableUnit.kind``), for the space's ``kinds`` bounds.

    Raises:
        UserInputError: A unit key matching no unit, a kind bound without ``unit_kinds`` or naming a kind no unit
            has, or a group whose members' bounds do not overlap.
    """
    names = list(unit_names)
    check_importance(importance)
    if space.mode == "ratio":
        default = (min_ratio if space.low is None else space.low, max_ratio if space.high is None else space.high)
    else:
        default = (0.0 if space.low is None else space.low, 1.0 if space.high is None else space.high)
    if default[0] > default[1]:
        raise user_error(f"search space {space.name!r}: low bound above high bound:", list(default),
                         "set 'low' / 'high' in the space or --min-ratio / --max-ratio consistently")
    bounds = dict.fromkeys(names, default)
    if space.kinds and unit_kinds is None:
        raise user_error(f"search space {space.name!r} bounds unit kinds, but the caller gave no kinds:",
                         sorted(space.kinds), "bind it with unit_kinds={unit: kind} (the engine's units)")
    for kind, pair in space.kinds.items():
        hits = [u for u in names if (unit_kinds or {}).get(u) == kind]
        if not hits:
            raise user_error(f"search space {space.name!r} bounds a unit kind the model does not have:", kind,
                             f"kinds here: {', '.join(sorted(set((unit_kinds or {}).values())))}")
        bounds.update(dict.fromkeys(hits, pair))
    for key, pair in space.units.items():
        hits = _matches(key, names)
        if not hits:
            raise user_error(f"search space {space.name!r} names a unit the model does not have:", key,
                             f"use unit names from `prunepilot sensitivity` (e.g. {', '.join(names[:3])}) or a glob")
        for u in hits:
            bounds[u] = pair
    members: dict[str, list[str]] = {}
    for u in names:
        key = next((k for k in (rule.key(u) for rule in space.groups) if k is not None), u)
        members.setdefault(key, []).append(u)
    if space.groups and all(len(m) == 1 for m in members.values()):
        warnings.warn(f"search space {space.name!r}: no grouping rule joins two units of this model, so it has one "
                      "dimension per unit", stacklevel=2)
    prefix = "ratio" if space.mode == "ratio" else "threshold"
    dims, fixed = [], {}
    for key, group in members.items():
        lo = max(bounds[u][0] for u in group)
        hi = min(bounds[u][1] for u in group)
        if lo > hi:
            raise user_error(f"search space {space.name!r}: the bounds of group {key!r} {group} do not overlap:",
                             {u: list(bounds[u]) for u in group}, "give its units compatible bounds")
        if math.isclose(lo, hi, abs_tol=1e-12):
            fixed.update(dict.fromkeys(group, lo))
            continue
        step = space.step
        if step:
            hi = lo + math.floor((hi - lo) / step + 1e-9) * step
            hi = round(hi, 10)
            if hi <= lo:
                fixed.update(dict.fromkeys(group, lo))
                continue
        dims.append(Dimension(f"{prefix}/{key}", tuple(group), float(lo), float(hi), step))
    constants: dict[str, Any] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for name, options in (("importance", space.importance or (importance,)),
                          ("finetune_steps", space.finetune_steps), ("finetune_lr", space.finetune_lr)):
        if len(options) == 1:
            constants[name] = options[0]
        elif len(options) > 1:
            choices[name] = tuple(options)
    return BoundSpace(space, tuple(names), tuple(dims), fixed, choices, constants, (min_ratio, max_ratio), round_to)
