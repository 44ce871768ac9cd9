"""An independent checker of text alignment on ``scenes``: what does each half of a generated image hold?

It shares nothing with the generator: the item class comes from a classifier trained on real Fashion-MNIST
items (scikit-learn logistic regression on 16×16 crops, the size scenes draw them at), and the colour and the
emptiness are measured from the pixels. Every scenes colour has a channel at 255, so the item's gray value is
the maximum over channels and its tint is the lit pixels' mean RGB, normalised by its largest channel.

``check(images, layouts)`` compares each half with the caption's layout and returns the shares that are right:
position (empty or not, per half), colour and class (over halves that should hold an item and do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from noisecraft.data.scenes import COLOUR_NAMES, COLOURS, ITEM, SIDE, Slot

EMPTY_LIT = 12  # a half with fewer pixels above LIT is empty
LIT = 0.25  # gray level (of 1) above which a pixel belongs to an item


def _crop_gray(rgb: np.ndarray, half: int) -> np.ndarray:
    """The item crop (16, 16) of half 0 (left) or 1 (right) of an image (32, 32, 3) in [0, 1], as gray."""
    top = (SIDE - ITEM) // 2
    x0 = half * SIDE // 2
    return rgb[top : top + ITEM, x0 : x0 + ITEM].max(-1)


@dataclass
class SceneChecker:
    """A Fashion-MNIST classifier on 16×16 crops plus pixel rules for colour and emptiness."""

    model: object

    @classmethod
    def fit(cls, items: np.ndarray, labels: np.ndarray, seed: int = 0) -> SceneChecker:
        """Train on real Fashion-MNIST items (N, 28, 28) uint8, resized to 16×16 as scenes draw them."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        x = np.stack([_small(im) for im in items]).reshape(len(items), -1)
        model = LogisticRegression(max_iter=300, C=0.5, random_state=seed)
        with warnings.catch_warnings():  # 300 L-BFGS iterations are enough here (test accuracy ~85 %)
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, labels)
        return cls(model)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class of each gray crop (N, 16, 16) in [0, 1], normalised to a peak of 1 as the tint scales it."""
        peak = crops.reshape(len(crops), -1).max(1).clip(min=1e-6)[:, None, None]
        return self.model.predict((crops / peak).reshape(len(crops), -1))

    def read(self, images: np.ndarray) -> list[tuple[Slot | None, Slot | None]]:
        """What each image (N, 32, 32, 3) uint8 shows: (left, right), None for an empty half (row = −1)."""
        rgb = images.astype(np.float32) / 255.0
        palette = np.array([COLOURS[c] for c in COLOUR_NAMES], np.float32) / 255.0  # (8, 3)
        palette = palette / palette.max(1, keepdims=True)
        out: list[list[Slot | None]] = [[None, None] for _ in range(len(images))]
        for half in (0, 1):
            crops = np.stack([_crop_gray(im, half) for im in rgb])  # (N, 16, 16)
            classes = self.classify(crops)
            for i, im in enumerate(rgb):
                region = im[:, half * SIDE // 2 : (half + 1) * SIDE // 2]  # the whole half (32, 16, 3)
                lit = region.max(-1) > LIT
                if lit.sum() < EMPTY_LIT:
                    continue
                tint = region[lit].mean(0)
                tint = tint / max(float(tint.max()), 1e-6)
                colour = int(np.abs(palette - tint).sum(1).argmin())
                out[i][half] = Slot(int(classes[i]), colour, -1)
        return [(a, b) for a, b in out]


def _small(item: np.ndarray) -> np.ndarray:
    g = np.asarray(Image.fromarray(item).resize((ITEM, ITEM), Image.BILINEAR), np.float32) / 255.0
    return g / max(float(g.max()), 1e-6)


def score(read: list[tuple[Slot | None, Slot | None]], want: list[tuple[Slot | None, Slot | None]]) -> dict:
    """Shares right: position (each half empty or not as asked), colour and class (halves asked for and drawn),
    and whole scenes with everything right."""
    pos = col = cls = n_pos = n_item = whole = 0
    for got, ask in zip(read, want):
        ok = True
        for g, a in zip(got, ask):
            n_pos += 1
            right = (g is None) == (a is None)
            pos += right
            ok &= right
            if a is not None:
                n_item += 1
                col += g is not None and g.colour == a.colour
                cls += g is not None and g.cls == a.cls
                ok &= g is not None and g.colour == a.colour and g.cls == a.cls
        whole += ok
    return {
        "position": pos / max(n_pos, 1),
        "colour": col / max(n_item, 1),
        "class": cls / max(n_item, 1),
        "scene": whole / max(len(want), 1),
    }
