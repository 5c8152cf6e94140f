"""The :class:`SearchSession`: what a searcher talks to.

A searcher proposes policies and reads results; the session evaluates them through the one evaluation core,
persists every result before the next starts, enforces the trial / time budget, tracks the best feasible
policy and answers cheap cost questions (predicted or probed FLOPs / params / latency) without accuracy runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp

from ..constraints import LATENCY_MARGIN, Constraints, CostProbe
from ..errors import UserInputError
from ..evaluation import EvalResult, EvalSettings, PruningEngine, Status, evaluate_policy, get_engine
from ..evaluation.sensitivity import DEFAULT_SENSITIVITY_RATIOS, SensitivityProfile, analyse_sensitivity
from ..measure.latency import measure_latency_ratio
from ..policy import DEFAULT_MAX_RATIO, Policy
from ..progress import phase_bar
from ..tasks.task import Task
from .results import ResultLog

__all__ = ["SearchConfig", "SearchSession", "CostProbe", "BudgetExhausted", "TrialStopped", "LATENCY_MARGIN"]


def _cache_key(policy: Policy, overrides: Mapping[str, Any] | None) -> str:
    """Identical policies evaluated under identical settings share one result."""
    return policy.key() + (json.dumps(dict(overrides), sort_keys=True) if overrides else "")


class BudgetExhausted(Exception):
    """The trial or wall-time budget is spent; searchers may let it propagate to stop."""


class TrialStopped(Exception):
    """Raised through ``on_chunk`` by early-stopping logic; the evaluation is logged as ``pruned``."""


@dataclass(frozen=True)
class SearchConfig:
    """Settings every searcher shares."""

    method: str = "greedy"
    """Searcher name (see ``agent.searchers.SEARCHERS``)."""
    trials: int = 40
    """Maximum number of evaluated policies (a resumed search counts the ones already done)."""
    seed: int = 0
    """Seed of the searcher's randomness."""
    importance: str = "l2"
    """Importance criterion ranking channels inside each unit."""
    max_ratio: float = DEFAULT_MAX_RATIO
    """Largest per-unit pruning ratio proposed."""
    min_ratio: float = 0.0
    """Smallest per-unit pruning ratio proposed."""
    round_to: int | None = None
    """Keep a multiple of this many channels per unit where possible."""
    time_budget_s: float | None = None
    """Stop proposing after this many seconds (None = no limit)."""
    sensitivity_ratios: tuple[float, ...] = DEFAULT_SENSITIVITY_RATIOS
    """Ratios of the sensitivity analysis used by guided searchers and the env."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Searcher-specific options (e.g. ``sampler`` for Optuna, ``rl_algo`` / ``episodes`` for RL)."""

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise UserInputError(f"--trials must be >= 1, got {self.trials!r}: e.g. --trials 40")
        if not 0 <= self.min_ratio <= self.max_ratio < 1:
            raise UserInputError(
                f"ratio bounds must satisfy 0 <= min <= max < 1, got min={self.min_ratio!r} max={self.max_ratio!r}: "
                "e.g. --max-ratio 0.9")
        if self.round_to is not None and self.round_to < 1:
            raise UserInputError(f"--round-to (round_to) must be a positive integer, got {self.round_to!r}: e.g. 8")
        from ..pruning.importance import check_importance

        check_importance(self.importance)
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise UserInputError(f"--time-budget must be > 0 seconds, got {self.time_budget_s!r}")
        backend = self.options.get("backend", "local")
        if backend not in ("local", "ray"):
            raise UserInputError(f"unknown --backend {backend!r}: choose local or ray")
        if backend == "ray" and self.method not in RAY_BACKEND_METHODS:
            raise UserInputError(
                f"--backend ray spreads the trials of --method optuna over Ray Tune; method {self.method!r} "
                "proposes one candidate at a time from the previous result, so there is nothing to spread: drop "
                "--backend ray, or use --method optuna / --method ray")


RAY_BACKEND_METHODS = ("optuna", "ray")
"""Searchers that can run their evaluations on Ray Tune (``--backend ray``)."""


