"""Editing I/O: any image in (size, mode), masks from PNGs and rectangles, clear errors, comparison strips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.editing.io import (
    check_mask,
    load_image,
    load_mask,
    rect_mask,
    save_comparison,
    save_image,
    tensor_to_image,
)
from noisecraft.errors import NoisecraftError


def _write(tmp_path, name: str, img: Image.Image) -> str:
    path = str(tmp_path / name)
    img.save(path)
    return path


@pytest.mark.parametrize(
    "mode,size",
    [("L", (8, 8)), ("RGB", (30, 20)), ("RGBA", (13, 40)), ("P", (16, 16)), ("I;16", (9, 12)), ("LA", (10, 10))],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_any_mode_and_size_becomes_a_model_tensor(tmp_path, mode, size, channels):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size[::-1]).astype(np.uint16))
    elif mode == "P":
        img = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3)).astype(np.uint8), "RGB").convert("P")
    else:
        img = Image.new(mode, size)
        img.putdata(
            [
                tuple(rng.integers(0, 255, len(mode))) if len(mode) > 1 else int(rng.integers(0, 255))
                for _ in range(size[0] * size[1])
            ]
        )
    x, msg = load_image(_write(tmp_path, "in.png", img), 8, channels)
    assert x.shape == (channels, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert "-> 8x8" in msg and f"{size[0]}x{size[1]}" in msg


def test_transparency_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((3, 3), (0, 0, 0, 255))
    x, msg = load_image(_write(tmp_path, "a.png", img), 8, 1)
    assert "alpha" in msg
    assert x[0, 3, 3] == -1 and (x[0].flatten().sort().values[1:] == 1).all()


def test_same_size_gray_round_trips_exactly(tmp_path):
    x = torch.randint(0, 256, (1, 8, 8)).float() / 127.5 - 1
    save_image(x, tmp_path / "x.png")
    y, _ = load_image(tmp_path / "x.png", 8, 1)
    assert torch.allclose(x, y, atol=1e-6)


def test_unreadable_or_missing_image_is_an_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(NoisecraftError, match="not a readable image"):
        load_image(bad, 8, 1)
    with pytest.raises(NoisecraftError, match="does not exist"):
        load_image(tmp_path / "missing.png", 8, 1)
    with pytest.raises(NoisecraftError, match="channels must be 1 or 3"):
        load_image(bad, 8, 2)


def test_mask_png_threshold_and_sizes(tmp_path):
    m = Image.new("L", (8, 8), 0)
    m.paste(255, (2, 2, 5, 6))
    mask = load_mask(_write(tmp_path, "m.png", m), 8)
    assert mask.shape == (1, 8, 8) and mask.sum() == 3 * 4 and mask[0, 2, 2] == 1
    assert torch.equal(load_mask(tmp_path / "m.png", 8, outside=True), 1 - mask)
    # a mask the size of the original image gets the image's resize and crop
    big = m.resize((16, 24), Image.Resampling.NEAREST)
    assert load_mask(_write(tmp_path, "big.png", big), 8, image_size=(16, 24)).shape == (1, 8, 8)
    with pytest.raises(NoisecraftError, match="it must be 8x8 or 10x10"):
        load_mask(tmp_path / "big.png", 8, image_size=(10, 10))


def test_rect_mask_pixels_fractions_and_outpainting():
    m = rect_mask("2,1,6,4", 8)
    assert m.sum() == 4 * 3 and m[0, 1, 2] == 1 and m[0, 4, 2] == 0
    assert torch.equal(rect_mask("0.25,0.125,0.75,0.5", 8), m)
    assert torch.equal(rect_mask("2,1,6,4", 8, outside=True), 1 - m)
    for bad in ("1,2,3", "a,b,c,d", "5,5,5,9"):
        with pytest.raises(NoisecraftError, match="rect"):
            rect_mask(bad, 8)


def test_check_mask_broadcasts_or_explains():
    x = torch.zeros(2, 3, 8, 8)
    assert check_mask(torch.ones(8, 8), x).shape == x.shape
    with pytest.raises(NoisecraftError, match="use a 8x8 mask"):
        check_mask(torch.ones(1, 16, 16), x)


def test_comparison_strip_has_one_tile_per_image(tmp_path):
    a, b = torch.zeros(1, 8, 8), torch.ones(2, 1, 8, 8)
    save_comparison([a, b], tmp_path / "cmp.png", ["input", "output"], min_size=32)
    img = Image.open(tmp_path / "cmp.png")
    assert img.size == (2 * (32 + 4) + 4, 2 * (32 + 4) + 4 + 14)
    assert tensor_to_image(torch.zeros(3, 4, 4)).mode == "RGB"
