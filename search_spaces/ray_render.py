"""Render a bound space to a Ray Tune ``param_space`` (``ray.tune`` is imported only here, lazily)."""

from __future__ import annotations

from typing import Any

from .bound import BoundSpace

__all__ = ["to_ray_tune"]


def _tune() -> Any:
    try:
        from ray import tune
    except ImportError as exc:  # pragma: no cover - ray is a declared dependency
        raise ImportError("Ray Tune is needed for this: pip install 'ray[tune]'") from exc
    return tune


def to_ray_tune(space: BoundSpace) -> dict[str, Any]:
    """A Ray Tune param space with the same parameter names as the Optuna rendering.

    Decode a Ray trial's ``config`` with :meth:`BoundSpace.decode` exactly like Optuna parameters.
    """
    tune = _tune()
    params: dict[str, Any] = {}
    for d in space.dimensions:
        params[d.name] = tune.quniform(d.low, d.high, d.step) if d.step else tune.uniform(d.low, d.high)
    for name, options in space.choices.items():
        params[name] = tune.choice(list(options))
    return params
