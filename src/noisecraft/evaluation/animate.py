"""Animated GIFs (Pillow): the reverse trajectory of image samples, and moving 2-D point clouds.

The frames come from the sampler's ``Step`` records (``callback=steps.append``), so any registered sampler
can be animated without changing it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError
from noisecraft.evaluation.plots import _pyplot, image_grid


def save_gif(frames: Sequence[np.ndarray], path: str | Path, duration_ms: int = 80, hold_last: int = 10) -> Path:
    """Write uint8 frames (H, W) or (H, W, C) as a looping GIF; the last frame is held `hold_last` times longer."""
    from PIL import Image

    if not frames:
        raise NoisecraftError("no frames to write")
    ims = [Image.fromarray(f[..., 0] if f.ndim == 3 and f.shape[-1] == 1 else f) for f in frames]
    durations = [duration_ms] * (len(ims) - 1) + [duration_ms * (1 + hold_last)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=durations, loop=0, optimize=False)
    return path


def trajectory_frames(steps: Sequence, nrow: int | None = None, scale: int | None = None, show_x0: bool = True):
    """One uint8 frame per step: the grid of states x (VP-scaled, so noise stays in range) and, to its right,
    the grid of the denoised estimates x̂0 used at that step."""
    if not steps:
        raise NoisecraftError("the trajectory is empty: pass the Step records collected with callback=steps.append")
    res = steps[0].x.shape[-1]
    scale = scale or max(1, 64 // res)
    frames = []
    for st in steps:
        x = st.x.detach().cpu().float() / math.sqrt(1 + st.sigma_next**2)
        left = image_grid(x, nrow, scale=scale)
        if show_x0:
            right = image_grid(st.x0_hat.detach().cpu().float(), nrow, scale=scale)
            gap = np.full((left.shape[0], 4 * scale, left.shape[2]), 255, dtype=np.uint8)
            left = np.concatenate([left, gap, right], 1)
        frames.append(left)
    return frames


def trajectory_gif(steps: Sequence, path: str | Path, nrow: int | None = None, duration_ms: int = 80) -> Path:
    """The reverse process as an animated GIF: samples x_σ (left) and x̂0 (right) at every step."""
    return save_gif(trajectory_frames(steps, nrow), path, duration_ms)


def points_gif(
    clouds: Sequence[Tensor],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    lim: float | None = None,
    duration_ms: int = 100,
) -> Path:
    """2-D point clouds (N, 2) as GIF frames (e.g. the reverse trajectory of a toy model)."""
    plt = _pyplot()
    lim = lim or float(torch.stack([c.abs().max() for c in clouds[-1:]]).max()) * 1.3
    frames = []
    for k, pts in enumerate(clouds):
        fig, ax = plt.subplots(figsize=(3.2, 3.2), dpi=80)
        pts = pts.detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.5)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
        ax.set_aspect("equal")
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
        fig.tight_layout()
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return save_gif(frames, path, duration_ms)
