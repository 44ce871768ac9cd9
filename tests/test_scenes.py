"""The built-in captioned dataset `scenes`: layout, rendering, captions, splits, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noisecraft.data.config import DataConfig
from noisecraft.data.datasets import make_dataset
from noisecraft.data.scenes import COLOUR_NAMES, COLOURS, HELD_OUT_PAIRS, ITEM_NAMES, ScenesDataset, captions_for
from noisecraft.errors import NoisecraftError


def scenes(**kw) -> ScenesDataset:
    return make_dataset(DataConfig(source="scenes", channels=3, **{"scenes_size": 40, **kw}))


def test_scenes_items_match_their_layout(fake_fashion_mnist) -> None:
    ds = scenes(captions=True)
    assert len(ds) == 40 and ds.shape == (3, 32, 32)
    for i in range(40):
        left, right = ds.layouts[i]
        assert left is not None or right is not None
        x = (ds[i]["x"] + 1) * 127.5  # (3, 32, 32) in 0..255
        for slot, half in ((left, x[:, :, :16]), (right, x[:, :, 16:])):
            if slot is None:  # an empty half is black
                assert half.abs().max() < 1
                continue
            assert half[:, :8].abs().max() < 1 and half[:, 24:].abs().max() < 1  # the item is centred vertically
            lit = half.sum(0) > 30  # item pixels
            rgb = half[:, lit].mean(1)
            colour = torch.tensor(COLOURS[COLOUR_NAMES[slot.colour]], dtype=torch.float32)
            # the tint: every lit pixel is a multiple of the colour
            assert torch.allclose(rgb / rgb.max(), colour / colour.max(), atol=0.08)
        caption = ds[i]["caption"]
        assert caption in ds.caption_choices(i) and caption in captions_for(left, right)
        for slot in (left, right):
            if slot is not None:
                assert ITEM_NAMES[slot.cls] in caption and COLOUR_NAMES[slot.colour] in caption


def test_scenes_captions_name_sides_and_vary() -> None:
    from noisecraft.data.scenes import Slot

    a, b = Slot(7, 0, 0), Slot(8, 2, 0)
    two = captions_for(a, b)
    assert "a red sneaker on the left and a blue bag on the right" in two and len(set(two)) == len(two)
    one = captions_for(None, Slot(3, 3, 0))
    assert "left: empty; right: yellow dress" in one and all("left" in c or "right" in c for c in one)
    assert "an orange coat on the left" in captions_for(Slot(4, 7, 0), None)
    with pytest.raises(NoisecraftError):
        captions_for(None, None)


def test_scenes_deterministic_and_size_independent(fake_fashion_mnist) -> None:
    a, b = scenes(), scenes(scenes_size=10)
    for i in range(10):
        assert torch.equal(a[i]["x"], b[i]["x"]) and a.caption_choices(i) == b.caption_choices(i)
    c = scenes(seed=1)
    assert any(not torch.equal(a[i]["x"], c[i]["x"]) for i in range(10))
    # captions per image: several, the same each time, one drawn per epoch
    assert len(set(a.caption_choices(0))) == 3
    drawn = set()
    for epoch in range(12):
        a.set_epoch(epoch)
        drawn.add(a.caption(0))
    assert drawn == set(a.caption_choices(0))


def test_scenes_splits_hold_out_pairs(fake_fashion_mnist) -> None:
    train, held = scenes(scenes_size=200), scenes(scenes_size=30, split="heldout")
    pairs = lambda ds: [{(s.colour, s.cls) for s in lay if s is not None} for lay in ds.layouts]  # noqa: E731
    assert not any(p & HELD_OUT_PAIRS for p in pairs(train))
    assert all(p & HELD_OUT_PAIRS for p in pairs(held))
    # train items come from the train split, held-out ones from the test split
    assert max(s.row for lay in train.layouts for s in lay if s) >= 40  # train has 80 rows, test 40
    assert max(s.row for lay in held.layouts for s in lay if s) < 40
    with pytest.raises(NoisecraftError, match="scenes split"):
        scenes(split="valid")


def test_scenes_labels_and_grayscale(fake_fashion_mnist) -> None:
    ds = make_dataset(DataConfig(source="scenes", scenes_size=5, labels=True, channels=1, resolution=16))
    item = ds[0]
    assert item["x"].shape == (1, 16, 16) and 0 <= int(item["label"]) <= 10
    left = ds.layouts[0][0]
    assert int(item["label"]) == (10 if left is None else left.cls)
    assert np.isfinite(item["x"].numpy()).all()


def test_scenes_example_picture_command(fake_fashion_mnist, tmp_path) -> None:
    """docs/scenes.md: python -m noisecraft.data.scenes docs/images/scenes.png 8"""
    import subprocess
    import sys

    out = tmp_path / "scenes.png"
    r = subprocess.run([sys.executable, "-m", "noisecraft.data.scenes", str(out), "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[0] > 100 and im.shape[1] > 200 and im.std() > 10  # two scenes with captions drawn
