"""What of a model can be pruned: refuse a model with no prunable unit up front, warn about groups kept whole."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import UserInputError

if TYPE_CHECKING:
    from .graph import PruningGraph

__all__ = ["build_graph", "check_prunable", "kept_whole_lines"]

_WORKAROUND = ("register a Torch-Pruning custom pruner for the blocking op (tp.pruner.BasePruningFunc, "
               "customized_pruners), or make the forward read widths from its layers instead of constants")


def kept_whole_lines(graph: PruningGraph, *, limit: int = 3) -> list[str]:
    """``layer: reason`` for the first ``limit`` groups kept whole for a reason other than ``--ignore-layers``."""
    lines = [f"{layer}: {why}" for layer, why in graph.kept_whole.items() if layer not in graph.user_ignored]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def check_prunable(graph: PruningGraph, *, what: str) -> None:
    """Refuse a model with nothing to prune; warn, naming them, when some groups must be kept whole.

    Args:
        graph: The model's pruning graph.
        what: How to name the model in messages (its spec).

    Raises:
        UserInputError: No unit can be pruned.
    """
    reasons = kept_whole_lines(graph)
    if not graph.units:
        if not reasons and graph.user_ignored:
            raise UserInputError(f"nothing in {what} is left to prune: --ignore-layers keeps every prunable layer "
                                 "whole; ignore fewer layers")
        blocked = "; ".join(reasons) or "it has no conv or linear layer with 2+ output channels besides the classifier"
        raise UserInputError(f"{what} cannot be pruned: {blocked}. Workaround: {_WORKAROUND}")
    if reasons:
        warnings.warn(f"{what}: {len(graph.kept_whole) - len(graph.user_ignored)} layer group(s) are kept whole, "
                      f"{len(graph.units)} unit(s) are searched: {'; '.join(reasons)}", stacklevel=2)


def build_graph(model: nn.Module, example_input: torch.Tensor, *, ignore_layers: tuple[str, ...] = (),
                prune_embed: bool = False, what: str = "the model") -> PruningGraph:
    """The model's :class:`PruningGraph`, with a tracing failure turned into one clear user error.

    Args:
        model: The dense model.
        example_input: A batch-1 input.
        ignore_layers: Names or glob patterns of layers kept whole.
        prune_embed: Prune a transformer's residual width as one unit (see :class:`PruningGraph`).
        what: How to name the model in messages (its spec).

    Raises:
        UserInputError: Torch-Pruning can't trace the model at all (the message names the error), an
            ``ignore_layers`` pattern matches nothing, or ``prune_embed`` is asked of a model that can't have it.
    """
    from .graph import PruningGraph

    try:
        return PruningGraph(model, example_input, ignored_layers=ignore_layers, prune_embed=prune_embed)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever Torch-Pruning raises, the user gets one line
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserInputError(f"Torch-Pruning can't trace {what} ({type(exc).__name__}: {first}): check that the model's "
                             f"forward runs on one example batch with gradients on; {_WORKAROUND}") from exc
