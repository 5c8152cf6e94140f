"""Built-in model zoo and model-spec parsing.

A *model spec* is a string: a built-in name (``cnn1d``, ``mlp``, ``lenet``, ``resnet20``, ``resnet56``, and the
benchmark models ``rescnn1d``, ``resnet-s``, ``mobilenet-s`` of :mod:`agent.tasks.bench_models`),
``vit-tiny`` (a small torchvision ViT), ``llama-tiny`` (a byte-level LM, :mod:`agent.tasks.lm`), ``tv:<name>`` for
any torchvision classification model, or
``package.module:factory`` for a user model.
Every factory takes the per-sample input shape and the number of classes.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import user_error
from .bench_models import BENCH_MODELS
from .hub_sources import TimmSource  # noqa: F401  (registers the timm: and hf: sources)
from .sources import adapt_first_conv, source_names, source_of

__all__ = ["MODELS", "build_model", "model_names", "check_model_spec", "CNN1D", "MLP", "LeNet", "CifarResNet", "vit_tiny"]


class _ConvBN1d(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm1d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _ResBlock1d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = _ConvBN1d(channels, channels, 3)
        self.conv_b = _ConvBN1d(channels, channels, 3, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv_b(self.conv_a(x)))


class CNN1D(nn.Module):
    """Small residual 1-D CNN for MNIST-1D (the default model): stem, two stages with a residual block each."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = _ConvBN1d(in_channels, width, 5)
        self.down1 = _ConvBN1d(width, 2 * width, 3, stride=2)
        self.block1 = _ResBlock1d(2 * width)
        self.down2 = _ConvBN1d(2 * width, 4 * width, 3, stride=2)
        self.block2 = _ResBlock1d(4 * width)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, L]``)."""
        x = self.block2(self.down2(self.block1(self.down1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class MLP(nn.Module):
    """Multi-layer perceptron (``in-256-128-classes``) for any input shape; the input is flattened."""

    def __init__(self, in_features: int, num_classes: int = 10, hidden: tuple[int, ...] = (256, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (any shape; flattened)."""
        return self.net(x)


class LeNet(nn.Module):
    """LeNet-5 style CNN for small 2-D images (any size >= 8x8, any channel count)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 16, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, H, W]``)."""
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016): 3 stages of 16/32/64 channels, ``depth = 6n + 2``."""

    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        assert (depth - 2) % 6 == 0, "CIFAR ResNet depth must be 6n+2"
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(_BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, H, W]``)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def vit_tiny(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small torchvision ``VisionTransformer`` for 2-D images: patch 8, 4 layers of 3 heads, width 96, MLP 192.

    The image must be square with a side divisible by 8 (e.g. digits32's 1x32x32: 16 patches); the patch
    embedding takes the input's channels. With the transformer recipe it reaches about 98% on digits32 in 30
    epochs (docs/BENCHMARKS.md).
    """
    from torchvision.models.vision_transformer import VisionTransformer

    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] % 8:
        raise user_error("vit-tiny needs square images with a side divisible by 8, got input shape", input_shape,
                         "use an image dataset such as digits32")
    model = VisionTransformer(image_size=input_shape[1], patch_size=8, num_layers=4, num_heads=3, hidden_dim=96,
                              mlp_dim=192, num_classes=num_classes)
    adapt_first_conv(model, input_shape[0])
    return model


ModelFactory = Callable[[tuple[int, ...], int], nn.Module]

MODELS: dict[str, ModelFactory] = {
    "cnn1d": lambda shape, k: CNN1D(in_channels=shape[0], num_classes=k),
    # twice as wide (4x the MACs): compute-bound enough on a CPU that pruned latency follows FLOPs
    "cnn1d-wide": lambda shape, k: CNN1D(in_channels=shape[0], num_classes=k, width=64),
    "mlp": lambda shape, k: MLP(math.prod(shape), num_classes=k),
    "lenet": lambda shape, k: LeNet(in_channels=shape[0], num_classes=k),
    "resnet20": lambda shape, k: CifarResNet(20, in_channels=shape[0], num_classes=k),
    "resnet56": lambda shape, k: CifarResNet(56, in_channels=shape[0], num_classes=k),
    "vit-tiny": vit_tiny,
    "llama-tiny": lambda shape, k: importlib.import_module("agent.tasks.lm").llama_tiny(shape, k),
    **BENCH_MODELS,
}
"""Registry of built-in models: name -> ``factory(input_shape, num_classes)``."""


def model_names() -> list[str]:
    """All accepted model spec forms: the built-in names, then each source's form."""
    return [*MODELS, *source_names()]


def check_model_spec(spec: str) -> None:
    """Raise a :class:`~agent.errors.UserInputError` unless ``spec`` names a buildable model."""
    if spec in MODELS:
        return
    found = source_of(spec)
    if found is None:
        raise user_error("unknown model", spec, f"choose one of {', '.join(model_names())}")
    source, name = found
    source.check(name)


def build_model(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build an (untrained) model from its spec.

    Args:
        spec: Built-in name, ``PREFIX:NAME`` of a registered source (``tv:resnet18``; see
            :mod:`agent.tasks.sources`) or ``package.module:factory``.
        input_shape: Per-sample input shape, e.g. ``(1, 40)``.
        num_classes: Number of output classes.

    Returns:
        The model in eval mode on the CPU.
    """
    check_model_spec(spec)
    if spec in MODELS:
        model = MODELS[spec](tuple(input_shape), num_classes)
    else:
        source, name = source_of(spec)
        model = source.build(name, input_shape=tuple(input_shape), num_classes=num_classes)
    return model.eval()
