"""The shared base of image datasets: transform each item deterministically, skip and count bad items.

Subclasses give ``__len__``, ``load(index) -> PIL image`` (raising BadImage), and optionally ``label(index)``
and ``caption(index)``. A bad item is replaced by the next good one (index+1, index+2, ...), so a batch never
shrinks and the choice is deterministic. Each of the first WARN_BAD bad items is named on stderr when it is
met; once more than ``max_bad_fraction`` of the dataset has turned out bad, a NoisecraftError stops the run
with the first bad path. (A cached training set leaves bad items out instead: see training.setup.)
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from noisecraft.data.config import DataConfig, parse_colour
from noisecraft.data.scan import check_bad_fraction
from noisecraft.data.transforms import BadImage, ImageTransform, item_rng
from noisecraft.errors import NoisecraftError

WARN_BAD = 10  # bad items named one by one; the rest are only counted


class ImageDataset(Dataset):
    """Items {"x": float32 (C, H, W) in [−1, 1], "label": int64 (if labels), "caption": str (if captions)}."""

    num_classes: int = 0
    class_names: list[str]

    def __init__(self, cfg: DataConfig, where: str):
        self.cfg = cfg
        self.where = where
        self.transform = ImageTransform(
            cfg.resolution, cfg.channels, cfg.crop, cfg.flip, cfg.resize_filter, parse_colour(cfg.background)
        )
        self.epoch = 0
        self.bad: dict[int, str] = {}  # index -> reason, for the items found bad so far (in this process)
        self.class_names = []

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.cfg.channels, self.cfg.resolution, self.cfg.resolution)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of crops and flips: item i of epoch e is the same in every run."""
        self.epoch = int(epoch)

    # -- given by subclasses -----------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Image.Image:
        raise NotImplementedError

    def label(self, index: int) -> int:
        raise NotImplementedError

    def caption(self, index: int) -> str:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """How to name item `index` in an error message (a path, or a dataset row)."""
        return f"item {index}"

    # -- the item ----------------------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """How many bad items this process has skipped."""
        return len(self.bad)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        index = int(index)
        for offset in range(n):
            i = (index + offset) % n
            if i in self.bad:
                continue
            try:
                img = self.load(i)
            except BadImage as e:
                self.bad[i] = str(e)
                if len(self.bad) <= WARN_BAD:
                    more = "; further bad items are counted without a message" if len(self.bad) == WARN_BAD else ""
                    print(
                        f"warning: skipping unreadable {self.describe(i)} ({e}); item {i} is served by the next "
                        f"readable one{more}",
                        file=sys.stderr,
                    )
                first = next(iter(self.bad))
                check_bad_fraction(
                    len(self.bad),
                    n,
                    self.cfg.max_bad_fraction,
                    self.where,
                    f"{self.describe(first)}: {self.bad[first]}",
                )
                continue
            x = self.transform(img, item_rng(self.cfg.seed, self.epoch, index))
            item: dict[str, Any] = {"x": x}
            if self.cfg.labels:
                item["label"] = torch.tensor(self.label(i), dtype=torch.int64)
            if self.cfg.captions:
                item["caption"] = self.caption(i)
            return item
        raise NoisecraftError(f"no readable image in {self.where}")
