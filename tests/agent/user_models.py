"""A user model factory referenced as ``tests.agent.user_models:make_net`` in tests."""

from torch import nn


def make_net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(8, num_classes))


class _Res(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.ReLU(),
                                  nn.Conv1d(channels, channels, 3, padding=1), nn.BatchNorm1d(channels))

    def forward(self, x):
        return nn.functional.relu(x + self.body(x))


def make_small_resnet(num_classes: int = 10) -> nn.Module:
    """A user's residual 1-D CNN with small groups (16 and 32 channels): few channels to round to ``round_to``."""
    return nn.Sequential(nn.Conv1d(1, 16, 3, padding=1), nn.ReLU(), _Res(16), nn.Conv1d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), _Res(32), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, num_classes))
