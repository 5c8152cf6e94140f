"""Save a (pruned) Hugging Face model so that it reloads: ``save_pretrained`` with a config matching its shapes.

Two cases (see /work/shared/TRANSFORMERS.md's "two ways"):

* **Layer-uniform widths** (every layer keeps the same MLP width and heads): the config's own fields
  (``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``) are set from the kept
  widths, and stock ``AutoModel*.from_pretrained(path)`` loads it.
* **Per-layer widths** (what a search finds): the widths are recorded per layer in the config
  (``prunepilot_layers``) and the model reloads with one line, ``load_pruned(path)``, which builds the stock
  class, shrinks each layer's projections to the recorded widths and loads the weights strictly.

Widths are read from the modules themselves (``out_features`` of the projections), never patched by a caller.

Example:
    >>> import transformers, tempfile
    >>> cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...                                num_attention_heads=2, num_key_value_heads=1)
    >>> path = save_pruned(transformers.LlamaForCausalLM(cfg), tempfile.mkdtemp())
    >>> load_pruned(path).config.intermediate_size
    32
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..tasks.hub_sources import require

__all__ = ["layer_widths", "load_pruned", "save_pruned"]

_PER_LAYER_KEY = "prunepilot_layers"


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "lm", model)  # CausalLMLogits keeps the library model in .lm
    if not hasattr(inner, "save_pretrained"):
        raise TypeError(f"{type(model).__name__} is not a Hugging Face model: export it with export_model instead")
    return inner


_MLP = ("mlp.up_proj", "mlp.fc1", "intermediate.dense")
_QUERY = ("self_attn.q_proj", "attention.q_proj", "attention.self.query", "attention.attention.query")
_KEY = ("self_attn.k_proj", "attention.k_proj")


def _layers(model: nn.Module) -> list[nn.Module]:
    base = model.base_model
    for path in ("layers", "encoder.layer", "encoder.layers"):
        try:
            return list(base.get_submodule(path))
        except AttributeError:
            continue
    raise TypeError(f"{type(model).__name__}: no transformer layers found (base model has no layers / encoder.layer)")


def _linear(layer: nn.Module, paths: tuple[str, ...]) -> nn.Linear:
    for path in paths:
        try:
            return layer.get_submodule(path)
        except AttributeError:
            continue
    raise TypeError(f"{type(layer).__name__}: none of {', '.join(paths)} found")


def _head_dim(model: nn.Module) -> int:
    c = model.config
    return int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)


def layer_widths(model: nn.Module) -> list[dict[str, int]]:
    """Per layer: ``intermediate_size``, ``num_attention_heads`` and (LLaMA-style) ``num_key_value_heads``.

    Read from the projections' ``out_features``: the MLP's first projection (``mlp.up_proj``, ``mlp.fc1`` or
    ``intermediate.dense``), the query and (with grouped-query attention) the key projection.
    """
    model = _unwrap(model)
    hd = _head_dim(model)
    gqa = hasattr(model.config, "num_key_value_heads")
    out = []
    for layer in _layers(model):
        widths = {"intermediate_size": _linear(layer, _MLP).out_features,
                  "num_attention_heads": _linear(layer, _QUERY).out_features // hd}
        if gqa:
            widths["num_key_value_heads"] = _linear(layer, _KEY).out_features // hd
        out.append(widths)
    return out


def save_pruned(model: nn.Module, out_dir: str | Path) -> Path:
    """``save_pretrained`` of ``model`` (or the library model inside a wrapper) with a config matching its shapes.

    Args:
        model: A Hugging Face model, or :class:`~agent.tasks.hub_sources.CausalLMLogits` around one.
        out_dir: Directory to write (``config.json`` + ``model.safetensors``).

    Returns:
        ``out_dir``; reload it with :func:`load_pruned` (any case) or ``from_pretrained`` (layer-uniform widths).
    """
    model = _unwrap(model)
    widths = layer_widths(model)
    config = model.config
    if hasattr(config, "num_key_value_heads"):
        config.head_dim = _head_dim(model)  # kept explicit: the head count changes, the head size does not
    uniform = all(w == widths[0] for w in widths)
    for key in widths[0]:
        if key != "num_attention_heads" or hasattr(config, "num_key_value_heads"):  # BERT/ViT: heads set head size
            setattr(config, key, max(w[key] for w in widths))
    if uniform:
        config.__dict__.pop(_PER_LAYER_KEY, None)
    else:
        setattr(config, _PER_LAYER_KEY, widths)
    model.save_pretrained(out_dir)
    return Path(out_dir)


def load_pruned(path: str | Path, **kwargs: Any) -> nn.Module:
    """Load a model written by :func:`save_pruned` (per-layer widths restored), offline.

    Args:
        path: The saved directory.
        **kwargs: Passed to ``from_pretrained`` (e.g. ``torch_dtype``).

    Returns:
        The library model in eval mode, with the saved weights.
    """
    transformers = require("transformers", "hf")
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    cls = getattr(transformers, config.architectures[0])
    widths = getattr(config, _PER_LAYER_KEY, None)
    if not widths:
        return cls.from_pretrained(path, local_files_only=True, **kwargs).eval()
    model = cls(config)
    state = load_file(str(Path(path) / "model.safetensors"))
    for name, mod in list(model.named_modules()):
        w = state.get(f"{name}.weight")
        if isinstance(mod, nn.Linear) and w is not None and tuple(w.shape) != tuple(mod.weight.shape):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2],
                    nn.Linear(w.shape[1], w.shape[0], bias=mod.bias is not None, dtype=w.dtype))
    for layer, width in zip(_layers(model), widths, strict=True):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "num_key_value_groups"):
            attn.num_key_value_groups = width["num_attention_heads"] // width["num_key_value_heads"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"{path}: weights do not match the recorded widths (missing {missing}, "
                           f"unexpected {unexpected})")
    return model.eval()
