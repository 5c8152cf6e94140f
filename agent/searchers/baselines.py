"""Baseline searchers: uniform (bisected), Torch-Pruning global pruning, sensitivity-guided greedy."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch_pruning as tp

from ..constraints import LATENCY_MARGIN, Constraints, CostProbe
from ..errors import UserInputError, user_error
from ..evaluation import EvalSettings
from ..policy import Policy
from ..pruning.dependency import barrier_aware
from ..search.session import BudgetExhausted, SearchConfig, SearchSession
from .base import Searcher
from .latency_retry import evaluate_meeting_latency

__all__ = ["UniformSearcher", "GlobalSearcher", "GreedySearcher", "global_pruning_ratios", "uniform_policy",
           "greedy_policy"]


def _cost_probe(session: SearchSession, ratios_of: callable) -> callable:  # type: ignore[valid-type]
    """Memoised ``ratio -> CostProbe`` of the policy ``ratios_of(ratio)``."""
    memo: dict[float, CostProbe] = {}

    def cost(r: float) -> CostProbe:
        key = round(r, 9)
        if key not in memo:
            memo[key] = session.probe(session.make_policy(ratios_of(r)))
        return memo[key]

    return cost


def _accuracy_bisect(session: SearchSession, ratios_of: callable, note: str) -> None:  # type: ignore[valid-type]
    """Without a cost target: the largest ratio whose accuracy drop stays within ``max_acc_drop``."""
    if session.constraints.max_acc_drop is None:
        raise UserInputError(
            f"method {session.config.method!r} needs a target, got none: pass --flops-target, --params-target, "
            "--latency-target or --max-acc-drop")
    lo, hi = session.config.min_ratio, session.config.max_ratio
    try:
        top = session.evaluate(session.make_policy(ratios_of(hi)), note=f"{note} r={hi:.4f}")
        if top.ok and top.feasible:
            return
        while not session.should_stop() and hi - lo > 1e-3:
            mid = (lo + hi) / 2
            res = session.evaluate(session.make_policy(ratios_of(mid)), note=f"{note} r={mid:.4f}")
            lo, hi = (mid, hi) if (res.ok and res.feasible) else (lo, mid)
    except BudgetExhausted:
        return


def uniform_policy(session: SearchSession, *, margin: float = LATENCY_MARGIN,
                   cost_of: Callable[[float], CostProbe] | None = None) -> Policy | None:
    """The uniform policy with the smallest ratio meeting the cost targets (None without a cost target).

    Costs are probed on built models (and measured latency when latency is constrained, aimed ``margin`` under
    its target); nothing is evaluated. ``cost_of`` (ratio -> probe) reuses an earlier call's memoised probes.

    Raises:
        UserInputError: The targets cannot be met even at ``max_ratio``.
    """
    if not session.constraints.has_cost_target:
        return None
    units = session.unit_names
    cost_of = cost_of or _cost_probe(session, lambda x: dict.fromkeys(units, x))
    r = session.min_ratio_meeting(cost_of, margin=margin)
    return session.make_policy(dict.fromkeys(units, r))


class UniformSearcher(Searcher):
    """The same ratio in every unit, bisected to the smallest ratio that meets the cost targets."""

    name = "uniform"

    @classmethod
    def planned_evaluations(cls, *, config: SearchConfig, constraints: Constraints) -> int:  # noqa: D102
        # with a cost target the policy is found by cost probes alone and evaluated once
        return min(config.trials, 1) if constraints.has_cost_target else config.trials

    def run(self, session: SearchSession) -> None:  # noqa: D102
        units = session.unit_names
        if not session.constraints.has_cost_target:
            _accuracy_bisect(session, lambda r: dict.fromkeys(units, r), "uniform")
            return
        cost_of = _cost_probe(session, lambda x: dict.fromkeys(units, x))

        def policy_at(margin: float) -> Policy:
            policy = uniform_policy(session, margin=margin, cost_of=cost_of)
            assert policy is not None
            return policy

        try:
            evaluate_meeting_latency(session, policy_at, note=lambda p: f"uniform r={p.ratio(units[0]):.4f}")
        except BudgetExhausted:
            return


class _CachedImportance(tp.importance.Importance):
    """Serves the engine's cached per-unit scores to a Torch-Pruning pruner working on a copy of the model."""

    def __init__(self, scores: Mapping[str, torch.Tensor], unit_of_root: Mapping[str, str],
                 name_of: Mapping[torch.nn.Module, str]) -> None:
        self.scores, self.unit_of_root, self.name_of = scores, unit_of_root, name_of

    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        unit = self.unit_of_root.get(self.name_of.get(group[0].dep.target.module, ""))
        if unit is None:
            return None
        s = self.scores[unit]
        # tp normalises group scores by their mean before global ranking (MagnitudeImportance's default)
        return s / s.mean().clamp_min(1e-12)


