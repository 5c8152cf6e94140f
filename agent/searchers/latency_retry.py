"""One rule for a measured latency miss: re-aim under the target by the miss and evaluate again.

Searchers that find their policy from predictions or probes (uniform, Torch-Pruning global, greedy, knapsack)
evaluate it once. On a loaded machine the evaluation's measurement can land over the target (its interval's
upper end, :meth:`~agent.constraints.Constraints.check_result`) although the probe was under it. Then the aim is
lowered by what the miss says about the probe (``aim *= aim / miss``, at least 3% per retry) and the searcher's
policy for the new aim is evaluated, a few times at most.
"""

from __future__ import annotations

from collections.abc import Callable

from ..constraints import LATENCY_MARGIN
from ..errors import UserInputError
from ..evaluation import EvalResult
from ..policy import Policy
from ..search.session import SearchSession
from .options import LATENCY_RETRIES

__all__ = ["LATENCY_RETRIES", "MAX_MARGIN", "evaluate_meeting_latency", "next_margin"]

MAX_MARGIN = 0.5
"""The aim never goes below half the target."""


def next_margin(margin: float, miss: float) -> float:
    """The margin under the target to aim at after a result measured ``miss`` x its target at ``margin``.

    Example:
        >>> round(next_margin(0.03, 1.05), 4)  # aimed at 0.97 x target, measured 1.05 x: aim 0.97 * 0.97 / 1.05
        0.1039
    """
    aim = 1.0 - margin
    return min(MAX_MARGIN, 1.0 - aim * min(0.97, aim / miss))


def evaluate_meeting_latency(session: SearchSession, policy_at: Callable[[float], Policy], *,
                             note: Callable[[Policy], str], retries: int = LATENCY_RETRIES) -> EvalResult:
    """Evaluate ``policy_at(margin)``; while its measured latency misses the target, re-aim and evaluate again.

    Args:
        session: The search session (its constraints decide what a miss is).
        policy_at: The searcher's policy with latency aimed ``margin`` (a fraction) under its target.
        note: The results.csv note of a policy (the margin is appended on retries).
        retries: Re-evaluations after a miss.

    Returns:
        The last evaluation.

    Raises:
        BudgetExhausted: From :meth:`SearchSession.evaluate`, when the trial or time budget is spent.
        UserInputError: The first policy cannot meet the targets (a retry's is not raised: the miss stands).
    """
    margin = LATENCY_MARGIN
    policy = policy_at(margin)
    res = session.evaluate(policy, note=note(policy))
    for _ in range(retries):
        miss = session.constraints.latency_miss(res) if res.ok else None
        if miss is None or miss <= 1.0 or margin >= MAX_MARGIN or session.should_stop():
            break
        margin = next_margin(margin, miss)
        try:
            policy = policy_at(margin)
        except UserInputError:
            break  # nothing meets the tighter aim: the miss stands
        res = session.evaluate(policy, note=f"{note(policy)}, re-aimed {margin:.1%} under the latency target")
    return res
