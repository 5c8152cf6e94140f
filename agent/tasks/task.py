"""The :class:`Task`: a trained dense model plus its data, and how to build, train, save and load one."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import user_error
from ..storage import atomic_torch_save
from .datasets import DataSplits, cache_dir, check_dataset_name, load_dataset
from .metrics import METRICS, Metric, score
from .models import build_model, check_model_spec
from .recipes import Family, Optimizer, recipe_for
from .training import TrainConfig, train_steps

__all__ = [
    "Task", "TaskSpec", "build_task", "load_task", "train_dense", "save_checkpoint", "read_checkpoint",
    "default_dense_checkpoint", "CHECKPOINT_FORMAT", "DEFAULT_MODEL", "DEFAULT_DATASET",
]

CHECKPOINT_FORMAT = "prunepilot-dense-v1"
DEFAULT_MODEL = "cnn1d-wide"
"""The model of the default task: a compute-heavy enough 1-D CNN that its latency follows its FLOPs on a CPU."""
DEFAULT_DATASET = "mnist1d"
"""The dataset of the default task (generated offline)."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task is made of (everything but the weights); saved inside checkpoints."""

    model: str = DEFAULT_MODEL
    """Model spec: built-in name, ``tv:<torchvision name>`` or ``package.module:factory``."""
    dataset: str = DEFAULT_DATASET
    """Dataset name (see :func:`agent.tasks.datasets.load_dataset`)."""
    data_seed: int = 0
    """Seed of the dataset generator and of the train/val split."""

    def validate(self) -> None:
        """Check the names cheaply, before any data is loaded or any training starts."""
        check_dataset_name(self.dataset)
        check_model_spec(self.model)


