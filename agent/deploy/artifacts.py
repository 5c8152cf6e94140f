"""Saving and loading pruned models without pickled code.

``pruned_model.pt`` stores the dense model spec, the channels each unit lost (in dense coordinates) and the
pruned ``state_dict``: everything loads with ``torch.load(weights_only=True)``. :func:`load_pruned_model`
rebuilds the dense architecture, replays the pruning plan with Torch-Pruning and loads the weights, so no
caller needs to know the new shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import user_error
from ..pruning.graph import PruningGraph
from ..storage import atomic_torch_save
from ..tasks.models import build_model
from ..tasks.task import Task

__all__ = ["save_pruned_model", "load_pruned_model", "read_pruned_artifact", "PrunedArtifact", "PRUNED_FORMAT"]

PRUNED_FORMAT = "prunepilot-pruned-v1"


def save_pruned_model(path: str | Path, *, task: Task, model: nn.Module, removed: Mapping[str, np.ndarray],
                      policy: dict[str, Any], metrics: dict[str, Any] | None = None) -> Path:
    """Save a pruned model in the weights-only format.

    Args:
        path: Destination file.
        task: The task the model was pruned from (its spec rebuilds the dense architecture).
        model: The pruned (possibly fine-tuned) model.
        removed: Unit name -> root channel indices removed (the plan the model was built from).
        policy: The policy as a dict (``Policy.to_dict()``).
        metrics: Metrics to keep beside the weights.

    Returns:
        The path written.
    """
    payload = {
        "format": PRUNED_FORMAT,
        "model": task.spec.model,
        "dataset": task.spec.dataset,
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
        "removed": {k: [int(i) for i in v] for k, v in removed.items()},
        "prune_embed": task.prune_embed,
        "policy": policy,
        "metrics": metrics or {},
        "dense_checkpoint": task.checkpoint_path,
        "task_fingerprint": task.fingerprint,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    atomic_torch_save(path, payload)
    return Path(path)


@dataclass
class PrunedArtifact:
    """Everything a ``pruned_model.pt`` holds, with the model rebuilt."""

    model: nn.Module
    """The pruned model (eval mode, CPU)."""
    removed: dict[str, np.ndarray]
    """Unit name -> removed root channels in dense coordinates (the plan the model was built from)."""
    policy: dict[str, Any]
    """The policy as saved (``Policy.to_dict()``)."""
    metrics: dict[str, Any]
    """Metrics saved beside the weights."""
    model_spec: str
    """The dense model spec."""
    dataset: str
    """The dataset name."""
    input_shape: tuple[int, ...]
    """Per-sample input shape."""
    num_classes: int
    """Number of classes."""
    dense_checkpoint: str | None = None
    """Where the dense checkpoint it was cut from lived when it was saved (None in older files)."""
    task_fingerprint: str | None = None
    """Fingerprint of that dense task (None in older files)."""


def load_pruned_model(path: str | Path) -> nn.Module:
    """Load a model saved by :func:`save_pruned_model` (weights only; no code is unpickled).

    Example:
        >>> import tempfile
        >>> from agent import EvalSettings, Policy, build_task, get_engine, load_pruned_model, save_pruned_model
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> engine, policy = get_engine(task), Policy.uniform(get_engine(task).graph.unit_names(), 0.5)
        >>> plan = engine.plan(policy, EvalSettings())
        >>> path = save_pruned_model(tempfile.mkdtemp() + "/pruned.pt", task=task, model=engine.graph.apply(plan),
        ...                          removed=plan, policy=policy.to_dict())
        >>> sum(p.numel() for p in load_pruned_model(path).parameters()) < sum(p.numel() for p in task.model.parameters())
        True

    Args:
        path: The ``pruned_model.pt`` file.

    Returns:
        The pruned model in eval mode on the CPU.
    """
    return read_pruned_artifact(path).model


def read_pruned_artifact(path: str | Path) -> PrunedArtifact:
    """Load a ``pruned_model.pt`` with its plan, policy and metrics (weights only; no code is unpickled).

    Raises:
        UserInputError: The file is missing, unreadable or not a PrunePilot pruned model.
    """
    p = Path(path)
    if not p.is_file():
        raise user_error("pruned model not found:", str(p), "pass the pruned_model.pt of a search's output dir")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise user_error("not a readable pruned model file:", str(p), f"pass a PrunePilot pruned_model.pt ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != PRUNED_FORMAT:
        raise user_error("not a PrunePilot pruned model:", str(p), "pass the pruned_model.pt written by a search")
    shape = tuple(payload["input_shape"])
    dense = build_model(payload["model"], shape, payload["num_classes"])
    graph = PruningGraph(dense, torch.zeros((1, *shape)), prune_embed=bool(payload.get("prune_embed", False)))
    unknown = set(payload["removed"]) - set(graph.unit_names())
    if unknown:
        raise user_error("pruned model names units the architecture lacks:", sorted(unknown)[:3],
                         "was it saved by a different PrunePilot or model version?")
    removed = {k: np.asarray(v, dtype=np.int64) for k, v in payload["removed"].items()}
    model = graph.apply(removed)
    model.load_state_dict(payload["state_dict"])
    return PrunedArtifact(model.eval(), removed, dict(payload.get("policy") or {}), dict(payload.get("metrics") or {}),
                          payload["model"], payload["dataset"], shape, int(payload["num_classes"]),
                          payload.get("dense_checkpoint"), payload.get("task_fingerprint"))
