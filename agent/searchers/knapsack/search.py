"""Knapsack searcher (HALP-style): the most value that fits the latency / FLOPs / params budget.

HALP (Shen et al., 2022) keeps the channels whose summed importance is largest subject to a latency budget read
from a per-layer latency table. Here every unit chooses a kept width from a grid (the ``round_to`` multiples, or
up to :data:`MAX_OPTIONS` evenly spaced widths) and costs what the latency table / the exact FLOPs and params
predictions say for the whole model. What a width is worth (:data:`VALUES`, ``--knapsack-value``):
``sensitivity`` (default) is minus the accuracy drop of that unit alone at that width, from the measured
sensitivity curves; ``importance`` is HALP's summed importance of the unit's top channels (scores mean-normalised
per unit, as Torch-Pruning's global ranking does). Importance values are comparable within a unit, not across
units: on the benchmark's residual models they starved the residual width (stem kept at 10%) and lost 25-30 points
to uniform at FLOPs 0.2, where sensitivity values match or beat greedy (docs/BENCHMARKS.md section 0).

Costs interact: a layer's time depends on its input *and* output widths, owned by neighbouring units. So the
multiple-choice knapsack is solved by Lagrangian relaxation: for a multiplier ``lam`` each unit in turn takes the
width maximising ``value - lam * cost(model)`` with its neighbours' widths fixed from the previous pass (passes
repeat until no unit changes), and ``lam`` is bisected (log scale) to the smallest value whose solution fits the
budget. A greedy fill then spends what the relaxation left over, and the result is verified with the exact
predictor. Everything before the evaluation is a prediction, so the search costs one evaluation (a few when a
measured latency misses the target: :func:`~agent.searchers.latency_retry.evaluate_meeting_latency` re-aims).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ...constraints import LATENCY_MARGIN, CostProbe
from ...errors import UserInputError
from ...policy import Policy
from ...search.session import BudgetExhausted, SearchConfig, SearchSession
from ..base import Searcher
from ..latency_retry import evaluate_meeting_latency
from .options import KnapsackOptions

__all__ = ["KnapsackSearcher", "MAX_OPTIONS", "TIE_BREAK", "VALUES", "knapsack_policy", "knapsack_warm_start",
           "summed_importance", "width_options"]

MAX_OPTIONS = 24
"""Kept-width options per unit without ``round_to`` (evenly spaced, both ends included)."""


TIE_BREAK = 1e-6
"""Value of keeping a whole unit where its value curve is flat (so the budget is spent, not left over)."""


def width_options(session: SearchSession) -> dict[str, list[int]]:
    """Kept-channel choices per unit, ascending, within the configured ratio bounds."""
    cfg = session.config
    out: dict[str, list[int]] = {}
    for unit in session.engine.units:
        lo = unit.kept_channels(cfg.max_ratio, cfg.round_to)
        hi = unit.kept_channels(cfg.min_ratio, cfg.round_to) if cfg.min_ratio > 0 else unit.channels
        g = unit.granule
        step = cfg.round_to if cfg.round_to and cfg.round_to > 1 and g == 1 and unit.channels > cfg.round_to else g
        grid = list(range(lo, hi + 1, step))
        if len(grid) > MAX_OPTIONS and not (cfg.round_to and cfg.round_to > 1):
            idx = np.unique(np.round(np.linspace(0, len(grid) - 1, MAX_OPTIONS)).astype(int))
            grid = [grid[i] for i in idx]
        out[unit.name] = sorted(set(grid) | {lo, hi})
    return out


def _importance_values(session: SearchSession) -> dict[str, np.ndarray]:
    """Per unit: ``value[k]`` = summed mean-normalised importance of its ``k`` most important channels."""
    scores = session.engine.importance(session.config.importance, session.settings)
    values = {}
    for unit in session.engine.units:
        s = scores[unit.name].detach().float().cpu().numpy()
        s = s / max(float(s.mean()), 1e-12)
        values[unit.name] = np.concatenate([[0.0], np.cumsum(np.sort(s)[::-1])])
    return values


def _sensitivity_values(session: SearchSession) -> dict[str, np.ndarray]:
    """Per unit: ``value[k]`` = minus the accuracy drop (points) of the unit alone kept at ``k`` channels.

    Read from the measured sensitivity curves (linear between the analysed ratios) and made non-decreasing in
    ``k``, so keeping more never looks worse; summed over units it is the additive estimate greedy also uses.
    """
    profile = session.sensitivity()
    values = {}
    for unit in session.engine.units:
        c = unit.channels
        drops = np.array([profile.drop(unit.name, 1.0 - k / c) for k in range(c + 1)])
        values[unit.name] = np.maximum.accumulate(-drops)
    return values


VALUES = {"sensitivity": _sensitivity_values, "importance": _importance_values}
"""What a kept width is worth, by :attr:`KnapsackOptions.value`."""


def _values(session: SearchSession, value: str) -> dict[str, np.ndarray]:
    return VALUES[value](session)


def _ratios(session: SearchSession, kept: Mapping[str, int]) -> dict[str, float]:
    channels = {u.name: u.channels for u in session.engine.units}
    return {u: 1.0 - k / channels[u] for u, k in kept.items()}


def summed_importance(session: SearchSession, policy: Policy) -> float:
    """The knapsack's objective for any policy: summed mean-normalised importance of the kept channels."""
    values = _importance_values(session)
    kept = session.engine.kept_channels(session.engine.plan(policy, session.settings))
    return float(sum(values[u][k] for u, k in kept.items()))


