"""Structural copies of a model that share (or replace) its tensors: cheap in memory, never aliasing the dense weights."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["shared_copy", "own_tensors"]


def shared_copy(model: nn.Module, make: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers are ``make(t)`` (default: the same tensors)."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = p if make is None else nn.Parameter(make(p), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b if make is None else make(b)
    return copy.deepcopy(model, memo)


def own_tensors(model: nn.Module, shared: set[int]) -> None:
    """Replace every tensor of ``model`` that is still one of ``shared`` by a clone (ties stay tied)."""
    clones: dict[int, torch.Tensor] = {}
    for mod in model.modules():
        for store, as_param in ((mod._parameters, True), (mod._buffers, False)):
            for key, t in list(store.items()):
                if t is None or id(t) not in shared:
                    continue
                if id(t) not in clones:
                    data = t.detach().clone()
                    clones[id(t)] = nn.Parameter(data, requires_grad=t.requires_grad) if as_param else data
                store[key] = clones[id(t)]
