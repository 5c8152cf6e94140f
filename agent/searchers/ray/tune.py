"""Ray Tune executor: many evaluations at once, on every CPU/GPU of a node or on an existing Ray cluster.

Ray is only an *executor* of the shared evaluation core: each trial is a thin wrapper around
:func:`agent.evaluation.core.evaluate_policy`; the task (model + data) goes into the object store once; a driver-side
callback records every finished trial in the search's ``results.csv`` as it completes. The search algorithm is
Optuna TPE (warm-started with the uniform policy) behind a ``ConcurrencyLimiter``, or random; with a chunked
fine-tune, ASHA stops weak candidates early.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ...constraints import Constraints
from ...errors import UserInputError, user_error
from ...evaluation import EvalResult, EvalSettings, Status, evaluate_policy, get_engine
from ...policy import Policy
from ...search.results import result_to_row, row_to_result
from ...search.session import SearchSession
from ...tasks.task import Task
from ..base import Searcher
from .options import RayOptions

__all__ = ["RayOptions", "RaySearcher", "ray_runtime", "require_ray", "resolve_address"]

_NOTE = "ray trial "


def require_ray() -> Any:
    """Import ``ray.tune`` or fail with an install hint."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError as exc:  # pragma: no cover - ray is a dependency
        raise UserInputError(f"--method ray needs Ray Tune ({exc}): pip install 'ray[tune]'") from None
    return ray


