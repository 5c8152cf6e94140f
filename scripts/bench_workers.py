"""Shared-study throughput: the same N evaluations of one Optuna study in PostgreSQL by 1 vs K worker processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _checkpoint(out: Path, train_epochs: int) -> Path:
    from agent.tasks import build_task, save_checkpoint

    path = out / "dense.pt"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(build_task(train_epochs=train_epochs), path)
    return path


def workers(*, out: Path, trials: int, finetune_steps: int, counts: list[int], storage: str | None = None,
            train_epochs: int = 15) -> list[dict[str, object]]:
    """Run ``search --method optuna --storage URL`` with each worker count on a fresh study of ``trials``.

    Each worker is its own process (one torch thread: ``OMP_NUM_THREADS=1``) with its own ``--out``, as on
    separate machines. Without ``storage`` a throwaway PostgreSQL server is started on 127.0.0.1
    (``tests/pg_server.py``) and stopped after.
    Wall time runs from launching the workers to the last one exiting (process start, loading the checkpoint and
    the warm-start sensitivity analysis included); the steady rate counts the evaluations logged after the first
    row, over the time from the first row to the last (all workers together).
    """
    sys.path.insert(0, str(REPO))
    from tests import pg_server

    ckpt = _checkpoint(out, train_epochs)
    base = None
    if storage is None:
        base = Path(tempfile.mkdtemp(prefix="prunepilot-pg-"))
        storage = pg_server.start(base, owner_pid=os.getpid())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    rows: list[dict[str, object]] = []
    try:
        for k in counts:
            name = f"bench-workers{k}-{uuid.uuid4().hex[:6]}"
            dirs = [out / f"w{k}" / f"worker{i}" for i in range(k)]
            cmd = [sys.executable, "-m", "agent.cli.main", "search", "--method", "optuna", "--checkpoint", str(ckpt),
                   "--trials", str(trials), "--finetune-steps", str(finetune_steps), "--no-latency",
                   "--final-epochs", "0", "--quiet", "--storage", storage, "--study-name", name,
                   "--overwrite"]
            t0 = time.perf_counter()
            procs = [subprocess.Popen([*cmd, "--out", str(d)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for d in dirs]
            codes = [p.wait() for p in procs]
            wall = time.perf_counter() - t0
            logged = [_rows(d / "results.csv") for d in dirs]
            per_worker = [len(r) for r in logged]
            done = sum(per_worker)
            stamps = sorted(float(r["timestamp"]) for rs in logged for r in rs)
            span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
            rows.append({"workers": k, "study_trials": trials, "evaluations": done,
                         "per_worker": "/".join(map(str, per_worker)), "finetune_steps": finetune_steps,
                         "wall_s": round(wall, 1), "evals_per_min": round(60 * done / wall, 2),
                         "first_to_last_row_s": round(span, 1), "steady_evals_per_min": round(60 * (done - 1) / span, 2),
                         "exit_codes": "/".join(map(str, codes))})
            print(rows[-1], flush=True)
            for p, c in zip(procs, codes, strict=True):
                if c != 0:
                    print(p.stderr.read()[-2000:], file=sys.stderr)
    finally:
        if base is not None:
            pg_server.stop(base, remove=True)
    return rows
