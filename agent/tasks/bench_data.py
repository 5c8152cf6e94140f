"""Benchmark datasets with headroom and statistical power, generated offline, seeded and cached.

``mnist1d-hard``: MNIST-1D at scale (25,000 samples) with its difficulty knobs between the default and a much
noisier setting, so a small 1-D CNN is good (> 90%) but pruning hurts. ``digits-aug``: scikit-learn's 8x8 digits
upsampled to 16x16 and strongly augmented (random affine, stroke gain, blur, noise) to 19,000 images; train and
test images come from *disjoint* source digits, so the test split measures generalisation, not memorised
augmentations. Both have >= 5,000 test samples (one sample < 0.02 points).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .datasets import DataSplits, cache_dir, split_train_val

__all__ = ["BENCH_DATASETS", "MNIST1D_HARD", "DIGITS_AUG"]

MNIST1D_HARD = {"num_samples": 25000, "iid_noise_scale": 0.03, "corr_noise_scale": 0.32, "shear_scale": 0.8,
                "scale_coeff": 0.45}
"""MNIST-1D generator settings of ``mnist1d-hard`` (20,000 train+val / 5,000 test); the rest are mnist1d's
defaults (iid 0.02, correlated 0.25, shear 0.75, scale 0.4 at the easy end)."""

DIGITS_AUG = {"size": 16, "train": 14000, "test": 5000, "test_sources": 0.3, "rotate_deg": 12.0,
              "scale": (0.85, 1.1), "shear": 0.15, "shift_px": 1.5, "noise": 0.15, "blur": 0.5}
"""Generator settings of ``digits-aug``: image size, image counts, share of source digits held out for the test
split, augmentation ranges (rotation, scale, shear, shift in pixels, Gaussian pixel noise, blur probability)."""


def _cached(name: str, settings: dict[str, object], seed: int, build: Callable[[], dict[str, np.ndarray]]
            ) -> dict[str, np.ndarray]:
    """Arrays of a generated dataset: from ``$PRUNEPILOT_CACHE/data`` if there, else built and saved atomically.

    The file name holds a hash of the generator ``settings``, so changed settings never read stale data.
    """
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    path = cache_dir() / "data" / f"{name}-{key}-seed{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def _splits(name: str, arrays: dict[str, np.ndarray], seed: int, val_fraction: float, shape: tuple[int, ...]
            ) -> DataSplits:
    x = torch.tensor(arrays["x"], dtype=torch.float32).reshape(-1, *shape)
    y = torch.tensor(arrays["y"], dtype=torch.long)
    train, val = split_train_val(x, y, val_fraction, seed)
    test = TensorDataset(torch.tensor(arrays["x_test"], dtype=torch.float32).reshape(-1, *shape),
                         torch.tensor(arrays["y_test"], dtype=torch.long))
    return DataSplits(name, train, val, test, shape, 10)


def _mnist1d_hard(*, data_root: str | None, download: bool, seed: int) -> DataSplits:
    """MNIST-1D, 25,000 samples, noisier than the default: 17,500 train / 2,500 val / 5,000 test."""
    del data_root, download

    def build() -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        for key, value in MNIST1D_HARD.items():
            setattr(args, key, value)
        args.seed = seed
        raw = make_dataset(args)  # offline generator; never mnist1d's get_dataset (it downloads)
        return {k: np.asarray(raw[k], dtype=np.float32 if k.startswith("x") else np.int64)
                for k in ("x", "y", "x_test", "y_test")}

    return _splits("mnist1d-hard", _cached("mnist1d-hard", MNIST1D_HARD, seed, build), seed, 0.125, (1, 40))


def _augment(images: torch.Tensor, count: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random augmentations of source ``images`` ([N, 1, S, S] in [0, 1]); returns images and indices."""
    cfg = DIGITS_AUG
    idx = torch.randint(len(images), (count,), generator=gen)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(count, generator=gen)

    angle = torch.deg2rad(uniform(-cfg["rotate_deg"], cfg["rotate_deg"]))
    scale = uniform(*cfg["scale"])
    shear = uniform(-cfg["shear"], cfg["shear"])
    size = images.shape[-1]
    shift = torch.stack([uniform(-cfg["shift_px"], cfg["shift_px"]) for _ in range(2)], 1) * 2.0 / size
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1),
                         torch.stack([sin, cos + shear * sin, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, [count, 1, size, size], align_corners=False)
    out = torch.nn.functional.grid_sample(images[idx], grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    blur = torch.rand(count, generator=gen) < cfg["blur"]
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).div(16).view(1, 1, 3, 3)
    out[blur] = torch.nn.functional.conv2d(out[blur], kernel, padding=1)
    out = out * uniform(0.5, 1.2).view(-1, 1, 1, 1)
    out = out + cfg["noise"] * torch.randn(out.shape, generator=gen)
    return out, idx


def _digits_aug(*, data_root: str | None, download: bool, seed: int) -> DataSplits:
    """Augmented 16x16 digits: 12,250 train / 1,750 val / 5,000 test, test from held-out source digits."""
    del data_root, download

    def build() -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        cfg = DIGITS_AUG
        src = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
        src = torch.nn.functional.interpolate(src, size=(cfg["size"],) * 2, mode="bilinear", align_corners=False)
        labels = torch.tensor(bunch.target, dtype=torch.long)
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(src), generator=gen)
        n_test = int(round(cfg["test_sources"] * len(src)))
        test_src, train_src = perm[:n_test], perm[n_test:]
        x, i = _augment(src[train_src], cfg["train"], gen)
        x_test, i_test = _augment(src[test_src], cfg["test"], gen)
        return {"x": x.numpy(), "y": labels[train_src][i].numpy(), "x_test": x_test.numpy(),
                "y_test": labels[test_src][i_test].numpy()}

    size = DIGITS_AUG["size"]
    return _splits("digits-aug", _cached("digits-aug", DIGITS_AUG, seed, build), seed, 0.125, (1, size, size))


BENCH_DATASETS: dict[str, Callable[..., DataSplits]] = {"mnist1d-hard": _mnist1d_hard, "digits-aug": _digits_aug}
"""Benchmark datasets, registered in :data:`agent.tasks.datasets.DATASETS`."""
