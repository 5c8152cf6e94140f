"""The declarative policy search space: what a searcher may vary, independent of any search library.

A :class:`SearchSpace` is pure data (it round-trips through JSON / YAML) and is checked on construction, so a
bad definition fails before any model is built. Binding it to a task's unit names
(:meth:`SearchSpace.bind`, see :mod:`search_spaces.bound`) resolves groups and bounds into concrete dimensions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from agent.errors import UserInputError, user_error
from agent.policy import DEFAULT_MAX_RATIO
from agent.pruning.importance import IMPORTANCE_CRITERIA

from .bound import BoundSpace, bind_space

__all__ = ["SearchSpace", "GroupRule", "SPACE_MODES"]

SPACE_MODES = ("ratio", "threshold")
"""What a dimension's value means: a pruning ratio, or a normalised-importance threshold."""


@dataclass(frozen=True)
class GroupRule:
    """Units whose names match ``pattern`` (``re.search``) and expand to the same ``name`` share one value."""

    pattern: str
    """Regular expression tried against each unit name (first matching rule wins)."""
    name: str = r"\g<0>"
    """Group name template (``re.Match.expand`` syntax, e.g. ``stage\\1``); default: the matched text."""

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise user_error("search space: group pattern is not a valid regular expression:", self.pattern,
                             f"fix it ({exc}), e.g. '^layer(\\d+)\\.'") from None
        if not self.name:
            raise user_error("search space: group name template is empty for pattern", self.pattern,
                             "give a template such as 'stage\\1' or leave 'name' out")

    @classmethod
    def prefix(cls, depth: int) -> GroupRule:
        """Group by the first ``depth`` dot-separated components of a unit name (``layer2.0.conv1`` -> ``layer2``).

        Units with no more than ``depth`` components stay on their own.
        """
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise user_error("search space: group depth must be a positive integer, got", depth,
                             "e.g. {depth: 1} groups layer2.0.conv1 with layer2.1.conv1")
        return cls(r"^((?:[^.]+\.){" + str(depth - 1) + r"}[^.]+)\.", r"\1")

    def key(self, unit: str) -> str | None:
        """The group ``unit`` falls into under this rule, or None when the rule does not match."""
        m = re.search(self.pattern, unit)
        if m is None:
            return None
        try:
            return m.expand(self.name)
        except (re.error, IndexError) as exc:
            raise user_error("search space: group name template does not fit its pattern:", self.name,
                             f"pattern {self.pattern!r} has {len(m.groups())} group(s) ({exc})") from None


def _tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (value,)
    return tuple(value)


