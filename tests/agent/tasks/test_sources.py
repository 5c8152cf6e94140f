"""Model sources: a new source is one class and a registration, and specs resolve to it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agent.errors import UserInputError
from agent.tasks import build_model, model_names
from agent.tasks.sources import ModelSource, register_source, source_of, unregister_source


class _ToySource(ModelSource):
    """``toy:WIDTH``: a two-layer MLP of that hidden width."""

    prefix = "toy"
    form = "toy:<width>"

    def check(self, name: str) -> None:
        if not name.isdigit():
            raise UserInputError(f"toy width must be an integer, got {name!r}: e.g. toy:16")

    def build(self, name: str, *, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), int(name)), nn.ReLU(),
                             nn.Linear(int(name), num_classes))


@pytest.fixture()
def toy_source():
    register_source(_ToySource)
    yield
    unregister_source("toy")


def test_a_registered_source_builds_its_specs(toy_source):
    assert "toy:<width>" in model_names()
    model = build_model("toy:12", (1, 40), 7)
    assert model[1].out_features == 12
    assert model(torch.randn(3, 1, 40)).shape == (3, 7)
    with pytest.raises(UserInputError, match="toy width"):
        build_model("toy:wide", (1, 40), 7)


def test_specs_resolve_by_prefix_then_factory_then_builtin(toy_source):
    assert source_of("toy:3")[0].prefix == "toy"
    assert source_of("tv:resnet18")[1] == "resnet18"
    assert source_of("mypkg.models:make")[1] == "mypkg.models:make"  # any other a.b:c is a Python factory
    assert source_of("cnn1d") is None  # a bare name is a built-in model's


def test_an_unregistered_prefix_is_not_a_source():
    with pytest.raises(UserInputError, match="cannot import the module of model 'toy:3'"):
        build_model("toy:3", (1, 40), 7)
