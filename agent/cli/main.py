"""``prunepilot`` entry point: subcommand parsers, dispatch and error handling.

Bad input ends with one line ``prunepilot: error: ...`` and exit code 2 before any expensive work starts.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from ..errors import SearchFailedError, UserInputError
from . import commands

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prunepilot: error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print one line naming the problem and the fix, then exit 2."""
        self.exit(2, f"prunepilot: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves in :mod:`.commands`)."""
    parser = _Parser(
        prog="prunepilot",
        description="Search per-layer pruning policies under accuracy, FLOPs and measured-latency constraints.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 search failed / infeasible, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a parse error (already printed)
        return int(exc.code or 0)
    if getattr(args, "quiet", False):
        warnings.simplefilter("ignore")
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"prunepilot: error: {exc}", file=sys.stderr)
        return 2
    except SearchFailedError as exc:
        print(f"prunepilot: search failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"prunepilot: interrupted; {_interrupted_state(args)}", file=sys.stderr)
        return 130


def _interrupted_state(args: argparse.Namespace) -> str:
    """What survives an interrupt: only claims a results.csv that exists and holds evaluations."""
    from pathlib import Path

    out = getattr(args, "out", None)
    csv = Path(out) / "results.csv" if out else None
    if args.command == "search" and csv is not None and csv.is_file():
        rows = max(0, len(csv.read_text().splitlines()) - 1)
        if rows:
            return f"{rows} finished evaluations are in {csv} (rerun with --resume)"
        return f"no evaluation had finished ({csv} is empty; rerun with --overwrite)"
    return "nothing was written yet (no evaluation had started)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
