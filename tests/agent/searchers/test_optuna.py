"""The optuna / nsga2 searchers: constraints, warm start, failures, pruning, crash + resume, Pareto fronts."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

import agent.search.session
from agent.cli import main
from agent.constraints import Constraints
from agent.errors import UserInputError
from agent.evaluation import EvalSettings
from agent.search.results import ResultLog
from agent.search.session import SearchConfig, SearchSession
from agent.searchers import get_searcher
from agent.searchers.baselines import greedy_policy, uniform_policy
from agent.searchers.optuna.study import WARM_ATTR, check_storage_url, open_study

from ...conftest import REPO

SETTINGS = EvalSettings(measure_latency=False)


def _session(task, out, constraints, method="optuna", trials=6, settings=SETTINGS, **options):
    log = ResultLog.open(out / "results.csv", resume=False)
    config = SearchConfig(method=method, trials=trials, seed=0, options=options)
    return SearchSession(task=task, constraints=constraints, settings=settings, config=config, log=log,
                         output_dir=out)


def _study(out, method="optuna"):
    return optuna.load_study(study_name=f"prunepilot-{method}", storage=f"sqlite:///{out / 'study.db'}")


def _rows(out):
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_constraints_reach_optuna_through_set_constraint(tiny_task, tmp_path):
    c = Constraints(flops_target=0.5, max_acc_drop=3.0)
    s = _session(tiny_task, tmp_path, c, trials=7, budget_fit=False, warm_start=False)
    get_searcher("optuna")().run(s)
    study, results = _study(tmp_path), s.results()
    assert len(results) == 7
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done, "no trial completed"
    by_key = {r.policy.key(): r for r in results}
    for t in done:
        r = by_key[t.user_attrs["policy_key"]]
        assert set(t.constraints) == ({"flops"} if r.status == "rejected" else {"flops", "acc_drop"})
        assert all(v <= 0 for v in t.constraints.values()) == (r.ok and r.feasible)
        if r.ok:
            assert t.value == pytest.approx(r.accuracy)
    assert any(r.status == "rejected" or not r.feasible for r in results), "a tiny random study should miss once"
    feasible = [t for t in done if all(v <= 0 for v in t.constraints.values())]
    if feasible:
        assert study.best_trial.value == pytest.approx(s.best().accuracy)
    for r in results:
        if r.status == "rejected":
            assert "predicted FLOPs" in r.reason


def test_warm_start_trials_come_first_and_budget_fit_lands_on_target(tiny_task, tmp_path):
    from agent.searchers.knapsack.search import knapsack_policy

    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5), trials=5)
    get_searcher("optuna")().run(s)
    study = _study(tmp_path)
    assert [t.user_attrs.get(WARM_ATTR) for t in study.trials[:4]] == ["uniform", "greedy", "knapsack", None]
    keys = [r.policy.key() for r in s.results()]
    assert keys[:3] == [uniform_policy(s).key(), greedy_policy(s).key(), knapsack_policy(s).key()]
    for r in s.results()[3:]:  # sampled policies are scaled onto the budget: feasible and close to it
        assert r.ok and r.feasible and 0.4 < r.flops_ratio <= 0.5


def test_fit_to_budget_keeps_the_shape_and_lands_on_the_target(tiny_task, tmp_path, monkeypatch):
    from agent.evaluation import get_engine
    from agent.policy import Policy
    from agent.searchers.optuna.search import fit_to_budget

    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5))
    names = s.unit_names
    bounds = dict.fromkeys(names, (0.0, 0.9))
    for shape in ({u: 0.05 * i for i, u in enumerate(names)}, {u: 0.6 for u in names}):
        fitted = fit_to_budget(s, Policy(shape), bounds)
        exact = s.probe(fitted, latency=False)
        assert 0.45 < exact.flops_ratio <= 0.5
        order = sorted(names, key=lambda u: shape[u])
        assert [fitted.ratio(u) for u in order] == sorted(fitted.ratio(u) for u in order)
    # no cost target: nothing to fit to, even with a latency model attached
    monkeypatch.setattr(get_engine(tiny_task), "latency_model", object())
    free = _session(tiny_task, tmp_path / "free", Constraints(max_acc_drop=1.0))
    shape = Policy({u: 0.3 for u in names})
    assert fit_to_budget(free, shape, bounds) is shape


def test_candidates_predicted_far_over_the_latency_budget_are_rejected_unevaluated(tiny_task, tmp_path,
                                                                                  fast_settings, monkeypatch):
    from agent.constraints import LatencyTarget
    from agent.evaluation import get_engine

    class SlowTable:  # a latency model predicting every candidate at 1000x the dense latency
        def predict(self, kept_channels):
            return 1000.0 if kept_channels else 1.0

        def predict_ratio(self, kept_channels):
            return self.predict(kept_channels) / self.predict({})

    evaluated = []
    monkeypatch.setattr(agent.search.session, "evaluate_policy", lambda *a, **k: evaluated.append(1))
    monkeypatch.setattr(get_engine(tiny_task), "latency_model", SlowTable())
    c = Constraints(latency_target=LatencyTarget(0.8))
    s = _session(tiny_task, tmp_path, c, trials=3, settings=fast_settings, warm_start=False)
    get_searcher("optuna")().run(s)
    assert not evaluated
    assert [r.status for r in s.results()] == ["rejected"] * 3
    dense_ms = get_engine(tiny_task).dense(fast_settings).latency_ms or 1.0
    assert all("predicted latency" in r.reason and r.latency_pred_ms == pytest.approx(1000.0 * dense_ms)
               for r in s.results())
    trials = _study(tmp_path).trials
    assert all(t.state == TrialState.COMPLETE and t.constraints["latency"] > 0 for t in trials)


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tiny_task, tmp_path, monkeypatch):
    real, calls = agent.search.session.evaluate_policy, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated CUDA launch failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(agent.search.session, "evaluate_policy", flaky)
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5), trials=4)
    get_searcher("optuna")().run(s)
    statuses = [r.status for r in s.results()]
    assert len(statuses) == 4 and statuses.count("failed") == 1 and statuses[1] == "failed"
    assert "simulated CUDA launch failure" in s.results()[1].reason
    states = [t.state for t in _study(tmp_path).trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 3


def test_pruner_stops_weak_candidates_during_fine_tune(tiny_task, tmp_path, monkeypatch):
    import agent.searchers.optuna.search as optuna_search

    # a pruner that stops any trial after its first report, to make the path deterministic
    monkeypatch.setattr(optuna_search, "make_pruner", lambda name: optuna.pruners.ThresholdPruner(lower=101.0))
    settings = EvalSettings(measure_latency=False, finetune_steps=16)
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5), trials=2, settings=settings, warm_start=False)
    get_searcher("optuna")().run(s)
    assert [r.status for r in s.results()] == ["pruned", "pruned"]
    assert "after fine-tune chunk 1" in s.results()[0].reason
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [0] for t in trials)


def test_nsga2_front_is_non_dominated_and_meets_its_constraints(tiny_task, tmp_path):
    c = Constraints(flops_target=0.7, max_acc_drop=40.0)
    s = _session(tiny_task, tmp_path, c, method="nsga2", trials=10, objective="flops")
    searcher = get_searcher("nsga2")()
    searcher.run(s)
    front = searcher.front
    assert front
    feasible = [r for r in s.results() if r.ok and r.feasible]
    for _, r in front:
        assert r.flops_ratio <= 0.7 and r.acc_drop <= 40.0 and r.feasible
        assert not any(o.accuracy >= r.accuracy and o.flops_ratio <= r.flops_ratio
                       and (o.accuracy > r.accuracy or o.flops_ratio < r.flops_ratio) for o in feasible)
    rows = _rows_of(tmp_path / "pareto.csv")
    assert [int(x["trial"]) for x in rows] == [t for t, _ in front]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    study = _study(tmp_path, "nsga2")
    assert study.directions[1].name == "MINIMIZE"
    # results.csv's trial column is the study's trial number (they used to drift apart)
    rows_csv = _rows(tmp_path)
    assert rows_csv and all(study.trials[int(r["trial"])].user_attrs.get("policy_key") == r["policy_key"]
                            for r in rows_csv)


def _rows_of(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


SLOW_MAIN = """
import sys, time
import agent.search.session
real = agent.search.session.evaluate_policy
def slow(*a, **k):
    time.sleep(float(sys.argv[1]))
    return real(*a, **k)
