"""Argument groups shared by several subcommands, and their conversion to typed configs."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..constraints import Constraints, LatencyTarget

if TYPE_CHECKING:  # torch-loading modules are imported inside the functions, so `--help` stays fast
    from torch import nn

    from ..evaluation import EvalSettings
    from ..tasks.task import Task

__all__ = ["add_task_args", "add_eval_args", "add_constraint_args", "task_from_args", "settings_from_args",
           "constraints_from_args", "ratio_list", "given_eval_flags", "choose_threads", "MODEL_HELP", "DATASET_HELP",
           "QUIET_HELP", "DEVICE_HELP", "LazyChoices"]

MODEL_HELP = (
    "model spec: cnn1d-wide (default), cnn1d, mlp, lenet, resnet20, resnet56, tv:<torchvision name>, "
    "or package.module:factory"
)
DATASET_HELP = "mnist1d (default), digits, digits32, mnist, fashion-mnist, cifar10, imagefolder:PATH"
QUIET_HELP = "no progress bars, no warnings (results and errors are still printed)"
DEVICE_HELP = "cpu, cuda or cuda:N"


class LazyChoices(Sequence[str]):
    """argparse ``choices`` read from ``module.attr`` on first use (a value check or ``--help`` of that command).

    Building the parser then imports nothing heavy, so ``prunepilot --help`` does not load torch or gymnasium.
    """

    def __init__(self, module: str, attr: str) -> None:
        self._where, self._values = (module, attr), None

    def _load(self) -> tuple[str, ...]:
        if self._values is None:
            value = getattr(importlib.import_module(self._where[0]), self._where[1])
            self._values = tuple(value() if callable(value) else value)
        return self._values

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, value: object) -> bool:
        return value in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())


def ratio_list(text: str) -> list[float]:
    """Parse ``0.1,0.3,0.5`` into floats (argparse type)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.1,0.5, got {text!r}") from None


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_task_args(p: argparse.ArgumentParser, *, checkpoint_required: bool = False) -> None:
    """Model / dataset / checkpoint options."""
    g = p.add_argument_group("task")
    g.add_argument("--checkpoint", required=checkpoint_required,
                   help="dense checkpoint (from `prunepilot train`, or a state_dict with --model/--dataset)")
    g.add_argument("--model", default=None, help=MODEL_HELP)
    g.add_argument("--dataset", default=None, help=DATASET_HELP)
    g.add_argument("--data-root", default=None, help="local directory of torchvision datasets")
    g.add_argument("--download", action="store_true", help="allow downloading the dataset into --data-root")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the dataset generator and split")
    g.add_argument("--train-epochs", type=int, default=15, help="epochs when a dense baseline must be trained")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow unpickling a checkpoint that is more than tensors (only for trusted files)")
    g.add_argument("--ignore-layers", type=_patterns, default=(), metavar="PATTERN,...",
                   help="layers to keep whole: names from model.named_modules() or globs, e.g. 'features.0,layer4.*' "
                   "(a container name covers its layers)")
    g.add_argument("--prune-embed", action="store_true",
                   help="prune a transformer's residual (embedding) width too, as one global unit; off by default "
                        "(torchvision and timm ViTs; Hugging Face models are refused)")


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """How candidates are evaluated."""
    g = p.add_argument_group("evaluation")
    g.add_argument("--importance", default="l2", help="channel importance: l1, l2, taylor, bn_scale, activation, "
                   "random, lamp, fpgm")
    g.add_argument("--finetune-steps", type=int, default=None,
                   help="short fine-tune steps per candidate (default 0 = BatchNorm recalibration only; evaluate: "
                   "the policy file's)")
    g.add_argument("--finetune-lr", type=float, default=None,
                   help="learning rate of the short fine-tune (default: the model family's, 0.01 for CNNs, 2e-4 for "
                        "transformers; evaluate: the policy file's)")
    g.add_argument("--finetune-optimizer", default=None, choices=("sgd", "adamw"),
                   help="optimizer of the short fine-tune (default: the family's, sgd for CNNs, adamw for transformers)")
    g.add_argument("--finetune-warmup", type=float, default=None,
                   help="warm-up fraction of the short fine-tune (default: the family's, 0 / 0.1)")
    g.add_argument("--eval-limit", type=int, default=None, help="score candidates on the first N val samples")
    g.add_argument("--device", default="cpu", help=DEVICE_HELP)
    g.add_argument("--latency-batch", type=_latency_batch, default="auto", metavar="N|auto",
                   help="batch size of latency measurements (default auto: the smallest of 64, 128, 256 holding "
                        "0.27 G dense multiply-adds, so per-call overhead does not hide what pruning saves; give "
                        "your deployment batch, e.g. 1)")
    g.add_argument("--no-latency", action="store_true", help="do not time candidates (FLOPs-only studies)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads for training and timing (default: the cores free right now); part of the "
                        "latency device, like --latency-batch")
    g.add_argument("--latency-tolerance", type=float, default=0.03,
                   help="paired latency rounds go on until the ratio's 90%% interval is within this relative "
                        "half-width (or a round cap is hit)")


