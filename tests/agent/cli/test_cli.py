"""End-to-end CLI runs (as a user would) and the bad-input table (exit 2, one line, nothing written)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from agent.cli import main
from agent.cli.common import MODEL_HELP
from agent.deploy.artifacts import load_pruned_model
from agent.tasks.task import DEFAULT_MODEL

from ...conftest import REPO


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_plain_search_runs_end_to_end(tmp_path):
    """The README's main job (the default task, shorter training)."""
    out = tmp_path / "run"
    r = _run("search", "--out", str(out), "--train-epochs", "3", "--final-epochs", "0.5", "--latency-batch", "64",
             "--quiet")
    assert r.returncode == 0, r.stderr
    assert "best of" in r.stdout and "pruned" in r.stdout
    for name in ("results.csv", "best_policy.json", "pruned_model.pt", "summary.json", "run_config.json"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feasible"] and summary["best"]["flops_ratio"] <= 0.5
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    for col in ("trial", "method", "ratios", "flops_ratio", "params_ratio", "latency_ms", "latency_ratio",
                "accuracy", "acc_drop", "feasible", "wall_s"):
        assert col in header
    model = load_pruned_model(out / "pruned_model.pt")
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == pytest.approx(summary["best"]["params"])
    assert summary["final"]["test_accuracy"] > 50
    assert json.loads((out / "run_config.json").read_text())["task"]["model"] == DEFAULT_MODEL


def test_help_names_the_default_model():
    assert f"{DEFAULT_MODEL} (default)" in MODEL_HELP


def test_uniform_lands_near_half_flops_and_is_faster(tmp_path, tiny_checkpoint):
    out = tmp_path / "u"
    r = _run("search", "--method", "uniform", "--flops-target", "0.5", "--checkpoint", str(tiny_checkpoint),
             "--out", str(out), "--final-epochs", "0", "--latency-batch", "256", "--no-latency-model", "--quiet")
    assert r.returncode == 0, r.stderr
    best = json.loads((out / "summary.json").read_text())["best"]
    assert 0.47 <= best["flops_ratio"] <= 0.5
    assert best["params_ratio"] < 0.6
    assert best["latency_ratio"] < 0.95


def test_train_then_sensitivity(tmp_path):
    r = _run("train", "--dataset", "digits", "--model", "lenet", "--epochs", "2", "--out", str(tmp_path / "t"),
             "--quiet")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "t" / "dense.pt"
    assert json.loads((tmp_path / "t" / "train.json").read_text())["model"] == "lenet"
    r = _run("sensitivity", "--checkpoint", str(ckpt), "--out", str(tmp_path / "s"), "--ratios", "0.3,0.6",
             "--latency-batch", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "sensitivity.csv").exists() and (tmp_path / "s" / "sensitivity.png").exists()


def test_resume_does_not_rerun_finished_trials(tmp_path, tiny_checkpoint):
    out = tmp_path / "r"
    args = ["search", "--method", "uniform", "--flops-target", "0.5", "--checkpoint", str(tiny_checkpoint),
            "--out", str(out), "--final-epochs", "0", "--quiet", "--no-latency"]
    assert _run(*args).returncode == 0
    rows = (out / "results.csv").read_text().splitlines()
    r = _run(*args)
    assert r.returncode == 2 and "--resume" in r.stderr  # refuses to clobber
    first = json.loads((out / "summary.json").read_text())
    assert _run(*args, "--resume").returncode == 0
    assert (out / "results.csv").read_text().splitlines() == rows
    # the report of the resumed search counts both sessions' wall time, not only the last one's
    sessions = json.loads((out / "sessions.json").read_text())
    assert [s["ended"] for s in sessions] == ["finished", "finished"] and sessions[1]["trials"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sessions"] == 2
    assert summary["wall_s_total"] == pytest.approx(sessions[0]["wall_s"] + summary["wall_s"], abs=1e-2)
    assert summary["wall_s_total"] > first["wall_s"]
    assert main(["report", str(out), "--quiet"]) == 0
    assert "over 2 sessions" in (out / "report.md").read_text()


BAD_INPUTS = [
    (["search", "--model", "resnet7"], "resnet7"),
    (["search", "--dataset", "imagenet21k"], "imagenet21k"),
    (["search", "--importance", "l7"], "l7"),
    (["search", "--method", "annealing"], "annealing"),
    (["search", "--flops-target", "1.5"], "1.5"),
    (["search", "--flops-target", "0"], "--flops-target"),
    (["search", "--flops-target", "0.001"], "cannot be met"),
    (["search", "--latency-target", "12 parsecs"], "12 parsecs"),
    (["search", "--latency-target=-3ms"], "-3ms"),
    (["search", "--flops-target", "half"], "half"),
    (["search", "--unknown-flag"], "--unknown-flag"),
    (["search", "--max-acc-drop", "-1"], "-1"),
    (["search", "--max-ratio", "1.0"], "max=1.0"),
    (["search", "--trials", "0"], "--trials"),
    (["search", "--dataset", "cifar10"], "--data-root"),
    (["search", "--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["search", "--checkpoint", "/nonexistent/dense.pt"], "/nonexistent/dense.pt"),
    (["search", "--device", "cuda:7"], "cuda"),
    (["search", "--device", "tpu"], "tpu"),
    (["search", "--round-to", "0"], "round_to"),
    (["search", "--latency-target", "0.5", "--no-latency"], "--no-latency"),
    (["search", "--resume", "--overwrite"], "--resume"),
    (["search", "--model", "nosuchpkg.mod:factory"], "nosuchpkg"),
    (["search", "--final-epochs", "-1"], "--final-epochs"),
    (["search", "--kd-alpha", "2"], "--kd-alpha"),
    (["search", "--latency-batch", "0"], "latency batch"),
    (["train", "--epochs", "0"], "--epochs"),
    (["search", "--method", "optuna", "--search-space", "/nonexistent/space.yaml"], "space.yaml"),
    (["search", "--method", "optuna", "--sampler", "annealing"], "annealing"),
    (["search", "--method", "rl", "--rl-algo", "sac"], "sac"),
    (["search", "--method", "ray", "--gpus-per-trial", "-1"], "--gpus-per-trial"),
    (["sensitivity", "--ratios", "0.5,1.5"], "1.5"),
    (["evaluate", "--policy", "/nonexistent/policy.json"], "policy.json"),
]


@pytest.mark.parametrize("argv,needle", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_a_clear_message(argv, needle, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)] if argv[0] != "evaluate" else argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("prunepilot: error: ") and needle in err, err
    assert err.count("\n") == 1, "one line, no traceback"
    assert not out.exists() or not any(out.iterdir()), "bad input must not leave partial output"


def test_wrong_shape_checkpoint(tmp_path, tiny_checkpoint, capsys):
    code = main(["search", "--checkpoint", str(tiny_checkpoint), "--model", "resnet20", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "does not match model 'resnet20'" in err


def test_malformed_policy_file(tmp_path, tiny_checkpoint, capsys):
    bad = tmp_path / "p.json"
    bad.write_text('{"ratios": {"stem.0": 2.0}}')
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--policy", str(bad)]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    bad.write_text('{"ratios": {"nosuchlayer": 0.5}}')
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--policy", str(bad)]) == 2
    assert "nosuchlayer" in capsys.readouterr().err


def test_non_writable_output_dir(tmp_path, capsys, monkeypatch):
    import agent.search.run

    locked = tmp_path / "locked"
    locked.mkdir()
    # root ignores permission bits, so the filesystem's answer is simulated for the directory under test
    real_access = os.access
    monkeypatch.setattr(agent.search.run.os, "access",
                        lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    assert main(["search", "--out", str(locked / "x")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert not (locked / "x").exists()


def test_output_path_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["search", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_infeasible_search_writes_the_closest_policy_and_says_what_to_try(tmp_path, tiny_checkpoint):
    out = tmp_path / "inf"
    r = _run("search", "--method", "uniform", "--flops-target", "0.3", "--max-acc-drop", "0", "--checkpoint",
             str(tiny_checkpoint), "--eval-limit", "300", "--no-latency", "--out", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "no feasible policy in 1 evaluations" in r.stdout and '{"status"' not in r.stdout
    assert "allowed 0" in r.stdout and "over)" in r.stdout, r.stdout  # how far off, in words
    assert "--finetune-steps 100" in r.stdout and "--max-metric-drop" in r.stdout and "--flops-target" in r.stdout
    closest = json.loads((out / "closest_policy.json").read_text())
    assert closest["feasible"] is False and closest["evaluation"]["finetune_steps"] == 0
    assert closest["evaluation"]["eval_limit"] == 300
    assert "1/1" in r.stderr, "the bar of a one-shot method has one step"
    # evaluate accepts it, re-scores with its settings (same accuracy) and claims no feasibility unasked
    e = _run("evaluate", "--checkpoint", str(tiny_checkpoint), "--policy", str(out / "closest_policy.json"),
             "--no-latency", "--json", "--quiet")
    assert e.returncode == 0, e.stderr
    scored = json.loads(e.stdout)
    assert scored["accuracy"] == pytest.approx(closest["metrics"]["accuracy"], abs=1e-9)
    assert scored["feasible"] is None and scored["evaluation"]["eval_limit"] == 300
    t = _run("evaluate", "--checkpoint", str(tiny_checkpoint), "--policy", str(out / "closest_policy.json"),
             "--no-latency", "--quiet")
    assert "none given" in t.stdout and "feasible" not in t.stdout.lower().replace("infeasible", "")


def test_resume_of_a_folder_without_a_search_is_refused(tmp_path, capsys):
    assert main(["search", "--resume", "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "typo") in err and "drop --resume" in err and err.count("\n") == 1


def _readme_commands(section: str) -> list[list[str]]:
    """The `prunepilot` commands of the README's first bash block after ``section``, continuation lines joined."""
    import shlex

    text = (REPO / "README.md").read_text()
    block = text[text.index(section):].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("prunepilot ")]


@pytest.mark.slow
def test_readme_resnet20_example_works_as_written(tmp_path):
    """The "Using it" commands in order, as written (runs/ under a temp dir; latency off and a short final fine-tune
    are the only additions, neither changes which policy is feasible)."""
    extra = {"search": ["--no-latency", "--final-epochs", "0.2"], "evaluate": ["--no-latency", "--json"],
             "sensitivity": ["--no-latency"]}
    results = {}
    for argv in _readme_commands("## Using it"):
        argv = [a.replace("runs/", f"{tmp_path}/runs/") for a in argv]
        r = _run(*argv, *extra.get(argv[0], []), "--quiet")
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
        results[argv[0]] = r
    best = json.loads((tmp_path / "runs" / "s1" / "best_policy.json").read_text())
    assert best["feasible"] and best["metrics"]["flops_ratio"] <= 0.5 and best["evaluation"]["finetune_steps"] == 100
    scored = json.loads(results["evaluate"].stdout)
    assert scored["feasible"] and scored["accuracy"] == pytest.approx(best["metrics"]["accuracy"], abs=0.5)


def _subparsers():
    import argparse

    from agent.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_describes_every_option_of_every_command():
    import argparse

    missing = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}"
               for name, p in _subparsers().items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing


def test_search_space_is_a_search_option():
    groups = {g.title: [o for a in g._group_actions for o in a.option_strings]
              for g in _subparsers()["search"]._action_groups}
    assert "--search-space" in groups["search"]
    assert not any("--search-space" in opts for title, opts in groups.items() if title != "search")


def test_top_level_help_imports_no_heavy_module():
    probe = ("import sys\nfrom agent.cli.main import main\nassert main(['--help']) == 0\n"
             "print(sorted(m for m in ('torch', 'torch_pruning', 'optuna', 'ray', 'pandas', 'matplotlib', 'gymnasium',"
             " 'stable_baselines3', 'timm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run([sys.executable, "-m", "agent.cli.main", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0 and "COMMAND" in r.stdout
    assert "RuntimeWarning" not in r.stderr  # `python -m agent.cli.main` runs the module once
