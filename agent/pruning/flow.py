"""Where each leaf layer's input channels come from: one traced forward, following tensors through every op.

Layers that no unit prunes directly (activations, pooling, dropout...) still shrink when their input does.
Their input may be a concat of several layers' outputs, passed through functional ops (``torch.relu``,
``x * gate``, ``torch.cat``), so ownership is followed through every torch call, not only through modules.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["Sources", "trace_channel_sources"]

Sources = tuple[tuple[str | None, int], ...]
"""A channel axis as segments: (layer whose outputs they are, or None for untracked, count)."""


def _width(t: torch.Tensor) -> int | None:
    return int(t.shape[1]) if t.dim() >= 2 else None


def _fits(sources: Sources, t: torch.Tensor) -> bool:
    """Whether ``sources`` can be ``t``'s channel axis (channels first, or last as after a linear layer)."""
    n = sum(k for _, k in sources)
    return t.dim() >= 2 and n in (t.shape[1], t.shape[-1])


def _tensors(args: Iterable[object]) -> list[torch.Tensor]:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, list | tuple):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


class _Follow(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.owner: dict[int, Sources] = {}
        self.alive: list[torch.Tensor] = []  # no id reuse while tracing

    def own(self, t: torch.Tensor, sources: Sources) -> None:
        self.owner[id(t)] = sources
        self.alive.append(t)

    def of(self, t: torch.Tensor) -> Sources | None:
        return self.owner.get(id(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204, D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or id(out) in self.owner or _width(out) is None:
            return out
        inputs = _tensors(args)
        if func in (torch.cat, torch.concat) and inputs:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim in (1, 1 - out.dim()) and all(t.dim() == out.dim() for t in inputs):
                parts: list[tuple[str | None, int]] = []
                for t in inputs:
                    parts.extend(self.of(t) or ((None, int(t.shape[1])),))
                if any(src is not None for src, _ in parts):
                    self.own(out, tuple(parts))
                return out
        for t in inputs:
            src = self.of(t)
            if src is not None and _fits(src, out):
                self.own(out, src)
                break
        return out


def trace_channel_sources(model: nn.Module, example: torch.Tensor, tracked: set[str]) -> dict[str, Sources]:
    """Leaf modules not in ``tracked`` -> the sources of their input's channel axis (only those fed by tracked layers).

    Args:
        model: The model (one no-grad forward).
        example: A batch-1 input.
        tracked: Layers whose output widths units control.
    """
    follow = _Follow()
    found: dict[str, Sources] = {}
    modules = dict(model.named_modules())

    def hook(name: str, inputs: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or _width(output) is None:
            return
        if name in tracked:
            width = output.shape[-1] if isinstance(modules[name], nn.Linear) else output.shape[1]
            follow.own(output, ((name, int(width)),))
            return
        src = follow.of(inputs[0]) if inputs and isinstance(inputs[0], torch.Tensor) else None
        if src is not None:
            found[name] = found.get(name, ()) + src  # a module called several times: every call's channels
            if _fits(src, output):
                follow.own(output, src)

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(n, i, o))
               for n, m in model.named_modules() if n and (n in tracked or not list(m.children()))]
    try:
        with torch.no_grad(), follow:
            model(example)
    finally:
        for h in handles:
            h.remove()
    return found
