"""PrunePilot benchmarks: one command per figure in docs/BENCHMARKS.md.

Examples:
    python scripts/benchmark.py latency --models tv:resnet18,tv:mobilenet_v2,resnet56 --batches 1,64
    python scripts/benchmark.py lut --models cnn1d,tv:resnet18,tv:mobilenet_v2 --batch 1
    python scripts/benchmark.py quality --tasks default --targets flops=0.3,flops=0.5,flops=0.7,latency=0.6
    python scripts/benchmark.py scaling --trials 16 --concurrency 1,2
    python scripts/benchmark.py load --method greedy --latency-target 0.6 --threads 1
    python scripts/benchmark.py paired --tasks mnist1d-hard,resnet-digits,mobile-digits --seeds 0,1,2
    python scripts/benchmark.py zoo              # every torchvision model: graph vs Torch-Pruning alone
    python scripts/benchmark.py workers --trials 16 --workers 1,2   # one Optuna study in PostgreSQL
    python scripts/benchmark.py transformers --threads 1   # vit-tiny FLOPs / latency, llama-tiny perplexity vs params
    python scripts/benchmark.py smoke            # seconds; what CI runs

Each run prints a markdown table and writes CSV next to it (``--out``, default ``bench/``).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _markdown(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _machine() -> str:
    import torch

    return (f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"python {platform.python_version()}")


def _emit(rows: list[dict[str, object]], out: Path, name: str) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)
    text = f"<!-- machine: {_machine()} -->\n" + _markdown(rows) + "\n"
    (out / f"{name}.md").write_text(text)
    print(text)


def _paired(args: argparse.Namespace, out: Path) -> None:
    import torch
    from bench_paired import best_recovery, headroom, parse_budget, run_grid, summarise

    torch.set_num_threads(args.threads)
    budgets = lambda text: [parse_budget(b) for b in text.split(",") if b]  # noqa: E731
    raw = run_grid(args.tasks.split(","), budgets(args.budgets), args.methods.split(","),
                   [int(s) for s in args.seeds.split(",")], out=out / "runs", trials=args.trials,
                   episodes=args.episodes, final_epochs=args.final_epochs, train_epochs=args.train_epochs,
                   reuse=args.reuse, headroom_budgets=budgets(args.headroom_budgets))
    _emit(raw, out, "paired_raw")
    summary = summarise(raw)
    _emit([{k: v for k, v in r.items() if not k.startswith("_")} for r in summary], out, "paired")
    _emit(headroom(summary), out, "paired_headroom")
    _emit(best_recovery(summary), out, "paired_best")


def _transformers(args: argparse.Namespace, out: Path) -> list[dict[str, object]]:
    from bench_transformers import run_grid, summarise

    ints = lambda text: [int(s) for s in text.split(",") if s]  # noqa: E731
    raw: list[dict[str, object]] = []
    for name in args.tasks.split(","):
        lm = name == "lm"
        targets = {"lm": args.lm_targets, "vit-timm": args.timm_targets}.get(name, args.vit_targets)
        raw += run_grid(name, targets=targets.split(","),
                        methods=(args.lm_methods if lm else args.vit_methods).split(","), seeds=ints(args.seeds),
                        out=out, epochs=args.lm_epochs if lm else args.vit_epochs, trials=args.trials,
                        final_epochs=args.final_epochs, threads=args.threads, measure=not lm,
                        tp_steps=args.tp_steps, reuse=args.reuse, prune_embed=args.prune_embed and not lm)
    _emit(raw, out, "transformers_raw")
    _emit(summarise(raw), out, "transformers")
    return raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency", help="measured latency ratio vs FLOPs ratio after structural pruning")
    lat.add_argument("--models", default="tv:resnet18,tv:mobilenet_v2,resnet56")
    lat.add_argument("--batches", default="1,64")
    lat.add_argument("--target", type=float, default=0.5)
    lat.add_argument("--round-to", type=int, default=None)
    lut = sub.add_parser("lut", help="latency table: build time and prediction error")
    lut.add_argument("--models", default="cnn1d,tv:resnet18,tv:mobilenet_v2")
    lut.add_argument("--batch", type=int, default=1)
    lut.add_argument("--policies", type=int, default=12)
    lut.add_argument("--round-to", type=int, default=None)
    q = sub.add_parser("quality", help="accuracy of every searcher at several targets (and search cost)")
    q.add_argument("--tasks", default="default")
    q.add_argument("--targets", default="flops=0.3,flops=0.5,flops=0.7,latency=0.6")
    q.add_argument("--methods", default="uniform,global,global-taylor,greedy,optuna,nsga2,rl")
    q.add_argument("--trials", type=int, default=40)
    q.add_argument("--episodes", type=int, default=60)
    q.add_argument("--finetune-steps", type=int, default=0)
    q.add_argument("--final-epochs", type=float, default=3.0)
    q.add_argument("--latency-batch", type=int, default=64)
    q.add_argument("--data-root", default=None)
    sc = sub.add_parser("scaling", help="Ray Tune: same N evaluations at 1 vs K trials at a time")
    sc.add_argument("--trials", type=int, default=16)
    sc.add_argument("--finetune-steps", type=int, default=150)
    sc.add_argument("--concurrency", default="1,2")
    sc.add_argument("--gpus-per-trial", type=float, default=0.0)
    ld = sub.add_parser("load", help="the same latency-target search quiet and with one busy core")
    ld.add_argument("--method", default="greedy")
    ld.add_argument("--latency-target", default="0.6")
    ld.add_argument("--threads", type=int, default=1)
    ld.add_argument("--latency-batch", default="auto", help="N or auto (the search's default)")
    ld.add_argument("--trials", type=int, default=None)
    pq = sub.add_parser("paired", help="seeded, paired quality on the headroom tasks: intervals, verdicts, recovery")
    pq.add_argument("--tasks", default="mnist1d-hard,resnet-digits,mobile-digits")
    pq.add_argument("--budgets", default="0.3,0.15",
                    help="targets where every method runs: FLOPs ratios (0.2) or measured latency ratios (latency=0.4)")
    pq.add_argument("--headroom-budgets", default="0.5", help="extra FLOPs targets where only uniform runs")
    pq.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    pq.add_argument("--methods", default="uniform,global,global-taylor,greedy,optuna")
    pq.add_argument("--seeds", default="0,1,2", help="search and fine-tune seeds (>= 2 for an interval)")
    pq.add_argument("--trials", type=int, default=12)
    pq.add_argument("--episodes", type=int, default=30)
    pq.add_argument("--final-epochs", type=float, default=0.5, help="the common final fine-tune of every method")
    pq.add_argument("--train-epochs", type=int, default=None, help="override each task's dense training epochs")
    pq.add_argument("--reuse", action="store_true", help="keep finished runs (their row.json) under --out/runs")
    zo = sub.add_parser("zoo", help="every torchvision classification model: PrunePilot's graph vs Torch-Pruning alone")
    zo.add_argument("--models", default=None, help="comma-separated torchvision names (default: the 63-model sweep)")
    zo.add_argument("--ratio", type=float, default=0.5)
    zo.add_argument("--mem-gb", type=float, default=6.0, help="address-space cap of each side")
    zo.add_argument("--timeout", type=float, default=300.0, help="seconds each side may take")
    wk = sub.add_parser("workers", help="one Optuna study in PostgreSQL: same N evaluations by 1 vs K workers")
    wk.add_argument("--trials", type=int, default=16)
    wk.add_argument("--finetune-steps", type=int, default=100)
    wk.add_argument("--workers", default="1,2")
    wk.add_argument("--storage", default=None, help="PostgreSQL URL (default: a throwaway server on 127.0.0.1)")
    tf = sub.add_parser("transformers", help="vit-tiny at FLOPs / latency targets, llama-tiny perplexity vs params")
    tf.add_argument("--tasks", default="vit,lm",
                    help="vit (vit-tiny on digits32), vit-timm (timm:vit_tiny_patch16_224 on digits32), lm (llama-tiny "
                         "on pystdlib)")
    tf.add_argument("--vit-targets", default="flops=0.5,flops=0.7,latency=0.6,latency=0.9")
    tf.add_argument("--timm-targets", default="flops=0.5,latency=0.6", help="targets of vit-timm")
    tf.add_argument("--vit-methods", default="uniform,tp-uniform,greedy,knapsack,optuna",
                    help="methods of both ViTs: bench_paired.METHODS names, plus tp-uniform (Torch-Pruning's own uniform)")
    tf.add_argument("--lm-targets", default="params=0.85,params=0.7,params=0.5")
    tf.add_argument("--lm-methods", default="uniform,greedy,knapsack,optuna")
    tf.add_argument("--seeds", default="0,1,2", help="search and fine-tune seeds (>= 2 for an interval)")
    tf.add_argument("--vit-epochs", type=int, default=30, help="dense training of both ViTs (cached under --out)")
    tf.add_argument("--lm-epochs", type=int, default=15, help="dense training of llama-tiny (cached under --out)")
    tf.add_argument("--trials", type=int, default=12, help="optuna trials")
    tf.add_argument("--final-epochs", type=float, default=1.0, help="the common final fine-tune of every method")
    tf.add_argument("--prune-embed", action="store_true",
                    help="the project's searchers prune the ViTs' residual width too (rows of task 'vit+embed', ...)")
    tf.add_argument("--tp-steps", type=int, default=10, help="bisection steps of Torch-Pruning's uniform ratio")
    tf.add_argument("--threads", type=int, default=1, help="torch threads (training, search, latency)")
    tf.add_argument("--reuse", action="store_true", help="keep finished runs (their row.json) under --out/runs")
    sub.add_parser("smoke", help="a seconds-long run of every benchmark path (CI)")
    for s in sub.choices.values():
        s.add_argument("--out", default="bench")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.cmd == "latency":
        from bench_latency import flops_vs_latency

        rows = flops_vs_latency(args.models.split(","), [int(b) for b in args.batches.split(",")], args.target,
                                args.round_to)
        _emit(rows, out, "latency")
    elif args.cmd == "lut":
        from bench_latency import table_accuracy

        _emit(table_accuracy(args.models.split(","), args.batch, args.policies, round_to=args.round_to), out, "lut")
    elif args.cmd == "quality":
        from bench_quality import quality

        rows = quality(args.tasks.split(","), args.targets.split(","), args.methods.split(","), out=out / "runs",
                       trials=args.trials, episodes=args.episodes, finetune_steps=args.finetune_steps,
                       final_epochs=args.final_epochs, latency_batch=args.latency_batch, data_root=args.data_root)
        _emit(rows, out, "quality")
    elif args.cmd == "scaling":
        from bench_scaling import scaling

        rows = scaling(out=out / "runs", trials=args.trials, finetune_steps=args.finetune_steps,
                       concurrencies=[int(c) for c in args.concurrency.split(",")], gpus_per_trial=args.gpus_per_trial)
        _emit(rows, out, "scaling")
    elif args.cmd == "load":
        from bench_load import under_load

        extra = ["--trials", str(args.trials)] if args.trials else []
        _emit(under_load(out=out / "runs-load", method=args.method, target=args.latency_target, threads=args.threads,
                         batch=args.latency_batch, extra=extra), out, "load")
    elif args.cmd == "zoo":
        from bench_zoo import zoo, zoo_models

        models = args.models.split(",") if args.models else zoo_models()
        _emit(zoo(models, ratio=args.ratio, timeout_s=args.timeout, mem_gb=args.mem_gb), out, "zoo")
    elif args.cmd == "paired":
        _paired(args, out)
    elif args.cmd == "transformers":
        _transformers(args, out)
    elif args.cmd == "workers":
        from bench_workers import workers

        rows = workers(out=out / "runs", trials=args.trials, finetune_steps=args.finetune_steps,
                       counts=[int(c) for c in args.workers.split(",")], storage=args.storage)
        _emit(rows, out, "workers")
    else:
        from bench_latency import flops_vs_latency, table_accuracy
        from bench_quality import quality

        _emit(flops_vs_latency(["cnn1d"], [8]), out, "smoke_latency")
        _emit(table_accuracy(["cnn1d"], 8, n_policies=2), out, "smoke_lut")
        rows = quality(["default"], ["flops=0.5"], ["uniform", "greedy"], out=out / "runs", trials=3, episodes=2,
                       finetune_steps=0, final_epochs=0.0, latency_batch=8, train_epochs=3)
        _emit(rows, out, "smoke_quality")
        from bench_transformers import run_grid as transformer_grid

        tiny = {"seeds": [0], "out": out / "transformers", "epochs": 1, "trials": 2, "final_epochs": 0.05,
                "threads": 1, "tp_steps": 2, "max_rounds": 2}
        trows = transformer_grid("vit", targets=["flops=0.7"], methods=["uniform", "tp-uniform"], measure=True, **tiny)
        trows += transformer_grid("vit-timm", targets=["flops=0.7"], methods=["tp-uniform"], measure=False, **tiny)
        trows += transformer_grid("lm", targets=["params=0.7"], methods=["uniform"], measure=False, **tiny)
        _emit(trows, out, "smoke_transformers")
        if any("error" in r for r in rows + trows):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
