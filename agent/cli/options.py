"""A searcher's options dataclass as a ``search`` flag group, and the parsed flags back as ``SearchConfig.options``.

One field is one flag: its name comes from the field's key (``--`` + key with dashes, unless the field declares
``flag``), its type and choices from the annotation (``int``, ``float``, ``str``, ``Literal[...]``, each optionally
``| None``) or the field's ``parse`` / ``choices``, and its help from the field's docstring. A ``bool`` field that
defaults to on (or to "the searcher decides") is a ``--no-KEY`` switch; one that defaults to off a ``--KEY`` switch.
Every flag defaults to ``None`` (unset), so the dataclass's default applies (see
:func:`agent.searchers.options.from_options`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UserInputError
from ..searchers.options import option_fields, option_key
from .common import LazyChoices

__all__ = ["add_options", "options_from_args", "field_docs", "checked"]


@functools.cache
def field_docs(cls: type) -> Mapping[str, str]:
    """The attribute docstrings of ``cls`` and its bases: the string literal right under each annotated field.

    Example:
        >>> from agent.searchers.ray.options import RayOptions
        >>> field_docs(RayOptions)["concurrency"]
        'Trials at once (default 2).'
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (a builtin, or a class made at run time)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _plain(doc: str) -> str:
    r"""A docstring as argparse help in the CLI's style: one line, lower-case start, no closing period, no reST.

    Example:
        >>> _plain("Trials at ``once``\n    (default 2).")
        'trials at once (default 2)'
        >>> _plain("GPUs per trial (50% of one).")
        'GPUs per trial (50%% of one)'
    """
    text = " ".join(re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc).replace("``", "").split()).rstrip(".")
    first = text.split(" ", 1)[0]
    if text and not any(c.isupper() for c in first[1:]):  # "Trials" -> "trials", but "GPUs" stays
        text = text[0].lower() + text[1:]
    return text.replace("%", "%%")


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` running ``parse(text)``; its ``UserInputError`` becomes a one-line parse error."""

    def run(text: str) -> Any:
        try:
            return parse(text)
        except UserInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    run.__name__ = getattr(parse, "__name__", "value")
    return run


def _unwrap_optional(hint: Any) -> Any:
    """``X`` for ``X | None`` (else ``hint`` unchanged)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _argument(f: dataclasses.Field, hint: Any, doc: str) -> tuple[str, dict[str, Any]]:
    """The flag and the ``add_argument`` keywords of field ``f``."""
    key, meta = option_key(f), f.metadata
    hint = _unwrap_optional(hint)
    kwargs: dict[str, Any] = {"dest": key, "default": None, "help": _plain(doc)}
    if hint is bool:
        on = f.default is not False
        kwargs.update(action="store_false" if on else "store_true")
        kwargs["help"] += ("; this flag turns it off" if on else "; this flag turns it on")
        return meta.get("flag") or f"--{'no-' if on else ''}{key.replace('_', '-')}", kwargs
    choices = meta.get("choices")
    if isinstance(choices, str):
        choices = LazyChoices(*choices.split(":", 1))
    elif choices is None and typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
    if choices is not None:
        kwargs["choices"] = choices
    if meta.get("parse") is not None:
        kwargs["type"] = checked(meta["parse"])
    elif hint in (int, float):
        kwargs["type"] = hint
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    return meta.get("flag") or f"--{key.replace('_', '-')}", kwargs


def add_options(parser: argparse.ArgumentParser, cls: type, *, title: str | None = None) -> None:
    """Add a flag group for every CLI field of options dataclass ``cls``.

    Args:
        parser: The ``search`` parser.
        cls: An options dataclass (fields declared with :func:`agent.searchers.options.option` where needed).
        title: The group's title (default: ``cls.cli_group``, else the class name).

    Raises:
        TypeError: A CLI field without a docstring (its flag would have no help).
    """
    group = parser.add_argument_group(title or getattr(cls, "cli_group", cls.__name__))
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in option_fields(cls, cli_only=True):
        if f.name not in docs:
            raise TypeError(f"{cls.__name__}.{f.name} has no docstring: write one, it is the help of its flag")
        flag, kwargs = _argument(f, hints[f.name], docs[f.name])
        group.add_argument(flag, **kwargs)


def options_from_args(args: argparse.Namespace, classes: Iterable[type], *, shared: Iterable[str] = ()) -> dict[str, Any]:
    """``SearchConfig.options`` from the parsed flags: every given flag of ``classes``' fields.

    Args:
        args: The parsed arguments.
        classes: The options dataclasses whose flags were added with :func:`add_options`.
        shared: Further keys read from ``args`` (flags of another group that feed an API-only field, such as
            ``search_space``).
    """
    keys = dict.fromkeys([*(option_key(f) for cls in classes for f in option_fields(cls, cli_only=True)), *shared])
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
