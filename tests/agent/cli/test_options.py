"""A searcher's options dataclass is its CLI: a new field is a flag with its docstring as help, and reaches the run."""

import argparse
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from agent.cli import main
from agent.cli.options import add_options, options_from_args
from agent.errors import user_error
from agent.searchers import registry
from agent.searchers.base import Searcher
from agent.searchers.options import from_options, option


def _depth(text: str) -> int:
    if not text.isdigit():
        raise user_error("--depth must be a whole number, got", text, "e.g. --depth 3")
    return int(text)


@dataclass(frozen=True)
class ToyOptions:
    """Options of a throwaway searcher."""

    cli_group: ClassVar[str] = "toy (--method toy)"

    depth: int = option(3, parse=_depth)
    """How deep the toy searcher digs (default 3)."""
    mode: Literal["wide", "narrow"] = "wide"
    """Which way the toy searcher leans."""
    cautious: bool = True
    """Stop at the first feasible ``policy``."""
    name: str | None = option(key="toy_name", flag="--toy")
    """A label, 100% optional."""
    secret: float = option(0.5, cli=False)
    """An API-only knob."""


SEEN: list[ToyOptions] = []


class ToySearcher(Searcher):
    """Evaluates the uniform policy of ratio 0.25 once, keeping the options it was given."""

    name = "toy"

    def run(self, session):  # noqa: D102
        SEEN.append(from_options(ToyOptions, session.config.options))
        session.evaluate(session.make_policy(dict.fromkeys(session.unit_names, 0.25)))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_options(p, ToyOptions)
    return p


def test_each_field_is_a_flag_with_its_docstring_as_help():
    group = next(g for g in _parser()._action_groups if g.title == "toy (--method toy)")
    helps = {a.option_strings[0]: a.help for a in group._group_actions}
    assert helps == {"--depth": "how deep the toy searcher digs (default 3)",
                     "--mode": "which way the toy searcher leans",
                     "--no-cautious": "stop at the first feasible policy; this flag turns it off",
                     "--toy": "a label, 100%% optional"}
    assert next(a for a in group._group_actions if a.dest == "mode").choices == ("wide", "narrow")


def test_parsed_flags_come_back_as_the_dataclass():
    p = _parser()
    given = options_from_args(p.parse_args(["--depth", "7", "--no-cautious", "--toy", "x", "--mode", "narrow"]),
                              [ToyOptions])
    assert given == {"depth": 7, "cautious": False, "toy_name": "x", "mode": "narrow"}
    assert from_options(ToyOptions, given) == ToyOptions(depth=7, mode="narrow", cautious=False, name="x")
    assert from_options(ToyOptions, options_from_args(p.parse_args([]), [ToyOptions])) == ToyOptions()
    for bad in (["--depth", "deep"], ["--mode", "tall"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)


def test_a_field_without_a_docstring_is_refused():
    @dataclass(frozen=True)
    class Undocumented:
        depth: int = 3

    with pytest.raises(TypeError, match="Undocumented.depth has no docstring"):
        add_options(argparse.ArgumentParser(), Undocumented)


def test_a_registered_options_class_reaches_search_help_and_the_searcher(monkeypatch, tmp_path, tiny_checkpoint,
                                                                         capsys):
    monkeypatch.setitem(registry.SEARCHERS, "toy", f"{__name__}:ToySearcher")
    monkeypatch.setitem(registry.OPTIONS, "toy", f"{__name__}:ToyOptions")
    assert main(["search", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--depth DEPTH how deep the toy searcher digs (default 3)" in text
    assert main(["search", "--method", "toy", "--depth", "x", "--out", str(tmp_path / "bad")]) == 2
    assert "--depth must be a whole number" in capsys.readouterr().err
    SEEN.clear()
    code = main(["search", "--method", "toy", "--depth", "5", "--toy", "run1", "--checkpoint", str(tiny_checkpoint),
                 "--no-latency", "--final-epochs", "0", "--quiet", "--out", str(tmp_path / "o")])
    assert code in (0, 1)  # 1: the one policy missed the default FLOPs target
    assert SEEN == [ToyOptions(depth=5, name="run1")]
