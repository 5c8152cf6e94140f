"""Policy files (``best_policy.json``, ``closest_policy.json``): a policy, its metrics and how it was scored.

A policy's accuracy depends on how it was evaluated (a 100-step fine-tune scores far higher than BatchNorm
recalibration alone), so every policy file carries the evaluation settings behind its metrics, and
``prunepilot evaluate`` re-scores with them unless flags say otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import user_error
from ..evaluation import EvalSettings
from ..policy import Policy, read_policy_json
from ..storage import atomic_write_json

__all__ = ["EVALUATION_FIELDS", "PolicyFile", "evaluation_record", "apply_evaluation", "read_policy_file",
           "write_policy_file"]

EVALUATION_FIELDS = ("finetune_steps", "finetune_lr", "finetune_optimizer", "finetune_warmup", "finetune_batch",
                     "finetune_chunks", "bn_recalibration_batches",
                     "kd_alpha", "kd_temperature", "split", "eval_limit", "seed", "importance_batches")
"""``EvalSettings`` fields that decide a candidate's accuracy (device and latency settings decide only its cost,
which belongs to the machine re-scoring it)."""


def evaluation_record(settings: EvalSettings, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The accuracy-deciding settings a result was scored with (``overrides`` applied, e.g. a searched fine-tune)."""
    if overrides:
        settings = dataclasses.replace(settings, **dict(overrides))
    return {name: getattr(settings, name) for name in EVALUATION_FIELDS}


def apply_evaluation(settings: EvalSettings, evaluation: Mapping[str, Any], *,
                     keep: frozenset[str] = frozenset()) -> EvalSettings:
    """``settings`` with the fields of ``evaluation`` (from a policy file), except those named in ``keep``.

    Raises:
        UserInputError: ``evaluation`` names a field that is not an evaluation setting.
    """
    unknown = sorted(set(evaluation) - set(EVALUATION_FIELDS))
    if unknown:
        raise user_error("policy file's 'evaluation' has unknown settings:", unknown,
                         f"keep only {', '.join(EVALUATION_FIELDS)}")
    changes = {k: v for k, v in evaluation.items() if k not in keep}
    return dataclasses.replace(settings, **changes) if changes else settings


@dataclass(frozen=True)
class PolicyFile:
    """What a policy file holds."""

    policy: Policy
    """The policy."""
    evaluation: dict[str, Any] = field(default_factory=dict)
    """Settings its metrics were scored with (empty for a hand-written file)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The metrics recorded when it was scored (empty for a hand-written file)."""
    feasible: bool | None = None
    """Whether it met the search's constraints (None when not recorded)."""


def write_policy_file(path: Path, *, policy: Policy, metrics: Mapping[str, Any], settings: EvalSettings,
                      overrides: Mapping[str, Any] | None, feasible: bool, **extra: Any) -> None:
    """Write a policy file atomically (``extra`` adds top-level keys, e.g. the final fine-tune's results)."""
    atomic_write_json(path, {"policy": policy.to_dict(), "feasible": feasible,
                             "evaluation": evaluation_record(settings, overrides), "metrics": dict(metrics), **extra})


def read_policy_file(path: str | Path) -> PolicyFile:
    """Read a policy file, or a bare ``{"ratios": ...}`` / ``{unit: ratio}`` JSON.

    Raises:
        UserInputError: The file is missing, not JSON, or not a policy.
    """
    data = read_policy_json(path)
    if not (isinstance(data, Mapping) and "policy" in data):
        return PolicyFile(Policy.from_dict(data))
    evaluation = data.get("evaluation") or {}
    if not isinstance(evaluation, Mapping):
        raise user_error("policy file's 'evaluation' must be an object, got", evaluation,
                         'write e.g. "evaluation": {"finetune_steps": 100}')
    feasible = data.get("feasible")
    return PolicyFile(Policy.from_dict(data["policy"]), dict(evaluation), dict(data.get("metrics") or {}),
                      None if feasible is None else bool(feasible))
