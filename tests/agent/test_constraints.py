"""The one cost calculus (agent.constraints): ratios, overage, violations and Optuna constraint values agree."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.constraints import LATENCY_MARGIN, Constraints, CostProbe, LatencyTarget

RATIO = st.floats(min_value=0.01, max_value=1.5, allow_nan=False)
TARGET = st.floats(min_value=0.05, max_value=1.0, allow_nan=False)


def test_a_ratio_target_needs_no_dense_latency_and_a_millisecond_target_is_divided_by_it():
    assert LatencyTarget(0.6).as_ratio(None) == 0.6
    assert LatencyTarget(0.6).as_ratio(50.0) == 0.6
    assert LatencyTarget(5.0, "ms").as_ratio(20.0) == pytest.approx(0.25)
    assert LatencyTarget(5.0, "ms").as_ratio(None) is None
    assert LatencyTarget(5.0, "ms").as_ratio(0.0) is None


def test_latency_is_checked_in_the_target_unit():
    ratio_target = Constraints(latency_target=LatencyTarget(0.5))
    ms_target = Constraints(latency_target=LatencyTarget(4.0, "ms"))
    cost = {"flops_ratio": 1.0, "params_ratio": 1.0, "acc_drop": None}
    # 0.6x of dense but only 3 ms: over a ratio target, under a millisecond one
    assert ratio_target.violations(**cost, latency_ratio=0.6, latency_ms=3.0) == ["latency 0.600x > target 0.5x"]
    assert ms_target.violations(**cost, latency_ratio=0.6, latency_ms=3.0) == []
    assert ms_target.violations(**cost, latency_ratio=0.3, latency_ms=5.0) == ["latency 5.000ms > target 4ms"]
    # a latency not known is not checked
    assert ratio_target.violations(**cost, latency_ratio=None, latency_ms=3.0) == []
    assert [t.name for t in ms_target.cost_terms(flops_ratio=1.0, params_ratio=1.0, latency_ratio=0.9)] == []


def test_the_latency_margin_holds_steering_under_the_target():
    c = Constraints(flops_target=0.5, latency_target=LatencyTarget(0.5))
    just_under = CostProbe(0.5, 1.0, latency_ratio=0.49)
    assert c.meets_cost(just_under)
    assert not c.meets_cost(just_under, latency_margin=LATENCY_MARGIN)
    assert c.meets_cost(CostProbe(0.5, 1.0, latency_ratio=0.5 * (1 - LATENCY_MARGIN) - 1e-6),
                        latency_margin=LATENCY_MARGIN)
    # the margin is for latency only: FLOPs at the target still meet
    assert c.meets_cost(CostProbe(0.5, 1.0, latency_ratio=0.1), latency_margin=LATENCY_MARGIN)
    assert not c.meets_cost(CostProbe(0.51, 1.0, latency_ratio=0.1))


@given(flops=RATIO, params=RATIO, lat=RATIO, ft=TARGET, pt=TARGET, lt=TARGET)
def test_overage_is_at_most_one_exactly_when_the_costs_meet_the_targets(flops, params, lat, ft, pt, lt):
    c = Constraints(flops_target=ft, params_target=pt, latency_target=LatencyTarget(lt))
    cost = CostProbe(flops, params, latency_ratio=lat, latency_ms=lat * 10.0)
    worst = max(flops / ft, params / pt, lat / lt)
    if abs(worst - 1.0) > 1e-6:  # away from the boundary, where the violations' tolerance decides
        assert (c.overage(cost) <= 1.0) == c.meets_cost(cost)
    assert c.overage(cost) == pytest.approx(worst)


def test_overage_reads_the_latency_target_unit_and_falls_back_to_flops():
    ms_target = Constraints(latency_target=LatencyTarget(4.0, "ms"))
    assert ms_target.overage(CostProbe(0.5, 1.0, latency_ratio=0.3, latency_ms=5.0)) == pytest.approx(1.25)
    # no latency figure: the FLOPs ratio stands in, against the target as a ratio of the dense latency
    assert ms_target.overage(CostProbe(0.5, 1.0), dense_latency_ms=8.0) == pytest.approx(1.0)
    assert Constraints(latency_target=LatencyTarget(0.25)).overage(CostProbe(0.5, 1.0)) == pytest.approx(2.0)
    # margins tighten the budget
    c = Constraints(flops_target=0.5)
    assert c.overage(CostProbe(0.5, 1.0)) == pytest.approx(1.0)
    assert c.overage(CostProbe(0.5, 1.0), margin=0.1) > 1.0
    assert c.overage(CostProbe(0.5, 1.0), latency_margin=0.1) == pytest.approx(1.0)
    # without any cost target: the FLOPs ratio (what greedy steers by under an accuracy budget)
    assert Constraints(max_acc_drop=1.0).overage(CostProbe(0.7, 0.2)) == pytest.approx(0.7)


@given(flops=RATIO, params=RATIO, lat=RATIO, drop=st.floats(min_value=0.0, max_value=5.0), ft=TARGET, pt=TARGET,
       lt=TARGET, unit=st.sampled_from(["ratio", "ms"]))
def test_optuna_constraint_values_are_at_most_zero_exactly_when_feasible(flops, params, lat, drop, ft, pt, lt,
                                                                         unit):
    target = LatencyTarget(lt, "ratio") if unit == "ratio" else LatencyTarget(lt * 10.0, "ms")
    c = Constraints(flops_target=ft, params_target=pt, latency_target=target, max_acc_drop=1.0)
    costs = {"flops_ratio": flops, "params_ratio": params, "latency_ratio": lat, "latency_ms": lat * 10.0,
             "acc_drop": drop}
    values = c.constraint_values(**costs, latency_margin=0.0)
    assert set(values) == {"acc_drop", "flops", "params", "latency"}
    near = [abs(flops - ft), abs(params - pt), abs(lat - lt), abs(drop - 1.0) / 100]
    if min(near) > 1e-6:
        assert all(v <= 0 for v in values.values()) == (not c.violations(**costs))
        for name, v in values.items():
            assert (v > 0) == any(text.lower().startswith(name.split("_")[0]) for text in c.violations(**costs))


def test_optuna_latency_value_keeps_the_latency_margin():
    c = Constraints(latency_target=LatencyTarget(0.5))
    at_target = {"flops_ratio": 1.0, "params_ratio": 1.0, "latency_ratio": 0.5, "latency_ms": None, "acc_drop": None}
    assert not c.violations(**at_target)
    assert c.constraint_values(**at_target)["latency"] > 0  # held LATENCY_MARGIN under the target
    assert c.constraint_values(**{**at_target, "latency_ratio": 0.48})["latency"] <= 0
    # values the calculus does not know are not told to Optuna
    assert c.constraint_values(**{**at_target, "latency_ratio": None}) == {}


def test_far_over_names_only_costs_past_the_margin():
    c = Constraints(flops_target=0.5, params_target=0.5, latency_target=LatencyTarget(2.0, "ms"))
    issues = c.far_over(CostProbe(0.54, 0.6, latency_ratio=0.9, latency_ms=2.1), margin=0.1)
    assert issues == ["params 0.600 > target 0.500 by over 10%"]
    assert c.far_over(CostProbe(0.5, 0.5, latency_ms=2.5), margin=0.1) == ["latency 2.500ms > target 2ms by over 10%"]


def test_overage_is_scale_free_in_the_targets():
    c = Constraints(flops_target=0.4)
    assert math.isclose(c.overage(CostProbe(0.2, 1.0)), 0.5)
    assert c.overage(CostProbe(0.8, 1.0)) > c.overage(CostProbe(0.6, 1.0)) > 1.0
