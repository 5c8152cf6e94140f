"""The ``prunepilot`` command line (the only layer that parses arguments)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
