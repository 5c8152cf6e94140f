"""Benchmark: ``--method optuna`` against the uniform / global / greedy baselines on one task and budget.

Every method runs through the ordinary CLI with the same evaluation settings (per-candidate fine-tune steps,
final fine-tune epochs, FLOPs target); the table compares the best feasible policy's search-time validation
accuracy and its final validation / test accuracy. Example (the default task, 50% FLOPs)::

    OMP_NUM_THREADS=1 python scripts/bench_optuna.py --out runs/bench-optuna --flops-target 0.5 --trials 40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent.cli import main as cli_main

METHODS = ("uniform", "global", "greedy", "optuna")


def run(method: str, *, out: Path, args: argparse.Namespace) -> dict[str, object]:
    argv = ["search", "--method", method, "--flops-target", str(args.flops_target), "--trials", str(args.trials),
            "--finetune-steps", str(args.finetune_steps), "--final-epochs", str(args.final_epochs),
            "--seed", str(args.seed), "--out", str(out), "--overwrite", "--quiet", *args.extra]
    t0 = time.monotonic()
    code = cli_main(argv)
    wall = time.monotonic() - t0
    summary = json.loads((out / "summary.json").read_text())
    best, final = summary.get("best") or {}, summary.get("final") or {}
    return {"method": method, "exit": code, "evaluations": summary["counts"]["total"],
            "feasible": summary["counts"]["feasible"], "flops_ratio": best.get("flops_ratio"),
            "search_val_acc": best.get("accuracy"), "final_val_acc": final.get("val_accuracy"),
            "final_test_acc": final.get("test_accuracy"), "wall_s": round(wall, 1),
            "command": "prunepilot " + " ".join(argv)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="root directory; one sub-directory per method")
    p.add_argument("--flops-target", type=float, default=0.5)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--finetune-steps", type=int, default=0)
    p.add_argument("--final-epochs", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("extra", nargs="*", help="more `prunepilot search` options after --, e.g. -- --no-latency")
    args = p.parse_args()
    root = Path(args.out)
    rows = [run(m, out=root / m, args=args) for m in args.methods.split(",")]
    (root / "bench.json").write_text(json.dumps(rows, indent=2))
    cols = ["method", "evaluations", "feasible", "flops_ratio", "search_val_acc", "final_val_acc", "final_test_acc",
            "wall_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    for r in rows:
        print(r["command"])


if __name__ == "__main__":
    main()
