"""Images in and out of the editors: load any picture as a model-ready tensor, masks, comparison strips.

``load_image`` accepts any size and mode Pillow reads (gray, RGB, RGBA, LA, palette, 16-bit, CMYK) and returns
a (C, H, W) float32 tensor in [-1, 1] at the model's resolution and channel count, together with a one-line
message saying what was converted. Masks follow the inpainting convention of most tools: white (1) = the
region to generate, black (0) = the region to keep.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError

if TYPE_CHECKING:  # Pillow is imported lazily
    from PIL import Image as PILImage


MAX_PIXELS = 64_000_000  # the training loader's limit too: a larger "image" is a decompression bomb


def _open(path: str | os.PathLike, what: str) -> PILImage.Image:
    """Open and decode an image, refusing files over MAX_PIXELS from their header, before any pixel is decoded."""
    import warnings

    from PIL import Image

    if not os.path.isfile(path):
        raise NoisecraftError(f"{what} {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in one line
            img = Image.open(path)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise Image.DecompressionBombError(f"{w}x{h} = {w * h:,} pixels")
        img.load()
    except Image.DecompressionBombError as e:
        raise NoisecraftError(
            f"{what} {str(path)!r} is too large ({e}; at most {MAX_PIXELS:,} pixels): shrink it first"
        ) from None
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError, ... from Pillow's parsers
        raise NoisecraftError(f"{what} {str(path)!r} is not a readable image ({type(e).__name__}: {e})") from None
    return img


def _to_mode(img: PILImage.Image, channels: int) -> tuple[PILImage.Image, list[str]]:
    """Convert to "L" (channels 1) or "RGB" (channels 3); transparency is composited on white."""
    from PIL import Image

    notes = []
    if img.mode == "P":
        img = img.convert("RGBA")
        notes.append("palette expanded")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.round().astype(np.uint8), "L")
        notes.append("high-bit-depth rescaled to 8 bits")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append("alpha composited on white")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        notes.append(f"{img.mode}->{target}")
        img = img.convert(target)
    return img, notes


def _geometry(size: tuple[int, int], resolution: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize so the short side is `resolution`, then centre-crop square: (new size, crop box)."""
    w, h = size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return (nw, nh), (left, top, left + resolution, top + resolution)


def _check_target(resolution: int, channels: int) -> None:
    if not isinstance(resolution, int) or resolution < 1:
        raise NoisecraftError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (1, 3):
        raise NoisecraftError(f"channels must be 1 or 3, got {channels!r}")


def load_image(path: str | os.PathLike, resolution: int, channels: int) -> tuple[Tensor, str]:
    """Read any image and convert it to the model's input: ((C, H, W) float32 in [-1, 1], message).

    The short side is resized to `resolution` (Lanczos) and the centre is cropped square. Unreadable or missing
    files raise a NoisecraftError naming the path.
    """
    _check_target(resolution, channels)
    img = _open(path, "image")
    before = f"{img.size[0]}x{img.size[1]} {img.mode}"
    img, notes = _to_mode(img, channels)
    if img.size != (resolution, resolution):
        from PIL import Image

        new, box = _geometry(img.size, resolution)
        img = img.resize(new, Image.Resampling.LANCZOS).crop(box)
        notes.append("resized" + (" and centre-cropped" if new[0] != new[1] else ""))
    x = image_to_tensor(img)
    msg = f"{os.path.basename(str(path))}: {before} -> {resolution}x{resolution} {img.mode}"
    return x, msg + (f" ({', '.join(notes)})" if notes else "")


def image_to_tensor(img: PILImage.Image) -> Tensor:
    """A Pillow "L" or "RGB" image -> (C, H, W) float32 in [-1, 1]."""
    from noisecraft.data.transforms import to_tensor

    return to_tensor(img)


def tensor_to_image(x: Tensor) -> PILImage.Image:
    """(C, H, W) in [-1, 1] (C = 1 or 3) -> a Pillow image; values outside [-1, 1] are clipped."""
    from PIL import Image

    x = x.detach().to(torch.float32).cpu()
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise NoisecraftError(f"an image tensor must be (1 or 3, H, W), got {tuple(x.shape)}")
    from noisecraft.data.transforms import to_pixels

    a = to_pixels(x).numpy()  # (C, H, W)
    return Image.fromarray(a[0], "L") if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0), "RGB")


