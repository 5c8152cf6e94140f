"""Subcommands: ``train``, ``sensitivity``, ``evaluate``, ``search`` (and the deployment ones in :mod:`.deploy`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import user_error
from ..policy import DEFAULT_MAX_RATIO
from ..searchers.registry import option_classes
from .common import (
    DATASET_HELP,
    DEVICE_HELP,
    MODEL_HELP,
    QUIET_HELP,
    add_constraint_args,
    add_eval_args,
    add_task_args,
    check_task_args,
    constraints_from_args,
    given_eval_flags,
    ratio_list,
    settings_from_args,
    task_from_args,
    with_latency_batch,
)
from .deploy import DEPLOY_COMMANDS
from .display import SENSITIVITY_HEADER, print_search_summary, print_table, sensitivity_rows
from .options import add_options, checked, options_from_args

__all__ = ["REGISTRY"]

SubParsers = argparse._SubParsersAction  # noqa: SLF001


def _out_dir(path: str) -> Path:
    from ..search.run import check_output_dir

    return check_output_dir(path, resume=False, overwrite=True)


# ---------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    from ..storage import atomic_write_json
    from ..tasks.datasets import load_dataset
    from ..tasks.task import DEFAULT_DATASET, DEFAULT_MODEL, TaskSpec, save_checkpoint, train_dense

    spec = TaskSpec(args.model or DEFAULT_MODEL, args.dataset or DEFAULT_DATASET, args.data_seed)
    spec.validate()
    if args.epochs < 1:
        raise user_error("--epochs must be >= 1, got", args.epochs, "e.g. --epochs 15")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise user_error("--lr must be > 0, got", args.lr, "e.g. --lr 0.05")
    out = _out_dir(args.out)
    data = load_dataset(spec.dataset, data_root=args.data_root, download=args.download, seed=args.data_seed)
    task = train_dense(spec, epochs=args.epochs, lr=args.lr, seed=args.seed, device=args.device, data=data,
                       progress=not args.quiet, family=args.family, optimizer=args.optimizer,
                       weight_decay=args.weight_decay, warmup=args.warmup, batch_size=args.batch_size)
    path = save_checkpoint(task, out / "dense.pt")
    atomic_write_json(out / "train.json", {"checkpoint": str(path), "model": spec.model, "dataset": spec.dataset,
                                           **task.meta})
    print_table("dense baseline", [("checkpoint", str(path)), ("model", spec.model), ("dataset", spec.dataset),
                                   (f"val {task.metric.name}", task.metric.text(task.meta["val_accuracy"])),
                                   (f"test {task.metric.name}", task.metric.text(task.meta["test_accuracy"]))])
    return 0


def _register_train(sub: SubParsers) -> None:
    p = sub.add_parser("train", help="train a dense baseline and save a checkpoint")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--dataset", default=None, help=DATASET_HELP)
    p.add_argument("--data-root", default=None, help="local directory of torchvision datasets")
    p.add_argument("--download", action="store_true", help="allow downloading the dataset into --data-root")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the dataset generator and split")
    p.add_argument("--epochs", type=int, default=15, help="passes over the training split (default 15)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate, cosine-annealed (default: the recipe's, 0.05 SGD for CNNs, 2e-3 AdamW "
                        "for transformers)")
    p.add_argument("--family", default=None, choices=("cnn", "transformer"),
                   help="train with this family's recipe (default: transformer if the model has attention, else cnn)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adamw"),
                   help="override the recipe's optimizer: sgd (Nesterov) or adamw")
    p.add_argument("--weight-decay", type=float, default=None, help="override the recipe's weight decay")
    p.add_argument("--batch-size", type=int, default=None,
                   help="override the recipe's batch size (128 for CNNs, 64 for transformers)")
    p.add_argument("--warmup", type=float, default=None,
                   help="override the recipe's linear warm-up, a fraction of the steps in [0, 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight init and data order")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--out", required=True, help="output directory (dense.pt, train.json)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_train)


# ---------------------------------------------------------------- sensitivity
def _sensitivity(args: argparse.Namespace) -> int:
    from ..evaluation.sensitivity import analyse_sensitivity, plot_sensitivity
    from ..progress import phase_bar

    check_task_args(args)
    bad = [r for r in args.ratios if not 0 < r < 1]
    if not args.ratios or bad:
        raise user_error("--ratios must be in (0, 1), got", bad or args.ratios, "e.g. --ratios 0.1,0.3,0.5,0.7,0.9")
    settings = settings_from_args(args)
    out = _out_dir(args.out)
    task = task_from_args(args, progress=not args.quiet)
    settings = with_latency_batch(args, settings, task.model, task.input_shape)
    with phase_bar("sensitivity", enabled=not args.quiet, unit="eval") as bar:
        profile = analyse_sensitivity(task, ratios=args.ratios, importance=args.importance, settings=settings,
                                      cache=not args.no_cache, progress=bar)
    profile.to_csv(out / "sensitivity.csv")
    profile.to_json(out / "sensitivity.json")
    plot_sensitivity(profile, out / "sensitivity.png")
    print_table(f"accuracy drop (points) at ratios {profile.ratios}", sensitivity_rows(profile),
                header=SENSITIVITY_HEADER)
    print(f"wrote {out / 'sensitivity.csv'} and {out / 'sensitivity.png'}")
    return 0


def _register_sensitivity(sub: SubParsers) -> None:
    p = sub.add_parser("sensitivity", help="per-unit accuracy drop at several ratios (CSV + PNG)")
    add_task_args(p)
    add_eval_args(p)
    p.add_argument("--ratios", type=ratio_list, default=[0.1, 0.3, 0.5, 0.7, 0.9],
                   help="pruning ratios each unit is tried at alone (default 0.1,0.3,0.5,0.7,0.9)")
    p.add_argument("--no-cache", action="store_true", help="re-measure even if a cached profile exists")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-candidate fine-tune")
    p.add_argument("--out", required=True, help="output directory (sensitivity.csv/json/png)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_sensitivity)


# ---------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_policy, get_engine
    from ..search.policy_file import EVALUATION_FIELDS, apply_evaluation, read_policy_file

    check_task_args(args)
    pfile = read_policy_file(args.policy)
    settings = apply_evaluation(settings_from_args(args), pfile.evaluation, keep=given_eval_flags(args))
    constraints = constraints_from_args(args)
    task = task_from_args(args, progress=not args.quiet)
    settings = with_latency_batch(args, settings, task.model, task.input_shape)
    pfile.policy.validate(get_engine(task).graph.unit_names())
    res = evaluate_policy(task, pfile.policy, settings=settings, constraints=constraints)
    stated = constraints.has_cost_target or constraints.max_acc_drop is not None
    if args.json:
        record = res.to_dict()
        if not stated:
            record["feasible"], record["reason"] = None, "no constraint given"
        record["evaluation"] = {k: getattr(settings, k) for k in EVALUATION_FIELDS}
        print(json.dumps(record, indent=2, default=str))
        return 0
    recorded = pfile.metrics.get("accuracy")
    rows = [("accuracy", f"{res.accuracy:.2f}% (dense {res.dense_accuracy:.2f}%)"
             + (f"; recorded in the policy file: {float(recorded):.2f}%" if recorded is not None else "")),
            ("FLOPs ratio", f"{res.flops_ratio:.3f}"), ("params ratio", f"{res.params_ratio:.3f}"),
            ("latency", f"{res.latency_ms or float('nan'):.3f} ms ({res.latency_ratio or float('nan'):.3f}x)"),
            ("scored with", f"finetune_steps={settings.finetune_steps}, finetune_lr={settings.finetune_lr or 'auto'}, "
                            f"seed={settings.seed}" + (" (the policy file's settings)" if pfile.evaluation else ""))]
    if stated:
        rows.append(("constraints", "met" if res.feasible else f"not met: {res.reason}"))
    else:
        rows.append(("constraints", "none given (pass --flops-target / --max-acc-drop ... to check them)"))
    print_table("evaluation", rows)
    return 0


def _register_evaluate(sub: SubParsers) -> None:
    p = sub.add_parser("evaluate", help="evaluate one policy JSON file (with the settings it was scored with)")
    add_task_args(p)
    add_eval_args(p)
    add_constraint_args(p)
    p.add_argument("--policy", required=True, help="policy JSON (e.g. a search's best_policy.json); its "
                   "'evaluation' settings are used unless a flag overrides them")
    p.add_argument("--seed", type=int, default=None, help="fine-tune seed (default: the policy file's, else 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_evaluate)


# ---------------------------------------------------------------- search
def _search(args: argparse.Namespace) -> int:
    from ..search.feasibility import precheck_targets
    from ..search.run import FinalTuneConfig, check_output_dir, run_search
    from ..search.session import SearchConfig
    from ..searchers.base import get_searcher
    from ..tasks.datasets import load_dataset

    # 1. everything that can be checked without data or training
    check_task_args(args)
    searcher_cls = get_searcher(args.method)
    settings = settings_from_args(args)
    constraints = constraints_from_args(args, default_flops=0.5)
    trials = args.trials
    if trials is None:  # --episodes sets the budget of the RL searcher unless --trials is given
        trials = args.episodes if (args.method == "rl" and getattr(args, "episodes", None)) else 40
    config = SearchConfig(method=args.method, trials=trials, seed=args.seed, importance=args.importance,
                          max_ratio=args.max_ratio, min_ratio=args.min_ratio, round_to=_round_to(args, constraints),
                          time_budget_s=args.time_budget,
                          options=options_from_args(args, option_classes(), shared=("search_space",)))
    searcher_cls.check(config=config, settings=settings, constraints=constraints)
    final = FinalTuneConfig(epochs=args.final_epochs, lr=args.final_lr, optimizer=args.final_optimizer,
                            warmup=args.final_warmup, kd_alpha=args.kd_alpha,
                            kd_temperature=args.kd_temperature, iterative_steps=args.iterative_steps,
                            schedule=args.schedule, power=args.schedule_power)
    check_output_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    # 2. data (validates --data-root), then the reachability of FLOPs/params targets, then (maybe) training
    data = None
    if args.checkpoint is None:
        from ..tasks.task import DEFAULT_DATASET, DEFAULT_MODEL

        model_spec = args.model or DEFAULT_MODEL
        data = load_dataset(args.dataset or DEFAULT_DATASET, data_root=args.data_root, download=args.download,
                            seed=args.data_seed)
        from ..tasks.models import build_model

        untrained = build_model(model_spec, data.input_shape, data.num_classes)  # built once, for all
        graph = precheck_targets(model_spec=model_spec, input_shape=data.input_shape,
                                 num_classes=data.num_classes, constraints=constraints, max_ratio=args.max_ratio,
                                 ignore_layers=args.ignore_layers, prune_embed=args.prune_embed, model=untrained)
        searcher_cls.check(config=config, settings=settings, constraints=constraints, unit_names=graph.unit_names(),
                           unit_kinds={u.name: u.kind for u in graph.units})  # the unit-aware checks, before training
        settings = with_latency_batch(args, settings, untrained, data.input_shape)
        if settings.measure_latency and not args.no_latency_model:
            from ..search.feasibility import precheck_latency_floor

            precheck_latency_floor(model_spec=model_spec, input_shape=data.input_shape,
                                   num_classes=data.num_classes, constraints=constraints, latency=settings.latency,
                                   max_ratio=args.max_ratio, round_to=config.round_to,
                                   graph=graph)
    from ..tasks.task import build_task

    task = build_task(model=args.model, dataset=args.dataset, checkpoint=args.checkpoint, data_root=args.data_root,
                      download=args.download, data_seed=args.data_seed, train_epochs=args.train_epochs,
                      trust_checkpoint=args.trust_checkpoint, progress=not args.quiet, data=data,
                      ignore_layers=args.ignore_layers, prune_embed=args.prune_embed)
    if args.checkpoint is not None:
        precheck_targets(model_spec=task.spec.model, input_shape=task.input_shape, num_classes=task.num_classes,
                         constraints=constraints, max_ratio=args.max_ratio, ignore_layers=args.ignore_layers,
                         prune_embed=args.prune_embed)
        settings = with_latency_batch(args, settings, task.model, task.input_shape)
    outcome = run_search(task=task, out_dir=args.out, constraints=constraints, settings=settings, config=config,
                         final=final, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                         latency_model=not args.no_latency_model)
    print_search_summary(outcome.summary, out_dir=Path(args.out), checkpoint=args.checkpoint)
    return 0 if outcome.best is not None else 1


LATENCY_ROUND_TO = 8
"""Channel multiple used when a latency target is set and ``--round-to`` is not given."""


def _round_to(args: argparse.Namespace, constraints: object) -> int | None:
    """``--round-to``, defaulting to 8 under a latency target.

    CPU/GPU kernels work in channel blocks, so aligned widths are both faster and predictable (an odd width costs
    nearly a whole block).
    """
    if args.round_to is not None:
        return None if args.round_to == 1 else args.round_to  # 0 or negative: rejected by SearchConfig
    if getattr(constraints, "latency_target", None) is not None:
        if not args.quiet:
            print(f"note: latency target set, keeping multiples of {LATENCY_ROUND_TO} channels "
                  "(--round-to 1 turns this off)", file=sys.stderr)
        return LATENCY_ROUND_TO
    return None


def _load_space(text: str) -> str:
    from search_spaces import load_space

    load_space(text)
    return text


def _register_search(sub: SubParsers) -> None:
    p = sub.add_parser("search", help="search a pruning policy (default: the embedded MNIST-1D task)")
    add_task_args(p)
    add_eval_args(p)
    add_constraint_args(p)
    g = p.add_argument_group("search")
    g.add_argument("--method", default="greedy", help="uniform, global, greedy, knapsack, optuna, nsga2, rl, ray")
    g.add_argument("--trials", type=int, default=None, help="maximum evaluated policies (default 40; for --method rl "
                   "the --episodes count; with --storage, the shared study's total over all its workers)")
    g.add_argument("--seed", type=int, default=0, help="seed of the searcher and the per-candidate fine-tune")
    g.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO, help="largest per-unit ratio")
    g.add_argument("--min-ratio", type=float, default=0.0, help="smallest per-unit ratio")
    g.add_argument("--round-to", type=int, default=None, help="keep multiples of N channels (default: 8 with a "
                   "--latency-target, else none; 1 = no rounding)")
    g.add_argument("--time-budget", type=float, default=None, help="stop proposing after N seconds")
    g.add_argument("--resume", action="store_true", help="continue the search in --out (no finished trial re-runs)")
    g.add_argument("--overwrite", action="store_true", help="replace an earlier search in --out")
    g.add_argument("--no-latency-model", action="store_true",
                   help="skip the per-device latency table (no latency predictions; every check is measured)")
    g.add_argument("--search-space", dest="search_space", default=None, type=checked(_load_space),
                   help="policy search space: a preset (layerwise, grouped, threshold) or a .yaml/.json file")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    f = p.add_argument_group("final fine-tune")
    f.add_argument("--final-epochs", type=float, default=3.0, help="fine-tune epochs of the chosen policy")
    f.add_argument("--final-lr", type=float, default=None, help="default: 1/10 of the dense training LR")
    f.add_argument("--final-optimizer", default=None, choices=("sgd", "adamw"),
                   help="sgd or adamw (default: the model family's recipe)")
    f.add_argument("--final-warmup", type=float, default=None,
                   help="linear warm-up fraction of the steps (default: the family's, 0 for CNNs, 0.1 for transformers)")
    f.add_argument("--kd-alpha", type=float, default=0.0, help="distillation weight from the dense model")
    f.add_argument("--kd-temperature", type=float, default=4.0, help="distillation softmax temperature")
    f.add_argument("--iterative-steps", type=int, default=1, help="reach the policy in K pruning steps (1 = one-shot)")
    f.add_argument("--schedule", default="poly", help="iterative sparsity schedule: linear or poly (TF-MOT)")
    f.add_argument("--schedule-power", type=float, default=3.0, help="exponent of the poly schedule")
    for cls in option_classes():  # one flag group per method's options dataclass
        add_options(p, cls)
    p.set_defaults(func=_search)


REGISTRY: list[Callable[[SubParsers], None]] = [_register_train, _register_sensitivity, _register_evaluate,
                                                _register_search, *DEPLOY_COMMANDS]
"""Subcommand registrars, in help order."""
