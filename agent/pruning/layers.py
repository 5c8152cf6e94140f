"""Layer selection by name: exact module names or glob patterns, a container covering its layers."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn

from ..errors import user_error
from .tracing import PRUNABLE_TYPES

__all__ = ["resolve_layer_patterns"]


def resolve_layer_patterns(model: nn.Module, patterns: Iterable[str]) -> set[str]:
    """Conv / linear layer names matched by ``patterns`` (exact names or globs; a container covers its layers).

    Raises:
        UserInputError: A pattern matches no module of the model.
    """
    names = [n for n, _ in model.named_modules() if n]
    prunable = {n for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    out: set[str] = set()
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            close = [n for n in names if pattern.split(".")[0] in n][:5] or names[:5]
            raise user_error("--ignore-layers pattern matches no layer of the model:", pattern,
                             f"use names from model.named_modules(), e.g. {', '.join(close)} (globs like 'layer4.*' work)")
        out |= {n for n in prunable if any(n == h or n.startswith(h + ".") for h in hits)}
    return out
