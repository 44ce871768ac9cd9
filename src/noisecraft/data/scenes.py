"""The built-in captioned dataset ``scenes``: a text-to-image task small enough for a CPU, whose answer can be checked.

Each image is 32×32 RGB on black with two slots, the left and the right half. A slot holds nothing or one
Fashion-MNIST item (Xiao et al. 2017; the train split for training, the test split for held-out data) resized
to 16×16, centred vertically in its half and tinted with one of 8 colours. Each image has several captions in
varied templates ("a red sneaker on the left and a blue bag on the right", "on the left, a white coat",
"left: green trouser; right: empty", ...); training draws one of them per step (see ``caption_choices``).

Everything is a function of (seed, split, index): the layout of item i is drawn from its own generator, so the
first n items are the same whatever the size. ``HELD_OUT_PAIRS`` are colour–item pairs that never appear in the
train split ("heldout" draws only scenes that contain one), to measure generalisation to unseen combinations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from noisecraft.data.config import DataConfig
from noisecraft.data.images import ImageDataset
from noisecraft.errors import NoisecraftError

SIDE = 32  # image side
ITEM = 16  # item side inside a slot
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "orange": (255, 128, 0),
}
COLOUR_NAMES = list(COLOURS)
# Fashion-MNIST's ten classes, as words a caption uses (class index = position)
ITEM_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
SPLITS = ("train", "test", "heldout")
# (colour, class) pairs the train split never shows: one per colour, each class at most once
HELD_OUT_PAIRS: frozenset[tuple[int, int]] = frozenset({(0, 8), (1, 3), (2, 7), (3, 0), (4, 9), (5, 1), (6, 5), (7, 4)})
P_EMPTY = 0.25  # chance that a slot is empty (never both)
CAPTIONS_PER_IMAGE = 3


@dataclass(frozen=True)
class Slot:
    """What one half holds: a Fashion-MNIST item of class `cls` (source row `row`) tinted `colour`; None: empty."""

    cls: int
    colour: int
    row: int

    @property
    def phrase(self) -> str:
        return f"{COLOUR_NAMES[self.colour]} {ITEM_NAMES[self.cls]}"


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# Caption templates. Both slots full: {l}, {r} are "colour item" phrases; one slot: {x} and {side}.
TWO = [
    lambda l, r: f"{_a(l)} on the left and {_a(r)} on the right",
    lambda l, r: f"{_a(r)} on the right and {_a(l)} on the left",
    lambda l, r: f"left: {l}; right: {r}",
    lambda l, r: f"on the left, {_a(l)}; on the right, {_a(r)}",
    lambda l, r: f"{_a(l)} next to {_a(r)}, left to right",
]
ONE = [
    lambda x, side: f"{_a(x)} on the {side}",
    lambda x, side: f"on the {side}, {_a(x)}",
    lambda x, side: f"left: {x}; right: empty" if side == "left" else f"left: empty; right: {x}",
    lambda x, side: f"{_a(x)} on the {side}, the {'right' if side == 'left' else 'left'} side empty",
    lambda x, side: f"only {_a(x)}, on the {side}",
]


def captions_for(left: Slot | None, right: Slot | None) -> list[str]:
    """Every caption template filled in for one layout (training draws CAPTIONS_PER_IMAGE of them)."""
    if left is not None and right is not None:
        return [t(left.phrase, right.phrase) for t in TWO]
    if left is None and right is None:
        raise NoisecraftError("a scene holds at least one item")
    full, side = (left, "left") if left is not None else (right, "right")
    return [t(full.phrase, side) for t in ONE]


def layout(seed: int, split: str, index: int, by_class: list[np.ndarray]) -> tuple[Slot | None, Slot | None]:
    """The (left, right) slots of item `index`: drawn from its own generator, so item i does not depend on size.

    by_class[k] lists the source rows of class k. train never shows a HELD_OUT_PAIRS pair; heldout always shows
    at least one; test shows any pair.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    for _ in range(1000):
        empty = rng.random(2) < P_EMPTY
        if empty.all():
            continue
        slots: list[Slot | None] = []
        for e in empty:
            if e:
                slots.append(None)
                continue
            cls, colour = int(rng.integers(10)), int(rng.integers(len(COLOURS)))
            rows = by_class[cls]
            slots.append(Slot(cls, colour, int(rows[rng.integers(len(rows))])) if len(rows) else None)
        if all(s is None for s in slots):
            continue
        pairs = {(s.colour, s.cls) for s in slots if s is not None}
        if split == "train" and pairs & HELD_OUT_PAIRS:
            continue
        if split == "heldout" and not pairs & HELD_OUT_PAIRS:
            continue
        return slots[0], slots[1]
    raise NoisecraftError(f"scenes: no valid layout for item {index} (too few Fashion-MNIST items per class?)")