@contextlib.contextmanager
def ray_runtime(*, address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a search.

    Without ``address`` a private Ray instance is started on 127.0.0.1 only (no dashboard, no usage stats,
    temp files under ``$RAY_TMPDIR`` or the system temp dir) and shut down afterwards; with ``address`` the
    existing cluster is joined and left running.
    """
    ray = require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            if address:
                resolved = resolve_address(address)
                kwargs: dict[str, Any] = {}
                if _is_loopback(resolved):  # a loopback cluster: stay on loopback (no outward-IP rewrite)
                    stack.enter_context(_loopback_only())
                    kwargs["_node_ip_address"] = "127.0.0.1"
                try:
                    ray.init(address=resolved, log_to_driver=False, **kwargs)
                except (ConnectionError, RuntimeError) as exc:
                    raise UserInputError(f"cannot join the Ray cluster at --address {address} ({resolved}): "
                                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                                         "check the cluster is up, or drop --address for a private local Ray"
                                         ) from None
            else:
                stack.enter_context(_loopback_only())
                ray.init(**_local_init_kwargs(num_cpus=num_cpus, num_gpus=num_gpus))
            started = True
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()


def _is_loopback(host_port: str) -> bool:
    host = host_port.rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


ADDRESS_PROBE_S = 3.0
"""Seconds to wait for a TCP answer from an ``--address`` before giving up (fail fast, never hang)."""


def resolve_address(address: str) -> str:
    """``--address`` (``auto`` or ``HOST:PORT``) as the ``host:port`` of a cluster that answers.

    ``auto`` is looked up the way Ray does (``RAY_ADDRESS``, the last ``ray start``); a loopback address stays
    loopback (Ray would swap it for the machine's outward IP). Only the named address is contacted: one TCP
    connection attempt, at most :data:`ADDRESS_PROBE_S` seconds.

    Raises:
        UserInputError: No cluster is found or nothing answers at the address.
    """
    require_ray()
    import socket

    from ray._private import services

    with _loopback_only():
        try:
            resolved = services.canonicalize_bootstrap_address(address, os.environ.get("RAY_TMPDIR"))
        except (ConnectionError, ValueError) as exc:
            raise UserInputError(f"--address {address}: no Ray cluster found ({str(exc).splitlines()[0]}): start one "
                                 "with `ray start --head --node-ip-address=127.0.0.1`, or drop --address for a "
                                 "private local Ray") from None
    if not resolved:
        raise user_error("--address found no Ray cluster:", address, "start one, or drop --address")
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_PROBE_S).close()
    except (OSError, ValueError):
        raise UserInputError(f"--address {address}: no Ray cluster answers at {resolved} (tried for "
                             f"{ADDRESS_PROBE_S:g} s): start it (`ray start --head --port {port}`), fix the address, "
                             "or drop --address for a private local Ray") from None
    return resolved


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Keep a private Ray on 127.0.0.1.

    On Linux Ray swaps a 127.0.0.1 node address for the machine's outward IP (found by probing a public address)
    unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; the variable is read when ray is imported, so the already
    imported constant is set too. Ray's own processes inherit the variable. Both are restored afterwards, so a
    later ``--address`` join in the same process still finds the outward IP.
    """
    from ray._private import ray_constants

    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    old_env, old_const = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env


def _local_init_kwargs(*, num_cpus: int | None, num_gpus: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"_node_ip_address": "127.0.0.1", "include_dashboard": False, "log_to_driver": False}
    if os.environ.get("RAY_TMPDIR"):
        kwargs["_temp_dir"] = os.environ["RAY_TMPDIR"]
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    return kwargs


def _trial_settings(settings: EvalSettings, use_gpu: bool) -> EvalSettings:
    import dataclasses

    return dataclasses.replace(settings, device="cuda" if use_gpu else "cpu")


def decode_config(config: Mapping[str, Any], *, task: Task, space: Any, settings: EvalSettings,
                  max_ratio: float) -> Any:
    """A trial's sampled parameters -> :class:`search_spaces.Candidate` (policy + evaluation overrides)."""
    def to_policy(thresholds: Mapping[str, float], importance: str) -> Policy:
        return get_engine(task).thresholds_to_policy(thresholds, importance=importance, settings=settings,
                                                     max_ratio=max_ratio)

    from search_spaces import from_ray_config

    return space.decode(from_ray_config(dict(config)), thresholds_to_policy=to_policy)


def evaluate_trial(config: dict[str, Any], *, task: Task, space: Any, settings: EvalSettings,
                   constraints: Constraints, max_ratio: float, use_gpu: bool, threads: int) -> None:
    """The Ray Tune trainable: one candidate through the shared evaluation core, reported to Tune.

    Accuracy after each fine-tune chunk is reported (ASHA's signal); the last report carries the whole result
    as a results.csv row, which the driver records. A failing evaluation is reported as a failed row.
    """
    import dataclasses

    import torch
    from ray import tune

    torch.set_num_threads(max(1, threads))
    cand = decode_config(config, task=task, space=space, settings=settings, max_ratio=max_ratio)
    trial_settings = dataclasses.replace(_trial_settings(settings, use_gpu), **cand.overrides)

    def chunk(i: int, acc: float) -> None:
        tune.report({"score": task.metric.quality(acc), "accuracy": acc, "chunk": i, "done": False})

    try:
        result = evaluate_policy(task, cand.policy, settings=trial_settings, constraints=constraints,
                                 on_chunk=chunk if trial_settings.finetune_chunks > 1 else None)
    except Exception as exc:  # noqa: BLE001 - recorded as a failed trial; the experiment goes on
        result = EvalResult(cand.policy, status=Status.FAILED, reason=f"{type(exc).__name__}: {exc}"[:500])
    result.settings_overrides = dict(cand.overrides)
    score = result.quality if result.ok and result.feasible else \
        (result.quality - result.metric_info.scale if result.ok and math.isfinite(result.accuracy) else -200.0)
    tune.report({"score": score, "accuracy": result.accuracy if result.ok else -1.0, "done": True,
                 "row": json.dumps(result_to_row(0, "ray", result))})


class _Recorder:
    """Driver-side Tune callback: every finished trial becomes a results.csv row before the next is recorded."""

    def __init__(self, session: SearchSession, policy_of: Callable[[dict[str, Any]], Policy]) -> None:
        self.session, self.policy_of = session, policy_of
        self.recorded = {r.get("note", "")[len(_NOTE):] for r in session.log.rows if r.get("note", "").startswith(_NOTE)}

    def complete(self, trial: Any) -> None:
        if trial.trial_id in self.recorded:
            return
        last = trial.last_result or {}
        if last.get("row"):
            result = row_to_result(json.loads(last["row"]))
        else:
            result = EvalResult(self.policy_of(trial.config), status=Status.PRUNED,
                                reason=f"stopped early by ASHA after {last.get('training_iteration', 0)} chunk(s)",
                                intermediate=[last["accuracy"]] if "accuracy" in last else [])
        self._record(trial, result)

    def error(self, trial: Any) -> None:
        if trial.trial_id not in self.recorded:
            self._record(trial, EvalResult(self.policy_of(trial.config), status=Status.FAILED,
                                           reason="trial crashed after its retries (worker died or was killed)"))

    def _record(self, trial: Any, result: EvalResult) -> None:
        self.recorded.add(trial.trial_id)
        self.session.record(result, note=f"{_NOTE}{trial.trial_id}")


class RaySearcher(Searcher):
    """Policy search with Ray Tune: Optuna TPE or random proposals, ASHA over fine-tune chunks."""

    name = "ray"

    @classmethod
    def check(cls, *, config: Any, settings: EvalSettings, constraints: Constraints,
              unit_names: Any = None, unit_kinds: Any = None) -> None:
        """Validate the Ray options and the search space before any work."""
        del settings, constraints
        opts = RayOptions.from_options(config.options)
        from ..optuna.options import OptunaOptions

        OptunaOptions(sampler=config.options.get("sampler")).validate()  # the sampler behind OptunaSearch
        if unit_names is not None:
            cls._space(config, unit_names, unit_kinds)
        else:
            from search_spaces import load_space

            load_space(config.options.get("search_space", "layerwise"))
        if opts.address and unit_names is None:  # the CLI's first check, before any output exists
            resolve_address(opts.address)

    @staticmethod
    def _space(config: Any, unit_names: Any, unit_kinds: Any = None) -> Any:
        from search_spaces import load_space

        return load_space(config.options.get("search_space", "layerwise")).bind(
            unit_names=unit_names, min_ratio=config.min_ratio, max_ratio=config.max_ratio,
            importance=config.importance, round_to=config.round_to, unit_kinds=unit_kinds)

    @staticmethod
    def _warm_start(session: SearchSession, space: Any) -> list[dict[str, Any]]:
        """Start TPE from the uniform policy that meets the targets (ratio-mode spaces)."""
        from ..baselines import uniform_policy

        policy = uniform_policy(session) if space.mode == "ratio" else None
        if policy is None:
            return []
        from search_spaces import to_ray_keys

        params = space.encode(policy)
        for name, options in space.choices.items():
            params.setdefault(name, options[0])
        return [to_ray_keys(params)]

    def run(self, session: SearchSession) -> None:  # noqa: D102
        opts = RayOptions.from_options(session.config.options)
        require_ray()
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
        from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

        from search_spaces import to_ray_tune

        space = self._space(session.config, session.unit_names, {u.name: u.kind for u in session.engine.units})
        param_space = to_ray_tune(space)

        def policy_of(config: dict[str, Any]) -> Policy:
            return decode_config(config, task=session.task, space=space, settings=session.settings,
                                 max_ratio=session.config.max_ratio).policy

        remaining = session.trials_left()
        if remaining <= 0:
            return
        settings = session.settings
        chunks = settings.finetune_chunks if settings.finetune_steps > 0 else 1
        use_gpu = opts.gpus_per_trial > 0
        if use_gpu and opts.address is None:
            import torch

            if not torch.cuda.is_available():
                raise user_error("--gpus-per-trial needs a GPU, got", opts.gpus_per_trial,
                                 "use --gpus-per-trial 0 on this machine, or --address of a cluster with GPUs")
        storage = (session.output_dir / "ray_results").resolve()
        name = "tune"
        path = storage / name
        from .callback import RECORDERS, RecordCallback

        RECORDERS[str(path)] = _Recorder(session, policy_of)
        with ray_runtime(address=opts.address, num_cpus=None if opts.address else max(
                int(math.ceil(opts.cpus_per_trial * opts.concurrency)), os.cpu_count() or 1)):
            trainable = tune.with_resources(
                tune.with_parameters(evaluate_trial, task=session.task, space=space, settings=settings,
                                     constraints=session.constraints, max_ratio=session.config.max_ratio,
                                     use_gpu=use_gpu, threads=int(max(1, opts.cpus_per_trial))),
                {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
            if session.resumed and tune.Tuner.can_restore(str(path)):
                tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                if opts.search_alg == "optuna":
                    from ray.tune.search.optuna import OptunaSearch

                    warm = self._warm_start(session, space)
                    from ..optuna.study import make_sampler

                    sampler = make_sampler(session.config.options.get("sampler") or "tpe", seed=session.config.seed,
                                           trials=session.config.trials, multi_objective=False)
                    alg = ConcurrencyLimiter(OptunaSearch(metric="score", mode="max", sampler=sampler,
                                                          points_to_evaluate=warm),
                                             max_concurrent=opts.concurrency)
                else:
                    alg = BasicVariantGenerator(max_concurrent=opts.concurrency, random_state=session.config.seed)
                scheduler = ASHAScheduler(time_attr="training_iteration", max_t=chunks + 1, grace_period=1,
                                          reduction_factor=2) if chunks > 1 else FIFOScheduler()
                tuner = tune.Tuner(
                    trainable, param_space=param_space,
                    tune_config=tune.TuneConfig(metric="score", mode="max", search_alg=alg, scheduler=scheduler,
                                                num_samples=remaining, max_concurrent_trials=opts.concurrency),
                    run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                              failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                                              callbacks=[RecordCallback(str(path))]))
            try:
                tuner.fit()
            finally:
                RECORDERS.pop(str(path), None)

    def describe(self) -> str:  # noqa: D102
        return "ray tune"