class _Problem:
    """Values, options and the normalised cost (``<= 1`` fits the budget) of one knapsack instance."""

    def __init__(self, session: SearchSession, *, budget_scale: float, margin: float, value: str) -> None:
        self.session, self.budget_scale, self.margin = session, budget_scale, margin
        self.options = width_options(session)
        # ties go to the wider width: where a unit's value is flat (no measured loss), keeping more is free
        self.values = {u: v + TIE_BREAK * np.arange(len(v)) / max(len(v) - 1, 1)
                       for u, v in _values(session, value).items()}
        self._memo: dict[tuple[int, ...], float] = {}
        self.units = list(self.options)

    def policy(self, kept: Mapping[str, int]) -> Policy:
        return self.session.make_policy(_ratios(self.session, kept))

    def cost(self, kept: Mapping[str, int]) -> float:
        """Max over the cost targets of predicted cost / target (latency aimed ``margin`` under its target)."""
        key = tuple(kept[u] for u in self.units)
        if key not in self._memo:
            probe = self.session.predict(self.policy(kept))
            self._memo[key] = self.session.overage(probe, latency_margin=self.margin) / self.budget_scale
        return self._memo[key]

    def value(self, kept: Mapping[str, int]) -> float:
        return float(sum(self.values[u][k] for u, k in kept.items()))

    def relax(self, lam: float, start: Mapping[str, int], passes: int = 6) -> dict[str, int]:
        """Coordinate ascent on ``value - lam * cost`` from ``start`` (neighbours fixed while a unit chooses)."""
        kept = dict(start)
        for _ in range(passes):
            changed = False
            for u in self.units:
                best_k, best = kept[u], -math.inf
                for k in self.options[u]:
                    trial = {**kept, u: k}
                    score = self.values[u][k] - lam * self.cost(trial)
                    if score > best + 1e-12:
                        best_k, best = k, score
                if best_k != kept[u]:
                    kept[u], changed = best_k, True
            if not changed:
                break
        return kept

    def fill(self, kept: dict[str, int]) -> dict[str, int]:
        """Greedy fill: widen the unit with the most value per unit of cost while the budget holds."""
        kept = dict(kept)
        while True:
            base, best, best_gain = self.cost(kept), None, 0.0
            for u in self.units:
                wider = [k for k in self.options[u] if k > kept[u]]
                if not wider:
                    continue
                trial = {**kept, u: wider[0]}
                c = self.cost(trial)
                if c > 1.0:
                    continue
                gain = (self.values[u][wider[0]] - self.values[u][kept[u]]) / max(c - base, 1e-9)
                if gain > best_gain:
                    best, best_gain = trial, gain
            if best is None:
                return kept
            kept = best


