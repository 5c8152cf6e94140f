"""Training recipes by family: attention makes a transformer (AdamW, warm-up, cosine); CNNs keep SGD everywhere."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from agent.deploy.finetune import FinalTuneConfig, finetune_model
from agent.errors import UserInputError
from agent.evaluation import EvalSettings, evaluate_policy
from agent.policy import Policy
from agent.tasks import build_model
from agent.tasks.datasets import DataSplits
from agent.tasks.recipes import RECIPES, Family, Optimizer, model_family, recipe_for
from agent.tasks.task import Task, TaskSpec, train_dense
from agent.tasks.training import TrainConfig, train_steps


class _SEBlock(nn.Module):
    """A CNN's channel "attention" (squeeze-and-excitation): not a transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 2), nn.Linear(2, 8)


class ChannelAttention(_SEBlock):
    pass


@pytest.fixture()
def optimizers(monkeypatch):
    """Records each optimizer the loop builds and the learning rate of every step."""
    seen: list[tuple[str, list[float]]] = []
    for name in ("SGD", "AdamW"):
        base = getattr(torch.optim, name)

        class Spy(base):  # type: ignore[misc, valid-type]
            def __init__(self, *a, _name=name, **k):
                super().__init__(*a, **k)
                seen.append((_name, []))

            def step(self, *a, **k):
                seen[-1][1].append(self.param_groups[0]["lr"])
                return super().step(*a, **k)

        monkeypatch.setattr(torch.optim, name, Spy)
    return seen


def test_attention_modules_make_a_transformer_and_se_blocks_do_not():
    transformers = pytest.importorskip("transformers")
    assert model_family(build_model("vit-tiny", (1, 32, 32), 10)) is Family.TRANSFORMER
    assert model_family(build_model("timm:vit_tiny_patch16_224", (1, 32, 32), 10)) is Family.TRANSFORMER
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    assert model_family(bert) is Family.TRANSFORMER
    assert model_family(build_model("cnn1d", (1, 40), 10)) is Family.CNN
    assert model_family(nn.Sequential(nn.Conv2d(3, 8, 3), ChannelAttention())) is Family.CNN


def test_overrides_replace_single_fields_and_bad_values_are_refused():
    r = recipe_for(nn.MultiheadAttention(8, 2), lr=0.1, warmup=0.0)
    wd = RECIPES[Family.TRANSFORMER].weight_decay
    assert (r.optimizer, r.lr, r.warmup, r.weight_decay) == (Optimizer.ADAMW, 0.1, 0.0, wd)
    assert recipe_for(nn.Linear(2, 2), family="transformer").optimizer is Optimizer.ADAMW
    assert recipe_for(nn.MultiheadAttention(8, 2), optimizer="sgd").optimizer is Optimizer.SGD
    for bad in ({"optimizer": "adam"}, {"family": "rnn"}, {"warmup": 1.0}, {"weight_decay": -1.0}):
        with pytest.raises(ValueError):
            recipe_for(nn.Linear(2, 2), **bad)


def test_warmup_rises_linearly_then_cosine_decays(optimizers):
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    train_steps(nn.Linear(4, 2), data, config=TrainConfig(steps=20, lr=0.1, optimizer=Optimizer.ADAMW, warmup=0.25,
                                                           batch_size=8))
    (name, lrs), = optimizers
    assert name == "AdamW" and len(lrs) == 20
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False)) and lrs[-1] < 0.01
    assert lrs[5] == pytest.approx(0.05 * (1 + math.cos(math.pi / 16)))


def test_cnn_default_is_the_old_sgd_cosine(optimizers):
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    train_steps(nn.Linear(4, 2), data, config=TrainConfig(steps=10, lr=0.05, batch_size=8))
    (name, lrs), = optimizers
    assert name == "SGD" and lrs[0] == 0.05
    assert lrs[3] == pytest.approx(0.025 * (1 + math.cos(math.pi * 3 / 10)))


def _vit_task() -> Task:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 32, 32, generator=gen), torch.randint(0, 10, (48,), generator=gen)
    data = DataSplits("toy", TensorDataset(x, y), TensorDataset(x[:16], y[:16]), TensorDataset(x[:16], y[:16]),
                      (1, 32, 32), 10)
    return Task(TaskSpec("vit-tiny", "digits32"), build_model("vit-tiny", (1, 32, 32), 10), data, "vit-toy",
                {"lr": 2e-3})


def test_transformer_gets_adamw_in_dense_training_and_both_fine_tunes(optimizers):
    task = _vit_task()
    dense = train_dense(task.spec, epochs=1, data=task.data)
    assert dense.meta["optimizer"] == "adamw" and dense.meta["batch_size"] == RECIPES[Family.TRANSFORMER].batch_size
    settings = EvalSettings(finetune_steps=3, finetune_batch=16, measure_latency=False)
    evaluate_policy(task, Policy({}), settings=settings)
    finetune_model(build_model("vit-tiny", (1, 32, 32), 10), task, config=FinalTuneConfig(epochs=1.0), batch_size=16)
    names = [n for n, _ in optimizers]
    assert names == ["AdamW", "AdamW", "AdamW"]
    assert optimizers[1][1][0] == pytest.approx(RECIPES[Family.TRANSFORMER].finetune_lr)  # 3 steps: no warm-up step
    assert optimizers[2][1][0] == pytest.approx(task.meta["lr"] / 10)  # the final fine-tune: 1/10 of the dense LR


def test_fine_tune_overrides_reach_the_loop(optimizers):
    task = _vit_task()
    settings = EvalSettings(finetune_steps=2, finetune_batch=16, measure_latency=False, finetune_optimizer="sgd",
                            finetune_lr=0.003, finetune_warmup=0.0)
    evaluate_policy(task, Policy({}), settings=settings)
    finetune_model(build_model("vit-tiny", (1, 32, 32), 10), task, batch_size=16,
                   config=FinalTuneConfig(epochs=1.0, optimizer="sgd", warmup=0.0, lr=0.02))
    assert [(n, lrs[0]) for n, lrs in optimizers] == [("SGD", 0.003), ("SGD", 0.02)]
    with pytest.raises(UserInputError, match="final-optimizer"):
        FinalTuneConfig(optimizer="lamb")
    with pytest.raises(ValueError):
        EvalSettings(finetune_optimizer="lamb")
