"""Everything a report reads: the files of a search's output directory and cached sensitivity profiles.

Nothing is recomputed and no log is parsed: ``results.csv`` (through :func:`agent.search.results.row_to_result`),
``summary.json``, ``best_policy.json``, ``run_config.json``, ``sensitivity.json`` (written by the search when a
searcher used a profile) or else a cached profile of the same task fingerprint, and ``pruned_model.pt``'s
header (for the dense model's size). Any missing input is listed in ``missing``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import user_error
from ..evaluation import EvalResult
from ..evaluation.sensitivity import SensitivityProfile
from ..search.results import row_to_result

__all__ = ["ReportInputs", "load_report_inputs", "find_sensitivity_profile"]


@dataclass
class ReportInputs:
    """The parsed files of one search output directory."""

    run_dir: Path
    """The search's output directory."""
    summary: dict[str, Any] | None = None
    """``summary.json``."""
    best_policy: dict[str, Any] | None = None
    """``best_policy.json``."""
    run_config: dict[str, Any] | None = None
    """``run_config.json``."""
    results: list[tuple[int, EvalResult]] = field(default_factory=list)
    """``results.csv`` as (trial, result) in file order."""
    sensitivity: SensitivityProfile | None = None
    """A sensitivity profile of the task, if one is on disk."""
    sensitivity_source: str | None = None
    """Where the profile came from."""
    dense_model_mb: float | None = None
    """Size of the dense model's parameters and buffers (MiB), from the architecture in ``pruned_model.pt``."""
    missing: list[str] = field(default_factory=list)
    """Optional inputs that were not found (or not readable), with the reason."""

    @property
    def fingerprint(self) -> str | None:
        """The task fingerprint of the run."""
        for src in (self.summary, self.run_config):
            if src and src.get("task_fingerprint"):
                return str(src["task_fingerprint"])
        return None


def _json(path: Path, missing: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        missing.append(f"{path.name} (not found)")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        missing.append(f"{path.name} (unreadable: {exc})")
        return None


def _results(path: Path, missing: list[str]) -> list[tuple[int, EvalResult]]:
    if not path.is_file():
        missing.append("results.csv (not found)")
        return []
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                out.append((int(row["trial"]), row_to_result(row)))
            except (KeyError, TypeError, ValueError, json.JSONDecodeError):
                continue  # a crash-truncated trailing line
    return out


def find_sensitivity_profile(fingerprint: str | None, *, importance: str | None = None,
                             cache_root: Path | None = None) -> tuple[SensitivityProfile, str] | None:
    """The newest cached profile measured on the task ``fingerprint`` (same importance preferred)."""
    if not fingerprint:
        return None
    if cache_root is None:
        from ..tasks.datasets import cache_dir

        cache_root = cache_dir() / "sensitivity"
    if not cache_root.is_dir():
        return None
    found = []
    for path in cache_root.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and (data.get("meta") or {}).get("task") == fingerprint:
            found.append((data.get("importance") == importance, path.stat().st_mtime, path))
    if not found:
        return None
    path = max(found)[2]
    return SensitivityProfile.from_json(path), f"cache {path}"


def _dense_model_mb(path: Path) -> float | None:
    if not path.is_file():
        return None
    import torch

    from ..tasks.models import build_model

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        dense = build_model(payload["model"], tuple(payload["input_shape"]), int(payload["num_classes"]))
    except Exception:  # noqa: BLE001 - the size is optional; any failure just leaves it out
        return None
    return sum(t.numel() * t.element_size() for t in [*dense.parameters(), *dense.buffers()]) / 2**20


def load_report_inputs(run_dir: str | Path) -> ReportInputs:
    """Read a search output directory.

    Raises:
        UserInputError: ``run_dir`` is not a directory or holds neither ``summary.json`` nor ``results.csv``.
    """
    d = Path(run_dir).expanduser()
    if not d.is_dir():
        raise user_error("report needs a search output directory, got", str(d), "pass the --out of `prunepilot search`")
    if not (d / "summary.json").is_file() and not (d / "results.csv").is_file():
        raise user_error("no search output (summary.json / results.csv) in", str(d),
                         "pass the --out directory of a finished or interrupted `prunepilot search`")
    inp = ReportInputs(d)
    inp.summary = _json(d / "summary.json", inp.missing)
    inp.best_policy = _json(d / "best_policy.json", inp.missing)
    inp.run_config = _json(d / "run_config.json", inp.missing)
    inp.results = _results(d / "results.csv", inp.missing)
    if (d / "sensitivity.json").is_file():
        try:
            inp.sensitivity, inp.sensitivity_source = SensitivityProfile.from_json(d / "sensitivity.json"), \
                "sensitivity.json"
        except (TypeError, ValueError) as exc:
            inp.missing.append(f"sensitivity.json (unreadable: {exc})")
    if inp.sensitivity is None:
        importance = ((inp.run_config or {}).get("config") or {}).get("importance")
        hit = find_sensitivity_profile(inp.fingerprint, importance=importance)
        if hit is not None:
            inp.sensitivity, inp.sensitivity_source = hit
        else:
            inp.missing.append("sensitivity profile (no sensitivity.json and none cached for this task)")
    inp.dense_model_mb = _dense_model_mb(d / "pruned_model.pt")
    return inp
