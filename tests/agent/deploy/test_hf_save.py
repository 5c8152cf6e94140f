"""Pruned Hugging Face models save with a config matching their shapes and reload with the same outputs."""

from __future__ import annotations

import json

import pytest
import torch
import torch_pruning as tp

from agent.deploy.hf_save import layer_widths, load_pruned, save_pruned
from agent.tasks.hub_sources import CausalLMLogits

transformers = pytest.importorskip("transformers")


def _llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False)).eval()


def _prune_mlp(mlp, keep: int) -> None:
    drop = list(range(keep, mlp.up_proj.out_features))
    tp.prune_linear_out_channels(mlp.gate_proj, drop)
    tp.prune_linear_out_channels(mlp.up_proj, drop)
    tp.prune_linear_in_channels(mlp.down_proj, drop)


def _drop_query_heads(attn, heads: list[int], head_dim: int) -> None:
    rows = [h * head_dim + i for h in heads for i in range(head_dim)]
    tp.prune_linear_out_channels(attn.q_proj, rows)
    tp.prune_linear_in_channels(attn.o_proj, rows)


def test_layer_uniform_llama_reloads_with_stock_from_pretrained(tmp_path):
    model = _llama()
    for layer in model.model.layers:
        _prune_mlp(layer.mlp, 40)
    ids = torch.randint(0, 64, (2, 12))
    expected = model(input_ids=ids).logits
    save_pruned(CausalLMLogits(model), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["intermediate_size"] == 40 and "prunepilot_layers" not in config
    again = transformers.LlamaForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert torch.allclose(again(input_ids=ids).logits, expected, atol=1e-5)


def test_per_layer_gqa_llama_records_widths_and_reloads_with_the_loader(tmp_path):
    model = _llama()
    head_dim = model.config.hidden_size // 4
    _prune_mlp(model.model.layers[0].mlp, 24)
    _drop_query_heads(model.model.layers[0].self_attn, [1, 3], head_dim)  # one query head from each KV group
    model.model.layers[0].self_attn.num_key_value_groups = 1
    ids = torch.randint(0, 64, (2, 12))
    expected = model(input_ids=ids).logits
    assert layer_widths(model) == [
        {"intermediate_size": 24, "num_attention_heads": 2, "num_key_value_heads": 2},
        {"intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}]
    save_pruned(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["prunepilot_layers"][0]["intermediate_size"] == 24
    again = load_pruned(tmp_path)
    assert layer_widths(again) == layer_widths(model)
    assert torch.allclose(again(input_ids=ids).logits, expected, atol=1e-5)


def test_built_in_llama_tiny_lm_round_trips(tmp_path):
    from agent.tasks import build_model

    wrapped = build_model("llama-tiny", (16,), 256)
    for layer in wrapped.lm.model.layers:
        _prune_mlp(layer.mlp, 128)
    ids = torch.randint(0, 256, (2, 16))
    save_pruned(wrapped, tmp_path)
    assert torch.allclose(load_pruned(tmp_path)(input_ids=ids).logits, wrapped(ids), atol=1e-5)


def test_export_model_writes_and_checks_the_hf_format(tmp_path):
    from agent.deploy.export import export_model
    from agent.tasks import build_model

    wrapped = build_model("llama-tiny", (16,), 256)
    _prune_mlp(wrapped.lm.model.layers[1].mlp, 96)  # per-layer widths: the loader restores them
    rep = export_model(wrapped, example_input=torch.zeros(1, 16), out_dir=tmp_path, formats=["hf"])
    assert rep.max_abs_diff["hf"] <= 1e-4 and (tmp_path / "hf" / "config.json").is_file()


def test_layer_uniform_hf_vit_classifier_reloads(tmp_path):
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16, patch_size=8,
        num_channels=1, num_labels=3)).eval()
    base = model.base_model  # transformers 5 lays ViT out as layers[i].mlp.fc1/fc2, 4.x as encoder.layer[i]...
    for layer in (base.layers if hasattr(base, "layers") else base.encoder.layer):
        fc1, fc2 = (layer.mlp.fc1, layer.mlp.fc2) if hasattr(layer, "mlp") else (layer.intermediate.dense,
                                                                                 layer.output.dense)
        drop = list(range(48, 64))
        tp.prune_linear_out_channels(fc1, drop)
        tp.prune_linear_in_channels(fc2, drop)
    x = torch.randn(2, 1, 16, 16)
    save_pruned(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["intermediate_size"] == 48
    again = transformers.ViTForImageClassification.from_pretrained(tmp_path, local_files_only=True).eval()
    assert torch.allclose(again(x).logits, model(x).logits, atol=1e-5)


def test_a_plain_torch_model_is_refused(tmp_path):
    with pytest.raises(TypeError, match="not a Hugging Face model"):
        save_pruned(torch.nn.Linear(2, 2), tmp_path)
