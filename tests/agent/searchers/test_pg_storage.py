"""Optuna studies in a live PostgreSQL server: plain URLs, heartbeats, and two workers sharing one study."""

import csv
import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from agent.searchers.optuna.study import (
    GRACE_BEATS,
    OWNER_ATTR,
    ROW_ATTR,
    fail_stale,
    open_study,
    quiet_optuna,
    sqlalchemy_url,
)

from ...conftest import REPO
from .test_optuna import SLOW_MAIN


def _rows(path):
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _open(tmp_path, url, name, *, heartbeat=None):
    return open_study(out_dir=tmp_path, storage_url=url, study_name=name, directions=["maximize"],
                      sampler=optuna.samplers.RandomSampler(seed=0), pruner=None, fingerprint={"k": 1}, fresh=True,
                      heartbeat=heartbeat)[0]


def test_a_plain_postgresql_url_runs_on_psycopg3(pg_url, tmp_path):
    assert sqlalchemy_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert sqlalchemy_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
    name = f"plain-{uuid.uuid4().hex[:8]}"
    with quiet_optuna():
        study = _open(tmp_path, _plain(pg_url), name)
        study.enqueue_trial({"x": 0.25})
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
    assert study._storage._backend.engine.dialect.driver == "psycopg"  # psycopg 3, not psycopg2
    again = optuna.load_study(study_name=name, storage=pg_url)  # another connection sees it
    assert [t.value for t in again.trials] == [0.25]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_silent_running_trial_is_failed_by_the_heartbeat_and_requeued(pg_url, tmp_path):
    name = f"beat-{uuid.uuid4().hex[:8]}"
    with quiet_optuna():
        study = _open(tmp_path, pg_url, name, heartbeat=1)
        dead = study.ask()  # a worker that beat once, then died
        dead.suggest_float("x", 0, 1)
        dead.set_user_attr(OWNER_ATTR, "/elsewhere")
        study._storage.record_heartbeat(dead._trial_id)
        orphan = study.ask()  # a worker killed between asking and its first heartbeat: no beat, no owner
        orphan.suggest_float("x", 0, 1)
        fail_stale(study, heartbeat=1)
        assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2, "failed before its grace period"
        time.sleep(GRACE_BEATS + 1.5)
        fail_stale(study, heartbeat=1)
        fail_stale(study, heartbeat=1)  # a second live worker checking too retries it only once
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    retries = {t.system_attrs.get("failed_trial", t.user_attrs.get("prunepilot_retry_of")): t for t in trials[2:]}
    assert sorted(retries) == [0, 1] and all(
        (retries[n].params or retries[n].system_attrs["fixed_params"]) == trials[n].params for n in (0, 1))


def test_two_workers_one_killed_and_resumed_share_one_study(pg_url, tmp_path, tiny_checkpoint):
    trials, name = 10, f"shared-{uuid.uuid4().hex[:8]}"
    outs = {w: tmp_path / w for w in ("a", "b")}

    def args(w):
        return ["search", "--method", "optuna", "--checkpoint", str(tiny_checkpoint), "--trials", str(trials),
                "--no-latency", "--final-epochs", "0", "--quiet", "--storage", _plain(pg_url), "--study-name", name,
                "--heartbeat", "1", "--out", str(outs[w]), *(["--no-warm-start"] if w == "b" else [])]

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}

    def spawn(w, *extra):
        return subprocess.Popen([sys.executable, "-c", SLOW_MAIN, "1.0", *args(w), *extra], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_rows(w, n, proc):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and len(_rows(outs[w] / "results.csv")) < n:
            time.sleep(0.2)
        assert proc.poll() is None, f"worker {w} ended early: {proc.stderr.read()[-2000:]}"

    a = spawn("a")  # enqueues the warm-start trials; b, started with it, leaves that to a
    b = spawn("b")
    try:
        wait_rows("b", 1, b)
        time.sleep(0.3)
        b.send_signal(signal.SIGKILL)
        b.wait(timeout=30)
        before = _rows(outs["b"] / "results.csv")
        study = optuna.load_study(study_name=name, storage=pg_url)
        owner_b = str(outs["b"].resolve())
        dead = [t.number for t in study.trials if t.state == TrialState.RUNNING and t.user_attrs.get(OWNER_ATTR)
                == owner_b]
        # the live worker notices the silence (3 heartbeats) and fails b's trial, which is then retried
        deadline = time.monotonic() + 60
        while dead and a.poll() is None and time.monotonic() < deadline:
            if study.trials[dead[0]].state != TrialState.RUNNING:
                break
            time.sleep(0.3)
        failed_by_heartbeat = bool(dead) and study.trials[dead[0]].state == TrialState.FAIL
        resumed = subprocess.run([sys.executable, "-m", "agent.cli.main", *args("b"), "--resume"], cwd=REPO,
                                 env=env, capture_output=True, text=True, timeout=600)
        assert a.wait(timeout=600) == 0, a.stderr.read()[-3000:]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    # 0, or 1 when none of b's own few rows meets the FLOPs target: the resume itself must finish cleanly
    assert resumed.returncode in (0, 1), resumed.stderr[-3000:]
    assert "search failed" not in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert (outs["b"] / "summary.json").is_file()

    study = optuna.load_study(study_name=name, storage=pg_url)
    by_number = {t.number: t for t in study.trials}
    rows = {w: _rows(outs[w] / "results.csv") for w in outs}
    assert rows["b"][:len(before)] == before, "b's finished rows were lost or rewritten"
    for w, out in outs.items():
        for row in rows[w]:  # every row is a finished trial of the study, with this row's policy
            t = by_number[int(row["trial"])]
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (w, row["trial"], t.state)
            assert t.user_attrs["policy_key"] == row["policy_key"] and t.user_attrs[ROW_ATTR] == str(out.resolve())
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    every = rows["a"] + rows["b"]
    assert len(every) == trials, "--trials is the study's total over both workers"
    assert len({r["policy_key"] for r in every}) == len(every), "a finished trial was evaluated twice"
    assert rows["a"] and len(rows["b"]) >= 1
    if dead:  # b died inside a trial: it was failed (by a's heartbeat check or b's resume) and retried
        assert by_number[dead[0]].state == TrialState.FAIL
        retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead[0]
                   or t.user_attrs.get("prunepilot_retry_of") == dead[0]]
        assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        # the retry carries what the dead trial had sampled (all of it, unless it died while sampling)
        assert by_number[dead[0]].params.items() <= retries[0].params.items()
    print(f"killed trial {dead}, failed by the live worker's heartbeat check: {failed_by_heartbeat}; trials:",
          [(t.number, t.state.name, os.path.basename(t.user_attrs.get(OWNER_ATTR, "")),
            t.system_attrs.get("failed_trial", t.user_attrs.get("prunepilot_retry_of"))) for t in study.trials])


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_heartbeat_exits_2(value, tmp_path, capsys):
    from agent.cli import main

    assert main(["search", "--method", "optuna", "--heartbeat", value, "--out", str(tmp_path / "o")]) == 2
    assert "--heartbeat" in capsys.readouterr().err
