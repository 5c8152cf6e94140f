"""The :class:`Policy`: what a searcher proposes (a pruning ratio per prunable unit)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import user_error

__all__ = ["Policy", "DEFAULT_MAX_RATIO", "read_policy_json"]

DEFAULT_MAX_RATIO = 0.9
"""Largest per-unit ratio searchers propose by default (a unit always keeps >= 1 channel anyway)."""


def read_policy_json(path: str | Path) -> object:
    """The parsed JSON of a policy file.

    Raises:
        UserInputError: The file is missing or not valid JSON.
    """
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise user_error("policy file not found:", str(p), "pass an existing JSON file") from None
    except json.JSONDecodeError as exc:
        raise user_error("policy file is not valid JSON:", str(p), f"fix line {exc.lineno}: {exc.msg}") from None


@dataclass(frozen=True)
class Policy:
    """Per-unit pruning ratios plus how channels are ranked inside each unit.

    Example:
        >>> from agent import Policy
        >>> policy = Policy.uniform(["conv1", "conv2"], 0.5)
        >>> policy.ratio("conv1"), policy.importance
        (0.5, 'l2')

    """

    ratios: Mapping[str, float] = field(default_factory=dict)
    """Unit name -> fraction of its channels to remove, in [0, 1). Missing units are not pruned."""
    importance: str = "l2"
    """Importance criterion ranking channels inside a unit (see ``agent.pruning.IMPORTANCE_CRITERIA``)."""
    round_to: int | None = None
    """Keep a multiple of this many channels per unit where possible (e.g. 8 for tensor cores)."""

    def __post_init__(self) -> None:
        from .pruning.importance import check_importance  # lazily: agent.pruning loads torch (not for --help)

        object.__setattr__(self, "ratios", {str(k): float(v) for k, v in dict(self.ratios).items()})
        check_importance(self.importance)
        if self.round_to is not None and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise user_error("round_to must be a positive integer, got", self.round_to, "pass e.g. --round-to 8")
        for name, r in self.ratios.items():
            if not (math.isfinite(r) and 0.0 <= r < 1.0):
                raise user_error(f"pruning ratio of unit {name!r} must be in [0, 1), got", r,
                                 "use 0 to keep a unit whole and e.g. 0.5 to remove half its channels")

    @classmethod
    def uniform(cls, units: Iterable[str], ratio: float, *, importance: str = "l2",
                round_to: int | None = None) -> Policy:
        """The same ratio for every unit."""
        return cls({u: ratio for u in units}, importance, round_to)

    def validate(self, unit_names: Iterable[str], *, max_ratio: float = 1.0) -> None:
        """Check the policy against a task's units.

        Raises:
            UserInputError: An unknown unit name, or a ratio above ``max_ratio``.
        """
        names = list(unit_names)
        unknown = sorted(set(self.ratios) - set(names))
        if unknown:
            raise user_error("policy names units the model does not have:", unknown[:5],
                             f"use unit names from `prunepilot sensitivity` (e.g. {names[:3]})")
        too_big = {k: v for k, v in self.ratios.items() if v > max_ratio + 1e-12}
        if too_big:
            raise user_error(f"policy ratios above max_ratio={max_ratio}:", too_big, "lower them or raise --max-ratio")

    def ratio(self, unit: str) -> float:
        """The ratio of ``unit`` (0 when unset)."""
        return self.ratios.get(unit, 0.0)

    def key(self) -> str:
        """Stable short hash (ratios rounded to 1e-6): identical policies share evaluations and caches."""
        rounded = {k: round(v, 6) for k, v in sorted(self.ratios.items()) if round(v, 6) > 0}
        text = json.dumps([rounded, self.importance, self.round_to], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"ratios": dict(self.ratios), "importance": self.importance, "round_to": self.round_to}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Inverse of :meth:`to_dict` (also accepts a bare ``{unit: ratio}`` mapping)."""
        if not isinstance(data, Mapping):
            raise user_error("policy must be a JSON object, got", type(data).__name__,
                             'write {"ratios": {"unit": 0.5}, "importance": "l2"}')
        if "ratios" not in data:
            data = {"ratios": data}
        ratios = data["ratios"]
        if not isinstance(ratios, Mapping) or not all(isinstance(v, (int, float)) for v in ratios.values()):
            raise user_error("policy 'ratios' must map unit names to numbers, got", ratios,
                             'write {"ratios": {"layer1.0.conv1": 0.5}}')
        return cls(ratios, data.get("importance", "l2"), data.get("round_to"))

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy JSON file (e.g. a search's ``best_policy.json``)."""
        data = read_policy_json(path)
        if isinstance(data, Mapping) and "policy" in data:
            data = data["policy"]
        return cls.from_dict(data)
