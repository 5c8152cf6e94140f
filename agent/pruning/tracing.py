"""Forward-pass tracing helpers: one no-grad pass with hooks on selected modules."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..outputs import logits_of

__all__ = ["trace_forward", "trace_layers", "find_output_layer", "forward_order", "PRUNABLE_TYPES"]

PRUNABLE_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
"""Layer types that root a prunable unit."""

OnModule = Callable[[str, nn.Module, tuple, object], None]


def trace_forward(model: nn.Module, example: torch.Tensor, on_module: OnModule,
                  select: Callable[[str, nn.Module], bool], *, keywords: bool = False) -> object:
    """Run ``model(example)`` once without gradients, calling ``on_module`` after each selected module.

    ``on_module(name, module, inputs, output)``'s return value is ignored, so outputs are never replaced. With
    ``keywords``, a module called with keyword arguments only (a Hugging Face block) gets them as ``inputs``
    (a dict) instead of its empty positional tuple.

    Returns:
        The model's output.
    """
    def hook(name: str, mod: nn.Module, inputs: tuple | dict, output: object) -> None:
        on_module(name, mod, inputs, output)

    if keywords:
        handles = [m.register_forward_hook(lambda mod, a, kw, o, n=n: hook(n, mod, a or kw, o), with_kwargs=True)
                   for n, m in model.named_modules() if select(n, m)]
    else:
        handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(n, mod, i, o))
                   for n, m in model.named_modules() if select(n, m)]
    try:
        with torch.no_grad():
            return model(example)
    finally:
        for h in handles:
            h.remove()


def _width(t: object) -> int | None:
    if not isinstance(t, torch.Tensor) or t.dim() == 0:
        return None
    return t.shape[1] if t.dim() > 1 else t.shape[0]


def trace_layers(model: nn.Module, example_input: torch.Tensor) -> tuple[dict[str, int], str | None]:
    """One pass: conv / linear name -> position of its first call, and the classifier layer's name.

    The classifier is the last conv / linear in forward order producing the width of the model's logits
    (see :func:`agent.outputs.logits_of` for tuple and dict outputs); None if no layer does.
    """
    order: dict[str, int] = {}
    widths: list[tuple[str, int | None]] = []

    def record(name: str, mod: nn.Module, inputs: tuple, output: object) -> None:
        order.setdefault(name, len(order))
        widths.append((name, _width(output)))

    out = logits_of(trace_forward(model, example_input, record, lambda n, m: isinstance(m, PRUNABLE_TYPES)))
    width = _width(out)
    for name, w in reversed(widths):
        if w == width:
            return order, name
    return order, None


def find_output_layer(model: nn.Module, example_input: torch.Tensor) -> str | None:
    """Name of the classifier layer: the last conv/linear (forward order) producing the output's width."""
    return trace_layers(model, example_input)[1]


def forward_order(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Conv / linear layer name -> position of its first call in a forward pass."""
    return trace_layers(model, example_input)[0]
