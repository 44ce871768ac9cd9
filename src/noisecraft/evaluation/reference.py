"""Reference image sets for evaluation: fixed train/test splits of the built-in datasets, offline.

- "digits": scikit-learn's 1797 8×8 handwritten digits (bundled with scikit-learn). There is no official
  split, so noisecraft fixes one: a permutation with seed 0, the last 20 % (359 images) is the test split; the
  training data of `--data digits` is the rest (data/builtin.py ``digits_split``).
- "fashion-mnist": the official 60 000 / 10 000 split from the IDX files (Debian package
  ``dataset-fashion-mnist``: ``apt-get install dataset-fashion-mnist``, or $NOISECRAFT_FASHION_MNIST).

Images come back as float32 (N, 1, H, W) in [−1, 1] at the native resolution, with int64 labels (N,).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError, check_choice

REFERENCE_DATASETS = ("digits", "fashion-mnist")
SPLITS = ("train", "test")
NATIVE_RESOLUTION = {"digits": 8, "fashion-mnist": 28}
NATIVE_LEVELS = {"digits": 17, "fashion-mnist": 256}  # grey levels the images are stored with (digits: 0..16)
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)


def _digits(split: str) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    from noisecraft.data.builtin import digits_split

    x = torch.from_numpy(d.images.astype(np.float32)) / 16.0 * 2 - 1  # (1797, 8, 8) in [−1, 1]
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = torch.from_numpy(digits_split(split, len(x)))  # the training data's split (data/builtin.py)
    return x[idx, None], y[idx]


def fashion_mnist_dir() -> Path:
    """Folder holding the Fashion-MNIST IDX files, or a NoisecraftError saying how to get them."""
    cands = [os.environ.get("NOISECRAFT_FASHION_MNIST", ""), *FASHION_DIRS]
    for c in cands:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").exists():
            return Path(c)
    raise NoisecraftError(
        "Fashion-MNIST IDX files not found; install them with `apt-get install dataset-fashion-mnist` "
        "or set NOISECRAFT_FASHION_MNIST to a folder holding train-images-idx3-ubyte.gz etc."
    )


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion(split: str) -> tuple[Tensor, Tensor]:
    root = fashion_mnist_dir()
    prefix = "train" if split == "train" else "t10k"
    imgs = _idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = _idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(imgs.astype(np.float32)) / 255.0 * 2 - 1
    return x[:, None], torch.from_numpy(labels.astype(np.int64))


def reference_images(dataset: str, split: str = "test") -> tuple[Tensor, Tensor]:
    """(images (N, 1, H, W) float32 in [−1, 1], labels (N,)) of a built-in dataset's fixed split."""
    check_choice("reference dataset", dataset, REFERENCE_DATASETS)
    check_choice("split", split, SPLITS)
    return _digits(split) if dataset == "digits" else _fashion(split)
