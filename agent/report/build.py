"""Assemble ``report.md`` / ``report.html`` (and their PNGs) from a search's output directory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation import Status
from ..evaluation.sensitivity import plot_sensitivity
from ..searchers.pareto import pareto_mask
from ..storage import atomic_write_text
from .document import BulletList, Document, Heading, Image, Paragraph, Table
from .inputs import ReportInputs, load_report_inputs
from .plots import plot_iterative, plot_pareto, plot_progress, plot_ratios

__all__ = ["ReportOutcome", "build_report", "SECTIONS", "PLOT_DIR"]

SECTIONS = ("Summary", "Dense vs pruned", "Final fine-tune", "Per-unit pruning ratios", "Sensitivity",
            "Search progress", "Pareto front", "Inputs")
"""Section headings, in order (always present; a section without data says why)."""
PLOT_DIR = "report_plots"
"""Sub-directory of the PNGs."""


@dataclass
class ReportOutcome:
    """The written report."""

    markdown: Path
    """``report.md``."""
    html: Path
    """``report.html``."""
    images: list[Path] = field(default_factory=list)
    """PNG files written."""
    sections: list[str] = field(default_factory=list)
    """Section headings."""
    missing: list[str] = field(default_factory=list)
    """Optional inputs that were not available."""


def _wall_time(summary: dict[str, Any]) -> str:
    """Search wall time over every session (a resumed search's earlier sessions included)."""
    total, sessions = summary.get("wall_s_total", summary.get("wall_s")), summary.get("sessions") or 1
    if sessions > 1:
        return (f"search wall time: {_f(total, '.1f', ' s')} over {sessions} sessions "
                f"(the last one {_f(summary.get('wall_s'), '.1f', ' s')})")
    return f"search wall time: {_f(total, '.1f', ' s')}"


def _f(x: Any, spec: str = ".3f", suffix: str = "") -> str:
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "-" if math.isnan(v) else f"{v:{spec}}{suffix}"


def _ratio(pruned: Any, dense: Any) -> str:
    try:
        return f"{float(pruned) / float(dense):.3f}x"
    except (TypeError, ValueError, ZeroDivisionError):
        return "-"


class _Builder:
    def __init__(self, inp: ReportInputs, out_dir: Path) -> None:
        self.inp, self.out = inp, out_dir
        self.doc = Document(f"PrunePilot report: {inp.run_dir.name}")
        self.images: list[Path] = []
        s = inp.summary or {}
        self.best, self.dense, self.final = s.get("best"), s.get("dense") or {}, s.get("final") or {}

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path)
        self.doc.add(Image(str(path.relative_to(self.out)), alt))

    def plot_path(self, name: str) -> Path:
        return self.out / PLOT_DIR / name

    def summary(self) -> None:
        self.doc.add(Heading("Summary"))
        s = self.inp.summary
        if s is None:
            self.doc.add(Paragraph("No summary.json: the search did not finish (the tables below use results.csv)."))
            return
        task, c, counts = s.get("task") or {}, s.get("constraints") or {}, s.get("counts") or {}
        targets = ", ".join(f"{k} {v}" for k, v in c.items() if v is not None) or "none"
        self.doc.add(BulletList([
            f"method: **{s.get('method')}**",
            f"task: {task.get('model')} on {task.get('dataset')} (fingerprint {s.get('task_fingerprint')})",
            f"constraints: {targets}",
            f"evaluations: {counts.get('total', 0)} ({counts.get('feasible', 0)} feasible, "
            f"{counts.get('failed', 0)} failed)",
            f"feasible policy found: **{'yes' if s.get('feasible') else 'no'}**",
            _wall_time(s),
        ]))

    def dense_vs_pruned(self) -> None:
        self.doc.add(Heading("Dense vs pruned"))
        b, d, f = self.best, self.dense, self.final
        if b is None:
            closest = (self.inp.summary or {}).get("closest")
            text = "No feasible policy was found."
            if closest:
                text += (f" Closest: accuracy {_f(closest.get('accuracy'), '.2f')}%, FLOPs ratio "
                         f"{_f(closest.get('flops_ratio'))}, violating: {closest.get('reason')}.")
            self.doc.add(Paragraph(text))
            return
        rows = [
            ("val accuracy, search evaluation (%)", _f(d.get("accuracy"), ".2f"), _f(b.get("accuracy"), ".2f"),
             _f(-b["acc_drop"], "+.2f", " pts") if b.get("acc_drop") is not None else "-"),
            ("val accuracy, final (%)", _f(f.get("dense_val_accuracy"), ".2f"), _f(f.get("val_accuracy"), ".2f"), "-"),
            ("test accuracy, final (%)", _f(f.get("dense_test_accuracy"), ".2f"), _f(f.get("test_accuracy"), ".2f"),
             "-"),
            ("MACs (FLOPs)", _f(d.get("macs"), ",.0f"), _f(b.get("macs"), ",.0f"), _f(b.get("flops_ratio"), ".3f", "x")),
            ("parameters", _f(d.get("params"), ",.0f"), _f(b.get("params"), ",.0f"), _f(b.get("params_ratio"), ".3f", "x")),
            ("latency (ms per batch)", _f(d.get("latency_ms")), _f(b.get("latency_ms")),
             _f(b.get("latency_ratio"), ".3f", "x")),
            ("model size (MiB)", _f(self.inp.dense_model_mb), _f(b.get("model_mb")),
             _ratio(b.get("model_mb"), self.inp.dense_model_mb)),
            ("peak GPU memory (MiB)", "-", _f(b.get("peak_mem_mb"), ".1f"), "-"),
        ]
        self.doc.add(Table(("metric", "dense", "pruned", "ratio / change"), rows))
        self.doc.add(Paragraph("Search-evaluation numbers come from the confirmation run of the chosen policy; "
                               "final numbers are after the final fine-tune. Latency is the median of timed "
                               "batches on the search's device; peak GPU memory is only measured on CUDA."))

    def final_tune(self) -> None:
        self.doc.add(Heading("Final fine-tune"))
        f = self.final
        if not f:
            self.doc.add(Paragraph("No final fine-tune record (no feasible policy, or an older output)."))
            return
        items = [f"{k}: {_f(f.get(k), '.4g') if isinstance(f.get(k), float) else f.get(k)}"
                 for k in ("epochs", "steps", "lr", "kd_alpha", "kd_temperature", "iterative_steps", "schedule",
                           "wall_s") if f.get(k) is not None]
        self.doc.add(BulletList(items or ["no fine-tuning (final epochs 0)"]))
        records = f.get("iterative") or []
        if records:
            self.doc.add(Heading("Iterative pruning steps", 3))
            self.doc.add(Table(("step", "fraction", "pruned", "channels removed", "FLOPs ratio", "fine-tuned",
                                "val accuracy (%)", "note"),
                               [(str(r["step"]), _f(r["fraction"]), "yes" if r["pruned"] else "no",
                                 str(r["channels_removed"]), _f(r["flops_ratio"]),
                                 f"{r['finetune_steps']} steps" if r["finetuned"] else "skipped",
                                 _f(r["accuracy"], ".2f"), r.get("note") or "") for r in records]))
            self.image(plot_iterative(records, self.plot_path("iterative.png")), "Iterative pruning steps")

    def ratios(self) -> None:
        self.doc.add(Heading("Per-unit pruning ratios"))
        policy = (self.inp.best_policy or {}).get("policy") or (self.inp.summary or {}).get("best_policy")
        if not policy or not policy.get("ratios"):
            self.doc.add(Paragraph("No best policy (best_policy.json missing or no feasible policy)."))
            return
        units = (self.inp.summary or {}).get("units") or list(policy["ratios"])
        ratios = {u: float(policy["ratios"].get(u, 0.0)) for u in units}
        kept = (self.best or {}).get("kept_channels") or {}
        self.image(plot_ratios(ratios, self.plot_path("ratios.png"), kept=kept), "Per-unit pruning ratios")
        self.doc.add(Table(("unit", "ratio", "channels kept"),
                           [(u, _f(r), str(kept.get(u, "-"))) for u, r in ratios.items()]))
        self.doc.add(Paragraph(f"Importance criterion: {policy.get('importance')}; round_to: {policy.get('round_to')}."))

    def sensitivity(self) -> None:
        self.doc.add(Heading("Sensitivity"))
        prof = self.inp.sensitivity
        if prof is None:
            self.doc.add(Paragraph("Not available: the search did not compute a sensitivity profile and none is "
                                   "cached for this task (run `prunepilot sensitivity` with the same checkpoint)."))
            return
        path = self.plot_path("sensitivity.png")
        plot_sensitivity(prof, path)
        self.image(path, "Accuracy when one unit alone is pruned")
        self.doc.add(Paragraph(f"Source: {self.inp.sensitivity_source}; importance {prof.importance}; "
                               f"dense accuracy {prof.dense_accuracy:.2f}%."))

    def progress(self) -> None:
        self.doc.add(Heading("Search progress"))
        res = self.inp.results
        if not res:
            self.doc.add(Paragraph("No evaluations in results.csv."))
            return
        dense_acc = self.dense.get("accuracy") if self.dense else next(
            (r.dense_accuracy for _, r in res if math.isfinite(r.dense_accuracy)), None)
        self.image(plot_progress(res, self.plot_path("progress.png"), dense_accuracy=dense_acc),
                   "Best feasible accuracy against evaluations")
        status: dict[Status, int] = {}
        for _, r in res:
            status[r.status] = status.get(r.status, 0) + 1
        self.doc.add(Paragraph(f"{len(res)} evaluations: " + ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
                               + f"; {sum(r.ok and r.feasible for _, r in res)} feasible."))

    def pareto(self) -> None:
        self.doc.add(Heading("Pareto front"))
        ok = [r for _, r in self.inp.results if r.ok and math.isfinite(r.accuracy)]
        if len(ok) < 1:
            self.doc.add(Paragraph("No successful evaluation to plot."))
            return
        costs = ["flops_ratio"] + (["latency_ratio"] if any(r.latency_ratio is not None for r in ok) else [])
        best_key = None
        pol = (self.inp.summary or {}).get("best_policy")
        if pol:
            from ..policy import Policy

            best_key = Policy.from_dict(pol).key()
        self.image(plot_pareto(self.inp.results, self.plot_path("pareto.png"), costs=costs, best_key=best_key),
                   "Accuracy vs FLOPs / latency (non-dominated points joined)")
        front = [r for r, f in zip(ok, pareto_mask([r.quality for r in ok], [r.flops_ratio for r in ok]),
                                   strict=True) if f]
        self.doc.add(Heading("Non-dominated evaluations (accuracy vs FLOPs)", 3))
        self.doc.add(Table(("accuracy (%)", "FLOPs ratio", "params ratio", "latency ratio", "feasible"),
                           [(_f(r.accuracy, ".2f"), _f(r.flops_ratio), _f(r.params_ratio), _f(r.latency_ratio),
                             "yes" if r.feasible else "no") for r in sorted(front, key=lambda r: r.flops_ratio)]))

    def inputs(self) -> None:
        self.doc.add(Heading("Inputs"))
        present = [p.name for p in sorted(self.inp.run_dir.iterdir())
                   if p.is_file() and p.suffix in (".csv", ".json", ".pt")]
        self.doc.add(Paragraph("Read from " + str(self.inp.run_dir) + ": " + (", ".join(present) or "nothing") + "."))
        if self.inp.missing:
            self.doc.add(BulletList([f"missing: {m}" for m in self.inp.missing]))


def build_report(run_dir: str | Path, *, out_dir: str | Path | None = None) -> ReportOutcome:
    """Write ``report.md``, ``report.html`` and the PNGs for a search output directory.

    Args:
        run_dir: The ``--out`` of a search.
        out_dir: Where to write (default: ``run_dir``).

    Returns:
        The written files and the inputs that were missing.
    """
    inp = load_report_inputs(run_dir)
    out = Path(out_dir) if out_dir is not None else inp.run_dir
    out.mkdir(parents=True, exist_ok=True)
    b = _Builder(inp, out)
    for section in (b.summary, b.dense_vs_pruned, b.final_tune, b.ratios, b.sensitivity, b.progress, b.pareto,
                    b.inputs):
        section()
    md, html = out / "report.md", out / "report.html"
    atomic_write_text(md, b.doc.to_markdown())
    atomic_write_text(html, b.doc.to_html())
    return ReportOutcome(md, html, b.images, b.doc.headings(), inp.missing)
