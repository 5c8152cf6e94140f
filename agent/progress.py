"""Progress of one phase (sensitivity, latency table, final fine-tune) as a tqdm bar on stderr.

The bar appears on the first report, so a phase served from a cache stays silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["phase_bar"]


@contextmanager
def phase_bar(desc: str, *, enabled: bool, unit: str = "step") -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a bar named ``desc``; None when ``enabled`` is false.

    Args:
        desc: What the phase does, e.g. ``"latency table"``.
        enabled: False (``--quiet``) yields None, so callers pass it straight on as ``progress=``.
        unit: What one step is (``eval``, ``layer``, ``step``).
    """
    if not enabled:
        yield None
        return
    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            from tqdm.auto import tqdm

            bar = state["bar"] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if state.get("bar") is not None:
            state["bar"].close()
