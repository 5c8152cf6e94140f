"""Subcommands from policy to deployable model: ``finetune``, ``sparsify``, ``export``, ``report``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import user_error
from .common import DEVICE_HELP, QUIET_HELP, add_task_args, check_task_args, task_from_args
from .display import print_table

__all__ = ["DEPLOY_COMMANDS"]

SubParsers = argparse._SubParsersAction  # noqa: SLF001


def _out_dir(path: str, *, not_same_as: Path | None = None) -> Path:
    from ..search.run import check_output_dir

    out = check_output_dir(path, resume=False, overwrite=True)
    if not_same_as is not None and out.resolve() == not_same_as.parent.resolve():
        raise user_error("--out must differ from the input model's directory, got", str(out),
                         "pass a new directory so the original model is kept")
    return out


def _expected_fingerprint(art: Any, pruned_path: Path) -> str | None:
    """The dense task's fingerprint recorded in the pruned file, else in the search's side files."""
    if art.task_fingerprint:
        return art.task_fingerprint
    for name in ("summary.json", "run_config.json"):
        side = pruned_path.parent / name
        if side.is_file():
            return json.loads(side.read_text()).get("task_fingerprint")
    return None


def _task_for_artifact(args: argparse.Namespace, art: Any, pruned_path: Path, *, progress: bool) -> Any:
    """The dense task a pruned model came from: ``--checkpoint``, else the one recorded in the pruned file.

    Without ``--checkpoint`` nothing is trained: the recorded dense checkpoint (or the cached baseline of the
    pruned model's spec) must exist, else the command stops at once naming the file to pass.
    """
    expected = _expected_fingerprint(art, pruned_path)
    if args.checkpoint is None:
        from ..tasks.task import TaskSpec, default_dense_checkpoint

        args.model = args.model or art.model_spec
        args.dataset = args.dataset or art.dataset
        cached = default_dense_checkpoint(TaskSpec(args.model, args.dataset, args.data_seed), epochs=args.train_epochs)
        if art.dense_checkpoint and Path(art.dense_checkpoint).is_file():
            args.checkpoint = art.dense_checkpoint
        elif cached.is_file():
            args.checkpoint = str(cached)
        else:
            recorded = art.dense_checkpoint or "(not recorded in this older file)"
            raise user_error("the dense model this pruned model was cut from is needed as teacher and baseline, "
                             "but it is not at", recorded, "pass --checkpoint DENSE.pt (the one the search used)")
    task = task_from_args(args, progress=progress)
    if task.spec.model != art.model_spec or tuple(task.input_shape) != tuple(art.input_shape):
        raise user_error(f"the dense checkpoint is a {task.spec.model!r} on inputs {tuple(task.input_shape)}, but the "
                         "pruned model was cut from", f"{art.model_spec} {tuple(art.input_shape)}",
                         "pass the --checkpoint the search used")
    if expected and expected != task.fingerprint:
        raise user_error(f"the dense model in {args.checkpoint} (fingerprint {task.fingerprint}) differs from the one "
                         "the pruned model was searched on, fingerprint", expected,
                         "pass the --checkpoint the search used")
    return task


# ---------------------------------------------------------------- finetune
def _finetune(args: argparse.Namespace) -> int:
    from ..deploy.artifacts import read_pruned_artifact, save_pruned_model
    from ..deploy.finetune import FinalTuneConfig, finetune_model
    from ..measure.latency import resolve_device
    from ..storage import atomic_write_json

    config = FinalTuneConfig(epochs=args.epochs, lr=args.lr, kd_alpha=args.kd_alpha,
                             kd_temperature=args.kd_temperature)
    if args.epochs <= 0:
        raise user_error("--epochs must be > 0, got", args.epochs, "e.g. --epochs 3")
    if args.batch_size < 1:
        raise user_error("--batch-size must be >= 1, got", args.batch_size, "e.g. --batch-size 128")
    device = str(resolve_device(args.device))
    check_task_args(args)
    pruned = Path(args.pruned)
    art = read_pruned_artifact(pruned)
    out = _out_dir(args.out, not_same_as=pruned)
    task = _task_for_artifact(args, art, pruned, progress=not args.quiet)
    model = art.model
    before = {"val_accuracy": task.score(model, "val"), "test_accuracy": task.score(model, "test")}
    record = finetune_model(model, task, config=config, device=device, batch_size=args.batch_size, seed=args.seed)
    after = {"val_accuracy": task.score(model, "val"), "test_accuracy": task.score(model, "test"),
             "dense_val_accuracy": task.score(task.model, "val"),
             "dense_test_accuracy": task.score(task.model, "test")}
    summary = {"source": str(pruned), "task_fingerprint": task.fingerprint, "finetune": record, "before": before,
               "after": after}
    save_pruned_model(out / "pruned_model.pt", task=task, model=model, removed=art.removed, policy=art.policy,
                      metrics={**art.metrics, "finetune": summary})
    atomic_write_json(out / "best_policy.json", {"policy": art.policy, "final": after})
    atomic_write_json(out / "finetune.json", summary)
    print_table("fine-tune", [
        ("val accuracy", f"{before['val_accuracy']:.2f}% -> {after['val_accuracy']:.2f}% "
                         f"(dense {after['dense_val_accuracy']:.2f}%)"),
        ("test accuracy", f"{before['test_accuracy']:.2f}% -> {after['test_accuracy']:.2f}% "
                          f"(dense {after['dense_test_accuracy']:.2f}%)"),
        ("steps", f"{record['steps']} at lr {record['lr']:g}, kd_alpha {record['kd_alpha']:g}"),
    ])
    print(f"wrote {out / 'pruned_model.pt'} and {out / 'finetune.json'}")
    return 0


def _register_finetune(sub: SubParsers) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pruned model (optionally distilling from the dense model)")
    p.add_argument("--pruned", required=True, help="pruned_model.pt of a search (or of an earlier finetune)")
    add_task_args(p)
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the training split")
    p.add_argument("--lr", type=float, default=None, help="peak LR (default: 1/10 of the dense training LR)")
    p.add_argument("--kd-alpha", type=float, default=0.0, help="distillation weight from the dense model, 0..1")
    p.add_argument("--kd-temperature", type=float, default=4.0, help="distillation softmax temperature")
    p.add_argument("--batch-size", type=int, default=128, help="mini-batch size")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the data order")
    p.add_argument("--out", required=True, help="output directory (pruned_model.pt, finetune.json)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_finetune)


# ---------------------------------------------------------------- sparsify
def _sparsify(args: argparse.Namespace) -> int:
    from ..deploy.artifacts import save_pruned_model
    from ..deploy.cleanup import remove_dead_channels
    from ..deploy.unstructured import SparsifyConfig, layer_sparsity, sparsify
    from ..evaluation import get_engine
    from ..measure.latency import resolve_device
    from ..policy import Policy
    from ..storage import atomic_write_json, atomic_write_text

    config = SparsifyConfig(sparsity=args.sparsity, scope=args.scope, method=args.method, norm=args.norm,
                            include_output_layer=not args.skip_output_layer, finetune_epochs=args.finetune_epochs,
                            finetune_lr=args.finetune_lr, bn_recalibration_batches=args.bn_batches)
    device = str(resolve_device(args.device))
    check_task_args(args)
    out = _out_dir(args.out)
    task = task_from_args(args, progress=not args.quiet)
    example = task.example_input()
    result = sparsify(task.model, config=config, example_input=example, task=task, device=device, seed=args.seed)
    model, removed, cleanup = result.model, {}, None
    if args.cleanup:
        model, cleanup = remove_dead_channels(result.model, example)
        removed = cleanup.removed
    units = {u.name: u.channels for u in get_engine(task).units}
    policy = Policy({u: len(v) / units[u] for u, v in removed.items()}, "l1").to_dict()
    layers = [s.to_dict() for s in (layer_sparsity(model, layers=[s.layer for s in result.layers])
                                    if cleanup else result.layers)]
    n_weights, n_zeros = sum(s["weights"] for s in layers), sum(s["zeros"] for s in layers)
    metrics = {
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "sparsity": n_zeros / max(n_weights, 1), "sparsity_before_cleanup": result.sparsity,
        "nonzero_weights": n_weights - n_zeros, "val_accuracy": task.score(model, "val"),
        "test_accuracy": task.score(model, "test"), "dense_val_accuracy": task.score(task.model, "val"),
        "dense_test_accuracy": task.score(task.model, "test"), "finetune": result.finetune,
        "cleanup": None if cleanup is None else {
            "removed": cleanup.removed, "channels_removed": cleanup.channels_removed,
            "outgoing_dead": cleanup.outgoing_dead, "incoming_dead": cleanup.incoming_dead, "folded": cleanup.folded,
            "kept_constant": cleanup.kept_constant, "params_before": cleanup.params_before,
            "params_after": cleanup.params_after, "max_output_change": cleanup.max_output_change},
        "layers": layers,
    }
    save_pruned_model(out / "pruned_model.pt", task=task, model=model, removed=removed, policy=policy,
                      metrics=metrics)
    atomic_write_json(out / "sparsity.json", metrics)
    header = "layer,kind,shape,weights,zeros,sparsity,threshold\n"
    atomic_write_text(out / "sparsity.csv", header + "".join(
        f"{s['layer']},{s['kind']},{'x'.join(map(str, s['shape']))},{s['weights']},{s['zeros']},{s['sparsity']:.6f},"
        f"{'' if s['threshold'] is None else repr(s['threshold'])}\n" for s in layers))
    rows = [(s["layer"], "x".join(map(str, s["shape"])), f"{s['sparsity']:.3f}") for s in layers]
    print_table(f"sparsity {metrics['sparsity']:.3f} ({config.method}, {config.scope}); val accuracy "
                f"{metrics['val_accuracy']:.2f}% (dense {metrics['dense_val_accuracy']:.2f}%)", rows,
                header=("layer", "shape", "sparsity"))
    if cleanup is not None:
        print(f"cleanup removed {cleanup.channels_removed} dead channels: parameters {cleanup.params_before} -> "
              f"{cleanup.params_after} (outputs changed by at most {cleanup.max_output_change:.2g})")
    print(f"wrote {out / 'pruned_model.pt'}, {out / 'sparsity.csv'} and {out / 'sparsity.json'}")
    return 0


def _register_sparsify(sub: SubParsers) -> None:
    p = sub.add_parser("sparsify", help="unstructured / threshold magnitude pruning (+ dead-channel cleanup)")
    add_task_args(p)
    p.add_argument("--sparsity", type=float, required=True, help="target fraction of zero weights, e.g. 0.8")
    p.add_argument("--scope", default="global", help="global (one ranking across layers) or layer")
    p.add_argument("--method", default="l1", help="l1, ln_structured (layer scope) or threshold (per-layer q*std)")
    p.add_argument("--norm", type=float, default=2.0, help="n of ln_structured")
    p.add_argument("--skip-output-layer", action="store_true", help="leave the classifier's weights dense")
    p.add_argument("--cleanup", action="store_true", help="remove channels whose connections are all pruned")
    p.add_argument("--finetune-epochs", type=float, default=0.0, help="fine-tune with the masks in place")
    p.add_argument("--finetune-lr", type=float, default=None, help="fine-tune LR (default: 1/10 of the dense LR)")
    p.add_argument("--bn-batches", type=int, default=8, help="BatchNorm re-estimation batches (0 = off)")
    p.add_argument("--device", default="cpu", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the data order")
    p.add_argument("--out", required=True, help="output directory (pruned_model.pt, sparsity.csv/json)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_sparsify)


# ---------------------------------------------------------------- export
def _export(args: argparse.Namespace) -> int:
    from ..deploy.artifacts import read_pruned_artifact
    from ..deploy.export import ExportCheckError, check_formats, export_model

    formats = check_formats(args.formats.split(","))
    if not args.atol > 0:
        raise user_error("--atol must be > 0, got", args.atol, "e.g. --atol 1e-4")
    if args.opset is not None and args.opset < 7:
        raise user_error("--opset must be an ONNX opset >= 7, got", args.opset, "e.g. --opset 18 or leave it out")
    pruned = Path(args.pruned)
    art = read_pruned_artifact(pruned)
    out = _out_dir(args.out, not_same_as=pruned)
    import torch

    example = torch.randn((1, *art.input_shape), generator=torch.Generator().manual_seed(0))
    extra = {"policy.json": {"policy": art.policy, "model": art.model_spec, "dataset": art.dataset,
                             "input_shape": list(art.input_shape), "num_classes": art.num_classes,
                             "metrics": art.metrics}}
    try:
        report = export_model(art.model, example_input=example, out_dir=out, formats=formats, atol=args.atol,
                              opset=args.opset, extra_files=extra)
    except ExportCheckError as exc:
        print(f"prunepilot: export check failed: {exc}", file=sys.stderr)
        return 1
    rows = [(fmt, Path(path).name, "-" if fmt not in report.max_abs_diff else f"{report.max_abs_diff[fmt]:.2e}")
            for fmt, path in report.files.items()]
    print_table(f"exported to {out}", rows, header=("format", "file", "max |diff| vs PyTorch"))
    return 0


def _register_export(sub: SubParsers) -> None:
    p = sub.add_parser("export", help="export a pruned model to TorchScript / ONNX (checked) / torch.export")
    p.add_argument("--pruned", required=True, help="pruned_model.pt of a search, finetune or sparsify")
    p.add_argument("--formats", default="torchscript,onnx,state",
                   help="comma list of torchscript, onnx, export, state, hf (Hugging Face models: save_pretrained)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest tolerated output difference")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_export)


# ---------------------------------------------------------------- report
def _report(args: argparse.Namespace) -> int:
    from ..report import build_report

    outcome = build_report(args.dir, out_dir=args.out)
    print(f"wrote {outcome.markdown} and {outcome.html} ({len(outcome.images)} plots)")
    for m in outcome.missing:
        print(f"  missing: {m}")
    return 0


def _register_report(sub: SubParsers) -> None:
    p = sub.add_parser("report", help="write report.md / report.html with plots for a search output directory")
    p.add_argument("dir", help="the --out directory of a search")
    p.add_argument("--out", default=None, help="where to write (default: DIR)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=_report)


DEPLOY_COMMANDS: list[Callable[[SubParsers], None]] = [_register_finetune, _register_sparsify, _register_export,
                                                       _register_report]
"""Registrars of the deployment subcommands (appended to ``commands.REGISTRY``)."""
