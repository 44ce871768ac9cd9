"""The independent alignment checker of scenes reads real rendered scenes right, and scores mismatches."""

from __future__ import annotations

import numpy as np

from noisecraft.data.config import DataConfig
from noisecraft.data.datasets import make_dataset
from noisecraft.data.scenes import Slot, render
from noisecraft.evaluation.scene_check import SceneChecker, score


def test_checker_reads_rendered_scenes_and_scores_errors(fake_fashion_mnist) -> None:
    train = make_dataset(DataConfig(source="fashion-mnist"))
    chk = SceneChecker.fit(train.images, train.labels)
    ds = make_dataset(DataConfig(source="scenes", channels=3, split="heldout", scenes_size=40))
    imgs = np.stack([render(*lay, ds.items) for lay in ds.layouts])
    s = score(chk.read(imgs), ds.layouts)
    assert s == {"position": 1.0, "colour": 1.0, "class": 1.0, "scene": 1.0}
    # swap the halves: every two-item scene with different items goes wrong
    swapped = [(b, a) for a, b in ds.layouts]
    assert score(chk.read(imgs), swapped)["scene"] < 0.5
    # a black image holds nothing; a wrongly tinted item is caught
    left = Slot(3, 0, int(np.flatnonzero(ds.items.max((1, 2)) > 0)[0]))
    blank = np.zeros((1, 32, 32, 3), np.uint8)
    assert chk.read(blank) == [(None, None)]
    red = render(left, None, ds.items)[None]
    assert score(chk.read(red), [(Slot(left.cls, 1, 0), None)])["colour"] == 0.0