def global_pruning_ratios(session: SearchSession, pruning_ratio: float) -> dict[str, float]:
    """Per-unit ratios chosen by Torch-Pruning's global pruning (``BasePruner(global_pruning=True)``).

    The pruner ranks every channel of every unit together by (mean-normalised) importance and removes the
    lowest ``pruning_ratio`` share; the per-unit ratios it ends up with become the policy.
    """
    engine = session.engine
    graph = engine.graph
    model = copy.deepcopy(graph.model)
    name_of = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    scores = engine.importance(session.config.importance, session.settings)
    unit_of_root = {root: unit for unit, root in graph.root_of.items()}
    try:  # Torch-Pruning's own pruner, kept off the groups PrunePilot keeps whole (barriers, --ignore-layers)
        with barrier_aware():
            pruner = tp.pruner.BasePruner(
                model, session.task.example_input(), importance=_CachedImportance(scores, unit_of_root, name_of),
                global_pruning=True, pruning_ratio=pruning_ratio, max_pruning_ratio=session.config.max_ratio,
                ignored_layers=graph.ignored_modules(model), round_to=session.config.round_to)
            pruner.step()
    except Exception as exc:  # noqa: BLE001 - a whole-run phase of this method: one line, exit 2
        raise user_error("Torch-Pruning's global pruner fails on this model:", f"{type(exc).__name__}: {exc}",
                         "use --method uniform, greedy, knapsack or optuna (PrunePilot's own graph handles it)") from exc
    # Torch-Pruning leaves a group whole when what it would keep rounds to nothing (every channel under the
    # global threshold, or under --round-to the few it keeps round to 0): such a unit is among the least
    # important, so it is pruned by the threshold's share (at most the cap) instead of kept whole, and the
    # global ratio keeps pruning more as it grows.
    normed = {u: s / s.mean().clamp_min(1e-12) for u, s in scores.items()}
    flat = torch.cat(list(normed.values()))
    n_prune = len(flat) - int(len(flat) * (1 - pruning_ratio))
    threshold = torch.kthvalue(flat, n_prune).values if n_prune > 0 else None
    block = session.config.round_to or 1
    ratios = {}
    for unit in graph.units:
        kept = pruner.DG.get_out_channels(modules[graph.root_of[unit.name]])
        ratio = 1.0 - kept / unit.channels
        if threshold is not None and kept == unit.channels:
            under = int((normed[unit.name] <= threshold).sum())
            if under == unit.channels or (block > 1 and unit.channels - under < block <= under):
                ratio = under / unit.channels
        ratios[unit.name] = min(session.config.max_ratio, ratio)
    return ratios


