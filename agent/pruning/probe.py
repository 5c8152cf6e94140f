"""Which units can't be pruned because the model's own forward would break (a width hard-coded in Python).

Torch-Pruning slices weights consistently, but a forward that reshapes to a stored width (torchvision's ViT
``reshape(n, self.hidden_dim, ...)``) or checks a size fails once that width shrinks. The probe prunes every
unit down to one element per group on a copy that shares the dense tensors (only the tiny pruned ones are
new), runs the example forward, and bisects the units of a failing probe down to the culprits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .graph import PruningGraph

__all__ = ["blocking_units"]


def _runner(graph: PruningGraph) -> Callable[[dict[str, np.ndarray]], str | None]:
    """``run(plan) -> error or None``: apply ``plan`` to a copy sharing the dense tensors and run the example."""
    from .copies import shared_copy

    def attempt(plan: dict[str, np.ndarray]) -> str | None:
        try:
            model = graph.apply_to(shared_copy(graph.model), plan)
            with torch.no_grad():
                model(graph.example_input)
        except Exception as exc:  # noqa: BLE001 - the probe's answer is the error
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return None

    return attempt


def _plan(graph: PruningGraph, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Every unit pruned as far as :meth:`PruningGraph.select` ever goes: one element per group and layer left."""
    scores = {n: torch.arange(graph.unit_by_name[n].channels, dtype=torch.float32) for n in names}
    return graph.select(scores, dict.fromkeys(names, 1.0 - 1e-9))


def blocking_units(graph: PruningGraph) -> dict[str, str]:
    """Units whose pruning makes the model's forward fail: unit name -> the error it raises."""
    run = _runner(graph)
    found: dict[str, str] = {}

    def bisect(names: list[str], error: str) -> None:
        if len(names) == 1:
            found[names[0]] = error
            return
        half = len(names) // 2
        hit = False
        for part in (names[:half], names[half:]):
            err = run(_plan(graph, part))
            if err is not None:
                hit = True
                bisect(part, err)
        if not hit:  # only fails together: keep them all whole, the safe answer
            found.update(dict.fromkeys(names, error))

    names = [u.name for u in graph.units]
    error = run(_plan(graph, names)) if names else None
    if error is not None:
        bisect(names, error)
    return found
