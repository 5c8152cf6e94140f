"""Benchmark models: one per family (1-D residual CNN, 2-D residual CNN, 2-D mobile CNN with depthwise blocks).

Small enough to train and prune on a CPU in seconds to a minute, wide enough that structural pruning has real
choices. They are fixed benchmark architectures: the default task's model can change without moving the
benchmark tables.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["BENCH_MODELS", "ResCNN1D", "ResNetS", "MobileNetS"]


def _conv_bn(dim: int, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
    layers: list[nn.Module] = [conv(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups,
                                    bias=False), bn(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    """Basic residual block (two 3-wide convs), with a strided 1x1 projection when the shape changes."""

    def __init__(self, dim: int, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv_a = _conv_bn(dim, cin, cout, 3, stride)
        self.conv_b = _conv_bn(dim, cout, cout, 3, relu=False)
        self.shortcut = nn.Identity() if (stride == 1 and cin == cout) else \
            _conv_bn(dim, cin, cout, 1, stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.shortcut(x) + self.conv_b(self.conv_a(x)))


class ResCNN1D(nn.Module):
    """1-D residual CNN for MNIST-1D: a stem and three stages of 32 / 64 / 128 channels (~2.2 M MACs)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        self.stem = _conv_bn(1, in_channels, widths[0], 5)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_Residual(1, cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, L]``)."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class ResNetS(nn.Module):
    """2-D residual CNN (ResNet-10 layout at 16 / 32 / 64 / 64 channels, one basic block per stage)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10,
                 widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.stem = _conv_bn(2, in_channels, widths[0], 3)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_Residual(2, cin, w, 1 if i in (0, 3) else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, H, W]``)."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise conv, linear 1x1 projection; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            _conv_bn(2, cin, hidden, 1), _conv_bn(2, hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(2, hidden, cout, 1, relu=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetS(nn.Module):
    """Mobile-style 2-D CNN: a stem, six inverted-residual (depthwise) blocks, a 1x1 head (~2.2 M MACs at 16x16)."""

    CONFIG = ((16, 2, 4), (24, 1, 4), (24, 1, 4), (48, 2, 4), (48, 1, 4), (64, 1, 4))
    """(output channels, stride, expansion) of each block."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, stem: int = 16, head: int = 128) -> None:
        super().__init__()
        self.stem = _conv_bn(2, in_channels, stem, 3)
        blocks, cin = [], stem
        for cout, stride, expand in self.CONFIG:
            blocks.append(_InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(2, cin, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of ``x`` (shape ``[N, C, H, W]``)."""
        return self.fc(torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1))


BENCH_MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "rescnn1d": lambda shape, k: ResCNN1D(in_channels=shape[0], num_classes=k),
    "resnet-s": lambda shape, k: ResNetS(in_channels=shape[0], num_classes=k),
    "mobilenet-s": lambda shape, k: MobileNetS(in_channels=shape[0], num_classes=k),
}
"""Benchmark models, registered in :data:`agent.tasks.models.MODELS`."""