class GlobalSearcher(Searcher):
    """Torch-Pruning global pruning with the chosen importance, its global ratio bisected to meet the target."""

    name = "global"

    @classmethod
    def check(cls, *, config: SearchConfig, settings: EvalSettings, constraints: Constraints,
              unit_names: Sequence[str] | None = None, unit_kinds: Mapping[str, str] | None = None) -> None:
        """Refuse an ``embed`` unit: Torch-Pruning's global pruner roots the residual group elsewhere, unscored."""
        del config, settings, constraints, unit_names
        embed = sorted(name for name, kind in (unit_kinds or {}).items() if kind == "embed")
        if embed:
            raise user_error("--method global can't prune a transformer's residual width (Torch-Pruning's global "
                             "pruner never scores it); embed unit", embed[0],
                             "drop --prune-embed, or use --method uniform, greedy or knapsack")

    @classmethod
    def planned_evaluations(cls, *, config: SearchConfig, constraints: Constraints) -> int:  # noqa: D102
        # with a cost target the policy is found by cost probes alone and evaluated once
        return min(config.trials, 1) if constraints.has_cost_target else config.trials

    def run(self, session: SearchSession) -> None:  # noqa: D102
        memo: dict[float, dict[str, float]] = {}

        def ratios_of(r: float) -> dict[str, float]:
            key = round(r, 9)
            if key not in memo:
                memo[key] = global_pruning_ratios(session, r) if r > 0 else dict.fromkeys(session.unit_names, 0.0)
            return memo[key]

        if not session.constraints.has_cost_target:
            _accuracy_bisect(session, ratios_of, "global")
            return
        cost_of = _cost_probe(session, ratios_of)

        chosen: list[float] = []

        def policy_at(margin: float) -> Policy:
            chosen.append(session.min_ratio_meeting(cost_of, lo=0.0, hi=0.99, margin=margin))
            return session.make_policy(ratios_of(chosen[-1]))

        try:
            evaluate_meeting_latency(session, policy_at, note=lambda p: f"global tp ratio={chosen[-1]:.4f}")
        except BudgetExhausted:
            return


