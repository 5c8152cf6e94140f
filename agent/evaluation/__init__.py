"""The evaluation stage: one core (:func:`evaluate_policy`) scoring a policy into a typed :class:`EvalResult`.

:mod:`.records` holds what an evaluation is run with and returns, :mod:`.engine` the per-task state it reuses,
:mod:`.core` the evaluation itself and :mod:`.sensitivity` the per-unit sensitivity analysis built on it.
"""

from .core import evaluate_policy
from .engine import PruningEngine, get_engine
from .records import DenseMetrics, EvalResult, EvalSettings, Status

__all__ = ["DenseMetrics", "EvalResult", "EvalSettings", "PruningEngine", "Status", "evaluate_policy",
           "get_engine"]