def render(left: Slot | None, right: Slot | None, items: np.ndarray) -> np.ndarray:
    """The scene as uint8 (32, 32, 3): each item (28×28 gray) resized to 16×16 and tinted (gray·colour/255)."""
    out = np.zeros((SIDE, SIDE, 3), np.float32)
    top = (SIDE - ITEM) // 2
    for slot, x0 in ((left, 0), (right, SIDE // 2)):
        if slot is None:
            continue
        g = np.asarray(Image.fromarray(items[slot.row]).resize((ITEM, ITEM), Image.BILINEAR), np.float32) / 255.0
        out[top : top + ITEM, x0 : x0 + ITEM] = g[..., None] * np.asarray(COLOURS[COLOUR_NAMES[slot.colour]])
    return np.rint(out).astype(np.uint8)


class ScenesDataset(ImageDataset):
    """``--data scenes``: `cfg.scenes_size` captioned two-slot scenes (see the module docstring).

    cfg.split: "train" (Fashion-MNIST train items, no held-out pair), "test" (test items, any pair) or
    "heldout" (test items, every scene shows a held-out pair). Items carry "caption" when cfg.captions (one of
    the image's captions, chosen by (seed, epoch, index)) and "label" when cfg.labels (the left slot's class,
    10 for empty). Training with a text encoder draws the caption per step from ``caption_choices``.
    """

    def __init__(self, cfg: DataConfig):
        from noisecraft.data.builtin import fashion_mnist_dataset

        if cfg.split not in SPLITS:
            raise NoisecraftError(f"scenes split must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
        fm_split = "train" if cfg.split == "train" else "test"
        fm_cfg = dataclasses.replace(
            cfg, source="fashion-mnist", split=fm_split, limit=None, captions=False, labels=False
        )
        fm = fashion_mnist_dataset(fm_cfg)
        super().__init__(cfg, f"scenes ({fm.where}, {cfg.split})")
        self.items, labels = fm.images, fm.labels
        n = cfg.scenes_size if cfg.limit is None else min(cfg.scenes_size, cfg.limit)
        by_class = [np.flatnonzero(labels == k) for k in range(10)]
        self.layouts = [layout(cfg.seed, cfg.split, i, by_class) for i in range(n)]
        self.class_names = [*ITEM_NAMES, "empty"]
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.layouts)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(render(*self.layouts[index], self.items), "RGB")

    def label(self, index: int) -> int:
        left = self.layouts[index][0]
        return 10 if left is None else left.cls

    def caption_choices(self, index: int) -> list[str]:
        """The CAPTIONS_PER_IMAGE captions of item `index` (a fixed pick of templates, by seed and index)."""
        every = captions_for(*self.layouts[index])
        rng = np.random.default_rng([self.cfg.seed, 7, index])
        return [every[k] for k in sorted(rng.choice(len(every), CAPTIONS_PER_IMAGE, replace=False))]

    def caption(self, index: int) -> str:
        choices = self.caption_choices(index)
        return choices[np.random.default_rng([self.cfg.seed, 11, self.epoch, index]).integers(len(choices))]

    def describe(self, index: int) -> str:
        return f"scene {index}"


def save_examples(path: str, num: int = 8, seed: int = 0, split: str = "train") -> str:
    """A figure of `num` scenes, each with its captions beneath (the picture in docs/scenes.md)."""
    from noisecraft.evaluation.plots import _pyplot

    ds = ScenesDataset(DataConfig(source="scenes", channels=3, scenes_size=num, seed=seed, split=split))
    plt = _pyplot()
    cols = min(num, 4)
    rows = -(-num // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(num):
        ax = axes.ravel()[i]
        ax.imshow(np.asarray(ds.load(i)), interpolation="nearest")
        caps = "\n".join(ds.caption_choices(i))
        ax.text(0.5, -0.03, caps, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.08, wspace=0.05, hspace=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m noisecraft.data.scenes OUT.png [NUM]
    import sys

    out = save_examples(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
    print(f"wrote {out}")
