"""Render a bound space to a Ray Tune ``param_space`` (``ray.tune`` is imported only here, lazily)."""

from __future__ import annotations

from typing import Any

from .bound import BoundSpace

__all__ = ["to_ray_tune", "to_ray_keys", "from_ray_config"]

_SEP, _RAY_SEP = "/", "::"
"""Tune flattens nested configs on ``/``, so parameter names use ``::`` inside Ray and ``/`` everywhere else."""


def to_ray_keys(params: dict[str, Any]) -> dict[str, Any]:
    """Parameter names (``ratio/down1.0``) -> Tune-safe keys (``ratio::down1.0``)."""
    return {k.replace(_SEP, _RAY_SEP): v for k, v in params.items()}


def from_ray_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial's ``config`` -> parameters for :meth:`BoundSpace.decode` (inverse of :func:`to_ray_keys`)."""
    return {k.replace(_RAY_SEP, _SEP): v for k, v in config.items()}


def _tune() -> Any:
    try:
        from ray import tune
    except ImportError as exc:  # pragma: no cover - ray is a declared dependency
        raise ImportError("Ray Tune is needed for this: pip install 'ray[tune]'") from exc
    return tune


def to_ray_tune(space: BoundSpace) -> dict[str, Any]:
    """A Ray Tune param space with the Optuna rendering's parameter names, made Tune-safe (see :func:`to_ray_keys`).

    Decode a Ray trial's ``config`` with ``bound.decode(from_ray_config(config))``.
    """
    tune = _tune()
    params: dict[str, Any] = {}
    for d in space.dimensions:
        params[d.name] = tune.quniform(d.low, d.high, d.step) if d.step else tune.uniform(d.low, d.high)
    for name, options in space.choices.items():
        params[name] = tune.choice(list(options))
    return to_ray_keys(params)
