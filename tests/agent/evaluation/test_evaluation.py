import dataclasses
import math

import pytest
import torch

from agent.constraints import Constraints, LatencyTarget
from agent.evaluation import EvalSettings, evaluate_policy, get_engine
from agent.policy import Policy


def test_zero_policy_reproduces_dense_metrics(tiny_task, fast_settings):
    engine = get_engine(tiny_task)
    dense = engine.dense(fast_settings)
    res = evaluate_policy(tiny_task, Policy.uniform(engine.graph.unit_names(), 0.0), settings=fast_settings)
    assert res.ok and res.accuracy == dense.accuracy and res.acc_drop == 0.0
    assert res.flops_ratio == pytest.approx(1.0) and res.params_ratio == pytest.approx(1.0)
    assert 0.5 < res.latency_ratio < 2.0  # same model, timing noise only


def test_pruned_policy_is_smaller_and_reports_everything(tiny_task, fast_settings):
    names = get_engine(tiny_task).graph.unit_names()
    res = evaluate_policy(tiny_task, Policy.uniform(names, 0.5), settings=fast_settings,
                          constraints=Constraints(flops_target=0.3))
    assert res.ok and res.flops_ratio < 0.3 and res.params_ratio < 0.3
    assert res.latency_ms > 0 and res.latency_ratio is not None
    assert 0 <= res.accuracy <= 100 and res.acc_drop == pytest.approx(res.dense_accuracy - res.accuracy)
    assert res.feasible and res.reason == ""
    assert set(res.times) >= {"apply", "finetune", "score", "measure", "total"}
    assert res.kept_channels["stem.0"] == 16
    assert res.model_mb > 0


def test_constraints_mark_infeasible_with_reasons(tiny_task, fast_settings):
    names = get_engine(tiny_task).graph.unit_names()
    c = Constraints(flops_target=0.2, latency_target=LatencyTarget(1e-6, "ms"), max_acc_drop=0.0)
    res = evaluate_policy(tiny_task, Policy.uniform(names, 0.3), settings=fast_settings, constraints=c)
    assert not res.feasible
    assert "FLOPs" in res.reason and "latency" in res.reason


def test_short_finetune_recovers_accuracy_and_reports_chunks(tiny_task, fast_settings):
    names = get_engine(tiny_task).graph.unit_names()
    policy = Policy.uniform(names, 0.6)
    no_ft = evaluate_policy(tiny_task, policy, settings=EvalSettings(measure_latency=False, bn_recalibration_batches=0))
    seen = []
    settings = EvalSettings(measure_latency=False, finetune_steps=60, finetune_chunks=3)
    ft = evaluate_policy(tiny_task, policy, settings=settings, on_chunk=lambda c, a: seen.append((c, a)))
    assert [c for c, _ in seen] == [0, 1, 2] and len(ft.intermediate) == 3
    assert ft.accuracy == seen[-1][1]
    assert ft.accuracy > no_ft.accuracy + 5


def test_bn_recalibration_helps_without_finetune(tiny_task):
    names = get_engine(tiny_task).graph.unit_names()
    policy = Policy.uniform(names, 0.4)
    raw = evaluate_policy(tiny_task, policy, settings=EvalSettings(measure_latency=False, bn_recalibration_batches=0))
    recal = evaluate_policy(tiny_task, policy, settings=EvalSettings(measure_latency=False))
    assert recal.accuracy > raw.accuracy


def test_evaluation_is_deterministic_and_leaves_dense_model_alone(tiny_task):
    names = get_engine(tiny_task).graph.unit_names()
    x = tiny_task.example_input(4)
    before = tiny_task.model(x)
    s = EvalSettings(measure_latency=False, finetune_steps=20)
    a = evaluate_policy(tiny_task, Policy.uniform(names, 0.3, importance="taylor"), settings=s)
    b = evaluate_policy(tiny_task, Policy.uniform(names, 0.3, importance="taylor"), settings=s)
    assert a.accuracy == b.accuracy and a.kept_channels == b.kept_channels
    assert torch.equal(tiny_task.model(x), before)


def test_return_model_gives_the_pruned_network(tiny_task):
    names = get_engine(tiny_task).graph.unit_names()
    res, model = evaluate_policy(tiny_task, Policy.uniform(names, 0.5), settings=EvalSettings(measure_latency=False),
                                 return_model=True)
    assert sum(p.numel() for p in model.parameters()) == res.params
    assert math.isfinite(res.accuracy)


def test_every_paired_measurement_teaches_the_latency_table_after_its_own_prediction(tiny_task, fast_settings,
                                                                                       tmp_path):
    """An evaluation's latency_pred_ms is what the table said before measuring; the table then moves towards the
    measurement. A search's latency probes teach it too, and so do a resumed search's logged rows."""
    from agent.search.results import ResultLog
    from agent.search.session import SearchConfig, SearchSession

    engine = get_engine(tiny_task)
    table = engine.attach_latency_model(fast_settings, round_to=8, cache=False)
    try:
        policy = Policy.uniform(engine.graph.unit_names(), 0.5, round_to=8)
        kept = engine.kept_channels(engine.plan(policy, fast_settings))
        before, known = table.predict_ratio(kept), len(table.measured)
        res = evaluate_policy(tiny_task, policy, settings=fast_settings)
        assert res.latency_pred_ms == pytest.approx(before * res.dense_latency_ms)
        assert len(table.measured) == known + 1
        after = table.predict_ratio(kept)
        assert abs(after - res.latency_ratio) < abs(before - res.latency_ratio) or before == res.latency_ratio

        def session(log):
            return SearchSession(task=tiny_task, constraints=Constraints(latency_target=LatencyTarget(0.9)),
                                 settings=fast_settings, config=SearchConfig(method="uniform"), log=log)

        session(ResultLog.open(tmp_path / "results.csv", resume=False)).probe(Policy.uniform(kept, 0.3, round_to=8))
        assert len(table.measured) == known + 2, "a latency probe is a paired measurement too"
        log = ResultLog.open(tmp_path / "results.csv", resume=False)
        log.append(1, "uniform", res)
        table = engine.latency_model = type(table)(**{f.name: getattr(table, f.name)  # as a fresh process loads it
                                                      for f in dataclasses.fields(table)})
        session(ResultLog.open(tmp_path / "results.csv", resume=True))
        assert len(table.measured) == known + 1, "the resumed search's measured row"
    finally:
        engine.latency_model = None
