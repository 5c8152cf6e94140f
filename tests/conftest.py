"""Shared fixtures: a private cache directory and a small trained default task (trained once per session)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import pg_server

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

    return build_task(model="cnn1d", train_epochs=3)


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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a live PostgreSQL server on 127.0.0.1.

    ``$PRUNEPILOT_TEST_PG_URL`` when set (``.ci/run`` starts one); otherwise a temporary server started here and
    stopped when the session ends. Without server binaries the storage tests are skipped, loudly, or fail under
    ``CI=true``.
    """
    url = os.environ.get(pg_server.URL_ENV)
    if url:
        yield url
        return
    if pg_server.find_bin() is None:
        msg = ("PostgreSQL STORAGE TESTS NOT RUN: no server binaries (initdb, pg_ctl) on PATH, in "
               "/usr/lib/postgresql/*/bin or $PRUNEPILOT_PG_BIN; install postgresql (apt-get install postgresql) or "
               f"set {pg_server.URL_ENV}")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        print(f"\n*** {msg} ***", file=sys.stderr)
        pytest.skip(msg)
    base = Path(tempfile.mkdtemp(prefix="prunepilot-pg-"))  # under /tmp: the postgres user can reach it
    try:
        url = pg_server.start(base, owner_pid=os.getpid())  # the watchdog stops it if this process is killed
        yield url
    finally:
        pg_server.stop(base, remove=True)
