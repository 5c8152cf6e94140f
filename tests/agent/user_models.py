"""A user model factory referenced as ``tests.agent.user_models:make_net`` in tests."""

from torch import nn


def make_net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))
