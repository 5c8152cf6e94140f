"""Fitting a policy onto the cost budget (the Optuna searchers' ``--budget-fit``).

It reads the session's constraints and cost predictions through the one cost calculus
(:meth:`agent.constraints.Constraints.overage`); it evaluates no accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..constraints import LATENCY_MARGIN, Constraints, CostProbe
from ..policy import Policy
from ..search.session import SearchSession

__all__ = ["fit_to_budget"]


def _over_budget(constraints: Constraints, cost: CostProbe, scale: float = 1.0) -> float:
    """:meth:`Constraints.overage` of a predicted cost whose FLOPs / params are corrected by ``scale``."""
    scaled = CostProbe(cost.flops_ratio * scale, cost.params_ratio * scale, cost.latency_ratio, cost.latency_ms)
    return constraints.overage(scaled, latency_margin=LATENCY_MARGIN)


def fit_to_budget(session: SearchSession, policy: Policy, bounds: Mapping[str, tuple[float, float]], *,
                  iters: int = 24) -> Policy:
    """Scale every unit's kept fraction by one factor so the policy just meets the cost targets.

    Keeps the policy's shape (which units are pruned harder) and moves it onto the budget boundary, where the
    most accurate feasible policies lie. Costs are predicted (no model built); one exact count corrects the
    FLOPs / params prediction. Without FLOPs / params targets (or a latency model) the policy is returned as is,
    and so is a shape that misses the targets even at the bounds' upper ends.
    """
    c = session.constraints
    latency_predicted = c.latency_target is not None and session.engine.latency_model is not None
    if c.flops_target is None and c.params_target is None and not latency_predicted:
        return policy
    keep = {u: 1.0 - policy.ratio(u) for u in bounds}
    # a latency target is fitted only where it is predicted (no latency model: the FLOPs / params targets alone)
    fitted_to = c if latency_predicted else dataclasses.replace(c, latency_target=None)

    def at(lam: float) -> Policy:
        return Policy({u: min(hi, max(lo, 1.0 - keep[u] * lam)) for u, (lo, hi) in bounds.items()},
                      policy.importance, policy.round_to)

    top = max((1.0 - lo) / keep[u] for u, (lo, _) in bounds.items())
    scale = 1.0
    for _ in range(3):
        if _over_budget(fitted_to, session.predict(at(top)), scale) <= 1.0:
            fitted = at(top)
        elif _over_budget(fitted_to, session.predict(at(0.0)), scale) > 1.0:
            return policy
        else:
            lo_l, hi_l = 0.0, top
            for _ in range(iters):
                mid = (lo_l + hi_l) / 2
                lo_l, hi_l = (mid, hi_l) if _over_budget(fitted_to, session.predict(at(mid)), scale) <= 1.0 else (lo_l, mid)
            fitted = at(lo_l)
        if c.flops_target is None and c.params_target is None:
            return fitted
        exact, pred = session.probe(fitted, latency=False), session.predict(fitted)
        if session.meets_cost(CostProbe(exact.flops_ratio, exact.params_ratio)):
            return fitted
        scale *= max(exact.flops_ratio / max(pred.flops_ratio, 1e-12),
                     exact.params_ratio / max(pred.params_ratio, 1e-12)) * 1.002
    return fitted
