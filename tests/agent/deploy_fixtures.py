"""One tiny real search shared by the deployment tests (report, export, finetune CLI), run once per session."""

from __future__ import annotations

import tempfile
from pathlib import Path

_RUN: dict[str, Path] = {}


def tiny_search_dir(checkpoint: Path) -> Path:
    """Output dir of a greedy search on ``checkpoint``.

    It has a sensitivity profile, a few evaluations (accuracy-budget bisection) and a 2-step iterative final
    fine-tune with distillation.
    """
    if "dir" not in _RUN:
        from agent.cli import main

        out = Path(tempfile.mkdtemp(prefix="prunepilot-deploy-")) / "search"
        code = main(["search", "--method", "greedy", "--checkpoint", str(checkpoint), "--max-acc-drop", "3",
                     "--trials", "5", "--eval-limit", "400", "--final-epochs", "0.1", "--iterative-steps", "2",
                     "--schedule", "linear", "--kd-alpha", "0.5", "--latency-batch", "8", "--out", str(out),
                     "--quiet"])
        assert code == 0, f"tiny search failed with exit code {code}"
        _RUN["dir"] = out
    return _RUN["dir"]
