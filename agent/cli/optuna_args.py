"""``search`` options of the ``optuna`` / ``nsga2`` methods (registered through ``commands.METHOD_ARGS``).

Values are checked while parsing (unknown choices, malformed storage URLs, bad search-space files), so a
mistake ends with one line and exit code 2 before any data is loaded.
"""

from __future__ import annotations

import argparse

from ..errors import UserInputError
from .common import LazyChoices

__all__ = ["add_optuna_args", "add_search_space_arg"]


def _checked(check: object) -> object:
    """An argparse ``type`` that runs ``check(text)`` and reports its UserInputError as a parse error."""

    def parse(text: str) -> str:
        try:
            check(text)  # type: ignore[operator]
        except UserInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def _load_space(text: str) -> None:
    from search_spaces import load_space

    load_space(text)


def _check_storage(text: str) -> None:
    from ..searchers.optuna.study import check_storage_url

    check_storage_url(text)


def add_search_space_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:  # noqa: SLF001
    """``--search-space NAME|FILE`` (shared by every method that samples the declarative space; added once)."""
    if "--search-space" in p._option_string_actions:  # noqa: SLF001 - another method's hook added it already
        return
    p.add_argument("--search-space", dest="search_space", default=None, type=_checked(_load_space),
                   help="policy search space: a preset (layerwise, grouped, threshold) or a .yaml/.json file")


def add_optuna_args(p: argparse.ArgumentParser) -> None:
    """Options of ``--method optuna`` and ``--method nsga2``."""
    study = "agent.searchers.optuna.study"
    g = p.add_argument_group("optuna / nsga2")
    g.add_argument("--sampler", choices=LazyChoices(study, "SAMPLERS"), default=None, help="optuna sampler (default tpe)")
    g.add_argument("--storage", default=None, type=_checked(_check_storage),
                   help="Optuna storage URL (default sqlite:///OUT/study.db); an explicit URL, e.g. "
                   "postgresql://user:pw@host/db, is a study shared by every worker given it (each with its own "
                   "--out), and --trials is then the study's total over all workers")
    g.add_argument("--study-name", default=None, help="study name in the storage (default prunepilot-METHOD)")
    g.add_argument("--heartbeat", type=int, default=None,
                   help="seconds between heartbeats of a running trial in a --storage study (default 20); a trial "
                   "silent for 3 intervals (its worker died) is marked FAIL by a live worker and retried")
    g.add_argument("--objective", choices=LazyChoices(study, "OBJECTIVES"), default=None,
                   help="nsga2 cost objective (default latency; flops with --no-latency)")
    g.add_argument("--pruner", choices=LazyChoices(study, "PRUNERS"), default=None,
                   help="stop weak candidates during the short fine-tune (default median for optuna)")
    g.add_argument("--no-warm-start", dest="warm_start", action="store_false", default=None,
                   help="do not enqueue the uniform and greedy policies as the first trials")
    g.add_argument("--no-budget-fit", dest="budget_fit", action="store_false", default=None,
                   help="evaluate sampled policies as they are instead of scaling them onto the FLOPs/params target")
    add_search_space_arg(p)
