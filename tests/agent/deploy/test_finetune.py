"""Final fine-tune: knowledge distillation really changes training; options are validated before any work."""

import copy
import dataclasses
import json
import re
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from agent.cli import main
from agent.deploy.finetune import FinalTuneConfig, default_finetune_lr, finetune_model
from agent.errors import UserInputError
from agent.evaluation import EvalSettings, get_engine
from agent.policy import Policy

from ..deploy_fixtures import tiny_search_dir


class _ShiftedLabels(Dataset):
    """The same inputs with every label replaced by another class."""

    def __init__(self, base: Dataset, num_classes: int) -> None:
        self.base, self.k = base, num_classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, (y + 3) % self.k


def _pruned(task, ratio=0.5):
    engine = get_engine(task)
    from agent.evaluation import EvalSettings

    return engine.build(Policy.uniform(engine.graph.unit_names(), ratio), EvalSettings())


def _with_train(task, train):
    return dataclasses.replace(task, data=dataclasses.replace(task.data, train=train))


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_kd_alpha_one_is_pure_distillation_labels_do_not_matter(tiny_task):
    """With kd_alpha=1 the loss has no cross-entropy term: wrong labels give bit-identical training."""
    model = _pruned(tiny_task)
    wrong = _with_train(tiny_task, _ShiftedLabels(tiny_task.data.train, tiny_task.num_classes))
    cfg = FinalTuneConfig(epochs=0.1, kd_alpha=1.0)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    rec = finetune_model(a, tiny_task, config=cfg)
    finetune_model(b, wrong, config=cfg)
    assert rec["steps"] >= 5 and rec["kd_alpha"] == 1.0
    assert torch.equal(_weights(a), _weights(b))
    assert not torch.equal(_weights(a), _weights(model)), "training must have changed the weights"
    # without distillation the labels drive training: wrong labels give different weights
    c, d = copy.deepcopy(model), copy.deepcopy(model)
    finetune_model(c, tiny_task, config=dataclasses.replace(cfg, kd_alpha=0.0))
    finetune_model(d, wrong, config=dataclasses.replace(cfg, kd_alpha=0.0))
    assert not torch.equal(_weights(c), _weights(d))


def _kl_to_teacher(student, teacher, dataset, t=4.0):
    x = torch.stack([dataset[i][0] for i in range(512)])
    with torch.no_grad():
        return float(F.kl_div(F.log_softmax(student(x) / t, 1), F.softmax(teacher(x) / t, 1), reduction="batchmean"))


def test_distilled_student_matches_teacher_better(tiny_task):
    model = _pruned(tiny_task, 0.6)
    kd, ce = copy.deepcopy(model), copy.deepcopy(model)
    finetune_model(kd, tiny_task, config=FinalTuneConfig(epochs=0.3, kd_alpha=1.0))
    finetune_model(ce, tiny_task, config=FinalTuneConfig(epochs=0.3, kd_alpha=0.0))
    before = _kl_to_teacher(model, tiny_task.model, tiny_task.data.val)
    with_kd = _kl_to_teacher(kd, tiny_task.model, tiny_task.data.val)
    without = _kl_to_teacher(ce, tiny_task.model, tiny_task.data.val)
    print(f"KL(teacher || student): before {before:.4f}, CE fine-tune {without:.4f}, KD fine-tune {with_kd:.4f}")
    assert with_kd < before
    assert with_kd < 0.8 * without


def test_default_lr_is_a_tenth_of_training_lr(tiny_task):
    assert default_finetune_lr(tiny_task) == pytest.approx(tiny_task.meta["lr"] / 10)
    rec = finetune_model(_pruned(tiny_task), tiny_task, config=FinalTuneConfig(epochs=0))
    assert rec["steps"] == 0 and rec["lr"] == pytest.approx(tiny_task.meta["lr"] / 10)


@pytest.mark.parametrize("kwargs,needle", [
    ({"epochs": -1}, "--final-epochs"), ({"lr": 0}, "--final-lr"), ({"kd_alpha": 1.5}, "--kd-alpha"),
    ({"kd_temperature": 0}, "--kd-temperature"), ({"iterative_steps": 0}, "--iterative-steps"),
    ({"schedule": "cubic"}, "--schedule"), ({"power": -2}, "--schedule-power"),
])
def test_final_tune_config_rejects_bad_values(kwargs, needle):
    with pytest.raises(UserInputError, match=needle):
        FinalTuneConfig(**kwargs)