def knapsack_policy(session: SearchSession, *, value: str | None = None, budget_scale: float = 1.0,
                    margin: float = LATENCY_MARGIN, iters: int = 30) -> Policy:
    """The policy of most summed value whose predicted cost meets the cost targets.

    Args:
        session: The search session (cost targets, ratio bounds, rounding, importance criterion).
        value: What a kept width is worth (:data:`VALUES`; default: the session's ``knapsack_value`` option,
            else ``sensitivity``).
        budget_scale: Multiply every budget by this (< 1 tightens it; used when the exact costs miss the prediction).
        margin: Latency is aimed this fraction under its target.
        iters: Bisection steps on the Lagrange multiplier.

    Raises:
        UserInputError: No cost target, or the targets cannot be met even at ``max_ratio``.
    """
    if not session.constraints.has_cost_target:
        raise UserInputError("method 'knapsack' needs a cost budget, got none: pass --flops-target, --params-target "
                             "or --latency-target")
    value = value or KnapsackOptions.from_options(session.config.options).value
    prob = _Problem(session, budget_scale=budget_scale, margin=margin, value=value)
    smallest = {u: opts[0] for u, opts in prob.options.items()}
    if prob.cost(smallest) > 1.0:
        raise session.unreachable(session.probe(prob.policy(smallest)), session.config.max_ratio)
    full = {u: opts[-1] for u, opts in prob.options.items()}
    if prob.cost(full) <= 1.0:
        return prob.policy(full)
    lo, hi = 1e-3, 1e7  # multiplier range (value units per unit of normalised cost), searched in log space
    best = smallest
    start = full
    for _ in range(iters):
        lam = math.sqrt(lo * hi)
        kept = prob.relax(lam, start)
        if prob.cost(kept) <= 1.0:
            hi, start = lam, kept
            if prob.value(kept) > prob.value(best):
                best = kept
        else:
            lo = lam
        if hi / lo < 1.02:
            break
    best = prob.fill(best)
    policy = prob.policy(best)
    exact = session.probe(policy, latency=False)  # exact FLOPs / params of the built model
    if not session.meets_cost(CostProbe(exact.flops_ratio, exact.params_ratio,
                                        session.predict(policy).latency_ratio), margin=margin):
        return knapsack_policy(session, value=value, budget_scale=budget_scale * 0.98, margin=margin, iters=iters) \
            if budget_scale > 0.8 else policy
    return policy


def knapsack_warm_start(session: SearchSession) -> Policy | None:
    """:func:`knapsack_policy`, or None without a cost target (a warm start for Optuna, like the uniform one)."""
    return knapsack_policy(session) if session.constraints.has_cost_target else None


class KnapsackSearcher(Searcher):
    """HALP-style knapsack over per-unit kept widths under the latency-table (or FLOPs / params) budget."""

    name = "knapsack"

    def __init__(self, options: KnapsackOptions | None = None) -> None:
        self.options = options
        self._description = self.name

    @classmethod
    def check(cls, *, config: SearchConfig, settings: object, constraints: object,  # noqa: D102
              unit_names: object = None, unit_kinds: object = None) -> None:
        del config, settings, unit_names, unit_kinds
        if not getattr(constraints, "has_cost_target", False):
            raise UserInputError("method 'knapsack' needs a cost budget, got none: pass --flops-target, "
                                 "--params-target or --latency-target")

    def describe(self) -> str:  # noqa: D102
        return self._description

    def run(self, session: SearchSession) -> None:  # noqa: D102
        opts = self.options or KnapsackOptions.from_options(session.config.options)
        evaluations = 0

        def note(policy: Policy) -> str:
            nonlocal evaluations
            evaluations += 1
            self._description = f"knapsack evaluations={evaluations}"
            return "knapsack"

        try:
            evaluate_meeting_latency(session, lambda m: knapsack_policy(session, value=opts.value, margin=m),
                                     note=note, retries=opts.retries)
        except BudgetExhausted:
            return