def save_image(x: Tensor, path: str | os.PathLike) -> None:
    """Write a (C, H, W) tensor in [-1, 1] as a PNG (or any format Pillow infers from the suffix)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tensor_to_image(x).save(path)


# -- masks -------------------------------------------------------------------------------------------------
def rect_mask(spec: str, resolution: int, *, outside: bool = False) -> Tensor:
    """A (1, H, W) mask from "x0,y0,x1,y1": 1 inside the rectangle (the region to generate), 0 elsewhere.

    Coordinates are pixels of the model resolution (x1, y1 exclusive), or fractions of the side when all four
    are in [0, 1] and written with a decimal point ("0.25,0.25,0.75,0.75"). outside=True flips the mask, so
    the rectangle is kept and everything around it is generated (outpainting).
    """
    parts = [p.strip() for p in str(spec).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise NoisecraftError(f"rect must be 'x0,y0,x1,y1' (pixels, or fractions like 0.25), got {spec!r}")
    if all("." in p for p in parts) and all(0 <= v <= 1 for v in vals):
        vals = [v * resolution for v in vals]
    x0, y0, x1, y1 = (round(v) for v in vals)
    x0, x1 = max(0, min(x0, resolution)), max(0, min(x1, resolution))
    y0, y1 = max(0, min(y0, resolution)), max(0, min(y1, resolution))
    if x1 <= x0 or y1 <= y0:
        raise NoisecraftError(f"rect {spec!r} is empty at resolution {resolution}; need x0 < x1 and y0 < y1")
    m = torch.zeros(1, resolution, resolution)
    m[:, y0:y1, x0:x1] = 1.0
    return 1.0 - m if outside else m


def load_mask(
    path: str | os.PathLike, resolution: int, *, image_size: tuple[int, int] | None = None, outside: bool = False
) -> Tensor:
    """Read a mask PNG as a (1, H, W) float tensor of 0/1 (white = generate, threshold at half grey).

    The mask must be either resolution x resolution, or the size of the original input image (`image_size`,
    (W, H)), in which case it gets the same resize and centre crop as the image. Any other size is an error.
    outside=True flips it (outpainting with a keep-mask).
    """
    from PIL import Image

    img = _open(path, "mask")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        alpha = img.convert("RGBA").getchannel("A")
        # a mask painted as transparency: opaque = generate; a fully opaque image: use its brightness
        img = alpha if alpha.getextrema()[0] < 255 else img
    img = img.convert("L")
    if img.size != (resolution, resolution):
        if image_size is None or tuple(image_size) != img.size:
            sizes = f"{resolution}x{resolution}" + (f" or {image_size[0]}x{image_size[1]}" if image_size else "")
            raise NoisecraftError(
                f"mask {str(path)!r} is {img.size[0]}x{img.size[1]}; it must be {sizes} (the model or input image size)"
            )
        new, box = _geometry(img.size, resolution)
        img = img.resize(new, Image.Resampling.NEAREST).crop(box)
    m = torch.from_numpy((np.asarray(img) >= 128).astype(np.float32))[None]  # (1, H, W)
    return 1.0 - m if outside else m


def check_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Broadcast a mask ((H, W), (1, H, W), (C, H, W) or (B, C, H, W)) to x's shape, or raise NoisecraftError."""
    mask = torch.as_tensor(mask).to(x.dtype)
    try:
        return torch.broadcast_to(mask, x.shape).to(x.device)
    except RuntimeError:
        raise NoisecraftError(
            f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}; "
            f"use a {x.shape[-2]}x{x.shape[-1]} mask"
        ) from None


# -- comparison strips -------------------------------------------------------------------------------------
def save_comparison(
    images: Sequence[Tensor], path: str | os.PathLike, titles: Sequence[str] | None = None, min_size: int = 96
) -> None:
    """Write images side by side (each (C, H, W) or a batch (B, C, H, W) shown as a column) with titles.

    Small images are enlarged with nearest-neighbour to at least `min_size` pixels so digits stay visible.
    """
    from PIL import Image, ImageDraw

    cols = [im if im.ndim == 4 else im[None] for im in images]  # each (B, C, H, W)
    rows = max(c.shape[0] for c in cols)
    h, w = cols[0].shape[-2:]
    k = max(1, -(-min_size // max(h, w)))
    cw, ch, pad, title_h = w * k, h * k, 4, (14 if titles else 0)
    sheet = Image.new("RGB", (len(cols) * (cw + pad) + pad, rows * (ch + pad) + pad + title_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, col in enumerate(cols):
        x = pad + j * (cw + pad)
        if titles:
            draw.text((x, 1), str(titles[j])[: max(4, cw // 6)], fill=(0, 0, 0))
        for i in range(col.shape[0]):
            tile = tensor_to_image(col[i]).convert("RGB").resize((cw, ch), Image.Resampling.NEAREST)
            sheet.paste(tile, (x, title_h + pad + i * (ch + pad)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sheet.save(path)
