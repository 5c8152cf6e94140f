"""Tiny transformers of each family the ``heads`` / ``mlp`` kinds prune, built offline from code or configs.

Each factory takes ``input_shape`` and ``num_classes`` like a user's ``module:factory`` would (the HF text
models take token ids; their ``input_shape`` is ``(tokens,)``).
"""

from __future__ import annotations

import torch
from torch import nn


def tv_vit(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """torchvision's ``VisionTransformer`` (``nn.MultiheadAttention``), 2 layers, 4 heads of 16."""
    import torchvision

    return torchvision.models.VisionTransformer(image_size=input_shape[-1], patch_size=8, num_layers=2, num_heads=4,
                                                hidden_dim=64, mlp_dim=128, num_classes=num_classes)


def timm_vit(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """timm's ``VisionTransformer`` (packed ``qkv``), 2 blocks, 4 heads of 16."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=input_shape[-1], in_chans=input_shape[0], patch_size=8, embed_dim=64, depth=2,
                             num_heads=4, mlp_ratio=2, num_classes=num_classes)


def hf_bert(input_shape: tuple[int, ...] = (16,), num_classes: int = 3) -> nn.Module:
    """``BertForSequenceClassification``, 2 layers, 4 heads of 8, vocabulary 100."""
    import transformers

    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, num_labels=num_classes, max_position_embeddings=64)
    return transformers.BertForSequenceClassification(cfg)


def hf_vit(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """``ViTForImageClassification``, 2 layers, 4 heads of 8."""
    import transformers

    cfg = transformers.ViTConfig(image_size=input_shape[-1], patch_size=8, num_channels=input_shape[0], hidden_size=32,
                                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                 num_labels=num_classes)
    return transformers.ViTForImageClassification(cfg)


def hf_llama(input_shape: tuple[int, ...] = (16,), num_classes: int = 64) -> nn.Module:
    """``LlamaForCausalLM`` with grouped-query attention: 4 query heads, 2 KV heads of 8, vocabulary 64."""
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=num_classes, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   use_cache=False)
    return transformers.LlamaForCausalLM(cfg)


def example(name: str) -> torch.Tensor:
    """A batch-1 input for the factory ``name``."""
    if name in ("hf_bert", "hf_llama"):
        return torch.randint(0, 60, (1, 16))
    return torch.randn(1, 3, 32, 32)
