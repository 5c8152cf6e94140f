"""Optuna policy search: ``optuna`` (most accurate policy under constraints) and ``nsga2`` (accuracy-cost front).

Each trial samples a point of the declarative search space (:mod:`search_spaces`), decodes it into a policy,
optionally fits the policy onto the FLOPs / params budget, skips it when its predicted cost is far over budget
(logged as ``rejected``), and otherwise evaluates it through the session (logged before Optuna hears of it).
Constraints reach Optuna through ``trial.set_constraint``; intermediate accuracy per fine-tune chunk feeds the
pruner. The study sits in an RDB storage next to ``results.csv``, so ``--resume`` continues it; in a shared
``--storage`` several workers run one study, each trial under Optuna's heartbeat (``study.optimize``, one trial at a
time), and ``results.csv``'s ``trial`` column is the study's trial number.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...constraints import Constraints, CostProbe
from ...errors import user_error
from ...evaluation import EvalResult, EvalSettings, Status
from ...policy import Policy
from ...pruning.thresholds import ratio_to_threshold
from ...search.session import BudgetExhausted, SearchConfig, SearchSession, TrialStopped
from ..base import Searcher
from ..baselines import greedy_policy, uniform_policy
from ..budget_fit import fit_to_budget
from ..pareto import COST_OF, pareto_front, write_pareto
from .study import (
    OWNER_ATTR,
    ROW_ATTR,
    WARM_ATTR,
    OptunaOptions,
    fail_and_requeue,
    fail_stale,
    interrupted_trials,
    make_pruner,
    make_sampler,
    open_study,
    quiet_optuna,
    retried_trial,
    study_budget_used,
)

if TYPE_CHECKING:
    from search_spaces import BoundSpace

__all__ = ["OptunaSearcher", "NSGA2Searcher", "fit_to_budget"]


class OptunaSearcher(Searcher):
    """Single-objective Optuna search: maximise accuracy subject to every constraint."""

    name = "optuna"
    multi_objective: ClassVar[bool] = False

    def __init__(self) -> None:
        self._description = self.name
        self._objective_name: str | None = None
        self._pruner = "none"
        self._shared = False
        self._owner = ""
        self.front: list[tuple[int, EvalResult]] = []
        """The Pareto front after an ``nsga2`` run: ``(trial, result)`` sorted by cost."""

    def describe(self) -> str:  # noqa: D102
        return self._description

    # ------------------------------------------------------------------ validation
    @classmethod
    def check(cls, *, config: SearchConfig, settings: EvalSettings, constraints: Constraints,
              unit_names: Sequence[str] | None = None, unit_kinds: Mapping[str, str] | None = None) -> None:
        """Validate the Optuna options (sampler, pruner, objective, storage, search space) before any work."""
        opts = cls._options(config.options, settings)
        if unit_names is not None:
            cls._space(opts, config, unit_names, unit_kinds)
        if config.options.get("backend") == "ray":
            from ..ray.tune import RayOptions

            RayOptions.from_options(config.options)
            ignored = [flag for flag, key in (("--storage", "storage"), ("--study-name", "study_name"),
                                              ("--pruner", "pruner")) if config.options.get(key)]
            if ignored:
                warnings.warn(f"{', '.join(ignored)} ignored with --backend ray: Ray Tune keeps the experiment under "
                              "--out (continue it with --resume) and ASHA stops weak trials", stacklevel=2)

    @staticmethod
    def _space(opts: OptunaOptions, cfg: SearchConfig, unit_names: Sequence[str],
               unit_kinds: Mapping[str, str] | None = None) -> BoundSpace:
        from search_spaces import load_space

        return load_space(opts.search_space).bind(unit_names=unit_names, min_ratio=cfg.min_ratio,
                                                  max_ratio=cfg.max_ratio, importance=cfg.importance,
                                                  round_to=cfg.round_to, unit_kinds=unit_kinds)

    @classmethod
    def _options(cls, options: Mapping[str, Any], settings: EvalSettings) -> OptunaOptions:
        opts = OptunaOptions.from_options(options)
        if cls.multi_objective:
            if opts.objective == "latency" and not settings.measure_latency:
                raise user_error("--objective latency needs measured latency, but --no-latency was given:",
                                 opts.objective, "drop --no-latency or pass --objective flops")
            if opts.sampler is not None:
                warnings.warn("--sampler is ignored by --method nsga2 (it always uses NSGA-II)", stacklevel=2)
            if opts.pruner == "median":
                raise user_error("--pruner median does not work with multi-objective studies, got", opts.pruner,
                                 "drop --pruner or pass --pruner none")
        elif opts.objective is not None:
            warnings.warn("--objective only applies to --method nsga2; --method optuna maximises accuracy",
                          stacklevel=2)
        return opts

    def _objective(self, opts: OptunaOptions, settings: EvalSettings) -> str | None:
        if not self.multi_objective:
            return None
        return opts.objective or ("latency" if settings.measure_latency else "flops")

    # ------------------------------------------------------------------ search
    def run(self, session: SearchSession) -> None:  # noqa: D102
        if session.config.options.get("backend") == "ray":
            from ..ray.tune import RaySearcher

            self._description = "optuna (ray tune backend)"
            RaySearcher().run(session)  # OptunaSearch with this searcher's sampler, trials spread over Ray
            return
        with quiet_optuna():
            self._search(session)

    def _search(self, session: SearchSession) -> None:
        cfg = session.config
        opts = self._options(cfg.options, session.settings)
        space = self._space(opts, cfg, session.unit_names, {u.name: u.kind for u in session.engine.units})
        study, empty = self._open_study(session, opts, space)
        codec = _ThresholdCodec(session)
        self._recover(session, study, owner=self._owner if self._shared else None)
        if empty and opts.warm_start:
            from ..knapsack.search import knapsack_warm_start

            for label, make in (("uniform", uniform_policy), ("greedy", greedy_policy),
                                ("knapsack", knapsack_warm_start)):
                policy = make(session)
                if policy is not None:  # skip_if_exists: a worker starting at the same moment enqueued it already
                    study.enqueue_trial(space.encode(policy, ratio_to_threshold=codec.to_threshold),
                                        user_attrs={WARM_ATTR: label}, skip_if_exists=True)
        fit = opts.budget_fit if opts.budget_fit is not None else not self.multi_objective
        repeats = 0
        while not session.should_stop():
            if self._shared:  # --trials is the study's total over every worker
                fail_stale(study, heartbeat=opts.heartbeat)
                if study_budget_used(study) >= cfg.trials:
                    break
            before = session.trials_done
            try:
                study.optimize(lambda trial: self._trial(session, study, trial, space, codec, opts, fit=fit),
                               n_trials=1, catch=(_EvaluationFailed,))
            except BudgetExhausted:
                break
            repeats = repeats + 1 if session.trials_done == before else 0
            if repeats >= max(10, cfg.trials):
                warnings.warn(f"{self.name}: the sampler proposed {repeats} already-evaluated policies in a row; "
                              "stopping early (try a larger --trials budget or a continuous search space)",
                              stacklevel=2)
                break
        if self.multi_objective and self._objective_name is not None:
            self.front = pareto_front(session.history, objective=self._objective_name)
            write_pareto(session.output_dir, history=session.history, front=self.front,
                         objective=self._objective_name, constraints=session.constraints)
            self._description += f" front={len(self.front)}"

    def _open_study(self, session: SearchSession, opts: OptunaOptions, space: BoundSpace) -> tuple[Any, bool]:
        cfg = session.config
        self._shared = opts.storage is not None
        self._owner = str(session.output_dir.resolve())
        self._objective_name = self._objective(opts, session.settings)
        self._pruner = opts.pruner or ("none" if self.multi_objective else "median")
        sampler_name = "nsga2" if self.multi_objective else (opts.sampler or "tpe")
        study_name = opts.study_name or f"prunepilot-{self.name}"
        self._description = (f"{self.name} sampler={sampler_name} space={space.space.name} pruner={self._pruner} "
                             f"study={study_name}" + (f" objective={self._objective_name}" if self.multi_objective
                                                      else "") + (" shared" if self._shared else ""))
        fingerprint = {"method": self.name, "objective": self._objective_name,
                       "constraints": session.constraints.to_dict(), "space": space.describe()}
        # workers of a shared study draw different random streams (same --seed, different --out)
        seed = cfg.seed + session.resumed + (zlib.crc32(self._owner.encode()) % 100_003 if self._shared else 0)
        return open_study(
            out_dir=session.output_dir, storage_url=opts.storage, study_name=study_name,
            directions=["maximize", "minimize"] if self.multi_objective else ["maximize"],
            sampler=make_sampler(sampler_name, seed=seed, trials=cfg.trials, multi_objective=self.multi_objective),
            pruner=make_pruner(self._pruner), fingerprint=fingerprint, fresh=session.resumed == 0,
            heartbeat=opts.heartbeat if self._shared else None)

    def _recover(self, session: SearchSession, study: Any, *, owner: str | None) -> None:
        """Settle the trials a killed run of this worker left RUNNING (``owner`` None: every RUNNING trial).

        A trial whose row is in ``results.csv`` (killed after logging, before telling Optuna) is told its logged
        result; any other is marked FAIL and re-queued, to be evaluated again.
        """
        import optuna

        logged = {(n, r.policy.key()): r for n, r in session.history}
        for frozen in interrupted_trials(study, owner=owner):
            result = logged.get((frozen.number, frozen.user_attrs.get("policy_key")))
            if result is None:
                fail_and_requeue(study, frozen)
                continue
            trial = optuna.trial.Trial(study, frozen._trial_id)  # noqa: SLF001 - the live handle of a stored trial
            try:
                trial.set_user_attr(ROW_ATTR, self._owner)
                try:
                    values = self._tell(session, study, trial, result, self._objective_name)
                except optuna.TrialPruned:
                    study.tell(frozen.number, state=_state("PRUNED"), skip_if_finished=True)
                except _EvaluationFailed:
                    study.tell(frozen.number, state=_state("FAIL"), skip_if_finished=True)
                else:
                    study.tell(frozen.number, values, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # a live worker's heartbeat check failed it meanwhile (and re-queued it)

    def _trial(self, session: SearchSession, study: Any, trial: Any, space: BoundSpace, codec: _ThresholdCodec,
               opts: OptunaOptions, *, fit: bool) -> float | list[float]:
        """The objective of one trial: turn it into a policy, evaluate (or reject / re-serve) it, return its values.

        Raises:
            BudgetExhausted: The worker's (or the shared study's) budget is spent; Optuna marks the trial FAIL.
            optuna.TrialPruned: The pruner stopped the candidate (logged as ``pruned``).
            _EvaluationFailed: The evaluation raised (logged as ``failed``); Optuna marks the trial FAIL.
        """
        trial.set_user_attr(OWNER_ATTR, self._owner)
        if trial.user_attrs.get(ROW_ATTR):  # a heartbeat retry copies the dead trial's attributes
            trial.set_user_attr(ROW_ATTR, None)
        if self._shared and study_budget_used(study, before=trial.number) >= session.config.trials:
            raise BudgetExhausted(f"the study's {session.config.trials} trials are spent or running")
        cand = space.decode(_suggest(trial, space), thresholds_to_policy=codec.to_policy)
        policy = cand.policy
        warm = trial.user_attrs.get(WARM_ATTR)
        if fit and not (warm and session.meets_cost(session.probe(policy, latency=False))):
            policy = fit_to_budget(session, policy, self._bounds(space))
        trial.set_user_attr("policy_key", policy.key())
        trial.set_user_attr("ratios", {k: round(v, 6) for k, v in policy.ratios.items()})
        overrides = {**cand.overrides,
                     **self._chunk_overrides(session.settings, cand.overrides, self._pruner, opts.report_chunks)}
        note = f"{self.name} trial {trial.number}" + (f" warm-start {warm}" if warm else "")
        rows = session.trials_done
        result = self._evaluate(session, trial, policy, overrides, note, opts)
        if session.trials_done > rows:  # a new row in results.csv: the study's budget counts it
            trial.set_user_attr(ROW_ATTR, self._owner)
        return self._tell(session, study, trial, result, self._objective_name)

    @staticmethod
    def _bounds(space: BoundSpace) -> dict[str, tuple[float, float]]:
        if space.mode != "ratio":
            return dict.fromkeys(space.unit_names, space.ratio_bounds)
        out = {u: (v, v) for u, v in space.fixed.items()}
        for d in space.dimensions:
            out.update(dict.fromkeys(d.units, (d.low, d.high)))
        return out

    @staticmethod
    def _chunk_overrides(settings: EvalSettings, overrides: Mapping[str, Any], pruner: str,
                         chunks: int) -> dict[str, Any]:
        """Score accuracy after each of ``chunks`` fine-tune chunks for the pruner (training is unchanged)."""
        steps = overrides.get("finetune_steps", settings.finetune_steps)
        if pruner == "none" or settings.finetune_chunks > 1 or chunks < 2 or steps < 2 * chunks:
            return {}
        return {"finetune_chunks": chunks}

    def _evaluate(self, session: SearchSession, trial: Any, policy: Policy, overrides: dict[str, Any], note: str,
                  opts: OptunaOptions) -> EvalResult:
        if retried_trial(trial) is not None:  # an interrupted trial: its result may already be logged
            for _, logged in reversed(session.history):
                if logged.policy.key() == policy.key() and logged.settings_overrides == overrides:
                    return logged
        earlier = session.lookup(policy)
        if earlier is not None and earlier.status is Status.REJECTED:
            return earlier
        pred = session.predict(policy)
        reason = self._precheck(session, pred, opts.reject_margin)
        if reason:
            return session.reject(policy, reason, note=note, latency_pred_ms=pred.latency_ms, trial=trial.number)
        steps = overrides.get("finetune_steps", session.settings.finetune_steps)
        chunks = overrides.get("finetune_chunks", session.settings.finetune_chunks)
        last = math.ceil(steps / max(1, math.ceil(steps / chunks))) - 1 if steps else 0

        def on_chunk(chunk: int, acc: float) -> None:
            trial.report(session.task.metric.quality(acc), step=chunk)
            if chunk < last and trial.should_prune():
                raise TrialStopped(f"{self._pruner} pruner after fine-tune chunk {chunk + 1}: "
                                   f"{session.task.metric.name} {session.task.metric.text(acc)}")

        report = self._pruner != "none" and not self.multi_objective
        return session.evaluate(policy, note=note, on_chunk=on_chunk if report else None, overrides=overrides,
                                trial=trial.number)

    @staticmethod
    def _precheck(session: SearchSession, pred: CostProbe, margin: float) -> str:
        return "; ".join(f"predicted {issue}" for issue in session.constraints.far_over(pred, margin=margin))

    def _tell(self, session: SearchSession, study: Any, trial: Any, result: EvalResult,
              objective: str | None) -> float | list[float]:
        """Put the result on the trial (attributes, constraints) and return its values for Optuna.

        Raises:
            optuna.TrialPruned: For a ``pruned`` result.
            _EvaluationFailed: For a ``failed`` result.
        """
        import optuna

        trial.set_user_attr("status", result.status.value)
        if result.reason:
            trial.set_user_attr("reason", result.reason[:300])
        if result.status is Status.FAILED:
            raise _EvaluationFailed(result.reason)
        if result.status is Status.PRUNED:
            raise optuna.TrialPruned(result.reason)
        if result.status is Status.REJECTED:  # told as infeasible, with the predicted costs
            pred = session.predict(result.policy)
            cons = session.constraints.constraint_values(
                flops_ratio=pred.flops_ratio, params_ratio=pred.params_ratio, latency_ratio=pred.latency_ratio,
                latency_ms=pred.latency_ms, acc_drop=None)
            cost = pred.latency_ratio if objective == "latency" and pred.latency_ratio else pred.flops_ratio
            values = [0.0, cost]
        else:
            cons = session.constraints.constraint_values(
                flops_ratio=result.flops_ratio, params_ratio=result.params_ratio,
                latency_ratio=result.latency_bound[0], latency_ms=result.latency_bound[1], acc_drop=result.acc_drop)
            values = [result.quality, COST_OF[objective](result) if objective else 0.0]
            for key in ("flops_ratio", "params_ratio", "latency_ratio", "acc_drop"):
                value = getattr(result, key)
                if value is not None and math.isfinite(value):
                    trial.set_user_attr(key, float(value))
        for key, value in cons.items():
            trial.set_constraint(key, value)
        return values if self.multi_objective else values[0]


class _EvaluationFailed(Exception):
    """An evaluation that raised (already logged as ``failed``): Optuna records its trial as FAIL."""


class NSGA2Searcher(OptunaSearcher):
    """Multi-objective NSGA-II search: accuracy versus measured latency (or FLOPs); writes the Pareto front."""

    name = "nsga2"
    multi_objective = True


class _ThresholdCodec:
    """Threshold-mode conversions on the session's importance scores (ratio mode never calls them)."""

    def __init__(self, session: SearchSession) -> None:
        self.session = session

    def to_policy(self, thresholds: Mapping[str, float], importance: str) -> Policy:
        """Per-unit thresholds -> policy (channels whose normalised score falls below go)."""
        s = self.session
        return s.engine.thresholds_to_policy(thresholds, importance=importance, settings=s.settings,
                                             max_ratio=s.config.max_ratio)

    def to_threshold(self, unit: str, ratio: float) -> float:
        """The threshold removing ``ratio`` of ``unit``'s channels (:func:`~agent.pruning.thresholds.ratio_to_threshold`)."""
        s = self.session
        return ratio_to_threshold(s.engine.importance(s.config.importance, s.settings)[unit], ratio)


def _suggest(trial: Any, space: BoundSpace) -> dict[str, Any]:
    from search_spaces import suggest_params

    return suggest_params(trial, space)


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]
