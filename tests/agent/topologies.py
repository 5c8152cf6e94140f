"""User-style models of the topologies users bring, in 1-D and 2-D (factories for ``module:factory`` specs).

Each factory takes ``input_shape`` (channels first) and ``num_classes``, like a user's own factory would:
depthwise-separable blocks with squeeze-excite gating, channel concat, residual adds, grouped convolutions,
channel shuffle, layer-scale parameters, nested containers, and models returning a tuple or a dict.
"""

from __future__ import annotations

import torch
from torch import nn


def _nd(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d


class SqueezeExcite(nn.Module):
    """Channel gating: pool, reduce, expand, sigmoid, multiply."""

    def __init__(self, dims: int, channels: int, reduced: int) -> None:
        super().__init__()
        conv, _, pool = _nd(dims)
        self.pool = pool(1)
        self.reduce = conv(channels, reduced, 1)
        self.expand = conv(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))


class DepthwiseSeparable(nn.Module):
    """Depthwise conv, BN, ReLU, SE gate, pointwise conv, BN; residual when shapes allow."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        conv, bn, _ = _nd(dims)
        self.dw = conv(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.bn1 = bn(cin)
        self.se = SqueezeExcite(dims, cin, max(2, cin // 4))
        self.pw = conv(cin, cout, 1, bias=False)
        self.bn2 = bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pw(self.se(torch.relu(self.bn1(self.dw(x))))))
        return x + y if self.residual else y


class ConcatBlock(nn.Module):
    """Two branches (a 1x1 and a grouped 3x3) concatenated on the channel axis."""

    def __init__(self, dims: int, cin: int, half: int, groups: int = 4) -> None:
        super().__init__()
        conv, bn, _ = _nd(dims)
        self.a = nn.Sequential(conv(cin, half, 1, bias=False), bn(half), nn.ReLU())
        self.b = nn.Sequential(conv(cin, half, 3, padding=1, groups=groups, bias=False), bn(half), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], dim=1)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: split channels into groups, swap, merge."""
    b, c = x.shape[:2]
    return x.reshape(b, groups, c // groups, *x.shape[2:]).transpose(1, 2).reshape(b, c, *x.shape[2:])


class ShuffleBlock(nn.Module):
    """ShuffleNet-V2 unit: split, a branch on one half, concat, shuffle."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        conv, bn, _ = _nd(dims)
        half = channels // 2
        self.branch = nn.Sequential(conv(half, half, 1, bias=False), bn(half), nn.ReLU(),
                                    conv(half, half, 3, padding=1, groups=half, bias=False), bn(half),
                                    conv(half, half, 1, bias=False), bn(half), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([x1, self.branch(x2)], dim=1), 2)


class LayerScaleBlock(nn.Module):
    """Residual block whose branch is scaled by a learnable per-channel ``gamma`` (ConvNeXt / CaiT style)."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        conv, bn, _ = _nd(dims)
        self.body = nn.Sequential(conv(channels, channels * 2, 1), nn.GELU(), conv(channels * 2, channels, 1))
        self.gamma = nn.Parameter(torch.full((channels,) + (1,) * dims, 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.body(x)


class ZooNet(nn.Module):
    """Every topology above in one network, inside nested containers; optional tuple / dict output."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10, output: str = "tensor") -> None:
        super().__init__()
        dims = len(input_shape) - 1
        conv, bn, pool = _nd(dims)
        self.output = output
        self.stem = nn.Sequential(conv(input_shape[0], 16, 3, padding=1, bias=False), bn(16), nn.ReLU())
        self.stages = nn.ModuleDict({
            "ds": nn.ModuleList([DepthwiseSeparable(dims, 16, 16), DepthwiseSeparable(dims, 16, 24, stride=2)]),
            "mix": nn.Sequential(ConcatBlock(dims, 24, 16), ShuffleBlock(dims, 32), LayerScaleBlock(dims, 32)),
        })
        self.pool = pool(1)
        self.head = nn.Linear(32, num_classes)
        self.aux = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
        x = self.stem(x)
        for block in self.stages["ds"]:
            x = block(x)
        aux = self.aux(self.pool(x).flatten(1))
        logits = self.head(self.pool(self.stages["mix"](x)).flatten(1))
        if self.output == "tuple":
            return logits, aux
        if self.output == "dict":
            return {"logits": logits, "aux": aux}
        return logits


class DSConcatSE1d(nn.Module):
    """The issue's 1-D user model: depthwise-separable block, channel concat, SE gating and a residual add."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv1d(in_channels, 8, 5, padding=2)
        self.dw = nn.Conv1d(8, 8, 5, padding=2, groups=8)
        self.pw = nn.Conv1d(8, 8, 1)
        self.side = nn.Conv1d(8, 8, 3, padding=1)
        self.se = SqueezeExcite(1, 16, 4)
        self.mix = nn.Conv1d(16, 16, 1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = torch.cat([torch.relu(self.pw(self.dw(x))), torch.relu(self.side(x))], dim=1)
        y = self.se(y)
        y = y + torch.relu(self.mix(y))
        return self.head(y.mean(-1))


def zoo_net(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`ZooNet` returning logits."""
    return ZooNet(input_shape, num_classes)


def zoo_net_tuple(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`ZooNet` returning ``(logits, aux_logits)``."""
    return ZooNet(input_shape, num_classes, output="tuple")


def zoo_net_dict(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`ZooNet` returning ``{"logits": ..., "aux": ...}``."""
    return ZooNet(input_shape, num_classes, output="dict")


def ds_concat_se(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`DSConcatSE1d`."""
    return DSConcatSE1d(input_shape[0], num_classes)


class HardCodedWidth(nn.Module):
    """A model whose forward hard-codes a width (like torchvision's ViT ``hidden_dim``): that unit can't be pruned."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.width = 16
        self.embed = nn.Conv1d(input_shape[0], self.width, 4, stride=4)
        self.mlp = nn.Sequential(nn.Linear(self.width, 32), nn.GELU(), nn.Linear(32, self.width))
        self.head = nn.Linear(self.width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = x.reshape(x.shape[0], self.width, -1).transpose(1, 2)
        x = x + self.mlp(x)
        return self.head(x.mean(1))


def hard_coded_width(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`HardCodedWidth`."""
    return HardCodedWidth(input_shape, num_classes)


class OnlyHardCoded(nn.Module):
    """Nothing prunable: the one hidden width is hard-coded in ``forward`` (the search must refuse it up front)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Conv1d(input_shape[0], 8, 4, stride=4)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x).reshape(x.shape[0], 8, -1).mean(-1))


def only_hard_coded(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`OnlyHardCoded`."""
    return OnlyHardCoded(input_shape, num_classes)


class OddWidthBug(nn.Module):
    """A forward that raises only at one particular width (a user's bug that only some candidates hit)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv1d(input_shape[0], 16, 3, padding=1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        if x.shape[1] == 8:
            raise RuntimeError("this model cannot run with exactly 8 channels")
        return self.head(x.mean(-1))


def odd_width_bug(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`OddWidthBug`."""
    return OddWidthBug(input_shape, num_classes)


class GroupedConvNet(nn.Module):
    """A stem, a grouped conv (4 groups of 4 -> 8 channels) and a pointwise conv: a ResNeXt-style bottleneck in 1-D."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10, groups: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(input_shape[0], 16, 3, padding=1, bias=False), nn.BatchNorm1d(16), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv1d(16, 32, 3, padding=1, groups=groups), nn.BatchNorm1d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv1d(32, 24, 1, bias=False), nn.BatchNorm1d(24), nn.ReLU())
        self.head = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pw(self.grouped(self.stem(x))).mean(-1))


def grouped_conv_net(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """Factory: :class:`GroupedConvNet`."""
    return GroupedConvNet(input_shape, num_classes)
