"""Render a bound space to Optuna: define-by-run ``trial.suggest_*`` calls and the matching distributions."""

from __future__ import annotations

from typing import Any

from .bound import BoundSpace

__all__ = ["suggest_params", "optuna_distributions"]


def suggest_params(trial: Any, space: BoundSpace) -> dict[str, Any]:
    """Ask ``trial`` (an ``optuna.Trial``) for every parameter of ``space``, under its stable name.

    Enqueued (fixed) values are honoured by Optuna itself, so warm-start trials and re-enqueued trials of a
    resumed study come back with exactly the values they were enqueued with.
    """
    params: dict[str, Any] = {}
    for d in space.dimensions:
        params[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step)
    for name, options in space.choices.items():
        params[name] = trial.suggest_categorical(name, list(options))
    return params


def optuna_distributions(space: BoundSpace) -> dict[str, Any]:
    """``name -> optuna.distributions.BaseDistribution`` of every parameter (for ``create_trial`` / ``add_trial``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists: dict[str, Any] = {d.name: FloatDistribution(d.low, d.high, step=d.step) for d in space.dimensions}
    dists.update({name: CategoricalDistribution(list(options)) for name, options in space.choices.items()})
    return dists
