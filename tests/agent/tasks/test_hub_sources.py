"""The ``timm:`` and ``hf:`` model sources build offline models sized to the data."""

from __future__ import annotations

import pytest
import torch

from agent.errors import UserInputError
from agent.outputs import logits_of
from agent.tasks import build_model
from agent.tasks.hub_sources import CausalLMLogits

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def test_timm_vit_takes_the_data_image_size_channels_and_classes():
    model = build_model("timm:vit_tiny_patch16_224", (1, 32, 32), 10)
    assert model.patch_embed.proj.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_timm_cnn_without_an_image_size_argument_builds():
    model = build_model("timm:resnet18", (1, 16, 16), 4)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_timm_local_weights_file_is_loaded(tmp_path):
    from safetensors.torch import save_file

    ref = timm.create_model("resnet18", pretrained=False, num_classes=4)
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = build_model(f"timm:resnet18@{tmp_path / 'w.safetensors'}", (3, 16, 16), 4)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)


def test_timm_unknown_name_and_missing_weights_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="unknown timm model"):
        build_model("timm:no_such_net", (3, 32, 32), 10)
    with pytest.raises(UserInputError, match="weights file not found"):
        build_model(f"timm:resnet18@{tmp_path / 'missing.pt'}", (3, 32, 32), 10)


def _save_hf(tmp_path, config, cls, *, weights: bool):
    model = cls(config)
    if weights:
        model.save_pretrained(tmp_path)
    else:
        config.save_pretrained(tmp_path)
    return model


def test_hf_vit_from_a_config_directory_takes_the_data_shape(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=16, patch_size=8)
    _save_hf(tmp_path, config, transformers.ViTForImageClassification, weights=False)
    model = build_model(f"hf:{tmp_path}", (1, 32, 32), 10)
    assert logits_of(model(torch.randn(2, 1, 32, 32))).shape == (2, 10)


def test_hf_vit_weights_are_loaded_with_a_new_head(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_channels=1, num_labels=3)
    ref = _save_hf(tmp_path, config, transformers.ViTForImageClassification, weights=True)
    model = build_model(f"hf:{tmp_path}", (1, 32, 32), 10)
    assert torch.equal(model.vit.embeddings.patch_embeddings.projection.weight,
                       ref.vit.embeddings.patch_embeddings.projection.weight)
    assert model.classifier.out_features == 10


def test_hf_bert_gets_a_classification_head(tmp_path):
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64)
    _save_hf(tmp_path, config, transformers.BertModel, weights=False)
    model = build_model(f"hf:{tmp_path}", (12,), 5)
    assert logits_of(model(torch.randint(0, 64, (2, 12)))).shape == (2, 5)


def test_hf_causal_lm_is_wrapped_to_return_logits(tmp_path):
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    ref = _save_hf(tmp_path, config, transformers.LlamaForCausalLM, weights=True)
    model = build_model(f"hf:{tmp_path}", (16,), 256)
    assert isinstance(model, CausalLMLogits)
    ids = torch.randint(0, 256, (2, 16))
    assert torch.allclose(model(ids), ref.eval()(input_ids=ids).logits, atol=1e-5)
    assert model(torch.randn(2, 16)).shape == (2, 16, 256)  # shape-only probes run


def test_hf_directory_without_config_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="no config.json"):
        build_model(f"hf:{tmp_path}", (1, 32, 32), 10)