def _latency_batch(text: str) -> int | str:
    """``--latency-batch``: a whole number >= 1, or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"latency batch must be a whole number >= 1 or 'auto', got {text!r}: e.g. "
                                         "--latency-batch 64")
    return value


def with_latency_batch(args: argparse.Namespace, settings: EvalSettings, model: nn.Module,
                       input_shape: tuple[int, ...]) -> EvalSettings:
    """``settings`` with ``--latency-batch auto`` resolved for ``model`` (unchanged for an explicit batch)."""
    if getattr(args, "latency_batch", "auto") != "auto":
        return settings
    import dataclasses

    import torch
    import torch_pruning as tp

    from ..measure.latency import auto_batch_size

    try:
        macs, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - a counter failure must not stop a model that runs
        import warnings

        warnings.warn(f"--latency-batch auto could not count the model's MACs ({type(exc).__name__}); timing at "
                      f"batch {settings.latency.batch_size}: pass --latency-batch N to choose", stacklevel=2)
        return settings
    latency = dataclasses.replace(settings.latency, batch_size=auto_batch_size(float(macs)))
    return dataclasses.replace(settings, latency=latency)


def add_constraint_args(p: argparse.ArgumentParser) -> None:
    """Cost targets and the accuracy budget."""
    g = p.add_argument_group("constraints")
    g.add_argument("--flops-target", type=float, default=None, help="max MACs ratio of dense, e.g. 0.5")
    g.add_argument("--params-target", type=float, default=None, help="max parameter ratio of dense")
    g.add_argument("--latency-target", default=None, help="max latency: ratio of dense (0.6) or time (12ms)")
    g.add_argument("--max-metric-drop", "--max-acc-drop", dest="max_acc_drop", type=float, default=None,
                   help="max drop of the task's metric versus dense: accuracy points (e.g. 1.0) or a perplexity "
                        "increase (e.g. 0.5); --max-acc-drop is an alias")


def check_task_args(args: argparse.Namespace) -> None:
    """Cheap validation of names before any data is loaded or model trained."""
    from ..tasks.task import DEFAULT_DATASET, DEFAULT_MODEL, TaskSpec

    if args.checkpoint is None:
        TaskSpec(args.model or DEFAULT_MODEL, args.dataset or DEFAULT_DATASET, args.data_seed).validate()
    if getattr(args, "train_epochs", 1) < 1:
        from ..errors import user_error

        raise user_error("--train-epochs must be >= 1, got", args.train_epochs, "e.g. --train-epochs 15")


def task_from_args(args: argparse.Namespace, *, progress: bool) -> Task:
    """Build the task an invocation works on."""
    from ..tasks.task import build_task

    return build_task(model=args.model, dataset=args.dataset, checkpoint=args.checkpoint, data_root=args.data_root,
                      download=args.download, data_seed=args.data_seed, train_epochs=args.train_epochs,
                      trust_checkpoint=args.trust_checkpoint, progress=progress,
                      ignore_layers=getattr(args, "ignore_layers", ()), prune_embed=getattr(args, "prune_embed", False))


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """Evaluation settings from the parsed arguments (validated)."""
    from ..evaluation import EvalSettings
    from ..measure.latency import AUTO_BATCHES, LatencyConfig, resolve_device
    from ..pruning.importance import check_importance

    check_importance(args.importance)
    device = str(resolve_device(args.device))
    given = {k: v for k, v in (("finetune_steps", args.finetune_steps), ("finetune_lr", args.finetune_lr),
                                ("finetune_optimizer", args.finetune_optimizer),
                                ("finetune_warmup", args.finetune_warmup),
                                ("seed", getattr(args, "seed", None))) if v is not None}
    threads = choose_threads(args.threads)
    batch = args.latency_batch if isinstance(args.latency_batch, int) else AUTO_BATCHES[0]  # auto: see with_latency_batch
    latency = LatencyConfig(batch_size=batch, device=device, threads=threads,
                            tolerance=args.latency_tolerance)
    return EvalSettings(eval_limit=args.eval_limit, device=device, latency=latency,
                        measure_latency=not args.no_latency, **given)


def given_eval_flags(args: argparse.Namespace) -> frozenset[str]:
    """``EvalSettings`` fields set by an explicit flag (they override a policy file's evaluation settings)."""
    flags = {"finetune_steps": args.finetune_steps, "finetune_lr": args.finetune_lr, "eval_limit": args.eval_limit,
             "finetune_optimizer": args.finetune_optimizer, "finetune_warmup": args.finetune_warmup,
             "seed": getattr(args, "seed", None)}
    return frozenset(k for k, v in flags.items() if v is not None)


def choose_threads(requested: int | None) -> int:
    """Torch threads of this invocation: ``--threads``, else the cores free now; set process-wide.

    Warns (naming the free-core figure) when more threads are requested than cores are free.
    """
    import torch

    from ..errors import user_error
    from ..measure.threads import check_threads, default_threads

    if requested is not None and requested < 1:
        raise user_error("--threads must be >= 1, got", requested, "e.g. --threads 1")
    threads = requested if requested is not None else default_threads()
    if requested is not None:
        check_threads(threads, what="training and timing")
    torch.set_num_threads(threads)
    return threads


def constraints_from_args(args: argparse.Namespace, *, default_flops: float | None = None) -> Constraints:
    """Constraints from the parsed arguments; ``default_flops`` applies when no target at all is given."""
    latency = LatencyTarget.parse(args.latency_target) if args.latency_target is not None else None
    flops = args.flops_target
    if flops is None and latency is None and args.params_target is None and args.max_acc_drop is None:
        flops = default_flops
    if latency is not None and getattr(args, "no_latency", False):
        from ..errors import user_error

        raise user_error("--latency-target needs latency measurements, but --no-latency was given:",
                         args.latency_target, "drop --no-latency or the latency target")
    return Constraints(flops_target=flops, params_target=args.params_target, latency_target=latency,
                       max_acc_drop=args.max_acc_drop)
