import pytest

from agent.constraints import Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.evaluation import EvalSettings
from agent.search.results import ResultLog
from agent.search.session import SearchConfig, SearchSession
from agent.searchers import get_searcher


def _session(task, tmp_path, constraints, method, settings=None, trials=12, **kw):
    settings = settings or EvalSettings(measure_latency=False)
    log = ResultLog.open(tmp_path / f"{method}.csv", resume=False)
    return SearchSession(task=task, constraints=constraints, settings=settings,
                         config=SearchConfig(method=method, trials=trials, **kw), log=log)


@pytest.mark.parametrize("method", ["uniform", "global", "greedy"])
@pytest.mark.parametrize("target", [0.3, 0.5])
def test_baselines_hit_their_flops_target(tiny_task, tmp_path, method, target):
    s = _session(tiny_task, tmp_path, Constraints(flops_target=target), method)
    get_searcher(method)().run(s)
    best = s.best()
    assert best is not None and best.feasible
    assert best.flops_ratio <= target
    if method == "uniform":
        assert best.flops_ratio >= target - 0.03, "uniform bisection lands just under the target"
    assert len(s.log) >= 1 and s.log.path.exists()


def test_uniform_with_latency_target_is_met_by_measurement(tiny_task, tmp_path):
    from agent.measure import LatencyConfig

    settings = EvalSettings(latency=LatencyConfig(batch_size=64, warmup=2, repeats=7))
    s = _session(tiny_task, tmp_path, Constraints(latency_target=LatencyTarget(0.8)), "uniform", settings)
    get_searcher("uniform")().run(s)
    best = s.best()
    assert best is not None and best.latency_ratio <= 0.8


def test_accuracy_budget_only_searches_the_largest_safe_ratio(tiny_task, tmp_path):
    s = _session(tiny_task, tmp_path, Constraints(max_acc_drop=1.0), "uniform", trials=8)
    get_searcher("uniform")().run(s)
    feasible = [r for r in s.results() if r.feasible]
    assert feasible and all(r.acc_drop <= 1.0 for r in feasible)
    assert len(s.results()) <= 8
    assert max(r.flops_ratio for r in s.results()) > min(r.flops_ratio for r in feasible) or len(feasible) == 1


def test_greedy_prefers_insensitive_units(tiny_task, tmp_path):
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.6), "greedy")
    get_searcher("greedy")().run(s)
    best = s.best()
    prof = s.sensitivity()
    ratios = best.policy.ratios
    most_sensitive = max(prof.units, key=lambda u: prof.drop(u, 0.5))
    least_sensitive = min(prof.units, key=lambda u: prof.drop(u, 0.5) / max(prof.macs_share[u], 1e-6))
    assert ratios[least_sensitive] >= ratios[most_sensitive]


def test_unreachable_target_is_a_user_error(tiny_task, tmp_path):
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.01), "uniform")
    with pytest.raises(UserInputError, match="cannot be met even at max pruning"):
        get_searcher("uniform")().run(s)


def test_missing_target_is_a_user_error(tiny_task, tmp_path):
    s = _session(tiny_task, tmp_path, Constraints(), "uniform")
    with pytest.raises(UserInputError, match="needs a target"):
        get_searcher("uniform")().run(s)


def test_unknown_method():
    with pytest.raises(UserInputError, match="unknown method 'annealing'"):
        get_searcher("annealing")


def test_greedy_under_a_latency_target_also_evaluates_a_faster_backup(tiny_task, tmp_path):
    """Confirmation re-measures latency; greedy leaves a continued, cheaper policy to fall back on."""
    from agent.measure import LatencyConfig

    settings = EvalSettings(latency=LatencyConfig(batch_size=64, warmup=2, repeats=7))
    s = _session(tiny_task, tmp_path, Constraints(latency_target=LatencyTarget(0.8)), "greedy", settings)
    get_searcher("greedy")().run(s)
    import csv

    results = s.results()
    notes = [row["note"] for row in csv.DictReader(s.log.path.open())]
    # the greedy policy (re-aimed after a measured miss, at most twice), then the backup continued from the last
    assert 2 <= len(results) <= 4 and notes[-1] == "greedy latency backup"
    assert all(n.startswith("greedy steps=") for n in notes[:-1])
    assert all("re-aimed" in n for n in notes[1:-1])
    main, backup = results[-2], results[-1]
    assert all(backup.policy.ratios[u] >= main.policy.ratios[u] for u in s.unit_names), "the walk continues"
    assert backup.policy.ratios != main.policy.ratios
    assert backup.flops_ratio <= main.flops_ratio


@pytest.mark.parametrize("model", ["tiny", "tests.agent.user_models:make_small_resnet"])
def test_global_pruning_under_round_to_prunes_more_as_its_ratio_grows(tiny_task, tmp_path, model):
    """Torch-Pruning leaves a small group whole when the few channels it would keep round to 0 under round_to;
    the policy must not: a unit left whole at a high global ratio made the cost jump up and the bisection fail."""
    from agent.searchers.baselines import global_pruning_ratios
    from agent.tasks import build_task

    task = tiny_task if model == "tiny" else build_task(model=model, dataset="mnist1d", train_epochs=1)
    s = _session(task, tmp_path, Constraints(flops_target=0.5), "global", round_to=8)
    steps = [global_pruning_ratios(s, r) for r in (0.3, 0.6, 0.9, 0.99)]
    flops = [s.predict(s.make_policy(ratios)).flops_ratio for ratios in steps]
    assert flops == sorted(flops, reverse=True), flops
    assert all(r > 0.5 for r in steps[-1].values()), steps[-1]
    assert steps[-1] == dict.fromkeys(s.unit_names, s.config.max_ratio)
