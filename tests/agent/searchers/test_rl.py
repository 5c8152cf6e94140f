import json
import os
import subprocess
import sys
import warnings

import pytest

from agent.constraints import Constraints
from agent.errors import UserInputError
from agent.evaluation import EvalSettings
from agent.search.results import ResultLog
from agent.search.session import SearchConfig, SearchSession
from agent.searchers import get_searcher
from agent.searchers.rl import RLConfig, RLSearcher
from agent.searchers.rl.search import _AgentView

from ...conftest import REPO

# the env's default evaluation settings: the sensitivity profile is shared with tests/env
SETTINGS = EvalSettings(eval_limit=512, measure_latency=False)
TINY = {"gradient_steps": 4, "hidden": (16, 16), "batch_size": 16}


def _session(task, tmp_path, *, trials=6, target=0.5, **options):
    log = ResultLog.open(tmp_path / "results.csv", resume=False)
    return SearchSession(task=task, constraints=Constraints(flops_target=target), settings=SETTINGS,
                         config=SearchConfig(method="rl", trials=trials, options=options), log=log)


@pytest.mark.parametrize(("algo", "mode"), [("td3", "ratio"), ("ddpg", "threshold"), ("ppo", "ratio")])
def test_tiny_rl_search_logs_every_episode_and_finds_a_feasible_best(tiny_task, tmp_path, algo, mode):
    session = _session(tiny_task, tmp_path, trials=5)
    searcher = RLSearcher(RLConfig(algo=algo, episodes=5, action_mode=mode, warmup_episodes=1,
                                   ppo_episodes_per_update=2, **TINY))
    searcher.run(session)
    assert searcher.episodes_run == 5 and len(searcher.rewards) == 5
    rows = list(ResultLog.open(tmp_path / "results.csv", resume=True).results())
    notes = (tmp_path / "results.csv").read_text().splitlines()[1:]
    # identical policies are served from the session cache; every distinct one is a row
    assert 1 <= len(rows) <= 5 and len(rows) == len(session.results())
    assert f"rl-{algo} episode 1 (demo)" in notes[0]
    assert all(r.flops_ratio <= 0.5 for _, r in rows)
    best = session.best()
    assert best is not None and best.feasible and best is searcher.best
    assert best.accuracy == max(r.accuracy for _, r in rows if r.feasible)
    # the demonstration is the uniform policy meeting the target
    demo = rows[0][1].policy.ratios
    assert max(demo.values()) - min(demo.values()) < 0.05


def test_rl_stops_at_the_trial_budget(tiny_task, tmp_path):
    session = _session(tiny_task, tmp_path, trials=2)
    searcher = RLSearcher(RLConfig(episodes=8, warmup_episodes=8, **TINY))
    with pytest.warns(UserWarning, match="exceeds the 2 trials left"):
        searcher.run(session)
    assert len(session.results()) == 2 and session.trials_left() == 0


def test_config_comes_from_search_options_and_rejects_bad_values():
    cfg = RLConfig.from_options({"rl_algo": "ppo", "episodes": 9, "action_mode": "threshold", "reward": "acc_flops",
                                 "sampler": "tpe"})
    assert (cfg.algo, cfg.episodes, cfg.action_mode, cfg.reward) == ("ppo", 9, "threshold", "acc_flops")
    assert cfg.warmup(60) == 15
    for bad, msg in [({"rl_algo": "sac"}, "unknown --rl-algo 'sac'"), ({"episodes": 0}, "--episodes"),
                     ({"reward": "speed"}, "unknown reward"), ({"action_mode": "mask"}, "unknown --action-mode")]:
        with pytest.raises(UserInputError, match=msg):
            RLConfig.from_options(bad)
    assert get_searcher("rl") is RLSearcher


def test_agent_view_spreads_actions_and_baselines_rewards(tiny_task):
    import numpy as np

    from env import LayerPruningEnv

    view = _AgentView(LayerPruningEnv(tiny_task), decay=0.5)
    assert np.allclose(view.to_env(np.array([-1.0, 0.0, 1.0])), [0.0, 0.5, 1.0])
    assert np.allclose(view.to_agent(view.to_env(np.array([-0.3]))), [-0.3])
    assert view.shape(-0.5) == 0.0  # the first episode sets the baseline
    better, worse = view.shape(-0.1), view.shape(-0.9)
    assert better > 0 > worse


def _run(*args):
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_cli_rl_search_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "rl"
    r = _run("search", "--method", "rl", "--rl-algo", "td3", "--episodes", "2", "--trials", "2", "--checkpoint",
             str(tiny_checkpoint), "--flops-target", "0.5", "--eval-limit", "512", "--no-latency",
             "--final-epochs", "0", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feasible"] and summary["best"]["flops_ratio"] <= 0.5
    assert summary["searcher"].startswith("rl(td3")
    assert len((out / "results.csv").read_text().splitlines()) >= 2


@pytest.mark.parametrize(("flag", "value"), [("--rl-algo", "sac"), ("--reward", "speed"), ("--action-mode", "mask"),
                                             ("--episodes", "0")])
def test_cli_rejects_bad_rl_options_before_any_work(tmp_path, flag, value, capsys):
    from agent.cli import main

    with warnings.catch_warnings():
        code = main(["search", "--method", "rl", flag, value, "--out", str(tmp_path / "x")])
    assert code == 2 and value in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_default_reward_follows_the_constraints():
    assert RLConfig().reward_for(Constraints(flops_target=0.5)) == "acc"
    assert RLConfig().reward_for(Constraints(max_acc_drop=1.0)) == "acc_flops"
    assert RLConfig(reward="lagrangian").reward_for(Constraints(flops_target=0.5)) == "lagrangian"
