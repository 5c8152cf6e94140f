"""The built-in language-model task: ``llama-tiny`` on ``pystdlib``.

``llama-tiny`` is a LLaMA-style byte-level LM with grouped-query attention; ``pystdlib`` holds fixed-length
byte windows of the Python standard library's own source files.

The text is on every machine that runs PrunePilot, so nothing is downloaded: the ``*.py`` files under
``sysconfig.get_paths()["stdlib"]`` (test packages and ``site-packages`` left out), shuffled by the data seed
and split train / val / test **by file**. Samples are ``(ids, next ids)`` windows of :data:`WINDOW` bytes; the
quality metric is per-byte perplexity (:func:`agent.tasks.metrics.perplexity`). The stdlib differs a little
between Python versions, so dense checkpoints are only comparable on the same version.
"""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from .datasets import DataSplits
from .hub_sources import CausalLMLogits, require

__all__ = ["VOCAB", "WINDOW", "SPLIT_WINDOWS", "pystdlib", "llama_tiny", "llama_tiny_config", "stdlib_files"]

VOCAB = 256
"""Byte-level vocabulary."""
WINDOW = 64
"""Tokens per sample."""
SPLIT_WINDOWS = {"train": 2048, "val": 256, "test": 256}
"""Windows per split (train 128 KiB of text): small, so a dense model trains in seconds on a CPU."""
_SKIP = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


def stdlib_files() -> list[Path]:
    """The standard library's ``*.py`` files, sorted (test packages and installed packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIP & set(p.relative_to(root).parts[:-1]))


def _windows(files: list[Path], count: int, window: int) -> tuple[torch.Tensor, list[Path]]:
    """``count`` non-overlapping ``window + 1``-byte windows cut from ``files`` in order; the files used."""
    need, buf, used = count * (window + 1), bytearray(), []
    for path in files:
        if len(buf) >= need:
            break
        buf += path.read_bytes()
        used.append(path)
    if len(buf) < need:
        raise RuntimeError(f"the standard library has only {len(buf)} bytes of source for {need}")
    return torch.frombuffer(buf[:need], dtype=torch.uint8).long().view(count, window + 1), used


def pystdlib(*, data_root: str | None = None, download: bool = False, seed: int = 0,
             window: int = WINDOW, windows: dict[str, int] | None = None) -> DataSplits:
    """Byte windows of the Python standard library's source, split by file (``data_root``/``download`` unused).

    Args:
        data_root: Unused (the text is local).
        download: Unused.
        seed: Seed of the file order (which files go to which split).
        window: Tokens per sample.
        windows: Windows per split (default :data:`SPLIT_WINDOWS`).

    Returns:
        Splits of ``(ids[window], next ids[window])`` with metric ``perplexity``.
    """
    del data_root, download
    counts = {**SPLIT_WINDOWS, **(windows or {})}
    files = stdlib_files()
    random.Random(seed).shuffle(files)
    splits = {}
    for name in ("val", "test", "train"):  # held-out splits first: each file lands in exactly one split
        chunk, used = _windows(files, counts[name], window)
        files = files[len(used):]
        splits[name] = TensorDataset(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())
    return DataSplits("pystdlib", splits["train"], splits["val"], splits["test"], (window,), VOCAB, "perplexity")


def llama_tiny_config(*, vocab: int = VOCAB, positions: int = WINDOW, hidden: int = 64, layers: int = 2,
                      heads: int = 4, kv_heads: int = 2, intermediate: int = 192) -> object:
    """A transformers ``LlamaConfig`` of a tiny LLaMA-style LM (GQA: ``heads / kv_heads`` queries per group)."""
    transformers = require("transformers", "hf")
    return transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                                    num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                    max_position_embeddings=positions, tie_word_embeddings=False,
                                    attn_implementation="eager")


def llama_tiny(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The ``llama-tiny`` built-in model as ``ids -> logits`` (:class:`~agent.tasks.hub_sources.CausalLMLogits`).

    2 layers, width 64, 4 query / 2 key-value heads, MLP 192: about 0.13 M parameters.
    """
    transformers = require("transformers", "hf")
    config = llama_tiny_config(vocab=num_classes, positions=input_shape[0])
    return CausalLMLogits(transformers.LlamaForCausalLM(config))
