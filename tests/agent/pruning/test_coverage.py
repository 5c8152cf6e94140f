"""Models users bring, run as a user would: odd topologies search end to end, unprunable ones are refused up front,
a candidate that raises is a failed row, and a whole-run phase that fails degrades or stops in one line."""

import json
import os
import subprocess
import sys
import warnings

import pytest

import agent.evaluation.engine as evaluation_mod
from agent.constraints import Constraints
from agent.evaluation import EvalSettings
from agent.search.results import ResultLog
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig, SearchSession
from agent.tasks import build_task

from ...conftest import REPO

MODULE = "tests.agent.topologies"


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.slow
def test_user_model_with_depthwise_concat_and_se_searches_with_a_latency_table(tmp_path):
    """The 1-D user model that used to die while building the latency table."""
    out = tmp_path / "s"
    r = _run("search", "--model", f"{MODULE}:ds_concat_se", "--method", "uniform", "--flops-target", "0.5",
             "--train-epochs", "1", "--final-epochs", "0", "--latency-batch", "8", "--threads", "1", "--quiet",
             "--out", str(out))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["flops_ratio"] <= 0.5
    rows = ResultLog.open(out / "results.csv", resume=True).rows
    assert rows and all(row["latency_pred_ms"] not in ("", None) for row in rows if row["status"] == "ok")


def test_a_model_with_nothing_prunable_is_refused_before_training(tmp_path):
    out = tmp_path / "s"
    r = _run("search", "--model", f"{MODULE}:only_hard_coded", "--no-latency", "--out", str(out))
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "cannot be pruned" in err and "embed" in err and "Workaround" in err, err
    assert "Traceback" not in err and not out.exists()


def test_an_unknown_ignore_layers_pattern_is_refused(tmp_path):
    r = _run("search", "--ignore-layers", "conv9.*", "--no-latency", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "conv9.*" in r.stderr and "named_modules" in r.stderr, r.stderr


def test_ignore_layers_reaches_the_search(tmp_path):
    task = build_task(model=f"{MODULE}:zoo_net", dataset="mnist1d", train_epochs=1, ignore_layers=("stages.ds.*",))
    out = run_search(task=task, out_dir=tmp_path / "s", constraints=Constraints(flops_target=0.8),
                     settings=EvalSettings(measure_latency=False), config=SearchConfig(method="uniform", trials=4),
                     final=FinalTuneConfig(epochs=0))
    ratios = json.loads((tmp_path / "s" / "best_policy.json").read_text())["policy"]["ratios"]
    assert ratios and not any(name.startswith("stages.ds.") for name in ratios)
    assert out.best is not None


def test_a_candidate_that_raises_is_a_failed_row_and_the_search_goes_on(tmp_path):
    task = build_task(model=f"{MODULE}:odd_width_bug", dataset="mnist1d", train_epochs=1)
    s = SearchSession(task=task, constraints=Constraints(flops_target=0.9), settings=EvalSettings(measure_latency=False),
                      config=SearchConfig(method="uniform", trials=5), log=ResultLog.open(tmp_path / "r.csv", resume=False))
    bad = s.evaluate(s.make_policy({"conv": 0.5}))  # 16 -> 8 channels: the model's own forward raises
    good = s.evaluate(s.make_policy({"conv": 0.25}))
    assert bad.status == "failed" and "exactly 8 channels" in bad.reason
    assert good.status == "ok"


def test_a_latency_table_that_cannot_be_built_degrades_to_measured_latency(tiny_task, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel not supported on this device")

    monkeypatch.setattr(evaluation_mod.PruningEngine, "attach_latency_model", broken)
    from agent.measure import LatencyConfig

    settings = EvalSettings(latency=LatencyConfig(batch_size=8, warmup=1, repeats=3, min_repeats=2, threads=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_search(task=tiny_task, out_dir=tmp_path / "s", constraints=Constraints(flops_target=0.7),
                         settings=settings, config=SearchConfig(method="uniform", trials=3),
                         final=FinalTuneConfig(epochs=0))
    assert any("latency table could not be built" in str(w.message) for w in caught)
    assert out.best is not None and out.best.latency_ms is not None and out.best.latency_pred_ms is None