def _check_number(what: str, v: Any, mode: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise user_error(f"search space: {what} must be a finite number, got", v, "e.g. 0.8")
    if v < 0:
        raise user_error(f"search space: {what} must be >= 0, got", v, "use 0 for 'not pruned'")
    if mode == "ratio" and v >= 1:
        raise user_error(f"search space: {what} must be < 1 in ratio mode, got", v,
                         "a ratio of 1 would remove every channel; use at most 0.95")
    if mode == "threshold" and v > 1:
        raise user_error(f"search space: {what} must be <= 1 in threshold mode, got", v,
                         "thresholds apply to importance normalised into [0, 1]; use at most 1.0")
    return float(v)


def _bound_map(what: str, field_name: str, value: Any, mode: str, *, keys: str, example: str,
               fixed: str) -> dict[str, tuple[float, float]]:
    """A ``{name: [low, high]}`` field (``units`` or ``kinds``), checked; one number fixes the bound."""
    if not isinstance(value, Mapping):
        raise user_error(f"search space: '{field_name}' must map {keys} to [low, high], got", value,
                         f"write {field_name}: {example}")
    out: dict[str, tuple[float, float]] = {}
    for key, item in value.items():
        pair = _tuple(item)
        if len(pair) == 1:
            pair = (pair[0], pair[0])
        if len(pair) != 2:
            raise user_error(f"search space: bounds of {what} {key!r} must be [low, high], got", item,
                             f"e.g. [0.0, 0.5] (or one number to {fixed})")
        out[str(key)] = _check_bounds(f"bounds of {what} {key!r}", pair[0], pair[1], mode)
    return out


def _check_bounds(what: str, lo: Any, hi: Any, mode: str) -> tuple[float, float]:
    lo, hi = _check_number(f"{what} low", lo, mode), _check_number(f"{what} high", hi, mode)
    if lo > hi:
        raise user_error(f"search space: {what} have low > high:", [lo, hi], f"swap them: [{hi}, {lo}]")
    return lo, hi


@dataclass(frozen=True)
class SearchSpace:
    """A declarative pruning-policy search space.

    Dimension values are pruning ratios (``mode="ratio"``) or per-unit thresholds on the unit's normalised
    channel importance (``mode="threshold"``; channels scoring below go, see
    ``PruningEngine.thresholds_to_policy``).
    """

    name: str = "custom"
    """Label shown in logs, summaries and the Optuna study."""
    description: str = ""
    """Free text."""
    mode: Literal["ratio", "threshold"] = "ratio"
    """``ratio``: search per-unit pruning ratios; ``threshold``: search per-unit importance thresholds."""
    low: float | None = None
    """Default lower bound of every dimension (ratio mode default: ``SearchConfig.min_ratio``; threshold: 0)."""
    high: float | None = None
    """Default upper bound (ratio mode default: ``SearchConfig.max_ratio``, must be < 1; threshold: 1)."""
    units: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per-unit bounds, keyed by exact unit name or glob (``layer3.*``); ``[x, x]`` fixes a unit at ``x``."""
    kinds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Per-unit-kind bounds (``{heads: [0, 0.5], mlp: [0, 0.7]}``); a ``units`` entry overrides them."""
    groups: tuple[GroupRule, ...] = ()
    """Grouping rules: units of one group share a value (fewer dimensions); unmatched units stay alone."""
    step: float | None = None
    """Discretise every dimension to multiples of ``step`` from its low bound (None = continuous)."""
    importance: tuple[str, ...] = ()
    """Importance criteria to choose from (empty: the search's ``--importance``; 2+: a categorical choice)."""
    finetune_steps: tuple[int, ...] = ()
    """Short fine-tune step counts to choose from (empty: the evaluation settings' value)."""
    finetune_lr: tuple[float, ...] = ()
    """Short fine-tune learning rates to choose from (empty: the evaluation settings' value)."""

    def __post_init__(self) -> None:
        put = object.__setattr__
        if self.mode not in SPACE_MODES:
            raise user_error("search space: unknown mode", self.mode, f"use one of {', '.join(SPACE_MODES)}")
        for label, value in (("low", self.low), ("high", self.high)):
            if value is not None:
                put(self, label, _check_number(label, value, self.mode))
        if self.low is not None and self.high is not None:
            _check_bounds("bounds", self.low, self.high, self.mode)
        put(self, "units", _bound_map("unit", "units", self.units, self.mode, keys="unit names",
                                      example="{'layer1.0.conv1': [0.0, 0.5]}", fixed="fix the unit"))
        put(self, "kinds", _bound_map("kind", "kinds", self.kinds, self.mode, keys="unit kinds",
                                      example="{heads: [0.0, 0.5], mlp: [0.0, 0.7]}", fixed="fix every unit of the kind"))
        rules = []
        for rule in _tuple(self.groups) if not isinstance(self.groups, GroupRule) else (self.groups,):
            rules.append(rule if isinstance(rule, GroupRule) else _rule_from(rule))
        put(self, "groups", tuple(rules))
        if self.step is not None and not (isinstance(self.step, (int, float)) and 0 < self.step < 1):
            raise user_error("search space: step must be in (0, 1), got", self.step, "e.g. 0.05, or leave it out")
        put(self, "importance", tuple(str(x) for x in _tuple(self.importance)))
        for name in self.importance:
            if name not in IMPORTANCE_CRITERIA:
                raise user_error("search space: unknown importance", name,
                                 f"choose from {', '.join(IMPORTANCE_CRITERIA)}")
        steps = _tuple(self.finetune_steps)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps):
            raise user_error("search space: finetune_steps choices must be integers >= 0, got", list(steps),
                             "e.g. [0, 100, 300]")
        put(self, "finetune_steps", steps)
        lrs = _tuple(self.finetune_lr)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                   for x in lrs):
            raise user_error("search space: finetune_lr choices must be numbers > 0, got", list(lrs),
                             "e.g. [0.003, 0.01, 0.03]")
        put(self, "finetune_lr", tuple(float(x) for x in lrs))
        for label, seq in (("importance", self.importance), ("finetune_steps", self.finetune_steps),
                           ("finetune_lr", self.finetune_lr)):
            if len(set(seq)) != len(seq):
                raise user_error(f"search space: {label} choices repeat a value:", list(seq), "list each choice once")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON / YAML-ready dict (inverse of :meth:`from_dict`)."""
        return {
            "name": self.name, "description": self.description, "mode": self.mode, "low": self.low,
            "high": self.high, "units": {k: list(v) for k, v in self.units.items()},
            "kinds": {k: list(v) for k, v in self.kinds.items()},
            "groups": [{"pattern": g.pattern, "name": g.name} for g in self.groups], "step": self.step,
            "importance": list(self.importance), "finetune_steps": list(self.finetune_steps),
            "finetune_lr": list(self.finetune_lr),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: SearchSpace | None = None) -> SearchSpace:
        """Build a space from a mapping (e.g. a parsed YAML file); keys left out keep ``base``'s values.

        Raises:
            UserInputError: Unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise user_error("search space must be a mapping of settings, got", type(data).__name__,
                             "write e.g. {mode: ratio, high: 0.8}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise user_error("search space has unknown key(s)", unknown, f"use only {', '.join(allowed)} (or preset)")
        values = base.to_dict() if base is not None else {}
        values.update(data)
        try:
            return cls(**values)
        except TypeError as exc:  # a wrongly typed value that slipped past the checks
            raise UserInputError(f"search space: invalid value ({exc}): check the types in the definition") from None

    def bind(self, *, unit_names: Sequence[str], min_ratio: float = 0.0, max_ratio: float = DEFAULT_MAX_RATIO,
             importance: str = "l2", round_to: int | None = None,
             unit_kinds: Mapping[str, str] | None = None) -> BoundSpace:
        """Resolve the space against a task's units (see :func:`search_spaces.bound.bind_space`)."""
        return bind_space(self, unit_names=unit_names, min_ratio=min_ratio, max_ratio=max_ratio,
                          importance=importance, round_to=round_to, unit_kinds=unit_kinds)


def _rule_from(item: Any) -> GroupRule:
    if isinstance(item, str):
        return GroupRule(item)
    if isinstance(item, Mapping):
        keys = set(item)
        if keys == {"depth"}:
            return GroupRule.prefix(item["depth"])
        if "pattern" in keys and keys <= {"pattern", "name"}:
            return GroupRule(str(item["pattern"]), str(item.get("name", r"\g<0>")))
    raise user_error("search space: a group rule must be a regex string, {pattern, name} or {depth}, got", item,
                     "e.g. groups: [{pattern: '^layer(\\d+)\\.', name: 'stage\\1'}] or [{depth: 1}]")