class SearchSession:
    """Evaluation service, budget keeper and result log for one search.

    Args:
        task: The dense model and data.
        constraints: What feasible means.
        settings: How candidates are evaluated.
        config: Shared searcher settings.
        log: Where results are persisted (already opened, possibly with resumed rows).
        progress: Show a progress bar.
        output_dir: The search's output directory (searchers put their own artefacts there).
        planned: Evaluations the searcher plans (the progress bar's length; default the trial budget).
    """

    def __init__(self, *, task: Task, constraints: Constraints, settings: EvalSettings, config: SearchConfig,
                 log: ResultLog, progress: bool = False, output_dir: Path | None = None,
                 planned: int | None = None) -> None:
        self.task = task
        self.output_dir = output_dir if output_dir is not None else log.path.parent
        self.constraints = constraints
        self.settings = settings
        self.config = config
        self.log = log
        self.started = time.monotonic()
        self._cache: dict[str, EvalResult] = {}
        self.history: list[tuple[int, EvalResult]] = []
        for trial, result in log.results():
            self.history.append((trial, result))
            if result.status in (Status.OK, Status.REJECTED):
                self._cache[_cache_key(result.policy, result.settings_overrides)] = result
            if not result.settings_overrides:  # a resumed search's latency model learns what was measured
                self.engine.observe_latency(result.kept_channels, result.latency_ratio)
        self.resumed = len(self.history)
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            total = max(1, min(config.trials, planned or config.trials))
            self._bar = tqdm(total=total, initial=min(self.resumed, total), unit="eval",
                             desc=f"search[{config.method}]", dynamic_ncols=True)
        self._sensitivity: SensitivityProfile | None = None

    # ------------------------------------------------------------------ budget
    @property
    def engine(self) -> PruningEngine:
        """The task's pruning engine (units, predictions)."""
        return get_engine(self.task)

    @property
    def unit_names(self) -> list[str]:
        """Prunable unit names in graph order."""
        return self.engine.graph.unit_names()

    @property
    def trials_done(self) -> int:
        """Evaluations logged so far (resumed ones included)."""
        return len(self.history)

    def trials_left(self) -> int:
        """Evaluations still allowed."""
        return max(0, self.config.trials - self.trials_done)

    def time_left(self) -> float:
        """Seconds left in the time budget (``inf`` without one)."""
        if self.config.time_budget_s is None:
            return math.inf
        return self.config.time_budget_s - (time.monotonic() - self.started)

    def should_stop(self) -> bool:
        """True once the trial or time budget is spent."""
        return self.trials_left() <= 0 or self.time_left() <= 0

    # ------------------------------------------------------------------ evaluation
    def make_policy(self, ratios: Mapping[str, float]) -> Policy:
        """A policy with the session's importance / rounding, ratios clipped to the configured bounds."""
        lo, hi = self.config.min_ratio, self.config.max_ratio
        return Policy({k: min(hi, max(lo, float(v))) for k, v in ratios.items()}, self.config.importance,
                      self.config.round_to)

    def lookup(self, policy: Policy, overrides: Mapping[str, Any] | None = None) -> EvalResult | None:
        """An earlier result for an identical policy (this run or the resumed one), if any."""
        return self._cache.get(_cache_key(policy, overrides))

    def evaluate(self, policy: Policy, *, note: str = "", on_chunk: Callable[[int, float], None] | None = None,
                 overrides: Mapping[str, Any] | None = None, trial: int | None = None) -> EvalResult:
        """Evaluate ``policy`` (or return the stored result of an identical one) and log it.

        Exceptions inside the evaluation (including NaN losses and out-of-memory) are recorded as a ``failed``
        result and the search continues. Bad user input (:class:`UserInputError`) propagates.

        Args:
            policy: The candidate.
            note: Free text stored with the result.
            on_chunk: Fine-tune chunk callback (may raise :class:`TrialStopped`).
            overrides: ``EvalSettings`` fields to change for this candidate only (e.g. a searched
                ``finetune_steps``); stored with the result and part of the cache key.
            trial: The number to log the result under (e.g. an Optuna study's trial number); default: the next
                row number of this session.

        Raises:
            BudgetExhausted: No trials or time left.
        """
        overrides = dict(overrides or {})
        cached = self.lookup(policy, overrides)
        if cached is not None:
            return cached
        if self.should_stop():
            raise BudgetExhausted(f"budget spent after {self.trials_done} evaluations")
        settings = dataclasses.replace(self.settings, **overrides) if overrides else self.settings
        try:
            result = evaluate_policy(self.task, policy, settings=settings, constraints=self.constraints,
                                     on_chunk=on_chunk)
        except UserInputError:
            raise
        except TrialStopped as exc:
            result = EvalResult(policy, status=Status.PRUNED, reason=f"stopped early: {exc}")
        except Exception as exc:  # noqa: BLE001 - any fault inside a trial is recorded, the search goes on
            result = self._failure(policy, exc)
        result.settings_overrides = overrides
        self.record(result, note=note, trial=trial)
        return result

    def _failure(self, policy: Policy, exc: BaseException) -> EvalResult:
        text = f"{type(exc).__name__}: {exc}".strip()
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            text = f"out of memory: {exc}"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        return EvalResult(policy, status=Status.FAILED, reason=(text + where)[:500])

    def record(self, result: EvalResult, *, note: str = "", trial: int | None = None) -> int:
        """Log a result produced elsewhere (e.g. by a Ray worker); returns its trial number.

        ``trial`` defaults to the next row number; searchers with their own numbering (an Optuna study shared by
        several workers) pass theirs, so ``results.csv`` names the study's trial.
        """
        trial = self.trials_done if trial is None else trial
        self.log.append(trial, self.config.method, result, note)
        self.history.append((trial, result))
        if result.status in (Status.OK, Status.REJECTED):
            self._cache[_cache_key(result.policy, result.settings_overrides)] = result
        if self._bar is not None:
            self._bar.update(1)
            best = self.best()
            if best is not None:
                self._bar.set_postfix(best_acc=f"{best.accuracy:.2f}", flops=f"{best.flops_ratio:.2f}")
        return trial

    def reject(self, policy: Policy, reason: str, *, note: str = "", latency_pred_ms: float | None = None,
               trial: int | None = None) -> EvalResult:
        """Log ``policy`` as rejected without evaluating it (e.g. predicted far over the latency budget)."""
        result = EvalResult(policy, status=Status.REJECTED, reason=reason, latency_pred_ms=latency_pred_ms)
        self.record(result, note=note, trial=trial)
        return result

    def results(self) -> list[EvalResult]:
        """Every result so far, in trial order."""
        return [r for _, r in self.history]

    def best(self) -> EvalResult | None:
        """The most accurate feasible result (ties: fewer FLOPs), or None."""
        feasible = [r for r in self.results() if r.ok and r.feasible]
        if not feasible:
            return None
        return max(feasible, key=lambda r: (round(r.quality, 6), -r.flops_ratio))

    def close(self) -> None:
        """Close the progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------------ cheap cost questions
    def predict(self, policy: Policy) -> CostProbe:
        """Predicted FLOPs / params ratios (and latency when a latency model is attached); no model is built."""
        engine = self.engine
        return engine.predict(engine.plan(policy, self.settings), self.settings)

    def probe(self, policy: Policy, *, latency: bool | None = None) -> CostProbe:
        """Exact FLOPs / params of the built model, plus its measured latency when asked.

        ``latency`` defaults to whether the constraints include a latency target. No accuracy is scored and
        nothing is logged; a measured latency teaches the latency model (:meth:`PruningEngine.observe_latency`).
        """
        engine = self.engine
        plan = engine.plan(policy, self.settings)
        model = engine.graph.apply(plan)
        macs, params = tp.utils.count_ops_and_params(model, self.task.example_input())
        dense = engine.dense(self.settings)
        if latency is None:
            latency = self.constraints.latency_target is not None
        if not (latency and self.settings.measure_latency):
            return CostProbe(macs / dense.macs, params / dense.params)
        try:  # paired with the dense model, round by round, until the ratio is tight (see measure_latency_ratio)
            paired = measure_latency_ratio(model, self.task.model, self.task.input_shape, config=self.settings.latency)
        finally:
            self.task.model.to("cpu")
        engine.observe_latency(engine.kept_channels(plan), paired.ratio)  # later predictions near it follow
        bound = paired.hi if math.isfinite(paired.hi) else paired.ratio  # the upper end, as targets are checked
        return CostProbe(macs / dense.macs, params / dense.params, bound, bound * paired.dense_ms)

    def meets_cost(self, cost: CostProbe, *, margin: float = LATENCY_MARGIN) -> bool:
        """Whether a cost probe satisfies the FLOPs / params / latency targets (accuracy not considered).

        :meth:`Constraints.meets_cost` with latency held to ``1 - margin`` of its target: searchers steer by one
        measurement (or a prediction), while the result must still meet the target when it is measured again.
        """
        return self.constraints.meets_cost(cost, latency_margin=margin)

    def overage(self, cost: CostProbe, *, latency_margin: float = 0.0) -> float:
        """:meth:`Constraints.overage` of ``cost``: at most 1 within budget.

        A cost without a latency figure is read against the latency target as a ratio of the dense latency
        measured now.
        """
        dense_ms = self.engine.dense(self.settings).latency_ms if self.constraints.latency_target is not None else None
        return self.constraints.overage(cost, latency_margin=latency_margin, dense_latency_ms=dense_ms)

    def sensitivity(self) -> SensitivityProfile:
        """The task's sensitivity profile (measured once, cached on disk)."""
        if self._sensitivity is None:
            try:
                with phase_bar("sensitivity", enabled=self._bar is not None, unit="eval") as bar:
                    self._sensitivity = analyse_sensitivity(
                        self.task, ratios=self.config.sensitivity_ratios, importance=self.config.importance,
                        settings=dataclasses.replace(self.settings, finetune_steps=0), progress=bar)
            except (UserInputError, BudgetExhausted, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - a whole-run phase: one line and exit 2
                raise UserInputError(
                    f"the sensitivity analysis that --method {self.config.method} needs failed on this model "
                    f"({type(exc).__name__}: {str(exc)[:200]}): use --method uniform, global, or knapsack "
                    "--knapsack-value importance") from exc
        return self._sensitivity

    def min_ratio_meeting(self, cost_of: Callable[[float], CostProbe], *, lo: float | None = None,
                          hi: float | None = None, iters: int = 14, margin: float = LATENCY_MARGIN) -> float:
        """Smallest ratio ``r`` in ``[lo, hi]`` whose cost meets the targets (cost falls as ``r`` grows).

        Latency is held ``margin`` under its target (:meth:`meets_cost`).

        Raises:
            UserInputError: The targets cannot be met even at ``hi``.
        """
        lo = self.config.min_ratio if lo is None else lo
        hi = self.config.max_ratio if hi is None else hi
        if self.meets_cost(cost_of(lo), margin=margin):
            return lo
        at_max = cost_of(hi)
        if not self.meets_cost(at_max, margin=margin):
            raise self.unreachable(at_max, hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            if self.meets_cost(cost_of(mid), margin=margin):
                hi = mid
            else:
                lo = mid
        return hi

    def unreachable(self, cost: CostProbe, ratio: float) -> UserInputError:
        """The error for cost targets that even the most aggressive policy misses."""
        issues = self.constraints.violations(flops_ratio=cost.flops_ratio, params_ratio=cost.params_ratio,
                                             latency_ratio=cost.latency_ratio, latency_ms=cost.latency_ms,
                                             acc_drop=None)
        if not issues and cost.latency_ratio is not None:
            issues = [f"latency {cost.latency_ratio:.3f}x, within the {LATENCY_MARGIN:.0%} safety margin of the target"]
        return UserInputError(
            f"target cannot be met even at max pruning (ratio {ratio:g} in every unit gives "
            f"{'; '.join(issues)}): relax the target or raise --max-ratio")

    def summary_counts(self) -> dict[str, int]:
        """How many results of each status (and feasible)."""
        counts: dict[str, int] = {"total": len(self.history), "feasible": 0}
        for r in self.results():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
            counts["feasible"] += int(r.ok and r.feasible)
        return counts
