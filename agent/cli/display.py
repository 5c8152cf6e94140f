"""Terminal output: small rich tables (plain text when rich is unavailable)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["print_table", "print_search_summary", "sensitivity_rows", "SENSITIVITY_HEADER"]

SENSITIVITY_HEADER = ("unit", "drops", "MACs touched", "latency share")
"""Columns of the printed sensitivity table. "MACs touched": share of dense MACs in the layers the unit shrinks
(in or out channels), so neighbouring units overlap and the column sums to about 2."""


def _percent(share: float | None) -> str:
    """A share in percent with two significant digits, so a unit that costs time never reads as 0."""
    if share is None:
        return "-"
    if share <= 0:
        return "0% (within noise)"
    return f"{100 * share:.2g}%" if share < 0.1 else f"{100 * share:.0f}%"


def sensitivity_rows(profile: Any) -> list[tuple[str, str, str, str]]:
    """Rows of the sensitivity table (see :data:`SENSITIVITY_HEADER`) of a ``SensitivityProfile``."""
    measured = any(profile.latency_ratio.get(u) for u in profile.units)
    return [(u, " ".join(f"{d:6.2f}" for d in profile.drops(u)), _percent(profile.macs_share[u]),
             _percent(profile.latency_share.get(u)) if measured else "-") for u in profile.units]


def print_table(title: str, rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> None:
    """Print rows as a table with an optional header."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        print(title)
        for row in rows:
            print("  " + " | ".join(row))
        return
    table = Table(title=title, show_header=header is not None)
    for col in header or [""] * (len(rows[0]) if rows else 1):
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)


def _fmt(x: Any, spec: str = ".3f", suffix: str = "") -> str:
    if x is None:
        return "-"
    try:
        return f"{float(x):{spec}}{suffix}"
    except (TypeError, ValueError):
        return str(x)


def _interval(best: dict[str, Any], batch: int | None = None) -> str:
    """`` [lo-hi], N rounds, T threads[, batch B]`` of a paired latency measurement (empty for older summaries)."""
    lo, hi = best.get("latency_ratio_lo"), best.get("latency_ratio_hi")
    if lo is None or hi is None:
        return ""
    at = f", batch {batch}" if batch else ""
    return f", 90% CI {lo:.3f}-{hi:.3f}, {best.get('latency_rounds')} paired rounds, {best.get('threads')} threads{at}"


def print_search_summary(summary: dict[str, Any], *, out_dir: Path, checkpoint: str | None = None) -> None:
    """Dense vs pruned table of a finished search, or, when nothing was feasible, how close it came.

    Args:
        summary: The content of ``summary.json``.
        out_dir: The search's output directory.
        checkpoint: The dense checkpoint searched on (for the ``prunepilot evaluate`` hint).
    """
    counts = summary.get("counts", {})
    best, dense, final = summary.get("best"), summary.get("dense") or {}, summary.get("final") or {}
    if best is None:
        _print_infeasible(summary, out_dir=out_dir, checkpoint=checkpoint)
        return
    batch = (summary.get("latency_device") or {}).get("batch_size")
    name = best.get("metric") or "accuracy"
    fmt, unit = (".2f", "%") if name == "accuracy" else (".3f", "")
    rows = [
        (f"val {name} (search eval)", _fmt(dense.get("accuracy"), fmt, unit), _fmt(best["accuracy"], fmt, unit)),
        (f"val {name} (final)", _fmt(final.get("dense_val_accuracy"), fmt, unit),
         _fmt(final.get("val_accuracy"), fmt, unit)),
        (f"test {name} (final)", _fmt(final.get("dense_test_accuracy"), fmt, unit),
         _fmt(final.get("test_accuracy"), fmt, unit)),
        ("MACs", _fmt(dense.get("macs"), ".3g"), f"{_fmt(best['macs'], '.3g')} ({_fmt(best['flops_ratio'])}x)"),
        ("params", _fmt(dense.get("params"), ".3g"), f"{_fmt(best['params'], '.3g')} ({_fmt(best['params_ratio'])}x)"),
        ("latency", _fmt(best.get("dense_latency_ms", dense.get("latency_ms")), ".3f", " ms"),
         f"{_fmt(best['latency_ms'], '.3f', ' ms')} ({_fmt(best['latency_ratio'])}x{_interval(best, batch)})"),
    ]
    print_table(f"{summary.get('method')}: best of {counts.get('total', 0)} evaluations "
                f"({counts.get('feasible', 0)} feasible, {counts.get('failed', 0)} failed)", rows,
                header=("", "dense", "pruned"))
    print(f"outputs in {out_dir}: results.csv, best_policy.json, pruned_model.pt, summary.json")


def _print_infeasible(summary: dict[str, Any], *, out_dir: Path, checkpoint: str | None) -> None:
    """Plain words: the closest policy's gaps, where it was written, and the flags to try next."""
    counts = summary.get("counts", {})
    print(f"{summary.get('method')}: no feasible policy in {counts.get('total', 0)} evaluations "
          f"({counts.get('failed', 0)} failed). The closest one:")
    for gap in summary.get("gaps") or []:
        print(f"  - {gap}")
    path = out_dir / "closest_policy.json"
    if path.exists():
        ckpt = f" --checkpoint {checkpoint}" if checkpoint else ""
        print(f"closest policy written to {path} (re-score it: prunepilot evaluate{ckpt} --policy {path})")
    advice = summary.get("advice") or []
    if advice:
        print("to find a feasible policy, rerun with one of:")
        for flag in advice:
            print(f"  {flag}")
