"""Built-in datasets that need no download: scikit-learn's digits, Fashion-MNIST from IDX files, 2-D toys.

- ``digits``: 1 797 handwritten digits, 8×8 gray with values 0..16 (scikit-learn ``load_digits``), labels
  0–9; upsampled to `resolution` with the configured Pillow filter. scikit-learn has no split, so noisecraft
  fixes one (``digits_split``): the "train" split (1 438) never holds the 359 "test" images that evaluation
  scores against (evaluation/reference.py).
- ``fashion-mnist`` (Xiao et al. 2017): 60 000 train / 10 000 test 28×28 gray images in 10 classes, read from
  the original IDX files (gzipped or not): DataConfig.path, else $NOISECRAFT_FASHION_MNIST, else the Debian
  package's folder /usr/share/datasets/fashion-mnist (``apt-get install dataset-fashion-mnist``).
- ``toy:<name>``: the 2-D distributions of noisecraft.data.toys, items {"x": (2,)}.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from noisecraft.data.config import DataConfig
from noisecraft.data.images import ImageDataset
from noisecraft.errors import NoisecraftError

FASHION_MNIST_ENV = "NOISECRAFT_FASHION_MNIST"
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


class ArrayImageDataset(ImageDataset):
    """Gray images held in memory as a uint8 array (N, H, W), with integer labels (N,)."""

    def __init__(self, cfg: DataConfig, images: np.ndarray, labels: np.ndarray, class_names: list[str], where: str):
        super().__init__(cfg, where)
        if cfg.limit is not None:
            images, labels = images[: cfg.limit], labels[: cfg.limit]
        self.images = np.ascontiguousarray(images, dtype=np.uint8)
        self.labels = labels.astype(np.int64)
        self.class_names = list(class_names)
        self.num_classes = len(class_names)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index], "L")

    def label(self, index: int) -> int:
        return int(self.labels[index])


DIGITS_TEST_FRACTION = 0.2  # the last 20 % of a seed-0 permutation is the test split


def digits_split(split: str, n: int = 1797) -> np.ndarray:
    """Indices of the digits `split` ("train", "test" or "all"): a fixed permutation (seed 0) of the n images,
    whose last n // 5 are the test split. The one definition for training data and evaluation references."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
    n_test = int(n * DIGITS_TEST_FRACTION)
    parts = {"train": perm[:-n_test], "test": perm[-n_test:], "all": np.arange(n)}
    if split not in parts:
        raise NoisecraftError(f"digits split must be 'train', 'test' or 'all', got {split!r}")
    return parts[split]


def digits_dataset(cfg: DataConfig) -> ArrayImageDataset:
    """scikit-learn's 8×8 digits, the images of cfg.split (``digits_split``); values 0..16 are mapped to 0..255
    before resizing."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn is slow to import

    d = load_digits()
    idx = digits_split(cfg.split, len(d.images))
    images = np.rint(d.images[idx] * (255.0 / 16.0)).astype(np.uint8)  # (n, 8, 8)
    return ArrayImageDataset(cfg, images, d.target[idx], [str(i) for i in range(10)], "digits")


# ----------------------------------------------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; gzipped when the name ends in .gz) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise NoisecraftError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise NoisecraftError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    need = int(np.prod(dims)) * dtype.itemsize
    if len(data) - start != need:
        raise NoisecraftError(f"{path} is truncated or padded: header says {dims}, {len(data) - start} data bytes")
    return np.frombuffer(data, dtype=dtype, offset=start).reshape(dims)


def find_fashion_mnist(path: str | None = None) -> Path:
    """The folder holding the Fashion-MNIST IDX files, or a NoisecraftError saying how to get them."""
    candidates = [p for p in (path, os.environ.get(FASHION_MNIST_ENV), *FASHION_MNIST_DIRS) if p]
    for c in candidates:
        if _idx_file(Path(c), "train-images-idx3-ubyte") is not None:
            return Path(c)
    raise NoisecraftError(
        "Fashion-MNIST IDX files not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); install them with `sudo apt-get install dataset-fashion-mnist`, or download the four "
        "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist and pass their folder as "
        f"data path or ${FASHION_MNIST_ENV}"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_mnist_dataset(cfg: DataConfig) -> ArrayImageDataset:
    split = {"train": "train", "test": "t10k", "t10k": "t10k"}.get(cfg.split)
    if split is None:
        raise NoisecraftError(f"fashion-mnist split must be 'train' or 'test', got {cfg.split!r}")
    folder = find_fashion_mnist(cfg.path)
    files = [_idx_file(folder, f"{split}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if None in files:
        raise NoisecraftError(f"{folder} lacks the {split}-images/labels IDX files of the {cfg.split!r} split")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise NoisecraftError(f"{folder}: images {images.shape} and labels {labels.shape} do not match")
    return ArrayImageDataset(cfg, images, labels, FASHION_MNIST_CLASSES, f"fashion-mnist ({folder})")


# ----------------------------------------------------------------------------------------------------------
class ToyDataset(Dataset):
    """A fixed draw of `toy_size` points from a 2-D toy: items {"x": float32 (2,), "label": component}."""

    def __init__(self, cfg: DataConfig):
        from noisecraft.data.toys import EXACT, toy_data

        name = cfg.source[4:]
        self.cfg = cfg
        if cfg.labels:
            g = torch.Generator().manual_seed(cfg.seed)
            x, labels = EXACT[name]().sample(cfg.toy_size, g)
            self.points, self.labels = x.float(), labels.long()
            self.num_classes = EXACT[name]().means.shape[0]
        else:
            self.points, self.labels = toy_data(name, cfg.toy_size, cfg.seed), None
            self.num_classes = 0
        self.class_names = [str(k) for k in range(self.num_classes)]
        self.shape = (2,)

    def set_epoch(self, epoch: int) -> None:
        """Toys have no random transforms; present for the common dataset interface."""

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"x": self.points[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item
