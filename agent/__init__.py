"""PrunePilot: search per-layer structural pruning policies under accuracy and measured-latency constraints."""

from .artifacts import load_pruned_model, save_pruned_model
from .constraints import Constraints, LatencyTarget
from .errors import SearchFailedError, UserInputError
from .evaluation import EvalResult, EvalSettings, PruningEngine, evaluate_policy, get_engine
from .export import export_model
from .finetune import finetune_model
from .iterative import iterative_prune
from .measure import LatencyConfig, measure_latency
from .policy import Policy
from .results import ResultLog
from .search import FinalTuneConfig, run_search
from .sensitivity import SensitivityProfile, analyse_sensitivity
from .session import SearchConfig, SearchSession
from .tasks import Task, TaskSpec, build_task, load_task
from .unstructured import SparsifyConfig, sparsify

__all__ = [
    "Constraints", "EvalResult", "EvalSettings", "FinalTuneConfig", "LatencyConfig", "LatencyTarget", "Policy",
    "PruningEngine", "ResultLog", "SearchConfig", "SearchFailedError", "SearchSession", "SensitivityProfile",
    "Task", "TaskSpec", "UserInputError", "analyse_sensitivity", "build_task", "evaluate_policy", "get_engine",
    "load_pruned_model", "load_task", "measure_latency", "run_search", "save_pruned_model",
    "SparsifyConfig", "export_model", "finetune_model", "iterative_prune", "sparsify",
]