class GreedySearcher(Searcher):
    """Sensitivity-guided greedy (NetAdapt-like).

    Starting from the dense model, repeatedly raise by ``step`` the ratio of the unit with the smallest
    estimated accuracy loss per unit of cost saved (loss from the measured sensitivity curves, cost from the
    FLOPs / params / latency predictions), until the cost targets are met; then evaluate. With only an
    accuracy budget, it keeps pruning while the evaluated accuracy drop stays within it.
    """

    name = "greedy"

    @classmethod
    def planned_evaluations(cls, *, config: SearchConfig, constraints: Constraints) -> int:  # noqa: D102
        # with a cost target the policy is found by cost probes alone and evaluated once
        backup = constraints.latency_target is not None  # the latency backup policy
        return min(config.trials, 1 + backup) if constraints.has_cost_target else config.trials

    def __init__(self, step: float = 0.05) -> None:
        self.step = step

    def _next_step(self, session: SearchSession, ratios: dict[str, float], unit: str,
                   current: float) -> tuple[float, float] | None:
        """The next ratio of ``unit`` (in ``step`` increments) that lowers the predicted cost, and that cost.

        Channel rounding and kernel-block latency make cost a staircase in the ratio, so one increment may change
        nothing; the walk skips such plateaus instead of stopping on them. None when the unit is exhausted.
        """
        hi = session.config.max_ratio
        r = ratios[unit]
        while r + 1e-9 < hi:
            r = min(hi, r + self.step)
            trial = {**ratios, unit: r}
            cost = session.overage(session.predict(session.make_policy(trial)))
            if current - cost > 1e-9:
                return r, cost
        return None

    def path(self, session: SearchSession, *, margin: float = LATENCY_MARGIN,
             start: dict[str, float] | None = None, min_steps: int = 0,
             ) -> tuple[dict[str, float], list[dict[str, float]]]:
        """The greedy walk: its final ratios and the ratios after each step.

        The final ratios meet the cost targets when there are any, latency held ``margin`` under its target.
        ``start`` continues an earlier walk from its final ratios, taking at least ``min_steps`` steps.

        Raises:
            UserInputError: The cost targets cannot be met even at ``max_ratio``.
        """
        profile = session.sensitivity()
        units = session.unit_names
        hi = session.config.max_ratio
        ratios = dict(start) if start is not None else dict.fromkeys(units, session.config.min_ratio)
        checkpoints: list[dict[str, float]] = []
        current = session.overage(session.predict(session.make_policy(ratios)))
        while True:
            meets = session.meets_cost(session.predict(session.make_policy(ratios)), margin=margin)
            if session.constraints.has_cost_target and meets and len(checkpoints) >= min_steps:
                exact = session.probe(session.make_policy(ratios))
                if session.meets_cost(exact, margin=margin):
                    break
            best_unit, best_score, best_cost, best_ratio = None, np.inf, current, 0.0
            for u in units:
                step = self._next_step(session, ratios, u, current)
                if step is None:
                    continue
                new_ratio, cost = step
                loss = max(profile.drop(u, new_ratio) - profile.drop(u, ratios[u]), 0.0) + 1e-3
                if loss / (current - cost) < best_score:
                    best_unit, best_score, best_cost, best_ratio = u, loss / (current - cost), cost, new_ratio
            if best_unit is None:
                if session.constraints.has_cost_target:
                    probe = session.probe(session.make_policy(ratios))
                    if all(r >= hi - 1e-9 for r in ratios.values()):
                        raise session.unreachable(probe, hi)
                    raise UserInputError(
                        f"greedy found no pruning step that still lowers the predicted cost (its policy gives FLOPs "
                        f"{probe.flops_ratio:.3f}, latency {probe.latency_ratio}): relax the target, raise --max-ratio "
                        "or try --method optuna")
                break
            ratios[best_unit] = best_ratio
            current = best_cost
            checkpoints.append(dict(ratios))
            if not session.constraints.has_cost_target and len(checkpoints) > 200:
                break
        return ratios, checkpoints

    def run(self, session: SearchSession) -> None:  # noqa: D102
        ratios, checkpoints = self.path(session)

        def policy_at(margin: float) -> Policy:  # a re-aim continues the walk to the tighter margin
            walked = ratios if margin == LATENCY_MARGIN else self.path(session, margin=margin, start=ratios)[0]
            return session.make_policy(walked)

        try:
            if session.constraints.has_cost_target:
                res = evaluate_meeting_latency(session, policy_at, note=lambda p: f"greedy steps={len(checkpoints)}")
                ratios = dict(res.policy.ratios)
                if session.constraints.latency_target is not None:
                    self._latency_backup(session, ratios)
            else:
                self._accuracy_walk(session, checkpoints)
        except BudgetExhausted:
            return

    def _latency_backup(self, session: SearchSession, ratios: dict[str, float]) -> None:
        """Evaluate the walk continued (one step at least) to twice the latency margin: a fallback for confirmation.

        Latency is re-measured when the best policy is confirmed; on a noisy machine the greedy policy can land
        just over the target there, and this slightly faster policy is the next candidate instead of nothing.
        """
        try:
            backup, _ = self.path(session, margin=2 * LATENCY_MARGIN, start=ratios, min_steps=1)
        except UserInputError:
            return  # no further step lowers the cost; the greedy policy stands alone
        session.evaluate(session.make_policy(backup), note="greedy latency backup")

    def _accuracy_walk(self, session: SearchSession, path: list[dict[str, float]]) -> None:
        """Bisect along the greedy path for the deepest point within the accuracy budget."""
        if session.constraints.max_acc_drop is None:
            raise UserInputError(
                "method 'greedy' needs a target, got none: pass --flops-target, --params-target, "
                "--latency-target or --max-acc-drop")
        lo, hi = 0, len(path) - 1
        while lo <= hi and not session.should_stop():
            mid = (lo + hi) // 2
            res = session.evaluate(session.make_policy(path[mid]), note=f"greedy step {mid + 1}/{len(path)}")
            if res.ok and res.feasible:
                lo = mid + 1
            else:
                hi = mid - 1


def greedy_policy(session: SearchSession, *, step: float = 0.05) -> Policy | None:
    """The sensitivity-greedy policy meeting the cost targets (None without a cost target); nothing is evaluated.

    Raises:
        UserInputError: The targets cannot be met even at ``max_ratio``.
    """
    if not session.constraints.has_cost_target:
        return None
    return session.make_policy(GreedySearcher(step=step).path(session)[0])
