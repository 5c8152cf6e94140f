"""Model sources of the optional model libraries: ``timm:NAME`` (extra ``[timm]``) and ``hf:PATH`` (extra ``[hf]``).

Both build offline only: timm models with ``pretrained=False`` unless a local weights file is named, Hugging Face
models from a local directory with ``local_files_only=True``. The libraries are imported inside ``check`` /
``build`` with an install hint, so nothing here costs an import until such a spec is used.

Spec forms:
    * ``timm:vit_tiny_patch16_224``: untrained, ``num_classes`` / ``in_chans`` / ``img_size`` from the data.
    * ``timm:vit_tiny_patch16_224@/path/weights.safetensors``: timm loads the local file (``pretrained=True`` with
      ``pretrained_cfg_overlay={"file": PATH}``) and adapts the classifier and the input channels itself.
    * ``hf:/path/to/dir``: the directory holds ``config.json`` and optionally weights (``save_pretrained``'s
      layout). A causal LM (``architectures`` ends in ``ForCausalLM``) is wrapped by :class:`CausalLMLogits`;
      a config with ``image_size`` becomes ``AutoModelForImageClassification``, any other one
      ``AutoModelForSequenceClassification``; the classification head is sized to the data's classes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import user_error
from .sources import ModelSource, register_source

__all__ = ["CausalLMLogits", "HFSource", "TimmSource", "require"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def require(module: str, extra: str) -> Any:
    """Import an optional library, or fail with the install hint of its extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise user_error(f"this model source needs the optional library {module!r}, which is not installed:", module,
                         f"pip install 'prunepilot[{extra}]'") from None


class CausalLMLogits(nn.Module):
    """A Hugging Face causal LM as a plain ``ids -> logits`` module (``[N, L] -> [N, L, vocab]``).

    Token ids of any dtype are accepted: floating inputs (the random probes of FLOPs counting and latency
    timing, which know only the input's shape) are truncated and taken modulo the vocabulary, which leaves the
    cost of a forward pass unchanged. ``self.lm`` is the library model: save it with ``save_pretrained``.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits of every position of ``ids``."""
        if ids.is_floating_point():
            ids = ids.long().remainder(self.lm.config.vocab_size)
        return self.lm(input_ids=ids, use_cache=False).logits


@register_source
class TimmSource(ModelSource):
    """``timm:NAME[@WEIGHTS]``: a timm model, untrained unless a local weights file follows ``@``."""

    prefix = "timm"
    form = "timm:<timm name>[@local weights file]"

    def check(self, name: str) -> None:  # noqa: D102
        timm = require("timm", "timm")
        arch, _, weights = name.partition("@")
        if not timm.is_model(arch):
            raise user_error("unknown timm model", f"timm:{arch}", "use a name from timm.list_models(), "
                             "e.g. timm:vit_tiny_patch16_224")
        if weights and not Path(weights).is_file():
            raise user_error("timm weights file not found:", weights, "give an existing local file after '@'")

    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:  # noqa: D102
        timm = require("timm", "timm")
        arch, _, weights = name.partition("@")
        kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": input_shape[0]}
        if weights:
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": weights})
        if len(input_shape) == 3:
            try:  # transformers take the image size; CNNs do not know the argument
                return timm.create_model(arch, img_size=tuple(input_shape[1:]), **kwargs)
            except TypeError:
                pass
        return timm.create_model(arch, **kwargs)


@register_source
class HFSource(ModelSource):
    """``hf:PATH``: a Hugging Face model from a local directory (``config.json`` and optional weights)."""

    prefix = "hf"
    form = "hf:<local directory with config.json>"

    def check(self, name: str) -> None:  # noqa: D102
        require("transformers", "hf")
        if not (Path(name) / "config.json").is_file():
            raise user_error("not a Hugging Face model directory (no config.json):", name,
                             "give a local directory written by save_pretrained (the hub is never contacted)")

    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:  # noqa: D102
        transformers = require("transformers", "hf")
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
        has_weights = any((Path(name) / f).is_file() for f in _WEIGHT_FILES)
        if any(a.endswith("ForCausalLM") for a in (config.architectures or ())):
            auto = transformers.AutoModelForCausalLM
            lm = auto.from_pretrained(name, local_files_only=True) if has_weights else auto.from_config(config)
            return CausalLMLogits(lm)
        if hasattr(config, "image_size"):
            auto = transformers.AutoModelForImageClassification
            if len(input_shape) != 3:
                raise user_error("an image model needs image data (C, H, W), got input shape", input_shape,
                                 "use an image dataset such as digits32")
            wanted = {"num_channels": input_shape[0], "image_size": input_shape[-1]}
            if has_weights and any(getattr(config, k, v) != v for k, v in wanted.items()):
                raise user_error(f"the weights in {name} are for other images than the data's", wanted,
                                 "use data of the model's image_size / num_channels")
            for k, v in wanted.items():
                setattr(config, k, v)
        else:
            auto = transformers.AutoModelForSequenceClassification
        config.num_labels = num_classes
        if has_weights:
            return auto.from_pretrained(name, config=config, local_files_only=True, ignore_mismatched_sizes=True)
        return auto.from_config(config)
