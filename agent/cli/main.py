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
        print("prunepilot: interrupted; finished evaluations are in results.csv (rerun with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
