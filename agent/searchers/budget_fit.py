"""Cost-side helpers of the Optuna searchers: constraint values told to Optuna and fitting a policy onto the budget.

Both read the session's constraints and cost predictions; neither evaluates accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..constraints import Constraints
from ..policy import Policy
from ..search.session import LATENCY_MARGIN, CostProbe, SearchSession

__all__ = ["constraint_values", "fit_to_budget"]

def constraint_values(constraints: Constraints, *, flops_ratio: float, params_ratio: float,
                      latency_ratio: float | None, latency_ms: float | None,
                      acc_drop: float | None) -> dict[str, float]:
    """Optuna constraint values (feasible when all are <= 0), consistent with ``Constraints.violations``.

    Latency is held ``LATENCY_MARGIN`` under its target (like every searcher's steering): one timing round is
    noisy, and candidates right at the edge tend to fail the final re-measurement.
    """
    c, eps, out = constraints, 1e-9, {}
    lat_target = 1.0 - LATENCY_MARGIN
    if c.max_acc_drop is not None and acc_drop is not None:
        out["acc_drop"] = (acc_drop - c.max_acc_drop - eps) / 100.0
    if c.flops_target is not None:
        out["flops"] = flops_ratio - c.flops_target - eps
    if c.params_target is not None:
        out["params"] = params_ratio - c.params_target - eps
    lt = c.latency_target
    if lt is not None and lt.unit == "ratio" and latency_ratio is not None:
        out["latency"] = latency_ratio - lt.value * lat_target - eps
    if lt is not None and lt.unit == "ms" and latency_ms is not None:
        out["latency"] = (latency_ms - lt.value * lat_target - eps) / lt.value
    return out


def _over_budget(session: SearchSession, cost: CostProbe, scale: float = 1.0) -> float:
    """Largest ``predicted / target`` over the FLOPs, params and (predicted) latency targets; 0 without any."""
    c, terms = session.constraints, [0.0]
    if c.flops_target is not None:
        terms.append(cost.flops_ratio * scale / c.flops_target)
    if c.params_target is not None:
        terms.append(cost.params_ratio * scale / c.params_target)
    lt = c.latency_target
    if lt is not None and cost.latency_ms is not None:
        target = lt.value * (1.0 - LATENCY_MARGIN)
        terms.append((cost.latency_ratio or math.inf) / target if lt.unit == "ratio" else cost.latency_ms / target)
    return max(terms)


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

    def at(lam: float) -> Policy:
        return Policy({u: min(hi, max(lo, 1.0 - keep[u] * lam)) for u, (lo, hi) in bounds.items()},
                      policy.importance, policy.round_to)

    top = max((1.0 - lo) / keep[u] for u, (lo, _) in bounds.items())
    scale = 1.0
    for _ in range(3):
        if _over_budget(session, session.predict(at(top)), scale) <= 1.0:
            fitted = at(top)
        elif _over_budget(session, session.predict(at(0.0)), scale) > 1.0:
            return policy
        else:
            lo_l, hi_l = 0.0, top
            for _ in range(iters):
                mid = (lo_l + hi_l) / 2
                lo_l, hi_l = (mid, hi_l) if _over_budget(session, session.predict(at(mid)), scale) <= 1.0 else (lo_l, mid)
            fitted = at(lo_l)
        if c.flops_target is None and c.params_target is None:
            return fitted
        exact, pred = session.probe(fitted, latency=False), session.predict(fitted)
        if session.meets_cost(CostProbe(exact.flops_ratio, exact.params_ratio)):
            return fitted
        scale *= max(exact.flops_ratio / max(pred.flops_ratio, 1e-12),
                     exact.params_ratio / max(pred.params_ratio, 1e-12)) * 1.002
    return fitted
