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
