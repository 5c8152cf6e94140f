"""Structural pruning on Torch-Pruning's dependency graph: units, importance criteria, policy application."""

from .graph import PrunableUnit, PruningGraph, resolve_layer_patterns
from .importance import IMPORTANCE_CRITERIA, check_importance, compute_importance, normalized
from .tracing import find_output_layer

__all__ = [
    "IMPORTANCE_CRITERIA", "PrunableUnit", "PruningGraph", "check_importance", "compute_importance",
    "find_output_layer", "normalized", "resolve_layer_patterns",
]
