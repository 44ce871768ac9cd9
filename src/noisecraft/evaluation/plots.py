"""Pictures that explain diffusion (matplotlib, imported lazily; Agg backend, files only)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_toy_overview(data: Tensor, noised: dict[float, Tensor], samples: Tensor, path: str | Path) -> Path:
    """One row: the data, the forward process at a few σ, and the model's samples (2-D point clouds)."""
    plt = _pyplot()
    panels = [("data", data)] + [(f"noised, σ = {s:g}", x) for s, x in noised.items()] + [("samples", samples)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    lim = float(data.abs().max()) * 1.3
    for ax, (title, pts) in zip(axes, panels):
        pts = pts.detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="tab:red" if title == "samples" else "tab:blue")
        ax.set_title(title, fontsize=10)
        if title in ("data", "samples"):
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, dpi=110)


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the pictures below.
def _save(fig, path: str | Path, dpi: int = 110) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def images_to_uint8(images: Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [−1, 1] → uint8 (N, H, W, C)."""
    from noisecraft.data.io import to_uint8

    return to_uint8(images)


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) in [−1, 1] into one uint8 array (H', W', C) with `nrow` images per row."""
    from noisecraft.data.io import grid_array

    grid = grid_array(images, nrow, pad)
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    return grid


def save_image_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Write images (N, C, H, W) in [−1, 1] as one PNG grid (small images are upscaled to stay visible)."""
    from PIL import Image

    scale = scale or max(1, 64 // images.shape[-1])
    grid = image_grid(images, nrow, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def _show(ax, img: Tensor) -> None:
    """Draw one image (C, H, W) in [−1, 1] on an axis."""
    u8 = images_to_uint8(img[None])[0]
    ax.imshow(u8[..., 0] if u8.shape[-1] == 1 else u8, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------------------
# The pictures of the guide.
DEFAULT_SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid", "linear+zsnr")


def plot_schedules(path: str | Path, names: Sequence[str] = DEFAULT_SCHEDULES, steps: int = 1000) -> Path:
    """ᾱ and log-SNR against t/T for discrete schedules side by side ("+zsnr": rescaled to zero terminal SNR)."""
    from noisecraft.core.schedules import DiscreteVP

    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in names:
        base, zsnr = name.removesuffix("+zsnr"), name.endswith("+zsnr")
        sch = DiscreteVP.named(base, steps=steps, zero_terminal_snr=zsnr)
        t = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        abar = sch.alphas_cumprod
        a1.plot(t, abar, label=name)
        a2.plot(t, torch.log(abar / (1 - abar).clamp(min=1e-300)).clamp(min=-25), label=name)
    a1.set(xlabel="t / T", ylabel="ᾱ (signal fraction)", title="ᾱ(t)")
    a2.set(xlabel="t / T", ylabel="log SNR = log ᾱ/(1−ᾱ)", title="log-SNR(t) (zero SNR drawn at −25)")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_forward_process(
    image: Tensor,
    schedule,
    path: str | Path,
    fractions: Sequence[float] = (0, 0.1, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
) -> Path:
    """The forward process on one image (C, H, W) in [−1, 1]: the VP state √ᾱ·x0 + √(1−ᾱ)·ε at several t/T."""
    from noisecraft.core.process import q_sample

    plt = _pyplot()
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(image.shape, generator=g, dtype=torch.float64)  # one noise for all panels
    t_hi, t_lo = schedule.t_range
    fig, axes = plt.subplots(1, len(fractions), figsize=(1.8 * len(fractions), 2.2))
    for ax, f in zip(np.atleast_1d(axes), fractions):
        sigma = schedule.sigma(torch.tensor(t_lo + f * (t_hi - t_lo)))
        abar = float(1 / (1 + sigma**2))
        x = q_sample(image.double(), abar, eps) if f > 0 else image.double()
        _show(ax, x)
        ax.set_title(f"t/T={f:g}\nᾱ={abar:.3g}" if f > 0 else "x0", fontsize=8)
    return _save(fig, path)


def plot_trajectory_strip(steps: Sequence, path: str | Path, frames: int = 8, index: int = 0) -> Path:
    """Reverse trajectory of one sample as a strip: the state x_σ (top) and the denoised x̂0 (bottom).

    `steps` are the sampler's ``Step`` records (collect them with ``callback=steps.append``).
    """
    plt = _pyplot()
    pick = np.unique(np.linspace(0, len(steps) - 1, frames).round().astype(int))
    fig, axes = plt.subplots(2, len(pick), figsize=(1.6 * len(pick), 3.6), squeeze=False)
    for j, k in enumerate(pick):
        st = steps[k]
        # show the VP-scaled state so that early (very noisy) frames stay in a visible range
        _show(axes[0, j], st.x[index] / math.sqrt(1 + st.sigma_next**2))
        _show(axes[1, j], st.x0_hat[index])
        axes[0, j].set_title(f"σ={st.sigma_next:.3g}", fontsize=8)
    axes[0, 0].set_ylabel("x (VP scale)")
    axes[1, 0].set_ylabel("x̂0")
    return _save(fig, path)


def plot_interpolation(rows: Tensor, path: str | Path, ts: Sequence[float] | None = None) -> Path:
    """Images (R, K, C, H, W) generated from K interpolated noises (e.g. slerp) per row, with the t's on top."""
    plt = _pyplot()
    R, K = rows.shape[:2]
    fig, axes = plt.subplots(R, K, figsize=(1.4 * K, 1.5 * R), squeeze=False)
    for r in range(R):
        for k in range(K):
            _show(axes[r, k], rows[r, k])
            if r == 0 and ts is not None:
                axes[r, k].set_title(f"{ts[k]:.2g}", fontsize=8)
    return _save(fig, path)


def plot_score_field(
    score_fn: Callable[[Tensor], Tensor],
    path: str | Path,
    *,
    lim: float = 3.0,
    grid: int = 24,
    trajectories: Tensor | None = None,
    data: Tensor | None = None,
    title: str = "score field",
) -> Path:
    """Quiver plot of a 2-D score ∇log p(x) (score_fn: (N, 2) → (N, 2)) with optional Langevin paths (T, N, 2)."""
    plt = _pyplot()
    u = torch.linspace(-lim, lim, grid, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    s = score_fn(pts).detach().double()
    norm = s.norm(dim=1, keepdim=True).clamp(min=1e-12)
    s = s / norm * norm.log1p()  # compress the length so that both far and near arrows show
    fig, ax = plt.subplots(figsize=(5, 5))
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=1, alpha=0.3, color="tab:blue")
    ax.quiver(pts[:, 0], pts[:, 1], s[:, 0], s[:, 1], norm.log().flatten(), cmap="viridis", alpha=0.8)
    if trajectories is not None:
        tr = trajectories.detach().cpu()
        for n in range(tr.shape[1]):
            ax.plot(tr[:, n, 0], tr[:, n, 1], color="tab:red", lw=0.7, alpha=0.7)
        ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=6, color="tab:red", zorder=3)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=title)
    ax.set_aspect("equal")
    return _save(fig, path)


