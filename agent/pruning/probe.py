"""Which units can't be pruned because the model's own forward would break (a width hard-coded in Python).

Torch-Pruning slices weights consistently, but a forward that reshapes to a stored width (torchvision's ViT
``reshape(n, self.hidden_dim, ...)``) or checks a size fails once that width shrinks. Each unit is probed on
a *weightless* copy of the model (meta tensors: no memory, no arithmetic): prune one element per group of every
unit and again all but one, run the forward, and bisect the units of a failing probe down to the culprits.
A model whose forward can't run on meta tensors is probed on a copy with real tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .graph import PruningGraph

__all__ = ["blocking_units"]


def _meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, device="meta")


def _runner(graph: PruningGraph) -> Callable[[dict[str, np.ndarray]], str | None]:
    """``run(plan) -> error or None``: apply ``plan`` to a fresh copy and run the example forward."""
    from .graph import _shared_copy

    example = graph.example_input
    meta_example = torch.empty_like(example, device="meta")

    def attempt(make: Callable[[torch.Tensor], torch.Tensor] | None, x: torch.Tensor,
                plan: dict[str, np.ndarray]) -> str | None:
        try:
            model = graph.apply_to(_shared_copy(graph.model, make), plan)
            with torch.no_grad():
                model(x)
        except Exception as exc:  # noqa: BLE001 - the probe's answer is the error
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return None

    if attempt(_meta, meta_example, {}) is None:
        return lambda plan: attempt(_meta, meta_example, plan)
    return lambda plan: attempt(lambda t: t.detach().clone(), example, plan)


def _plan(graph: PruningGraph, names: Sequence[str], heavy: bool) -> dict[str, np.ndarray]:
    """Remove one element per group of each unit (``heavy``: all but one per group)."""
    plan = {}
    for name in names:
        unit = graph.unit_by_name[name]
        g = unit.channel_groups
        size = unit.channels // g
        drop = np.arange(size - 1) if heavy else np.arange(1)
        plan[name] = np.sort(np.concatenate([drop + k * size for k in range(g)]))
    return plan


def blocking_units(graph: PruningGraph) -> dict[str, str]:
    """Units whose pruning makes the model's forward fail: unit name -> the error it raises."""
    run = _runner(graph)
    found: dict[str, str] = {}

    def bisect(names: list[str], heavy: bool, error: str) -> None:
        if len(names) == 1:
            found[names[0]] = error
            return
        half = len(names) // 2
        hit = False
        for part in (names[:half], names[half:]):
            err = run(_plan(graph, part, heavy))
            if err is not None:
                hit = True
                bisect(part, heavy, err)
        if not hit:  # only fails together: keep them all whole, the safe answer
            found.update(dict.fromkeys(names, error))

    for heavy in (False, True):
        names = [u.name for u in graph.units if u.name not in found]
        error = run(_plan(graph, names, heavy)) if names else None
        if error is not None:
            bisect(names, heavy, error)
    return found
