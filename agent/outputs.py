"""What a model's forward returns, reduced to the logits every stage scores (a leaf module).

Users' models return a tensor, a tuple or list whose first entry is the logits (torchvision's GoogLeNet and
Inception in training mode: ``(logits, aux...)``), or a mapping with a ``logits`` entry (Hugging Face outputs).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["logits_of"]


def logits_of(output: object) -> torch.Tensor:
    """The logits tensor inside a model's output.

    Args:
        output: A tensor; a tuple / list (the first entry, recursively); or a mapping (``logits``, else
            ``out``, else its first tensor value).

    Raises:
        TypeError: No tensor can be found in ``output``.

    Example:
        >>> import torch
        >>> logits_of({"logits": torch.zeros(2, 3), "aux": torch.ones(2, 3)}).shape
        torch.Size([2, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "out"):
            if key in output:
                return logits_of(output[key])
        output = [v for v in output.values() if isinstance(v, torch.Tensor | tuple | list | Mapping)]
    if isinstance(output, tuple | list) and output:
        return logits_of(output[0])
    raise TypeError(f"the model's forward returned {type(output).__name__}, not logits: return a tensor, a tuple "
                    "whose first entry is the logits, or a dict with a 'logits' entry")
