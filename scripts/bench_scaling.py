"""Ray Tune throughput: the same N evaluations with 1 vs K trials at a time (and GPU sharing, when present)."""

from __future__ import annotations

import time
from pathlib import Path

from agent.constraints import Constraints
from agent.evaluation import EvalSettings
from agent.search.results import ResultLog
from agent.search.run import FinalTuneConfig, run_search
from agent.search.session import SearchConfig
from agent.tasks import build_task


def scaling(*, out: Path, trials: int, finetune_steps: int, concurrencies: list[int], gpus_per_trial: float = 0.0,
            train_epochs: int = 15) -> list[dict[str, object]]:
    """Run ``--method ray --search random`` with each concurrency on the same N trials; report wall times."""
    task = build_task(train_epochs=train_epochs)
    device = "cuda" if gpus_per_trial > 0 else "cpu"
    rows, base = [], None
    for k in concurrencies:
        settings = EvalSettings(finetune_steps=finetune_steps, measure_latency=False, device=device)
        config = SearchConfig(method="ray", trials=trials, seed=0, options={
            "concurrency": k, "cpus_per_trial": 1, "gpus_per_trial": gpus_per_trial, "search_alg": "random"})
        run_dir = out / f"ray-c{k}"
        t0 = time.perf_counter()
        run_search(task=task, out_dir=run_dir, constraints=Constraints(flops_target=0.5), settings=settings,
                   config=config, final=FinalTuneConfig(epochs=0), overwrite=True, latency_model=False)
        wall = time.perf_counter() - t0
        rows_done = len(ResultLog.open(run_dir / "results.csv", resume=True).rows)
        base = base or wall
        rows.append({"concurrency": k, "gpus_per_trial": gpus_per_trial, "evaluations": rows_done,
                     "finetune_steps": finetune_steps, "wall_s": round(wall, 1), "ratio_to_serial": round(wall / base, 3),
                     "evals_per_min": round(60 * rows_done / wall, 2)})
        print(rows[-1], flush=True)
    return rows
