"""The training data's mean and covariance, kept beside a run: what the analytic first step and `gauss_pc` need.

    stats = run_data_stats("runs/digits")        # RUN/data_stats.safetensors, computed from the run's data once
    stats.flow(x, sigma_max, sigma_skip)          # sampling/gaussian_start.py

The statistics are a property of the data the run was trained on (its DataConfig in config.json), not of the
network: they are computed from up to ``MAX_IMAGES`` training items, in the space the model denoises (pixels in
[−1, 1], 2-D points, or a latent run's latents), and saved as safetensors so that later commands
(``noisecraft samplers --fit``, ``noisecraft sample --schedule optimised:RUN``, ``--sampler gauss_pc``) reuse them.
For more than ``FULL_RANK_MAX`` values per sample only the leading ``RANK`` directions are kept
(``GaussianStart.from_samples(rank=...)``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from noisecraft.errors import NoisecraftError
from noisecraft.sampling.gaussian_start import GaussianStart

STATS_FILE = "data_stats.safetensors"
MAX_IMAGES = 4096  # training items the statistics come from
FULL_RANK_MAX = 4096  # values per sample up to which the full covariance is kept (3×32×32 = 3072)
RANK = 1024  # leading directions kept above that


def stats_path(run: str | Path) -> Path:
    """Where a run keeps its data statistics (a run folder, or the folder of a JSON file inside it)."""
    run = Path(run)
    return (run if run.is_dir() or run.suffix != ".json" else run.parent) / STATS_FILE


def save_stats(path: str | Path, stats: GaussianStart, **meta: str) -> Path:
    """Write `stats` as safetensors (float64 tensors; shape and rest variance in the metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {"mean": stats.mean, "eigvals": stats.eigvals, "eigvecs": stats.eigvecs}
    info = {"rest": repr(stats.rest), "shape": ",".join(map(str, stats.shape)), **meta}
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=info)
    return path


def load_stats(path: str | Path) -> GaussianStart:
    """Read statistics written by ``save_stats``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise NoisecraftError(f"no data statistics at {str(path)!r}; `noisecraft samplers --fit RUN` computes them")
    try:
        with safe_open(str(path), framework="pt") as f:
            info = f.metadata() or {}
            t = {k: f.get_tensor(k).to(torch.float64) for k in ("mean", "eigvals", "eigvecs")}
        shape = tuple(int(s) for s in info["shape"].split(","))
        return GaussianStart(t["mean"], t["eigvals"], t["eigvecs"], float(info["rest"]), shape)
    except (KeyError, ValueError, RuntimeError, OSError, SafetensorError) as e:
        raise NoisecraftError(f"{str(path)!r} is not a noisecraft data-statistics file ({e}); delete it") from None


def compute_stats(data_cfg, max_images: int = MAX_IMAGES, seed: int = 0) -> tuple[GaussianStart, int]:
    """(statistics, items used) from up to `max_images` items of the dataset `data_cfg` describes (a fixed random
    subset when there are more)."""
    from noisecraft.data.datasets import make_dataset

    ds = make_dataset(data_cfg)
    n = len(ds)
    if n < 2:
        raise NoisecraftError(f"the run's data has {n} item(s); the data statistics need at least 2")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:max_images].tolist() if n > max_images else range(n)
    x = torch.stack([torch.as_tensor(ds[i]["x"]) for i in idx]).to(torch.float64)  # (m, *shape)
    D = math.prod(x.shape[1:])
    return GaussianStart.from_samples(x, rank=None if D <= FULL_RANK_MAX else RANK), len(idx)


def run_data_stats(run: str | Path, cfg=None, *, quiet: bool = False) -> GaussianStart:
    """The run's data statistics: loaded from RUN/data_stats.safetensors, or computed from its training data
    (config.json's data section; `cfg` a loaded TrainConfig) and saved there first."""
    path = stats_path(run)
    if path.is_file():
        return load_stats(path)
    if cfg is None:
        import json

        from noisecraft.training.checkpoint import resolve_checkpoint
        from noisecraft.training.config import TrainConfig

        try:
            config = resolve_checkpoint(run) / "config.json"
        except NoisecraftError:
            config = Path(run) / "config.json"
        if not config.is_file():
            raise NoisecraftError(
                f"{str(run)!r} is not a noisecraft training run, so its training data is unknown: the data "
                f"statistics (for gauss_pc and the analytic first step) need one, or a {STATS_FILE} beside it"
            )
        cfg = TrainConfig.from_dict(json.loads(config.read_text()))
    stats, used = compute_stats(cfg.data)
    save_stats(path, stats, source=str(cfg.data.source), items=str(used))
    if not quiet:
        print(f"data statistics (mean, covariance) from {used} training items of {cfg.data.source} → {path}")
    return stats


def fitted_start(spacing: str | None, sigmas: torch.Tensor, sigma_max: float) -> GaussianStart | None:
    """The statistics of the run an ``optimised:<path>`` list was fitted to, when that list starts below σ_max
    (it was fitted with the analytic first step and needs it); None for every other list."""
    if not spacing or float(sigmas[0]) >= sigma_max * (1 - 1e-9):
        return None
    for prefix in ("optimised:", "optimized:"):
        if spacing.startswith(prefix):
            return load_stats(stats_path(spacing[len(prefix) :]))
    return None
