"""Latency under load: the same latency-target search quiet and beside one busy core (issue 16's check)."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BUSY = "while True: pass"
"""One busy Python loop: takes one core for as long as it runs."""


def _search(out: Path, args: Sequence[str]) -> dict[str, object]:
    cmd = [sys.executable, "-m", "agent.cli.main", "search", "--overwrite", "--quiet", "--out", str(out), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "results.csv"))) if (out / "results.csv").exists() else []
    errors = [abs(float(r["latency_pred_ms"]) - float(r["latency_ms"])) / float(r["latency_ms"])
              for r in rows if r.get("latency_pred_ms") and r.get("latency_ms")]
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    best = summary.get("best") or {}
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "evaluations": len(rows),
            "flops_ratio": round(best["flops_ratio"], 3) if best else "",
            "latency_ratio": round(best["latency_ratio"], 3) if best else "",
            "ci": f"{best['latency_ratio_lo']:.3f}-{best['latency_ratio_hi']:.3f}" if best.get("latency_ratio_hi") else "",
            "rounds": best.get("latency_rounds", ""), "threads": best.get("threads", ""),
            "median_abs_pred_err": round(statistics.median(errors), 3) if errors else "",
            "error": proc.stderr.strip().splitlines()[-1][:200] if proc.returncode not in (0, 1) and proc.stderr else ""}


def under_load(*, out: Path, method: str, target: str, threads: int, batch: int | str,
               extra: Sequence[str] = ()) -> list[dict[str, object]]:
    """Run the same search quiet, then with one busy loop on one core (killed afterwards)."""
    args = ["--method", method, "--latency-target", target, "--threads", str(threads),
            "--latency-batch", str(batch), "--final-epochs", "0", *extra]
    rows = []
    for load in ("quiet", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load != "quiet" else None
        try:
            time.sleep(1.0 if busy else 0.0)
            row = {"load": load, "loadavg_before": open("/proc/loadavg").read().split()[0], "method": method,
                   "target": target, "batch": batch}
            row.update(_search(out / load.replace(" ", "-"), args))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        rows.append(row)
        print(row, flush=True)
    return rows
