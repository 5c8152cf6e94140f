"""A searcher's options are one frozen dataclass; this module holds what every such dataclass shares.

A field with a docstring is an option: the CLI (:mod:`agent.cli.options`) turns it into a ``search`` flag whose
help is the docstring, and :func:`from_options` reads it back from ``SearchConfig.options``. :func:`option`
declares what the field alone cannot say (a flag name that differs, a parser, choices, or ``cli=False`` for an
API-only setting).

This module imports no heavy library, so building the CLI parser stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import user_error

__all__ = ["LATENCY_RETRIES", "option", "option_key", "option_fields", "from_options", "positive_int"]

LATENCY_RETRIES = 2
"""Re-evaluations after a measured latency miss (:mod:`agent.searchers.latency_retry`)."""

T = TypeVar("T")


def option(default: Any = None, *, flag: str | None = None, key: str | None = None,
           parse: Callable[[str], Any] | None = None, choices: Sequence[str] | str | None = None,
           metavar: str | None = None, cli: bool = True, default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field of an options class, with what its CLI flag needs beyond the annotation.

    Args:
        default: The field's default (``None``: the searcher decides, e.g. by method).
        flag: The flag when it is not ``--`` + the key with dashes (``--ray-search``, ``--no-warm-start``).
        key: The name in ``SearchConfig.options`` and on the parsed arguments (default: the field name).
        parse: Converts the flag's text; may raise ``UserInputError`` (reported as a parse error).
        choices: Allowed values, or ``"module:attr"`` read on first use (keeps ``--help`` free of heavy imports).
        metavar: The value's name in ``--help``.
        cli: False for a setting of the Python API only (no flag).
        default_factory: A factory instead of ``default`` (mutable defaults).
    """
    meta = {"flag": flag, "key": key, "parse": parse, "choices": choices, "metavar": metavar, "cli": cli}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_key(f: dataclasses.Field) -> str:
    """The name of field ``f`` in ``SearchConfig.options`` (and the parsed arguments' attribute)."""
    return f.metadata.get("key") or f.name


def option_fields(cls: type, *, cli_only: bool = False) -> list[dataclasses.Field]:
    """The fields of options class ``cls`` (only those with a flag when ``cli_only``)."""
    return [f for f in dataclasses.fields(cls) if not cli_only or f.metadata.get("cli", True)]


def from_options(cls: type[T], options: Mapping[str, Any]) -> T:
    """An instance of ``cls`` from ``SearchConfig.options``: its own keys, unset (``None``) ones at their default.

    Keys of other methods are ignored; validation is ``cls``'s own (``__post_init__``).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Knobs:
        ...     depth: int = 2
        ...     algo: str = option("a", key="knob_algo")
        >>> from_options(Knobs, {"depth": None, "knob_algo": "b", "sampler": "tpe"})
        Knobs(depth=2, algo='b')
    """
    given = {f.name: options[option_key(f)] for f in option_fields(cls) if options.get(option_key(f)) is not None}
    return cls(**given)


def positive_int(text: str) -> int:
    """Parse a whole number >= 1 (a flag ``parse``).

    Raises:
        UserInputError: Anything else.
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise user_error("expected a positive integer, got", text, "e.g. 60")
    return value
