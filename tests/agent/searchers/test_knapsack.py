"""The knapsack searcher: budgets met by prediction and evaluation, more kept importance than uniform."""

import pytest

from agent.constraints import LATENCY_MARGIN, Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.evaluation import EvalSettings, get_engine
from agent.measure import LatencyConfig
from agent.search.results import ResultLog
from agent.search.session import SearchConfig, SearchSession
from agent.searchers import get_searcher
from agent.searchers.baselines import uniform_policy
from agent.searchers.knapsack.search import knapsack_policy, summed_importance, width_options


def _session(task, tmp_path, constraints, settings=None, **kw):
    settings = settings or EvalSettings(measure_latency=False)
    log = ResultLog.open(tmp_path / "knapsack.csv", resume=False)
    return SearchSession(task=task, constraints=constraints, settings=settings,
                         config=SearchConfig(method="knapsack", trials=5, **kw), log=log)


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_knapsack_meets_the_flops_budget_with_more_importance_than_uniform(tiny_task, tmp_path, target):
    s = _session(tiny_task, tmp_path, Constraints(flops_target=target))
    policy = knapsack_policy(s, value="importance")
    uniform = uniform_policy(s)
    assert s.predict(policy).flops_ratio <= target and s.probe(policy).flops_ratio <= target
    # at no more predicted cost than uniform's, it keeps more summed importance (its objective)
    assert s.predict(policy).flops_ratio <= s.predict(uniform).flops_ratio + 0.02
    assert summed_importance(s, policy) > summed_importance(s, uniform)
    get_searcher("knapsack")().run(s)
    assert len(s.results()) == 1, "one evaluation"
    best = s.best()
    assert best is not None and best.feasible and best.flops_ratio <= target


def test_sensitivity_valued_knapsack_predicts_less_accuracy_loss_than_uniform(tiny_task, tmp_path):
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.3))
    policy, uniform = knapsack_policy(s), uniform_policy(s)  # default value: the sensitivity curves
    assert s.predict(policy).flops_ratio <= 0.3 and s.probe(policy).flops_ratio <= 0.3
    profile = s.sensitivity()

    def additive_drop(p):
        return sum(profile.drop(u, p.ratio(u)) for u in profile.units)

    # its objective: the summed single-unit drops, no larger than uniform's at no more predicted cost
    assert s.predict(policy).flops_ratio <= s.predict(uniform).flops_ratio + 0.02
    assert additive_drop(policy) <= additive_drop(uniform) + 1e-9
    assert knapsack_policy(s, value="importance").ratios != policy.ratios, "the value source matters"


def test_knapsack_value_option_is_a_flag_and_is_checked():
    from agent.cli import build_parser
    from agent.searchers.knapsack.options import KnapsackOptions

    args = build_parser().parse_args(["search", "--out", "x", "--method", "knapsack", "--knapsack-value", "importance"])
    assert args.knapsack_value == "importance"
    assert KnapsackOptions.from_options({"knapsack_value": "importance"}).value == "importance"
    with pytest.raises(UserInputError, match="knapsack-value"):
        KnapsackOptions.from_options({"knapsack_value": "magic"})


def test_knapsack_meets_a_latency_table_budget(tiny_task, tmp_path):
    settings = EvalSettings(latency=LatencyConfig(batch_size=32, warmup=1, repeats=5, threads=1))
    engine = get_engine(tiny_task)
    engine.attach_latency_model(settings, round_to=8)
    try:
        s = _session(tiny_task, tmp_path, Constraints(latency_target=LatencyTarget(0.7)), settings, round_to=8)
        policy = knapsack_policy(s)
        predicted = s.predict(policy).latency_ratio
        assert predicted is not None and predicted <= 0.7
        kept = engine.kept_channels(engine.plan(policy, settings))
        assert all(k % 8 == 0 or k == u.channels for u, k in zip(engine.units, kept.values(), strict=True))
        # the budget binds: no unit can keep one more option of channels within the (margined) budget
        channels = {u.name: u.channels for u in engine.units}
        for u, options in width_options(s).items():
            wider = [k for k in options if k > kept[u]]
            if wider:
                more = s.make_policy({**policy.ratios, u: 1.0 - wider[0] / channels[u]})
                assert s.predict(more).latency_ratio > 0.7 * (1 - LATENCY_MARGIN) - 1e-9, (u, kept[u], wider[0])
    finally:
        engine.latency_model = None


def test_knapsack_spends_the_budget_where_values_are_flat(tiny_task, tmp_path, monkeypatch):
    """With no value signal at all, ties go to wider units: the FLOPs budget is used, not left over."""
    import numpy as np

    from agent.searchers.knapsack import search

    monkeypatch.setitem(search.VALUES, "flat", lambda s: {u.name: np.zeros(u.channels + 1) for u in s.engine.units})
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.5))
    flops = s.predict(knapsack_policy(s, value="flat")).flops_ratio
    assert 0.4 < flops <= 0.5


def test_knapsack_needs_a_cost_budget(tiny_task, tmp_path):
    with pytest.raises(UserInputError, match="cost budget"):
        get_searcher("knapsack").check(config=SearchConfig(method="knapsack"), settings=EvalSettings(),
                                       constraints=Constraints(max_acc_drop=1.0))
    s = _session(tiny_task, tmp_path, Constraints(flops_target=0.001))
    with pytest.raises(UserInputError, match="cannot be met"):
        knapsack_policy(s)