@dataclass(eq=False)
class Task:
    """A trained dense model and its data: the input of every search."""

    spec: TaskSpec
    """Model and dataset names."""
    model: nn.Module
    """The trained dense model (eval mode, CPU). Never modified: pruning works on copies."""
    data: DataSplits
    """Train / val / test splits."""
    fingerprint: str
    """Hash of the weights and the spec: the cache key of sensitivity profiles and latency tables."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata from the checkpoint (training settings, dense accuracy)."""
    checkpoint_path: str | None = None
    """Where the dense checkpoint lives, if on disk."""
    ignore_layers: tuple[str, ...] = ()
    """Names or glob patterns of layers kept whole (never pruned); a container name covers its layers."""
    prune_embed: bool = False
    """Prune a transformer's residual width too, as one ``embed`` unit (off: it is kept whole)."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape."""
        return self.data.input_shape

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.data.num_classes

    @property
    def metric(self) -> Metric:
        """The quality metric of the task (accuracy, or perplexity for a language model)."""
        return METRICS[self.data.metric]

    def score(self, model: nn.Module, split: str = "val", *, device: torch.device | str = "cpu",
              limit: int | None = None) -> float:
        """The task's metric for ``model`` on the ``val`` or ``test`` split (the first ``limit`` samples)."""
        data = self.data.val if split == "val" else self.data.test
        return score(model, data, metric=self.data.metric, device=device, limit=limit)

    def example_input(self, batch_size: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
        """A deterministic example input of the task's shape (for tracing, FLOPs and latency)."""
        gen = torch.Generator().manual_seed(0)
        return torch.randn((batch_size, *self.input_shape), generator=gen).to(device)


def _fingerprint(spec: TaskSpec, state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha1(json.dumps([spec.model, spec.dataset, spec.data_seed]).encode())
    for key in sorted(state_dict):
        h.update(key.encode())
        h.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_dense(spec: TaskSpec, *, epochs: int = 15, lr: float | None = None, batch_size: int | None = None, seed: int = 0,
                device: str = "cpu", data: DataSplits | None = None, progress: bool = False,
                family: Family | str | None = None, optimizer: Optimizer | str | None = None,
                weight_decay: float | None = None, warmup: float | None = None) -> Task:
    """Train a dense baseline from scratch with its family's recipe (:mod:`agent.tasks.recipes`).

    Args:
        spec: Model and dataset.
        epochs: Passes over the training split.
        lr: Peak learning rate (default: the recipe's; cosine schedule).
        batch_size: Mini-batch size (default: the recipe's).
        seed: Seed of the weight init and data order.
        device: Training device.
        data: Already loaded splits (loaded from ``spec`` if omitted).
        progress: Show a progress bar.
        family: Train with this family's recipe (default: the model's, by :func:`~agent.tasks.recipes.model_family`).
        optimizer: Overrides the recipe's optimizer.
        weight_decay: Overrides the recipe's weight decay.
        warmup: Overrides the recipe's warm-up fraction.

    Returns:
        The trained task (not yet saved).
    """
    spec.validate()
    if epochs < 1:
        raise user_error("epochs must be >= 1, got", epochs, "pass --epochs 1 or more")
    data = data or load_dataset(spec.dataset, seed=spec.data_seed)
    torch.manual_seed(seed)
    model = build_model(spec.model, data.input_shape, data.num_classes).to(device)
    try:
        recipe = recipe_for(model, family=family, optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup=warmup,
                            batch_size=batch_size)
    except ValueError as exc:
        raise user_error("bad training recipe:", str(exc), "see `train --help`") from None
    batch_size = recipe.batch_size
    steps = epochs * max(1, len(data.train) // batch_size)  # type: ignore[arg-type]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"train {spec.model} on {spec.dataset}", unit="step", leave=False)
    config = TrainConfig(steps=steps, lr=recipe.lr, optimizer=recipe.optimizer, warmup=recipe.warmup,
                         weight_decay=recipe.weight_decay, batch_size=batch_size, seed=seed)
    train_steps(model, data.train, config=config, device=device, progress=(lambda _s: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    model = model.cpu().eval()
    meta = {
        "epochs": epochs, "lr": recipe.lr, "optimizer": str(recipe.optimizer), "weight_decay": recipe.weight_decay,
        "warmup": recipe.warmup, "batch_size": batch_size, "seed": seed,
        "metric": data.metric, "val_accuracy": score(model, data.val, metric=data.metric),
        "test_accuracy": score(model, data.test, metric=data.metric),
    }
    return Task(spec, model, data, _fingerprint(spec, model.state_dict()), meta)


def save_checkpoint(task: Task, path: str | Path) -> Path:
    """Save the dense model with its spec and metadata (loadable with ``torch.load(weights_only=True)``)."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": task.spec.model,
        "dataset": task.spec.dataset,
        "data_seed": task.spec.data_seed,
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
        "meta": task.meta,
        "state_dict": task.model.state_dict(),
    }
    atomic_torch_save(path, payload)
    task.checkpoint_path = str(path)
    return path


def read_checkpoint(path: str | Path, *, trust: bool = False) -> dict[str, Any]:
    """Read a checkpoint file safely.

    Tensors-only files load with ``weights_only=True``. A file that needs full unpickling (e.g. a whole
    ``nn.Module``) can run arbitrary code, so it is refused unless ``trust=True`` (``--trust-checkpoint``).

    Args:
        path: The file.
        trust: Allow full unpickling of a file from a trusted source.

    Returns:
        Either a PrunePilot checkpoint dict, or ``{"state_dict": ...}`` for a plain state dict, or
        ``{"module": nn.Module}`` for a pickled model (trusted only).
    """
    p = Path(path)
    if not p.is_file():
        raise user_error("checkpoint not found:", str(p), "pass an existing file to --checkpoint (see `prunepilot train`)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise user_error(
                "checkpoint needs full unpickling, which can run arbitrary code:", str(p),
                "re-save it as a state_dict, or pass --trust-checkpoint if you trust its source",
            ) from exc
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise user_error("checkpoint is not a readable torch file:", str(p), f"check the file ({exc})") from None
    if isinstance(obj, nn.Module):
        return {"module": obj}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"state_dict": obj["state_dict"]}
    raise user_error("checkpoint holds neither a state_dict nor a model:", str(p),
                     "save model.state_dict() or use `prunepilot train`")


def load_task(checkpoint: str | Path, *, model: str | None = None, dataset: str | None = None,
              data_seed: int | None = None, data_root: str | None = None, download: bool = False,
              trust_checkpoint: bool = False) -> Task:
    """Build a task from a checkpoint.

    A PrunePilot checkpoint knows its model and dataset; a plain state dict needs ``model`` and ``dataset``.

    Example:
        >>> import tempfile
        >>> from agent import build_task, load_task
        >>> from agent.tasks import save_checkpoint
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> path = save_checkpoint(task, tempfile.mkdtemp() + "/dense.pt")
        >>> load_task(path).spec == task.spec
        True

    Args:
        checkpoint: Path of the checkpoint.
        model: Model spec (overrides / completes the checkpoint's).
        dataset: Dataset name (overrides / completes the checkpoint's).
        data_seed: Dataset seed (default: the checkpoint's, else 0).
        data_root: Local root of torchvision datasets.
        download: Allow downloading the dataset.
        trust_checkpoint: Allow full unpickling (see :func:`read_checkpoint`).

    Returns:
        The task with the checkpoint's weights.
    """
    ckpt = read_checkpoint(checkpoint, trust=trust_checkpoint)
    spec_model = model or ckpt.get("model")
    spec_data = dataset or ckpt.get("dataset")
    if spec_model is None and "module" not in ckpt:
        raise user_error("checkpoint does not say which model it holds:", str(checkpoint),
                         "pass --model with the spec it was trained with")
    if spec_data is None:
        raise user_error("checkpoint does not say which dataset it was trained on:", str(checkpoint),
                         "pass --dataset")
    spec = TaskSpec(spec_model or "module", spec_data,
                    data_seed if data_seed is not None else int(ckpt.get("data_seed", 0)))
    check_dataset_name(spec.dataset)
    if "module" not in ckpt:
        check_model_spec(spec.model)
    data = load_dataset(spec.dataset, data_root=data_root, download=download, seed=spec.data_seed)
    if "module" in ckpt:
        net = ckpt["module"].cpu().eval()
    else:
        net = build_model(spec.model, data.input_shape, data.num_classes)
        try:
            net.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:3])
            raise user_error(f"checkpoint does not match model {spec.model!r}:", str(checkpoint),
                             f"pass the --model/--dataset it was trained with ({detail[:300]})") from None
    net.eval()
    return Task(spec, net, data, _fingerprint(spec, net.state_dict()), dict(ckpt.get("meta", {})), str(checkpoint))


def default_dense_checkpoint(spec: TaskSpec, *, epochs: int = 15, seed: int = 0) -> Path:
    """Where the cached dense baseline of ``spec`` lives (``$PRUNEPILOT_CACHE/checkpoints``)."""
    key = hashlib.sha1(f"{spec.model}|{spec.dataset}|{spec.data_seed}|{epochs}|{seed}|v1".encode()).hexdigest()[:12]
    return cache_dir() / "checkpoints" / f"{spec.model.replace(':', '_')}-{spec.dataset}-{key}.pt"


def build_task(*, model: str | None = None, dataset: str | None = None, checkpoint: str | None = None,
               data_root: str | None = None, download: bool = False, data_seed: int = 0,
               train_epochs: int = 15, seed: int = 0, trust_checkpoint: bool = False,
               progress: bool = False, data: DataSplits | None = None, ignore_layers: tuple[str, ...] = (),
               prune_embed: bool = False) -> Task:
    """The task a search runs on: from ``checkpoint`` if given, else a cached (or freshly trained) baseline.

    Example:
        >>> from agent import build_task
        >>> task = build_task(model="mlp", dataset="digits", train_epochs=1)  # trained once, then cached
        >>> task.spec.model, task.data.input_shape, task.data.num_classes
        ('mlp', (1, 8, 8), 10)

    Args:
        model: Model spec (default :data:`DEFAULT_MODEL`); with a checkpoint, overrides the checkpoint's.
        dataset: Dataset name (default :data:`DEFAULT_DATASET`); with a checkpoint, overrides the checkpoint's.
        checkpoint: Dense checkpoint path.
        data_root: Local root of torchvision datasets.
        download: Allow downloading the dataset.
        data_seed: Dataset seed.
        train_epochs: Epochs when a baseline must be trained.
        seed: Training seed.
        trust_checkpoint: Allow full unpickling of ``checkpoint``.
        progress: Show a progress bar while training.
        data: Already loaded splits of ``dataset`` (loaded here if omitted).
        ignore_layers: Names or glob patterns of layers to keep whole (see :attr:`Task.ignore_layers`).
        prune_embed: Prune a transformer's residual width too (see :attr:`Task.prune_embed`).

    Returns:
        The task.
    """
    task = _build_task(model=model, dataset=dataset, checkpoint=checkpoint, data_root=data_root, download=download,
                       data_seed=data_seed, train_epochs=train_epochs, seed=seed, trust_checkpoint=trust_checkpoint,
                       progress=progress, data=data)
    task.ignore_layers = tuple(ignore_layers)
    task.prune_embed = bool(prune_embed)
    return task


def _build_task(*, model: str | None, dataset: str | None, checkpoint: str | None, data_root: str | None,
                download: bool, data_seed: int, train_epochs: int, seed: int, trust_checkpoint: bool,
                progress: bool, data: DataSplits | None) -> Task:
    if checkpoint is not None:
        return load_task(checkpoint, model=model, dataset=dataset,
                         data_seed=data_seed, data_root=data_root, download=download,
                         trust_checkpoint=trust_checkpoint)
    spec = TaskSpec(model or DEFAULT_MODEL, dataset or DEFAULT_DATASET, data_seed)
    spec.validate()
    path = default_dense_checkpoint(spec, epochs=train_epochs, seed=seed)
    if path.exists():
        return load_task(path, data_root=data_root, download=download)
    data = data or load_dataset(spec.dataset, data_root=data_root, download=download, seed=data_seed)
    task = train_dense(spec, epochs=train_epochs, seed=seed, data=data, progress=progress)
    save_checkpoint(task, path)
    return task
