"""Forward-pass tracing helpers: one no-grad pass with hooks on selected modules."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["trace_forward", "find_output_layer", "forward_order", "PRUNABLE_TYPES"]

PRUNABLE_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
"""Layer types that root a prunable unit."""

OnModule = Callable[[str, nn.Module, tuple, object], None]


def trace_forward(model: nn.Module, example: torch.Tensor, on_module: OnModule,
                  select: Callable[[str, nn.Module], bool]) -> object:
    """Run ``model(example)`` once without gradients, calling ``on_module`` after each selected module.

    ``on_module(name, module, inputs, output)``'s return value is ignored, so outputs are never replaced.

    Returns:
        The model's output.
    """
    def hook(name: str, mod: nn.Module, inputs: tuple, output: object) -> None:
        on_module(name, mod, inputs, output)

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(n, mod, i, o))
               for n, m in model.named_modules() if select(n, m)]
    try:
        with torch.no_grad():
            return model(example)
    finally:
        for h in handles:
            h.remove()


def find_output_layer(model: nn.Module, example_input: torch.Tensor) -> str | None:
    """Name of the classifier layer: the last conv/linear (forward order) producing the output's width."""
    order: list[tuple[str, int]] = []
    out = trace_forward(model, example_input,
                        lambda n, m, i, o: order.append((n, o.shape[1] if o.dim() > 1 else o.shape[0])),
                        lambda n, m: isinstance(m, PRUNABLE_TYPES))
    width = out.shape[1] if out.dim() > 1 else out.shape[0]  # type: ignore[union-attr]
    for name, w in reversed(order):
        if w == width:
            return name
    return None


def forward_order(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Conv / linear layer name -> position of its first call in a forward pass."""
    order: dict[str, int] = {}
    trace_forward(model, example_input, lambda n, m, i, o: order.setdefault(n, len(order)),
                  lambda n, m: isinstance(m, PRUNABLE_TYPES))
    return order
