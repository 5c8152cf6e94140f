"""Tasks: built-in datasets and models, dense training, checkpoints."""

from .datasets import DataSplits, cache_dir, dataset_names, load_dataset
from .models import build_model, model_names
from .task import Task, TaskSpec, build_task, load_task, read_checkpoint, save_checkpoint, train_dense

__all__ = [
    "DataSplits", "Task", "TaskSpec", "build_model", "build_task", "cache_dir", "dataset_names", "load_dataset",
    "load_task", "model_names", "read_checkpoint", "save_checkpoint", "train_dense",
]