agent.search.session.evaluate_policy = slow
from agent.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_mid_search_then_resume_keeps_every_finished_trial(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    args = ["search", "--method", "optuna", "--checkpoint", str(tiny_checkpoint), "--trials", "6", "--no-latency",
            "--final-epochs", "0", "--quiet", "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_MAIN, "1.0", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "results.csv").exists() and len(_rows(out)) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"search ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _rows(out)
    study = _study(out)
    complete_before = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    running = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    logged = {int(x["trial"]) for x in before}
    assert 3 <= len(before) < 6 and len(complete_before) <= len(before)

    r = subprocess.run([sys.executable, "-m", "agent.cli.main", *args, "--resume"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _rows(out)
    assert len(after) == 6
    assert after[:len(before)] == before, "finished trials were lost or rewritten"
    assert len({x["policy_key"] for x in after}) == 6, "a finished trial was evaluated again"
    study = _study(out)
    for row in after:  # results.csv's trial column is the study's trial number
        t = study.trials[int(row["trial"])]
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs["policy_key"] == row["policy_key"]
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert all(study.trials[n].state == TrialState.COMPLETE for n in complete_before)
    # the interrupted trial: told from its row if it was logged, else marked FAIL and re-run under a new number
    assert [n for n in running if study.trials[n].state == TrialState.FAIL] == [n for n in running if n not in logged]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_trials"] == len(before) and summary["feasible"]


def test_trial_logged_but_not_told_is_not_rerun_on_resume(tiny_task, tmp_path, monkeypatch):
    from agent.searchers.optuna.search import OptunaSearcher

    class Killed(BaseException):
        pass

    real_tell, told = OptunaSearcher._tell, []

    def dies_on_third(self, *args, **kwargs):
        told.append(1)
        if len(told) == 3:
            raise Killed  # the process "dies" after the row is logged, before Optuna hears of it
        return real_tell(self, *args, **kwargs)

    monkeypatch.setattr(OptunaSearcher, "_tell", dies_on_third)
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5), trials=4)
    with pytest.raises(Killed):
        get_searcher("optuna")().run(s)
    assert len(_rows(tmp_path)) == 3
    assert [t.state for t in _study(tmp_path).trials][2] == TrialState.RUNNING
    monkeypatch.setattr(OptunaSearcher, "_tell", real_tell)

    log = ResultLog.open(tmp_path / "results.csv", resume=True)
    resumed = SearchSession(task=tiny_task, constraints=s.constraints, settings=SETTINGS, config=s.config, log=log,
                            output_dir=tmp_path)
    get_searcher("optuna")().run(resumed)
    rows = _rows(tmp_path)
    assert len(rows) == 4 and len({r["policy_key"] for r in rows}) == 4
    trials = _study(tmp_path).trials
    assert trials[2].state == TrialState.COMPLETE, "the logged result is told to Optuna on resume"
    assert trials[2].value == pytest.approx(float(rows[2]["accuracy"]))
    assert not any("prunepilot_retry_of" in t.user_attrs for t in trials)
    for row in rows:
        assert trials[int(row["trial"])].user_attrs["policy_key"] == row["policy_key"]


@pytest.mark.parametrize("argv,needle", [
    (["--sampler", "annealing"], "annealing"),
    (["--pruner", "hyperband"], "hyperband"),
    (["--objective", "energy"], "energy"),
    (["--storage", "redis://localhost"], "redis://localhost"),
    (["--search-space", "spiral"], "spiral"),
    (["--method", "nsga2", "--objective", "latency", "--no-latency"], "--no-latency"),
    (["--method", "nsga2", "--pruner", "median"], "multi-objective"),
])
def test_bad_optuna_options_exit_2_before_any_work(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["search", "--method", "optuna", *argv, "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunepilot: error: ") and needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_space_file_exits_2_and_writes_nothing(tmp_path, tiny_checkpoint, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("units:\n  nosuchlayer: [0.0, 0.5]\n")
    out = tmp_path / "out"
    assert main(["search", "--method", "optuna", "--checkpoint", str(tiny_checkpoint), "--search-space", str(bad),
                 "--out", str(out), "--quiet"]) == 2
    assert "nosuchlayer" in capsys.readouterr().err
    assert not out.exists()
    bad.write_text("high: [0.5\n")
    assert main(["search", "--method", "optuna", "--search-space", str(bad), "--out", str(out)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_storage_urls(tmp_path):
    for url in ("sqlite:///x/study.db", "postgresql://user:pw@db.example:5432/studies", "postgresql+psycopg2://h/d"):
        assert check_storage_url(url) == url
    with pytest.raises(UserInputError, match="cannot open|driver"):
        open_study(out_dir=tmp_path, storage_url="postgresql://nobody@127.0.0.1:1/none", study_name="s",
                   directions=["maximize"], sampler=None, pruner=None, fingerprint={}, fresh=True)
