"""Drawing samples from a trained denoiser and writing them out (grids, single PNGs, 2-D scatter plots).

Every sample has its own seed and generator (EDM's per-sample generators), so sample i is the same whatever
the batch size it was drawn in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError

if TYPE_CHECKING:
    from noisecraft.sampling.samplers import Step


def sigmas_for(schedule: Schedule, steps: int, spacing: str | None = None) -> Tensor:
    """σ list for sampling: the samplers package's step schedules when available, else the schedule's own."""
    try:
        from noisecraft.sampling.steps import step_sigmas
    except ModuleNotFoundError as e:
        if e.name != "noisecraft.sampling.steps":
            raise
        return schedule.sample_sigmas(steps, spacing)
    return step_sigmas(schedule, steps, spacing)


@torch.no_grad()
def generate(
    denoiser,
    schedule: Schedule,
    shape: Sequence[int],
    seeds: Sequence[int],
    *,
    sampler: str = "euler",
    steps: int = 40,
    spacing: str | None = None,
    class_labels: Tensor | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    callback: Callable[[int, Step], None] | None = None,
) -> Tensor:
    """Samples (N, *shape), one per seed; the noise of sample i comes only from seed i.

    `callback(lo, step)` is called after every sampler step of the batch that starts at sample `lo` (progress
    bars, x̂0 previews, trajectories); raising from it stops sampling.
    """
    from noisecraft.sampling.noise import per_sample_generators, randn
    from noisecraft.sampling.samplers import get_sampler

    fn = get_sampler(sampler)
    if batch_size < 1:
        raise NoisecraftError(f"batch size must be at least 1, got {batch_size}")
    sigmas = sigmas_for(schedule, steps, spacing).to(device)
    out = []
    for lo in range(0, len(seeds), batch_size):
        gens = per_sample_generators(seeds[lo : lo + batch_size])
        x = float(sigmas[0]) * randn((len(gens), *shape), gens, torch.float32, device)
        cond = {} if class_labels is None else {"class_labels": class_labels[lo : lo + batch_size].to(device)}
        cb = None if callback is None else functools.partial(callback, lo)
        out.append(fn(denoiser, x, sigmas, cond=cond, generator=gens, callback=cb).float().cpu())
    return torch.cat(out)


def to_uint8(x: Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [−1, 1] → uint8 array (N, H, W, C)."""
    from noisecraft.data.transforms import to_pixels

    return to_pixels(x).permute(0, 2, 3, 1).numpy()


def _pil(img: np.ndarray, scale: int):
    from PIL import Image

    im = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def upscale_for(resolution: int) -> int:
    """Integer upscale so tiny images stay visible (8×8 digits → 64 px)."""
    return max(1, 64 // resolution)


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None, pad: int = 2) -> Path:
    """Images (N, C, H, W) in [−1, 1] → one PNG grid."""
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(imgs):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(grid, upscale_for(h)).save(path)
    return path


def save_images(x: Tensor, folder: str | Path, seeds: Sequence[int]) -> list[Path]:
    """One PNG per image, named by its seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, seed in zip(to_uint8(x), seeds):
        paths.append(folder / f"seed{seed:06d}.png")
        _pil(img, 1).save(paths[-1])
    return paths


def save_points(x: Tensor, path: str | Path, title: str = "samples") -> Path:
    """2-D samples (N, 2) → scatter PNG."""
    from noisecraft.evaluation.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5, color="tab:red")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
