"""Images in and out of files: writing samples as PNGs (one per seed, or a grid) and reading a folder of
images back as a tensor (for scoring samples or a reference folder).

Every conversion goes through ``data.transforms``' one pixel pair (``to_pixels``/``from_pixels``), so an image
that is written and read back is exactly ``quantise(x)``: clamped to [−1, 1] and rounded to 8 bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from noisecraft.data.transforms import from_pixels, to_pixels
from noisecraft.errors import NoisecraftError


def quantise(x: Tensor) -> Tensor:
    """What a saved PNG holds, back in [−1, 1]: clamped and rounded to 8 bits, on x's device (float32)."""
    return from_pixels(to_pixels(x))


def to_uint8(x: Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [−1, 1] → uint8 array (N, H, W, C)."""
    return to_pixels(x.cpu()).permute(0, 2, 3, 1).numpy()


def _pil(img: np.ndarray, scale: int):
    from PIL import Image

    im = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def upscale_for(resolution: int) -> int:
    """Integer upscale so tiny images stay visible (8×8 digits → 64 px)."""
    return max(1, 64 // resolution)


def grid_array(x: Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile images (N, C, H, W) in [−1, 1] into one uint8 array (H', W', C) on a white background."""
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(imgs):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = img
    return grid


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None, pad: int = 2) -> Path:
    """Images (N, C, H, W) in [−1, 1] → one PNG grid (small images upscaled to stay visible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(grid_array(x, nrow, pad), upscale_for(x.shape[-2])).save(path)
    return path


def save_images(x: Tensor, folder: str | Path, seeds: Sequence[int]) -> list[Path]:
    """One PNG per image, named by its seed (seed000007.png)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, seed in zip(to_uint8(x), seeds):
        paths.append(folder / f"seed{seed:06d}.png")
        _pil(img, 1).save(paths[-1])
    return paths


def load_images(
    folder: str | Path,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    skip: Sequence[str] = ("grid",),
) -> tuple[Tensor, list[str]]:
    """Every readable image below `folder` → ((N, C, H, W) float32 in [−1, 1], notes).

    Images are opened with the training loader's guards (allow-listed formats, pixel limit) and transform:
    colour mode ("L" for channels=1, "RGB" for 3; default: RGB when any image is in colour), then resized on
    the short side and centre-cropped to `resolution` (default: the first image's size, which then all
    images must share). Files whose name contains a `skip` word (sample grids) and unreadable files are left
    out and counted in the notes. `limit` keeps the first `limit` images in sorted order.
    """
    from noisecraft.data.folder import list_images, looks_colour
    from noisecraft.data.transforms import BadImage, ImageTransform, open_image

    root = Path(folder)
    if not root.is_dir():
        raise NoisecraftError(f"image folder {str(root)!r} does not exist or is not a folder")
    files = [p for p in list_images(root) if not any(w in p.name for w in skip)]
    if not files:
        raise NoisecraftError(f"no images (.png, .jpg, .jpeg, .webp, .bmp) in {str(root)!r}")
    if channels is None:
        channels = 3 if looks_colour(root) else 1
    out, bad, sizes = [], 0, set()
    for p in files:
        if limit is not None and len(out) >= limit:
            break
        try:
            img = open_image(p)
        except BadImage:
            bad += 1
            continue
        sizes.add(img.size)
        if resolution is None:
            if img.size[0] != img.size[1]:
                raise NoisecraftError(f"{p.name} is {img.size[0]}x{img.size[1]}, not square: give a resolution")
            resolution = img.size[0]
        out.append(ImageTransform(resolution=resolution, channels=channels, crop="center")(img))
    if not out:
        raise NoisecraftError(f"none of the {len(files)} images in {str(root)!r} could be read")
    notes = [f"{len(out)} images from {root}"]
    if bad:
        notes.append(f"{bad} unreadable files skipped")
    if len(sizes) > 1 or next(iter(sizes)) != (resolution, resolution):
        notes.append(f"resized/centre-cropped to {resolution}x{resolution}")
    import torch

    return torch.stack(out), notes
