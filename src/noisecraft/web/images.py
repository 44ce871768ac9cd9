"""Pictures to and from the page: PNG data URLs of tensors and grids, and uploads (data URLs) read through
the editors' own loader (editing.io.load_image), with size limits checked before decoding."""

from __future__ import annotations

import base64
import binascii
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError
from noisecraft.web.params import MAX_UPLOAD_BYTES

MAX_UPLOAD_PIXELS = 4096 * 4096
PREVIEW_SIDE = 256  # previews are enlarged (nearest neighbour) to about this many pixels


def png_url(arr: np.ndarray, scale: int = 1) -> str:
    """uint8 (H, W, C) with C = 1 or 3 → a PNG data URL, enlarged `scale` times (nearest neighbour)."""
    from PIL import Image

    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_url(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def image_urls(x: Tensor) -> list[str]:
    """Images (N, C, H, W) in [−1, 1] → one PNG data URL each at the model's own size (the CLI's seed PNGs)."""
    from noisecraft.data.io import to_uint8

    return [png_url(a) for a in to_uint8(x.cpu())]


def grid_url(x: Tensor, nrow: int | None = None) -> str:
    """Images (N, C, H, W) in [−1, 1] → one enlarged PNG grid."""
    from noisecraft.evaluation.plots import image_grid

    grid = image_grid(x.detach().float().cpu(), nrow)
    return png_url(grid, max(1, PREVIEW_SIDE // max(grid.shape[:2])))


def strip_url(frames: list[Tensor]) -> str:
    """Frames (each (C, H, W)) side by side, enlarged."""
    from noisecraft.evaluation.plots import image_grid

    grid = image_grid(torch.stack(frames).float().cpu(), nrow=len(frames))
    return png_url(grid, max(1, 96 // frames[0].shape[-1]))


def decode_upload(data_url: object, what: str = "upload") -> bytes:
    """The bytes of a data URL (or bare base64) sent by the page, with a size limit."""
    if not isinstance(data_url, str) or not data_url:
        raise NoisecraftError(f"no {what}: choose an image file first")
    payload = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
    if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES:
        raise NoisecraftError(f"the {what} is larger than {MAX_UPLOAD_BYTES // 1_000_000} MB; use a smaller image")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise NoisecraftError(f"the {what} is not valid base64 image data") from None


def save_upload(data_url: object, folder: Path, name: str, what: str = "upload") -> Path:
    """Write an uploaded image to `folder`/name after checking it opens and is not too many pixels."""
    from PIL import Image, UnidentifiedImageError

    raw = decode_upload(data_url, what)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise NoisecraftError(
            f"the {what} is not a readable image ({type(e).__name__}); upload a PNG or JPEG"
        ) from None
    if w * h > MAX_UPLOAD_PIXELS:
        raise NoisecraftError(f"the {what} is {w}x{h}; at most {MAX_UPLOAD_PIXELS} pixels (e.g. 4096x4096)")
    path = folder / name
    path.write_bytes(raw)
    return path


def load_upload(data_url: object, resolution: int, channels: int, what: str = "upload") -> tuple[Tensor, str]:
    """An upload as the model's input ((C, H, W) in [−1, 1], message), via editing.io.load_image."""
    from noisecraft.editing.io import load_image

    with tempfile.TemporaryDirectory(prefix="noisecraft-ui-") as d:
        path = save_upload(data_url, Path(d), "upload.png", what)
        x, msg = load_image(path, resolution, channels)
    return x, msg.replace("upload.png", what)


def load_mask_upload(data_url: object, resolution: int) -> Tensor:
    """A mask painted in the page (white = generate) → (1, H, W) of 0/1, via editing.io.load_mask."""
    from noisecraft.editing.io import load_mask

    with tempfile.TemporaryDirectory(prefix="noisecraft-ui-") as d:
        path = save_upload(data_url, Path(d), "mask.png", "mask")
        return load_mask(path, resolution)
