"""Report: renders every section and plot for a real tiny search; degrades gracefully on partial inputs."""

import json
import shutil

import matplotlib.image as mpimg
import pytest

from agent.cli import main
from agent.errors import UserInputError
from agent.report import SECTIONS, build_report, pareto_mask

from ..deploy_fixtures import tiny_search_dir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _valid_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_report_of_a_real_search(tiny_checkpoint, tmp_path, capsys):
    run = tiny_search_dir(tiny_checkpoint)
    assert (run / "sensitivity.json").is_file(), "the search saved the profile its searcher used"
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    pngs = sorted(p.name for p in (out / "report_plots").glob("*.png"))
    assert pngs == ["iterative.png", "pareto.png", "progress.png", "ratios.png", "sensitivity.png"]
    for p in (out / "report_plots").glob("*.png"):
        _valid_png(p)
        assert f"](report_plots/{p.name})" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<img ") == 5 and html.count("<h2>") == len(SECTIONS)
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['final']['test_accuracy']:.2f}" in md
    for word in ("MACs", "parameters", "latency", "model size", "Iterative pruning steps", "Non-dominated"):
        assert word in md, word
    assert "Not available" not in md and "missing:" not in md


def test_report_of_an_interrupted_search_says_what_is_missing(tiny_checkpoint, tmp_path):
    run = tiny_search_dir(tiny_checkpoint)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(run / "results.csv", partial / "results.csv")
    with open(partial / "results.csv", "a") as fh:
        fh.write("99,greedy,ok,{broken")  # a crash-truncated trailing line is ignored
    out = build_report(partial)
    assert out.sections == list(SECTIONS)
    md = out.markdown.read_text()
    assert "No summary.json" in md and "No best policy" in md
    assert any("summary.json" in m for m in out.missing) and any("best_policy.json" in m for m in out.missing)
    assert {p.name for p in out.images} == {"progress.png", "pareto.png"}
    assert "Not available" in md, "no run_config / summary: no fingerprint to find a sensitivity profile by"
    for p in out.images:
        _valid_png(p)


def test_report_rejects_a_directory_without_search_output(tmp_path):
    with pytest.raises(UserInputError, match="summary.json"):
        build_report(tmp_path)
    with pytest.raises(UserInputError, match="directory"):
        build_report(tmp_path / "nope")


def test_pareto_mask():
    acc = [90.0, 95.0, 94.0, 95.0, 80.0]
    cost = [0.3, 0.5, 0.6, 0.5, 0.2]
    assert pareto_mask(acc, cost) == [True, True, False, True, True]


def test_progress_plot_of_a_one_evaluation_run_has_whole_ticks_and_stops_at_100(tmp_path, monkeypatch):
    from agent.evaluation import EvalResult
    from agent.policy import Policy
    from agent.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    result = EvalResult(Policy({"conv1": 0.5}), accuracy=100.0, dense_accuracy=100.0, feasible=True)
    plots.plot_progress([(0, result)], tmp_path / "p.png", dense_accuracy=100.0)
    ax = figures[0].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [1.0]
    assert ax.get_ylim()[1] <= 100.0