def plot_metric_vs_nfe(
    table: dict[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    ylabel: str = "FD",
    floor: float | None = None,
    title: str = "",
    logy: bool = True,
) -> Path:
    """Error or FD against NFE for each sampler: table {sampler: [(nfe, value), ...]}; optional noise floor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in table.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="noise floor")
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel="NFE (network evaluations)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sweep_grid(
    images: Tensor,
    path: str | Path,
    *,
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    row_title: str = "",
    col_title: str = "",
) -> Path:
    """A generic sweep (e.g. guidance scale × class): images (R, K, C, H, W) or 2-D points (R, K, N, 2)."""
    plt = _pyplot()
    R, K = images.shape[:2]
    points = images.ndim == 4 and images.shape[-1] == 2
    lim = float(images.detach().abs().max()) * 1.05 if points else 0.0  # one scale for every 2-D panel
    fig, axes = plt.subplots(R, K, figsize=(1.6 * K + 0.6, 1.6 * R + 0.4), squeeze=False)
    for r in range(R):
        for k in range(K):
            ax = axes[r, k]
            item = images[r, k].detach().cpu()
            if points:
                ax.scatter(item[:, 0], item[:, 1], s=1, alpha=0.4)
                ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                _show(ax, item)
            if r == 0 and k < len(col_labels):
                ax.set_title(col_labels[k], fontsize=8)
            if k == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
    if row_title or col_title:
        fig.suptitle(f"rows: {row_title}   columns: {col_title}".strip(), fontsize=9)
    return _save(fig, path)


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL log (blank and truncated last lines are skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def plot_training_curve(
    logs: str | Path | Sequence[str | Path], path: str | Path, key: str = "loss", smooth: int = 20
) -> Path:
    """Training curves from trainer JSONL logs (records with "step" and `key`), raw and moving-averaged.

    `logs` may be log files or run folders (their log.jsonl is used); several runs share one plot.
    """
    from noisecraft.errors import NoisecraftError

    plt = _pyplot()
    logs = [logs] if isinstance(logs, str | Path) else list(logs)
    fig, ax = plt.subplots(figsize=(6, 4))
    for log in logs:
        log = Path(log)
        log = log / "log.jsonl" if log.is_dir() else log
        if not log.is_file():
            raise NoisecraftError(f"training log {str(log)!r} not found; pass a run folder or its log.jsonl")
        recs = [r for r in read_jsonl(log) if "step" in r and key in r]
        if not recs:
            raise NoisecraftError(f"{str(log)!r} has no records with keys 'step' and {key!r}")
        steps = np.array([r["step"] for r in recs], dtype=float)
        vals = np.array([r[key] for r in recs], dtype=float)
        (line,) = ax.plot(steps, vals, alpha=0.3, lw=0.8)
        if len(vals) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(
                steps[smooth - 1 :],
                np.convolve(vals, kernel, mode="valid"),
                color=line.get_color(),
                label=f"{log.parent.name or log.name} ({smooth}-record mean)",
            )
        else:
            line.set_label(log.parent.name or log.name)
    ax.set(xlabel="step", ylabel=key, title=f"training {key}")
    if key == "loss":
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def save_points(x: Tensor, path: str | Path, title: str = "samples") -> Path:
    """2-D samples (N, 2) → scatter PNG."""
    plt = _pyplot()
    x = x.detach().cpu()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.5, color="tab:red")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, path, dpi=100)
