"""The :class:`ResultLog`: every evaluated policy, persisted before the next evaluation starts.

``results.csv`` is appended one complete line at a time (a single ``write`` on an ``O_APPEND`` descriptor,
then ``fsync``), so a crash can at worst leave one unterminated trailing line, which :meth:`ResultLog.open`
drops. Re-opening a log restores every finished evaluation for ``--resume``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..evaluation import EvalResult, Status
from ..policy import Policy

__all__ = ["ResultLog", "RESULT_COLUMNS", "result_to_row", "row_to_result"]

RESULT_COLUMNS = [
    "trial", "method", "status", "ratios", "importance", "round_to", "flops_ratio", "params_ratio",
    "latency_ms", "latency_pred_ms", "latency_ratio", "accuracy", "dense_accuracy", "acc_drop", "feasible",
    "reason", "wall_s", "macs", "params", "peak_mem_mb", "model_mb", "kept_channels", "intermediate",
    "times", "note", "policy_key", "timestamp", "settings_overrides",
    "latency_ratio_lo", "latency_ratio_hi", "dense_latency_ms", "latency_rounds", "threads", "metric",
]
"""Columns of ``results.csv`` in order. ``accuracy`` / ``dense_accuracy`` / ``acc_drop`` hold the task's metric
named in ``metric`` (accuracy in percent, or perplexity); files without the ``metric`` column are accuracy."""


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(float(x))


def result_to_row(trial: int, method: str, result: EvalResult, note: str = "") -> dict[str, str]:
    """One CSV row for ``result``."""
    p = result.policy
    return {
        "trial": str(trial), "method": method, "status": result.status.value,
        "ratios": json.dumps({k: round(v, 6) for k, v in p.ratios.items()}, sort_keys=True),
        "importance": p.importance, "round_to": "" if p.round_to is None else str(p.round_to),
        "flops_ratio": _num(result.flops_ratio), "params_ratio": _num(result.params_ratio),
        "latency_ms": _num(result.latency_ms), "latency_pred_ms": _num(result.latency_pred_ms),
        "latency_ratio": _num(result.latency_ratio), "accuracy": _num(result.accuracy),
        "dense_accuracy": _num(result.dense_accuracy), "acc_drop": _num(result.acc_drop),
        "feasible": str(bool(result.feasible)), "reason": result.reason, "wall_s": _num(result.wall_s),
        "macs": _num(result.macs), "params": _num(result.params), "peak_mem_mb": _num(result.peak_mem_mb),
        "model_mb": _num(result.model_mb), "kept_channels": json.dumps(result.kept_channels, sort_keys=True),
        "intermediate": json.dumps([round(a, 4) for a in result.intermediate]),
        "times": json.dumps({k: round(v, 5) for k, v in result.times.items()}, sort_keys=True),
        "note": note, "policy_key": p.key(), "timestamp": f"{time.time():.3f}",
        "settings_overrides": json.dumps(result.settings_overrides, sort_keys=True) if result.settings_overrides else "",
        "latency_ratio_lo": _num(result.latency_ratio_lo), "latency_ratio_hi": _num(result.latency_ratio_hi),
        "dense_latency_ms": _num(result.dense_latency_ms),
        "latency_rounds": "" if result.latency_rounds is None else str(result.latency_rounds),
        "threads": "" if result.threads is None else str(result.threads),
        "metric": result.metric,
    }


def _opt(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _f(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


def row_to_result(row: dict[str, str]) -> EvalResult:
    """Inverse of :func:`result_to_row` (the policy and every metric)."""
    policy = Policy(json.loads(row["ratios"]), row["importance"], int(row["round_to"]) if row["round_to"] else None)
    return EvalResult(
        policy, status=Status(row["status"]), accuracy=_f(row["accuracy"]), dense_accuracy=_f(row["dense_accuracy"]),
        acc_drop=_f(row["acc_drop"]), macs=_f(row["macs"]), params=_f(row["params"]),
        flops_ratio=_f(row["flops_ratio"]), params_ratio=_f(row["params_ratio"]),
        latency_ms=_opt(row["latency_ms"]), latency_ratio=_opt(row["latency_ratio"]),
        latency_pred_ms=_opt(row["latency_pred_ms"]), peak_mem_mb=_opt(row["peak_mem_mb"]),
        model_mb=_f(row["model_mb"]), feasible=row["feasible"] == "True", reason=row["reason"],
        kept_channels={k: int(v) for k, v in json.loads(row["kept_channels"] or "{}").items()},
        intermediate=list(json.loads(row["intermediate"] or "[]")), times=json.loads(row["times"] or "{}"),
        settings_overrides=json.loads(row.get("settings_overrides") or "{}"),
        latency_ratio_lo=_opt(row.get("latency_ratio_lo", "")), latency_ratio_hi=_opt(row.get("latency_ratio_hi", "")),
        dense_latency_ms=_opt(row.get("dense_latency_ms", "")),
        latency_rounds=int(row["latency_rounds"]) if row.get("latency_rounds") else None,
        threads=int(row["threads"]) if row.get("threads") else None, metric=row.get("metric") or "accuracy",
    )


class ResultLog:
    """Append-only, crash-safe log of evaluations (``DIR/results.csv``).

    Args:
        path: The CSV file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, resume: bool) -> ResultLog:
        """Open the log, loading earlier rows when ``resume`` (else starting a fresh file)."""
        log = cls(path)
        log.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and log.path.exists():
            raw = log.path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a crash mid-line: drop the partial row
                raw = raw[: raw.rfind(b"\n") + 1]
                with open(log.path, "r+b") as fh:
                    fh.truncate(len(raw))
            reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
            log.rows = [r for r in reader if r.get("trial")]
            if reader.fieldnames is not None and list(reader.fieldnames) != RESULT_COLUMNS:
                log._rewrite()  # a log from an older version: same rows under today's columns
        else:
            if log.path.exists():
                log.path.unlink()
            log._append_line(RESULT_COLUMNS, header=True)
        return log

    def _rewrite(self) -> None:
        """Replace the file atomically with the current header and rows (missing columns left empty)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(RESULT_COLUMNS)
        for row in self.rows:
            writer.writerow([row.get(c) or "" for c in RESULT_COLUMNS])
        tmp = self.path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.path)

    def _append_line(self, values: list[str], *, header: bool = False) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        data = buf.getvalue().encode("utf-8")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        fd = os.open(self.path, flags, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, trial: int, method: str, result: EvalResult, note: str = "") -> dict[str, str]:
        """Persist one evaluation (durably, before returning)."""
        row = result_to_row(trial, method, result, note)
        self._append_line([row[c] for c in RESULT_COLUMNS])
        self.rows.append(row)
        return row

    def results(self) -> Iterator[tuple[int, EvalResult]]:
        """``(trial, result)`` for every logged evaluation."""
        for row in self.rows:
            yield int(row["trial"]), row_to_result(row)

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self) -> Any:
        """The log as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=RESULT_COLUMNS)
