"""The paired benchmark: t-intervals, verdicts, recovered share, and a tiny end-to-end run of the command."""

import csv
import math
import os
import subprocess
import sys

import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from bench_paired import best_recovery, headroom, parse_budget, summarise, t_interval, verdict  # noqa: E402


def test_t_interval_matches_the_student_t_formula():
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert math.isnan(t_interval([5.0])[1])
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 0.0)


def test_verdict_needs_the_interval_to_exclude_zero():
    assert verdict(0.5, 0.4) == "better"
    assert verdict(-0.5, 0.4) == "worse"
    assert verdict(0.5, 0.6) == "no difference"
    assert verdict(0.5, float("nan")) == "no difference", "one seed proves nothing"


def _raw(method, accs, dense=95.0):
    return [{"task": "t", "budget": 0.3, "seed": s, "method": method, "feasible": True, "dense_test_acc": dense,
             "test_acc": a, "flops_ratio": 0.3, "evals": 1, "search_s": 0.1} for s, a in enumerate(accs)]


def test_pairing_resolves_what_unpaired_intervals_cannot():
    # seed-to-seed noise (3 points) is shared by both methods; the method is 1 point better on every seed
    raw = _raw("uniform", [85.0, 88.0, 91.0]) + _raw("global", [85.0, 88.0, 91.0]) + \
        _raw("global-taylor", [84.0, 87.0, 90.0]) + _raw("greedy", [86.0, 89.1, 91.9])
    rows = {r["method"]: r for r in summarise(raw)}
    _, half = t_interval([86.0, 89.1, 91.9])
    assert half > 1.0, "unpaired, the two means are within each other's interval"
    assert rows["greedy"]["vs_uniform"].endswith("(better)")
    assert rows["global"]["vs_uniform"].startswith("0.00 ± 0.00 (no difference)")
    assert rows["global-taylor"]["vs_global"].endswith("(worse)")
    assert rows["uniform"]["vs_uniform"] == "" and rows["uniform"]["recovered"] == ""
    # recovered share per seed: 1/10, 1.1/7, 0.9/4
    share = (1 / 10 + 1.1 / 7 + 0.9 / 4) / 3
    assert rows["greedy"]["recovered"].startswith(f"{share:.2f} ± ")
    best = best_recovery(list(rows.values()))
    assert [b["best"] for b in best] == ["greedy"], "references are not searchers"
    assert list(headroom(list(rows.values()))[0]) == ["task", "dense_acc", "uniform_loss@0.3"]
    assert headroom(list(rows.values()))[0]["uniform_loss@0.3"].startswith("7.00 ± ")


def test_latency_budgets_are_their_own_cells_beside_flops_ones():
    assert parse_budget("0.2") == ("flops", 0.2) and parse_budget("latency=0.4") == ("latency", 0.4)
    with pytest.raises(ValueError, match="params=0.5"):
        parse_budget("params=0.5")
    flops = _raw("uniform", [85.0, 88.0, 91.0]) + _raw("knapsack", [86.0, 89.0, 92.0])
    latency = [{**r, "kind": "latency", "budget": 0.4, "latency_ratio": 0.38, "test_acc": r["test_acc"] - 2.0}
               for r in flops]
    rows = {(r["budget"], r["method"]): r for r in summarise(flops + latency)}
    assert set(rows) == {("0.3", "uniform"), ("0.3", "knapsack"), ("latency0.4", "uniform"), ("latency0.4", "knapsack")}
    assert rows[("latency0.4", "knapsack")]["latency_ratio"] == 0.38
    assert rows[("latency0.4", "knapsack")]["vs_uniform"].startswith("1.00 ± 0.00")
    assert list(headroom(list(rows.values()))[0]) == ["task", "dense_acc", "uniform_loss@0.3", "uniform_loss@latency0.4"]


def test_failed_runs_are_left_out_of_the_pairs():
    raw = _raw("uniform", [85.0, 88.0, 91.0]) + _raw("greedy", [86.0, 89.0, 92.0])
    raw[-1] = {**raw[-1], "feasible": False}
    rows = {r["method"]: r for r in summarise(raw)}
    assert rows["greedy"]["seeds"] == 2 and rows["greedy"]["vs_uniform"].startswith("1.00 ± 0.00")


def test_paired_command_tiny_run_writes_every_table(tmp_path, tiny_task):
    cmd = [sys.executable, "scripts/benchmark.py", "paired", "--tasks", "default", "--budgets", "0.5",
           "--methods", "uniform,global,global-taylor", "--seeds", "0,1", "--trials", "2", "--final-epochs", "0.05",
           "--headroom-budgets", "", "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    raw = list(csv.DictReader(open(tmp_path / "paired_raw.csv")))
    assert len(raw) == 6 and all(float(x["flops_ratio"]) <= 0.5 for x in raw)
    assert len({x["dense_test_acc"] for x in raw}) == 1, "one dense model for every run"
    by = {(x["method"], x["seed"]): x for x in raw}
    assert by[("uniform", "0")]["finetune_steps"] == by[("global-taylor", "0")]["finetune_steps"] != "0"
    summary = {x["method"]: x for x in csv.DictReader(open(tmp_path / "paired.csv"))}
    assert set(summary) == {"uniform", "global", "global-taylor"}
    assert "±" in summary["global-taylor"]["test_acc"] and "(" in summary["global-taylor"]["vs_global"]
    assert (tmp_path / "paired_headroom.md").read_text().count("|") > 4
    assert "(no rows)" in (tmp_path / "paired_best.md").read_text(), "references are never the best searcher"
    # a second run with --reuse repeats nothing
    r2 = subprocess.run(cmd + ["--reuse"], cwd=REPO, capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r2.returncode == 0 and list(csv.DictReader(open(tmp_path / "paired_raw.csv"))) == raw
