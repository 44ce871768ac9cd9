"""Image loading and transforms with Pillow and numpy only (no torchvision).

Pipeline for one image: open (allow-listed formats, pixel limit) → EXIF orientation → colour mode
(RGBA/LA/palette-with-transparency composited on the background colour, white unless told; 16-bit
scaled to 8-bit, then L or RGB) →
resize the short side → centre/random square crop → optional horizontal flip → float32 (C, H, W) in [−1, 1].

Random choices come from ``item_rng(seed, epoch, index)``, a numpy generator derived from the triple, so a
resumed run (or another worker process) transforms item i of epoch e exactly as the original run did.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

# Pillow format names opened by noisecraft (Image.open(..., formats=...)): nothing else is ever parsed.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


class BadImage(Exception):
    """A file that cannot be used as an image (unreadable, corrupt, truncated, too large, not an image)."""


def open_image(
    source: str | os.PathLike | bytes, max_pixels: int = 64_000_000, draft: int | None = None
) -> Image.Image:
    """Open and fully decode one image from a path or raw bytes; raise BadImage with the reason.

    Only ALLOWED_FORMATS are tried, and the header's size is checked against `max_pixels` before any
    pixel is decoded (decompression-bomb guard). With `draft`, a JPEG is decoded directly at the smallest
    power-of-two reduction whose sides stay >= draft (libjpeg's DCT scaling: much faster for large photos).
    """
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        img = Image.open(fp, formats=list(ALLOWED_FORMATS))
    except FileNotFoundError as e:
        raise BadImage(f"missing file: {e}") from None
    except Image.DecompressionBombError as e:
        raise BadImage(f"too many pixels: {e}") from None
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError... from the header parsers
        raise BadImage(f"not a readable image ({type(e).__name__}: {e})") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise BadImage(f"{w}x{h} = {w * h} pixels exceeds the limit max_pixels={max_pixels}")
    if w == 0 or h == 0:
        raise BadImage("image has zero size")
    try:
        if draft is not None and img.format == "JPEG":
            img.draft(img.mode, (draft, draft))
        img.load()  # decodes everything: truncated or corrupt data fails here
    except Exception as e:
        raise BadImage(f"cannot decode ({type(e).__name__}: {e})") from None
    return img


def has_transparency(img: Image.Image) -> bool:
    """Whether the image carries an alpha channel or a transparent palette index (read from the header)."""
    return (img.mode in ("P", "L", "RGB") and "transparency" in img.info) or img.mode in (
        "RGBA",
        "LA",
        "PA",
        "La",
        "RGBa",
    )


def to_mode(img: Image.Image, channels: int, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to "L" (channels=1) or "RGB" (channels=3).

    Transparency (RGBA, LA, PA, a palette or L/RGB with a transparent value) is composited on `background`
    (R, G, B); 16/32-bit gray
    ("I;16", "I") is scaled from [0, 65535] to 8 bits; float ("F") is clipped to [0, 255].
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64) / 65535.0
        img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img) + 0.5, 0, 255).astype(np.uint8), "L")
    if has_transparency(img) and img.mode != "RGBA":
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        back = Image.new("RGBA", img.size, (*background, 255))
        img = Image.alpha_composite(back, img)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def resize_short_side(img: Image.Image, size: int, resample: str = "lanczos") -> Image.Image:
    """Scale so that the shorter side equals `size`, keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return img.resize(new, _FILTERS[resample])


def crop_square(img: Image.Image, size: int, mode: str, rng: np.random.Generator | None) -> Image.Image:
    """A size×size crop: centred, or at a random offset drawn from `rng` (mode "random")."""
    w, h = img.size
    if mode == "random" and rng is not None:
        left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    else:
        left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def from_pixels(u: Tensor) -> Tensor:
    """uint8 pixels 0..255 → float32 in [−1, 1]: u/127.5 − 1 (exactly invertible by to_pixels)."""
    return u.to(torch.float32) / 127.5 - 1.0


def to_pixels(x: Tensor) -> Tensor:
    """Values in [−1, 1] (clipped) → uint8 pixels: round((x + 1)·127.5); to_pixels(from_pixels(u)) == u."""
    return ((x.detach().to(torch.float32).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_tensor(img: Image.Image) -> Tensor:
    """uint8 "L"/"RGB" image → float32 (C, H, W) in [−1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return from_pixels(torch.from_numpy(np.array(arr.transpose(2, 0, 1))))  # a writable copy, (C, H, W)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream for transforming item `index` in `epoch`: independent of workers and resumes."""
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True)
class ImageTransform:
    """The full per-image transform of a DataConfig: mode → resize → crop → flip → tensor."""

    resolution: int = 32
    channels: int = 3
    crop: str = "center"
    flip: bool = False
    resize_filter: str = "lanczos"
    background: tuple[int, int, int] = (255, 255, 255)

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> Tensor:
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block is not worth losing the image for
            pass
        img = to_mode(img, self.channels, self.background)
        img = resize_short_side(img, self.resolution, self.resize_filter)
        img = crop_square(img, self.resolution, self.crop, rng)
        if self.flip and rng is not None and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(img)
