"""Built-in datasets: offline generators (MNIST-1D, sklearn digits) and torchvision datasets from a local root.

Every dataset is returned as :class:`DataSplits` with train / val / test ``torch.utils.data.Dataset`` objects,
the per-sample input shape and the number of classes. No dataset is downloaded unless the caller passes
``download=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..errors import user_error

__all__ = ["DataSplits", "DATASETS", "load_dataset", "dataset_names", "cache_dir"]


@dataclass
class DataSplits:
    """Train / validation / test splits of one dataset."""

    name: str
    """Dataset name as given by the user (``mnist1d``, ``imagefolder:/data/pets``...)."""
    train: Dataset
    """Training split (also used for fine-tuning and importance calibration)."""
    val: Dataset
    """Validation split: what searches score candidates on."""
    test: Dataset
    """Held-out test split: reported for the final model only."""
    input_shape: tuple[int, ...]
    """Shape of one sample without the batch dimension, e.g. ``(1, 40)`` or ``(3, 32, 32)``."""
    num_classes: int
    """Number of output classes (the vocabulary size of a language-model dataset)."""
    metric: str = "accuracy"
    """Quality metric of models on this data (see :data:`agent.tasks.metrics.METRICS`)."""


def cache_dir() -> Path:
    """Directory for generated data, dense checkpoints and sensitivity / latency caches.

    ``$PRUNEPILOT_CACHE`` if set, else ``~/.cache/prunepilot``.
    """
    root = os.environ.get("PRUNEPILOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "prunepilot")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def split_train_val(x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    n_val = int(round(len(x) * val_fraction))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


def _mnist1d(*, data_root: str | None, download: bool, seed: int) -> DataSplits:
    """MNIST-1D generated offline (12,000 samples, length 40): 8,400 train / 1,200 val / 2,400 test."""
    del data_root, download
    path = cache_dir() / "data" / f"mnist1d-12000-seed{seed}.npz"
    if path.exists():
        arrays = dict(np.load(path))
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = 12000
        args.seed = seed
        raw = make_dataset(args)  # offline generator; never mnist1d's get_dataset (it downloads)
        arrays = {k: np.asarray(raw[k]) for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    x = torch.tensor(arrays["x"], dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(arrays["y"], dtype=torch.long)
    train, val = split_train_val(x, y, 0.125, seed)
    test = TensorDataset(
        torch.tensor(arrays["x_test"], dtype=torch.float32).unsqueeze(1),
        torch.tensor(arrays["y_test"], dtype=torch.long),
    )
    return DataSplits("mnist1d", train, val, test, (1, 40), 10)


def _digits(*, data_root: str | None, download: bool, seed: int, size: int = 8) -> DataSplits:
    """Scikit-learn's 8x8 digits (1,797 images, offline): 70% train / 15% val / 15% test, scaled to [0, 1].

    ``size`` > 8 upsamples bilinearly (``digits32``: CIFAR geometry, so CIFAR-style models do realistic work).
    """
    del data_root, download
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(bunch.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    n_test = int(round(0.15 * len(x)))
    test_idx, rest = perm[:n_test], perm[n_test:]
    train, val = split_train_val(x[rest], y[rest], 0.15 / 0.85, seed + 1)
    return DataSplits("digits" if size == 8 else f"digits{size}", train, val, TensorDataset(x[test_idx], y[test_idx]),
                      (1, size, size), 10)


def _require_root(name: str, data_root: str | None, download: bool) -> Path:
    if data_root is None:
        raise user_error(
            f"dataset {name!r} needs a local copy; missing --data-root, got", data_root,
            f"pass --data-root DIR pointing at the {name} files (add --download to fetch them into DIR)",
        )
    root = Path(data_root).expanduser()
    if not download and not root.is_dir():
        raise user_error(
            "data root does not exist or is not a directory:", str(root),
            "pass an existing --data-root, or add --download to fetch the dataset into it",
        )
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise user_error("data root is not readable:", str(root), "fix its permissions or choose another --data-root")
    return root


def _torchvision_split(train_full: Dataset, test: Dataset, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train_full), generator=gen).tolist()  # type: ignore[arg-type]
    n_val = max(1, len(perm) // 10)
    return Subset(train_full, perm[n_val:]), Subset(train_full, perm[:n_val]), test


def _vision(kind: str) -> Callable[..., DataSplits]:
    def build(*, data_root: str | None, download: bool, seed: int) -> DataSplits:
        import torchvision
        from torchvision import transforms

        root = _require_root(kind, data_root, download)
        if kind == "cifar10":
            norm = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
            cls, shape = torchvision.datasets.CIFAR10, (3, 32, 32)
        elif kind == "mnist":
            norm = transforms.Normalize((0.1307,), (0.3081,))
            cls, shape = torchvision.datasets.MNIST, (1, 28, 28)
        else:
            norm = transforms.Normalize((0.2860,), (0.3530,))
            cls, shape = torchvision.datasets.FashionMNIST, (1, 28, 28)
        tf = transforms.Compose([transforms.ToTensor(), norm])
        try:
            full = cls(str(root), train=True, download=download, transform=tf)
            test = cls(str(root), train=False, download=download, transform=tf)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
            raise user_error(
                f"{kind} files not found under --data-root", str(root),
                f"put the {kind} files there (torchvision layout) or add --download ({exc})",
            ) from None
        train, val, test = _torchvision_split(full, test, seed)
        return DataSplits(kind, train, val, test, shape, 10)

    return build


def _imagefolder(path: str, *, data_root: str | None, download: bool, seed: int, image_size: int = 64) -> DataSplits:
    """A torchvision ``ImageFolder`` tree: ``PATH/train/<class>/*`` and ``PATH/val/<class>/*``, or one flat tree."""
    del download
    import torchvision
    from torchvision import transforms

    root = Path(path if not data_root or os.path.isabs(path) else os.path.join(data_root, path)).expanduser()
    if not root.is_dir():
        raise user_error("imagefolder path is not a directory:", str(root), "pass imagefolder:/path/to/tree")
    tf = transforms.Compose([
        transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    try:
        if (root / "train").is_dir() and (root / "val").is_dir():
            full = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
            test = torchvision.datasets.ImageFolder(str(root / "val"), transform=tf)
        else:
            full = torchvision.datasets.ImageFolder(str(root), transform=tf)
            test = full
    except (FileNotFoundError, RuntimeError) as exc:
        raise user_error("imagefolder tree has no class folders with images:", str(root), str(exc)) from None
    train, val, test = _torchvision_split(full, test, seed)
    return DataSplits(f"imagefolder:{path}", train, val, test, (3, image_size, image_size), len(full.classes))


def _bench(name: str) -> Callable[..., DataSplits]:
    """A benchmark dataset of :mod:`agent.tasks.bench_data` (imported when first loaded)."""

    def build(**kwargs: object) -> DataSplits:
        registry = importlib.import_module("agent.tasks.bench_data").BENCH_DATASETS  # imported on first use

        return registry[name](**kwargs)

    return build


DATASETS: dict[str, Callable[..., DataSplits]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "digits32": lambda **kw: _digits(**kw, size=32),
    "mnist": _vision("mnist"),
    "fashion-mnist": _vision("fashion-mnist"),
    "cifar10": _vision("cifar10"),
    "mnist1d-hard": _bench("mnist1d-hard"),
    "digits-aug": _bench("digits-aug"),
    "pystdlib": lambda **kw: importlib.import_module("agent.tasks.lm").pystdlib(**kw),  # imported on first use
}
"""Registry of built-in datasets; ``imagefolder:PATH`` is handled by :func:`load_dataset`."""


def dataset_names() -> list[str]:
    """All accepted dataset names (``imagefolder:PATH`` shown as a pattern)."""
    return [*DATASETS, "imagefolder:PATH"]


def check_dataset_name(name: str) -> None:
    """Raise a :class:`~agent.errors.UserInputError` if ``name`` is not a known dataset."""
    if name in DATASETS or (name.startswith("imagefolder:") and len(name) > len("imagefolder:")):
        return
    raise user_error("unknown dataset", name, f"choose one of {', '.join(dataset_names())}")


def load_dataset(name: str, *, data_root: str | None = None, download: bool = False, seed: int = 0) -> DataSplits:
    """Load a dataset by name.

    Args:
        name: ``mnist1d`` (default, offline), ``digits`` / ``digits32`` (offline), the benchmark datasets
            ``mnist1d-hard`` and ``digits-aug`` (offline, :mod:`agent.tasks.bench_data`), ``mnist``,
            ``fashion-mnist``, ``cifar10`` (local ``data_root``) or ``imagefolder:PATH``.
        data_root: Local directory holding torchvision datasets.
        download: Allow torchvision to download into ``data_root``.
        seed: Seed of the generator and of the train/val split.

    Returns:
        The splits with input shape and class count.
    """
    check_dataset_name(name)
    if name.startswith("imagefolder:"):
        return _imagefolder(name.split(":", 1)[1], data_root=data_root, download=download, seed=seed)
    return DATASETS[name](data_root=data_root, download=download, seed=seed)


def fingerprint_dataset(name: str, seed: int) -> str:
    """Short stable id of a dataset choice, part of cache keys."""
    return hashlib.sha1(f"{name}|{seed}".encode()).hexdigest()[:10]