@pytest.mark.parametrize("argv,needle", [
    (["search", "--kd-temperature", "0"], "--kd-temperature"),
    (["search", "--iterative-steps", "0"], "--iterative-steps"),
    (["search", "--schedule", "cubic"], "cubic"),
    (["finetune", "--pruned", "/nonexistent/pruned_model.pt", "--epochs", "1"], "/nonexistent/pruned_model.pt"),
    (["finetune", "--pruned", "/nonexistent/pruned_model.pt", "--epochs", "0"], "--epochs"),
    (["finetune", "--pruned", "/nonexistent/pruned_model.pt", "--kd-alpha", "3"], "--kd-alpha"),
])
def test_bad_final_tune_options_exit_2(argv, needle, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunepilot: error: ") and needle in err and err.count("\n") == 1
    assert not out.exists()


def test_finetune_cli_on_a_search_output(tiny_checkpoint, tiny_task, tmp_path, capsys):
    from agent.deploy.artifacts import read_pruned_artifact
    from agent.tasks import save_checkpoint

    run = tiny_search_dir(tiny_checkpoint)
    src = read_pruned_artifact(run / "pruned_model.pt")
    out = tmp_path / "ft"
    assert main(["finetune", "--pruned", str(run / "pruned_model.pt"), "--checkpoint", str(tiny_checkpoint),
                 "--epochs", "0.05", "--kd-alpha", "0.5", "--out", str(out), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    tuned = read_pruned_artifact(out / "pruned_model.pt")
    assert tuned.policy == src.policy and {k: v.tolist() for k, v in tuned.removed.items()} == \
        {k: v.tolist() for k, v in src.removed.items()}
    assert [p.shape for p in tuned.model.parameters()] == [p.shape for p in src.model.parameters()]
    assert not torch.equal(_weights(tuned.model), _weights(src.model))
    info = json.loads((out / "finetune.json").read_text())
    assert info["finetune"]["steps"] > 0 and info["finetune"]["kd_alpha"] == 0.5
    assert set(info["before"]) == {"val_accuracy", "test_accuracy"} and info["after"]["test_accuracy"] > 50
    # a different dense model than the one searched on is refused (wrong teacher), before any training
    other = dataclasses.replace(tiny_task, model=copy.deepcopy(tiny_task.model))
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    other = dataclasses.replace(other, fingerprint="not-the-searched-one")
    wrong = save_checkpoint(other, tmp_path / "other.pt")
    assert main(["finetune", "--pruned", str(run / "pruned_model.pt"), "--checkpoint", str(wrong),
                 "--epochs", "1", "--out", str(tmp_path / "ft2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "fingerprint" in err and not (tmp_path / "ft2" / "pruned_model.pt").exists()
    # the two fingerprints are named, each whole: no quote splitting "a != b)"
    assert re.search(r"\(fingerprint [0-9a-f]{16}\) differs", err), err
    searched = read_pruned_artifact(run / "pruned_model.pt").task_fingerprint
    assert f"fingerprint {searched!r}: pass the --checkpoint" in err


def test_finetune_without_checkpoint_uses_the_recorded_dense_model(tiny_checkpoint, tmp_path, capsys):
    """As the README shows it (no --checkpoint): the dense model recorded in pruned_model.pt, nothing trained."""
    run = tiny_search_dir(tiny_checkpoint)
    out = tmp_path / "ft"
    assert main(["finetune", "--pruned", str(run / "pruned_model.pt"), "--epochs", "0.05", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "train cnn1d" not in captured.err + captured.out, "no throwaway dense model is trained"
    assert json.loads((out / "finetune.json").read_text())["task_fingerprint"] == \
        json.loads((run / "summary.json").read_text())["task_fingerprint"]


def test_finetune_without_checkpoint_refuses_at_once_when_the_dense_model_is_gone(tiny_task, tmp_path, capsys,
                                                                                  monkeypatch):
    from agent.deploy.artifacts import save_pruned_model
    from agent.evaluation import get_engine
    from agent.policy import Policy

    engine = get_engine(tiny_task)
    policy = Policy.uniform(engine.graph.unit_names(), 0.3)
    settings = EvalSettings()
    gone = dataclasses.replace(tiny_task, checkpoint_path=str(tmp_path / "moved" / "dense.pt"))
    pruned = save_pruned_model(tmp_path / "s" / "pruned_model.pt", task=gone, model=engine.build(policy, settings),
                               removed=engine.plan(policy, settings), policy=policy.to_dict())
    monkeypatch.setenv("PRUNEPILOT_CACHE", str(tmp_path / "empty-cache"))  # no cached baseline to fall back on
    started = time.monotonic()
    assert main(["finetune", "--pruned", str(pruned), "--epochs", "1", "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "moved" / "dense.pt") in err and "--checkpoint" in err and err.count("\n") == 1
    assert time.monotonic() - started < 30, "refused before any training"
    assert not (tmp_path / "ft").exists()
