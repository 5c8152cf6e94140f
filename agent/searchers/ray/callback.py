"""The driver-side Tune callback that records finished trials (a module-level class on purpose).

Tune pickles its callbacks into the experiment state. A class defined at module level pickles *by reference*,
so after ``Tuner.restore`` the callback looks up the live recorder of the new process in ``RECORDERS`` instead of
carrying a stale copy of the old session.
"""

from __future__ import annotations

from typing import Any

from ray import tune

__all__ = ["RECORDERS", "RecordCallback"]

RECORDERS: dict[str, Any] = {}
"""Live recorders (``agent.searchers.ray.tune._Recorder``) by experiment path."""


class RecordCallback(tune.Callback):
    """Forwards completed / errored trials to the recorder registered under ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial finished (or was stopped early by the scheduler)."""
        RECORDERS[self.key].complete(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial failed after its retries."""
        RECORDERS[self.key].error(trial)
