"""The measured-miss rule: re-aim under the latency target by the miss, a bounded number of times."""

from dataclasses import dataclass, field

import pytest

from agent.constraints import LATENCY_MARGIN, Constraints, LatencyTarget
from agent.errors import UserInputError
from agent.searchers.latency_retry import MAX_MARGIN, evaluate_meeting_latency, next_margin


@dataclass
class _Result:
    policy: float
    latency_bound: tuple
    ok: bool = True


@dataclass
class _Session:
    """Measures a policy (here: the aim it was made for) as ``slowdown`` x that aim, like a loaded machine."""

    constraints: Constraints
    slowdown: float
    notes: list = field(default_factory=list)

    def evaluate(self, policy, note=""):
        self.notes.append(note)
        return _Result(policy, (policy * self.slowdown, None))

    def should_stop(self):
        return False


def _aim(margin):
    return 0.6 * (1 - margin)  # the policy lands exactly on the aim under a 0.6x target


def test_a_miss_re_aims_until_the_measurement_meets_the_target():
    s = _Session(Constraints(latency_target=LatencyTarget(0.6)), slowdown=1.08)
    res = evaluate_meeting_latency(s, _aim, note=lambda p: "uniform")
    assert res.latency_bound[0] <= 0.6 < _aim(LATENCY_MARGIN) * 1.08, "the first evaluation missed, the last meets"
    assert len(s.notes) == 2 and "re-aimed" in s.notes[1]


def test_a_met_target_is_evaluated_once_and_retries_are_bounded():
    met = _Session(Constraints(latency_target=LatencyTarget(0.6)), slowdown=1.0)
    evaluate_meeting_latency(met, _aim, note=lambda p: "x")
    assert met.notes == ["x"]
    hopeless = _Session(Constraints(latency_target=LatencyTarget(0.6)), slowdown=3.0)
    res = evaluate_meeting_latency(hopeless, _aim, note=lambda p: "x", retries=5)
    assert res.latency_bound[0] > 0.6 and len(hopeless.notes) <= 6
    assert res.policy >= _aim(MAX_MARGIN) - 1e-12, "never aims under half the target"
    nolat = _Session(Constraints(flops_target=0.5), slowdown=3.0)
    evaluate_meeting_latency(nolat, _aim, note=lambda p: "x")
    assert len(nolat.notes) == 1, "without a latency target there is nothing to re-aim"


def test_an_unreachable_re_aim_keeps_the_last_result():
    s = _Session(Constraints(latency_target=LatencyTarget(0.6)), slowdown=1.2)

    def policy_at(margin):
        if margin > LATENCY_MARGIN:
            raise UserInputError("target cannot be met even at max pruning")
        return _aim(margin)

    assert evaluate_meeting_latency(s, policy_at, note=lambda p: "x").policy == _aim(LATENCY_MARGIN)


@pytest.mark.parametrize("miss", [1.01, 1.1, 1.5])
def test_next_margin_aims_lower_by_at_least_three_percent(miss):
    m = next_margin(LATENCY_MARGIN, miss)
    assert (1 - m) <= (1 - LATENCY_MARGIN) * 0.97 + 1e-12 and m <= MAX_MARGIN
