"""Shared fixtures: a private cache directory and a small trained default task (trained once per session)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="prunepilot-test-cache-")
os.environ["PRUNEPILOT_CACHE"] = _CACHE
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The test session's PRUNEPILOT_CACHE."""
    return Path(_CACHE)


@pytest.fixture(scope="session")
def tiny_task():
    """cnn1d on MNIST-1D trained for 3 epochs (cached in the session cache, shared by every test)."""
    from agent.tasks import build_task

    return build_task(train_epochs=3)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_task, tmp_path_factory) -> Path:
    """The tiny task saved as a PrunePilot checkpoint file."""
    from agent.tasks import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "dense.pt"
    save_checkpoint(tiny_task, path)
    return path


@pytest.fixture()
def fast_settings():
    """Evaluation settings that keep tests quick (small latency repeats)."""
    from agent.evaluation import EvalSettings
    from agent.measure import LatencyConfig

    return EvalSettings(latency=LatencyConfig(batch_size=16, warmup=1, repeats=3, min_repeats=2))
