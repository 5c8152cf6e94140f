import math

import pytest

from agent.constraints import Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.evaluation import DenseMetrics, EvalResult
from agent.policy import Policy
from env.rewards import REWARDS, get_reward, latency_ratio_of

DENSE = DenseMetrics(accuracy=95.0, macs=1e6, params=1e5, latency_ms=10.0)


def _result(acc=90.0, flops=0.5, latency=None, status="ok", pred_ms=None):
    return EvalResult(Policy({"a": 0.5}), status=status, accuracy=acc, dense_accuracy=DENSE.accuracy,
                      acc_drop=DENSE.accuracy - acc, macs=flops * DENSE.macs, params=flops * DENSE.params,
                      flops_ratio=flops, params_ratio=flops, latency_ratio=latency,
                      latency_ms=latency * DENSE.latency_ms if latency is not None else None,
                      latency_pred_ms=pred_ms)


def test_acc_is_amc_r_err_under_a_hard_budget():
    c = Constraints(flops_target=0.5)
    acc = get_reward("acc")
    assert acc(_result(90.0), c, DENSE) == pytest.approx(-0.10)
    assert acc(_result(92.0), c, DENSE) > acc(_result(90.0), c, DENSE)
    # missing the budget ranks below every feasible result, yet keeps the accuracy order
    over = acc(_result(99.0, flops=0.6), c, DENSE)
    assert over < acc(_result(1.0), c, DENSE)
    assert acc(_result(99.0, flops=0.6), c, DENSE) > acc(_result(50.0, flops=0.6), c, DENSE)
    assert acc(_result(status="failed", acc=float("nan")), c, DENSE) <= over


def test_acc_flops_trades_error_against_log_flops():
    f = get_reward("acc_flops")
    c = Constraints()
    assert f(_result(90.0, flops=0.5), c, DENSE) == pytest.approx(-0.10 * math.log(0.5e6))
    assert f(_result(90.0, flops=0.3), c, DENSE) > f(_result(90.0, flops=0.6), c, DENSE)
    assert f(_result(95.0, flops=0.5), c, DENSE) > f(_result(90.0, flops=0.5), c, DENSE)
    assert f(_result(status="failed", acc=float("nan")), c, DENSE) < f(_result(1.0, flops=1.0), c, DENSE) + 1e-9


def test_acc_latency_penalises_only_above_the_target():
    f = get_reward("acc_latency")
    c = Constraints(latency_target=LatencyTarget(0.5))
    at, under = f(_result(90.0, latency=0.5), c, DENSE), f(_result(90.0, latency=0.3), c, DENSE)
    assert at == pytest.approx(0.90) and under == pytest.approx(0.90)
    assert f(_result(90.0, latency=0.6), c, DENSE) == pytest.approx(0.90 - 0.2)
    assert f(_result(90.0, latency=0.8), c, DENSE) < f(_result(90.0, latency=0.6), c, DENSE)
    # a target in ms is compared through the dense latency; without a measurement the FLOPs ratio stands in
    assert f(_result(90.0, latency=0.6), Constraints(latency_target=LatencyTarget(5.0, "ms")), DENSE) == \
        pytest.approx(0.90 - 0.2)
    assert f(_result(90.0, flops=0.75), c, DENSE) == pytest.approx(0.90 - 0.5)
    assert f(_result(90.0, latency=0.9), Constraints(), DENSE) == pytest.approx(0.90)


def test_latency_ratio_prefers_measured_then_predicted_then_flops():
    assert latency_ratio_of(_result(latency=0.4, pred_ms=7.0), DENSE) == 0.4
    assert latency_ratio_of(_result(pred_ms=7.0), DENSE) == pytest.approx(0.7)
    assert latency_ratio_of(_result(flops=0.55), DENSE) == 0.55


def test_lagrangian_adds_multiplied_violations():
    f = get_reward("lagrangian")
    c = Constraints(max_acc_drop=1.0, latency_target=LatencyTarget(0.5))
    ok = f(_result(94.5, latency=0.5), c, DENSE)
    assert ok == pytest.approx(0.945)
    drop = f(_result(90.0, latency=0.5), c, DENSE)
    assert drop == pytest.approx(0.90 - 4.0 / 100)
    both = f(_result(90.0, latency=0.75), c, DENSE)
    assert both == pytest.approx(0.90 - 0.04 - 0.5)
    assert f(_result(status="failed", acc=float("nan")), c, DENSE) < both


def test_every_registered_reward_is_finite_on_failures():
    for name, fn in REWARDS.items():
        value = fn(_result(status="failed", acc=float("nan"), flops=float("nan")), Constraints(flops_target=0.5), DENSE)
        assert math.isfinite(value), name


def test_unknown_reward_names_the_choices():
    with pytest.raises(UserInputError, match="unknown reward 'speed': choose one of acc, acc_flops"):
        get_reward("speed")
