"""The benchmark script's smoke mode (CI runs only this; real numbers come from full runs)."""

import csv
import os
import subprocess
import sys

from .conftest import REPO


def test_benchmark_smoke_writes_tables(tmp_path, tiny_task):
    r = subprocess.run([sys.executable, "scripts/benchmark.py", "smoke", "--out", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("smoke_latency", "smoke_lut", "smoke_quality"):
        rows = list(csv.DictReader(open(tmp_path / f"{name}.csv")))
        assert rows, name
        assert (tmp_path / f"{name}.md").read_text().count("|") > 4
    quality = list(csv.DictReader(open(tmp_path / "smoke_quality.csv")))
    assert {r["method"] for r in quality} == {"uniform", "greedy"}
    assert all(float(r["flops_ratio"]) <= 0.5 for r in quality)
    lat = list(csv.DictReader(open(tmp_path / "smoke_latency.csv")))
    assert float(lat[0]["flops_ratio"]) <= 0.5
    tf = list(csv.DictReader(open(tmp_path / "smoke_transformers.csv")))
    assert {(r["task"], r["method"]) for r in tf} == {("vit", "uniform"), ("vit", "tp-uniform"),
                                                      ("vit-timm", "tp-uniform"), ("lm", "uniform")}
    for r in tf:  # each met its target after the common fine-tune, and was scored on the test split
        kind, value = r["target"].split("=")
        assert r["feasible"] == "True" and float(r[f"{kind}_ratio"]) <= float(value), r
        assert float(r["test"]) > 0 and int(r["test_samples"]) > 0
    vit = [r for r in tf if r["task"] == "vit"]
    assert all(float(r["latency_lo"]) <= float(r["latency_ratio"]) <= float(r["latency_hi"]) for r in vit)
    assert [r["metric"] for r in tf if r["task"] == "lm"] == ["perplexity"]
