"""PrunePilot: search per-layer structural pruning policies under accuracy and measured-latency constraints.

The public names below are imported on first use (PEP 562), so ``import agent`` (and ``prunepilot --help``)
does not load torch, Torch-Pruning or timm.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_pruned_model": "deploy.artifacts", "save_pruned_model": "deploy.artifacts",
    "Constraints": "constraints", "LatencyTarget": "constraints",
    "SearchFailedError": "errors", "UserInputError": "errors",
    "EvalResult": "evaluation", "EvalSettings": "evaluation", "PruningEngine": "evaluation",
    "evaluate_policy": "evaluation", "get_engine": "evaluation",
    "export_model": "deploy.export", "finetune_model": "deploy.finetune", "iterative_prune": "deploy.iterative",
    "LatencyConfig": "measure", "measure_latency": "measure", "Policy": "policy", "ResultLog": "search.results",
    "FinalTuneConfig": "search.run", "run_search": "search.run",
    "SensitivityProfile": "evaluation.sensitivity", "analyse_sensitivity": "evaluation.sensitivity",
    "SearchConfig": "search.session", "SearchSession": "search.session",
    "Task": "tasks", "TaskSpec": "tasks", "build_task": "tasks", "load_task": "tasks",
    "SparsifyConfig": "deploy.unstructured", "sparsify": "deploy.unstructured",
}

__all__ = [
    "Constraints", "EvalResult", "EvalSettings", "FinalTuneConfig", "LatencyConfig", "LatencyTarget", "Policy",
    "PruningEngine", "ResultLog", "SearchConfig", "SearchFailedError", "SearchSession", "SensitivityProfile",
    "Task", "TaskSpec", "UserInputError", "analyse_sensitivity", "build_task", "evaluate_policy", "get_engine",
    "load_pruned_model", "load_task", "measure_latency", "run_search", "save_pruned_model",
    "SparsifyConfig", "export_model", "finetune_model", "iterative_prune", "sparsify",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
