"""Ray Tune executor: a local search, resume after SIGKILL, and a real `ray job submit` to a loopback cluster."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.search.results import ResultLog

from ...conftest import REPO


@pytest.fixture()
def ray_env(monkeypatch):
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {"RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield {**os.environ, **env}
    _stop_ray_under(tmp)


def _ray_pids_under(tmp: str) -> list[int]:
    """PIDs of processes whose command line names ``tmp`` (the Ray a test started there, nobody else's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if tmp.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _stop_ray_under(tmp: str) -> None:
    """Stop only the Ray processes started under ``tmp`` (never `ray stop`: it ends every Ray on the machine)."""
    for pid in _ray_pids_under(tmp):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _rows(out):
    return ResultLog.open(out / "results.csv", resume=True).rows


def test_ray_search_records_every_trial(tiny_checkpoint, tmp_path, ray_env):
    out = tmp_path / "ray"
    code = main(["search", "--method", "ray", "--checkpoint", str(tiny_checkpoint), "--trials", "4", "--concurrency",
                 "2", "--finetune-steps", "20", "--no-latency", "--final-epochs", "0", "--quiet", "--out", str(out)])
    assert code == 0
    rows = _rows(out)
    assert len(rows) == 4 and all(r["method"] == "ray" and r["note"].startswith("ray trial ") for r in rows)
    assert len({r["note"] for r in rows}) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feasible"] and summary["best"]["flops_ratio"] <= 0.5
    assert (out / "pruned_model.pt").exists()


def test_bad_ray_options_are_user_errors(capsys, tmp_path):
    assert main(["search", "--method", "ray", "--concurrency", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--concurrency" in capsys.readouterr().err
    assert main(["search", "--method", "ray", "--ray-search", "bayes", "--out", str(tmp_path / "o")]) == 2
    assert "bayes" in capsys.readouterr().err


def test_ray_resume_after_sigkill_keeps_finished_trials(tiny_checkpoint, tmp_path, ray_env):
    TRIALS = 5  # noqa: N806 - killed after 2 rows, so the resumed driver has trials left to run
    out = tmp_path / "k"
    args = [sys.executable, "-m", "agent.cli.main", "search", "--method", "ray", "--checkpoint", str(tiny_checkpoint),
            "--trials", str(TRIALS), "--concurrency", "1", "--finetune-steps", "30", "--no-latency", "--final-epochs", "0",
            "--quiet", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, env=ray_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    csv = out / "results.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not csv.exists() or len(csv.read_text().splitlines()) < 3):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    before = _rows(out)
    assert len(before) >= 2
    done = subprocess.run([*args, "--resume"], cwd=REPO, env=ray_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _rows(out)
    assert after[: len(before)] == before
    assert len(after) >= TRIALS - 1  # an in-flight trial may be restarted by Tune; none is lost
    assert len({r["note"] for r in after}) == len(after), "no trial recorded twice"
    assert (out / "summary.json").exists()


def test_ray_job_submit_to_a_loopback_cluster(tiny_checkpoint, tmp_path, ray_env):
    """As the README shows it: a relative --out lands under the caller's directory; only this cluster is stopped."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "ray_cluster_job.sh"), "--local-cluster", "--", "--checkpoint",
                        str(tiny_checkpoint), "--trials", "3", "--no-latency", "--final-epochs", "0",
                        "--out", "runs/ray-job"], cwd=tmp_path, env=ray_env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert "succeeded" in (r.stdout + r.stderr)
    out = tmp_path / "runs" / "ray-job"
    assert len(_rows(out)) == 3
    assert json.loads((out / "summary.json").read_text())["method"] == "ray"
    assert _ray_pids_under(ray_env["RAY_TMPDIR"]) == [], "the cluster it started was stopped"


def test_job_script_never_stops_every_ray_on_the_machine():
    script = (REPO / "scripts" / "ray_cluster_job.sh").read_text()
    commands = [line.split("#")[0] for line in script.splitlines()]
    assert not any("ray_bin\" stop" in c or " ray stop" in c for c in commands)
    assert "--block" in script and 'kill -TERM "$head_pid"' in script


@pytest.mark.parametrize("address", ["auto", "127.0.0.1:6390"])
def test_address_without_a_cluster_fails_fast_with_one_line(address, tmp_path, capsys, monkeypatch):
    """No cluster: one clear line, exit 2, no results.csv; loopback is not rewritten to the outward IP and hung on."""
    from ray._private import services

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))  # no `ray start` address file
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])  # other users' clusters on this machine
    out = tmp_path / "o"
    started = time.monotonic()
    assert main(["search", "--method", "ray", "--address", address, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - started < 20
    assert err.startswith("prunepilot: error: --address") and err.count("\n") == 1 and "Traceback" not in err
    if address != "auto":
        assert "127.0.0.1:6390" in err, "the loopback address is kept, not swapped for the outward IP"
    assert not out.exists()


def test_private_ray_stays_on_loopback_even_without_the_env_var(tmp_path):
    """On Linux Ray swaps 127.0.0.1 for the outward IP unless told not to; the private runtime tells it.

    Runs in a fresh interpreter, as a user would: ray imported without ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``.
    """
    script = (
        "import json, os\n"
        "from ray._private import ray_constants\n"
        "from agent.searchers.ray.tune import ray_runtime\n"
        "before = ray_constants.ENABLE_RAY_CLUSTER\n"
        "with ray_runtime(address=None, num_cpus=1) as ray:\n"
        "    nodes = sorted({n['NodeManagerAddress'] for n in ray.nodes()})\n"
        "    gcs = ray.get_runtime_context().gcs_address\n"
        "print(json.dumps({'before': before, 'nodes': nodes, 'gcs': gcs, 'after': ray_constants.ENABLE_RAY_CLUSTER,\n"
        "                  'env_after': os.environ.get('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env.update(RAY_TMPDIR=tempfile.mkdtemp(prefix="rl", dir="/tmp"), RAY_USAGE_STATS_ENABLED="0",
               PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                              cwd=REPO)
    finally:
        _stop_ray_under(env["RAY_TMPDIR"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["before"] is True, "ray on Linux without the variable would leave loopback"
    assert seen["nodes"] == ["127.0.0.1"] and seen["gcs"].startswith("127.0.0.1:")
    assert seen["after"] is True and seen["env_after"] is None, "restored for later --address joins"


def test_optuna_with_the_ray_backend_spreads_its_trials_over_ray_tune(tiny_checkpoint, tmp_path, ray_env):
    out = tmp_path / "ob"
    code = main(["search", "--method", "optuna", "--backend", "ray", "--sampler", "random", "--checkpoint",
                 str(tiny_checkpoint), "--trials", "4", "--concurrency", "2", "--no-latency", "--final-epochs", "0",
                 "--quiet", "--out", str(out)])
    assert code == 0
    rows = _rows(out)
    assert len(rows) == 4 and all(r["method"] == "optuna" and r["note"].startswith("ray trial ") for r in rows)
    assert json.loads((out / "summary.json").read_text())["feasible"]


@pytest.mark.parametrize("argv, named", [
    (["--method", "greedy", "--backend", "ray"], "greedy"),
    (["--method", "optuna", "--backend", "spark"], "spark"),
    (["--method", "ray", "--sampler", "annealing"], "annealing"),
])
def test_backends_that_do_not_fit_are_user_errors(argv, named, capsys, tmp_path):
    out = tmp_path / "o"
    assert main(["search", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists()
