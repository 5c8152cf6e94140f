"""The ``prunepilot`` command line (the only layer that parses arguments)."""

from __future__ import annotations

from typing import Any

__all__ = ["build_parser", "main"]


def __getattr__(name: str) -> Any:
    """``build_parser`` / ``main`` from :mod:`.main`, imported on first use.

    So ``python -m agent.cli.main`` runs the module once, without runpy's double-import warning.
    """
    if name in __all__:
        import importlib

        module = importlib.import_module(".main", __name__)  # binds agent.cli.main to the module ...
        globals().update(build_parser=module.build_parser, main=module.main)  # ... and back to the function
        return globals()[name]
    raise AttributeError(f"module 'agent.cli' has no attribute {name!r}")
