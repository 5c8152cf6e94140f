"""CLI flags of issue 17: the metric-drop alias and the recipe overrides reach the typed configs."""

from __future__ import annotations

import pytest

from agent.cli import main
from agent.cli.common import constraints_from_args, settings_from_args
from agent.cli.main import build_parser


@pytest.mark.parametrize("flag", ["--max-metric-drop", "--max-acc-drop"])
def test_metric_drop_flag_and_its_alias_set_the_same_constraint(flag):
    args = build_parser().parse_args(["search", "--out", "x", flag, "0.5"])
    assert constraints_from_args(args).max_acc_drop == 0.5


def test_fine_tune_recipe_flags_reach_the_eval_settings():
    args = build_parser().parse_args(["search", "--out", "x", "--finetune-optimizer", "adamw", "--finetune-warmup",
                                      "0.2", "--finetune-lr", "0.001", "--threads", "1"])
    s = settings_from_args(args)
    assert (s.finetune_optimizer, s.finetune_warmup, s.finetune_lr) == ("adamw", 0.2, 0.001)


def test_train_recipe_flags_are_validated_before_training(tmp_path, capsys):
    assert main(["train", "--model", "vit-tiny", "--dataset", "digits32", "--warmup", "1.5", "--out",
                 str(tmp_path)]) == 2
    assert "warmup" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--optimizer", "lamb"])


def test_prune_embed_lets_uniform_reach_half_the_flops_of_vit_tiny(tmp_path, capsys):
    """Without --prune-embed the residual stays whole and FLOPs 0.5 is out of reach (exit 2, before training)."""
    import json

    base = ["search", "--model", "vit-tiny", "--dataset", "digits32", "--method", "uniform", "--flops-target", "0.5",
            "--train-epochs", "1", "--no-latency", "--final-epochs", "0", "--eval-limit", "64", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 2
    assert "cannot be met" in capsys.readouterr().err
    assert main([*base, "--prune-embed", "--out", str(tmp_path / "embed")]) == 0
    best = json.loads((tmp_path / "embed" / "best_policy.json").read_text())
    assert best["metrics"]["flops_ratio"] <= 0.5 and best["policy"]["ratios"]["conv_proj"] > 0


def _refused_before_training(argv, monkeypatch, capsys) -> str:
    """Run ``search`` with training patched to fail; it must exit 2. Returns its stderr."""
    import agent.tasks.task as task_module

    monkeypatch.setattr(task_module, "train_dense", lambda *a, **k: pytest.fail("trained before refusing"))
    assert main(["search", *argv]) == 2
    return capsys.readouterr().err


def test_prune_embed_refuses_a_hugging_face_model_before_training(tmp_path, capsys, monkeypatch):
    err = _refused_before_training(["--model", "llama-tiny", "--dataset", "pystdlib", "--prune-embed", "--method",
                                    "uniform", "--params-target", "0.7", "--no-latency", "--quiet",
                                    "--out", str(tmp_path)], monkeypatch, capsys)
    assert "LlamaForCausalLM" in err and "drop --prune-embed" in err


def test_global_with_prune_embed_is_refused_before_training(tmp_path, capsys, monkeypatch):
    """Torch-Pruning's global pruner never scores the residual group: the unit-aware check runs before training."""
    err = _refused_before_training(["--model", "vit-tiny", "--dataset", "digits32", "--prune-embed", "--method",
                                    "global", "--flops-target", "0.5", "--no-latency", "--quiet",
                                    "--out", str(tmp_path)], monkeypatch, capsys)
    assert "--method global" in err and "drop --prune-embed" in err and "conv_proj" in err
