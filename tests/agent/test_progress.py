"""Every long phase shows a bar on stderr unless --quiet: sensitivity, latency table, confirmation, final fine-tune."""

import dataclasses
import json

from agent.evaluation import get_engine
from agent.progress import phase_bar
from agent.search.run import _latency_table

from .cli.test_cli import _run


def test_phase_bar_is_silent_until_the_first_report(capsys):
    with phase_bar("quiet phase", enabled=False) as bar:
        assert bar is None
    with phase_bar("cached phase", enabled=True) as bar:
        pass
    with phase_bar("busy phase", enabled=True, unit="layer") as bar:
        bar(1, 2)
        bar(2, 2)
    err = capsys.readouterr().err
    assert "cached phase" not in err and "quiet phase" not in err
    assert "busy phase" in err and "2/2" in err


def test_building_the_latency_table_shows_a_bar(tiny_task, fast_settings, capsys):
    # a batch size no other test uses, so the table is built here rather than read from the cache
    settings = dataclasses.replace(fast_settings, latency=dataclasses.replace(fast_settings.latency, batch_size=3))
    engine = get_engine(tiny_task)
    try:
        table = _latency_table(engine, settings=settings, round_to=None, progress=True)
        assert table is not None
        err = capsys.readouterr().err
        assert "latency table" in err and "layer" in err
    finally:
        engine.latency_model = None  # the engine is shared by every test of the session's tiny task


def test_search_phases_show_bars_unless_quiet(tmp_path, tiny_checkpoint):
    out = tmp_path / "g"
    args = ("search", "--method", "greedy", "--trials", "3", "--flops-target", "0.7", "--checkpoint",
            str(tiny_checkpoint), "--out", str(out), "--final-epochs", "0.2", "--no-latency", "--eval-limit", "150",
            "--threads", "1")
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["final"]["steps"] > 0
    for phase in ("sensitivity", "confirm best policy", "final fine-tune"):
        assert f"{phase}:" in r.stderr, phase
    q = _run(*args, "--overwrite", "--quiet")
    assert q.returncode == 0, q.stderr
    assert "final fine-tune" not in q.stderr and "search[greedy]" not in q.stderr
