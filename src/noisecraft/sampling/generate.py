"""The library's sampling entry point: draw samples from a denoiser, one seed per sample, on its device.

Every sample has its own seed and generator (EDM's per-sample generators), so sample i is the same whatever
the batch size it was drawn in. The noise is drawn on the CPU from those generators and moved to the model's
device, so a sample is also the same on every device up to the device's arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError

if TYPE_CHECKING:
    from noisecraft.sampling.gaussian_start import GaussianStart
    from noisecraft.sampling.samplers import Step


def model_device(model: object, default: str | torch.device = "cpu") -> torch.device:
    """The device a denoiser's weights live on, looking through wrappers that hold it as ``.denoiser``
    (guidance, clipping); `default` for a weightless denoiser (an oracle)."""
    for _ in range(16):  # wrappers nest a few deep at most
        if isinstance(model, nn.Module):
            for t in (*model.parameters(), *model.buffers()):
                return t.device
        inner = getattr(model, "denoiser", None)
        if inner is None or inner is model:
            break
        model = inner
    return torch.device(default)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as given, or CUDA where present, else the CPU (the default of every command's --device)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise NoisecraftError(f"--device {device!r} is not a device name ({e}); use cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NoisecraftError(f"--device {device}: no CUDA device is available here; use --device cpu")
    return dev


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
    device: str | torch.device | None = None,
    to_cpu: bool = True,
    callback: Callable[[int, Step], None] | None = None,
    cond: dict[str, Tensor] | None = None,
    knobs: dict | None = None,
    start: GaussianStart | None = None,
) -> Tensor:
    """Samples (N, *shape), one per seed; the noise of sample i comes only from seed i. `cond`: more per-sample
    conditioning, each entry (N, ...) (e.g. text embeddings), sliced with the batches. `knobs`: the sampler's
    keyword options (e.g. ``{"stats": ...}`` for gauss_pc).

    A σ list that starts below the schedule's σ_max (an ``optimised:`` list fitted with the analytic first step,
    sampling/gaussian_start.py) begins with the closed-form Gaussian flow from σ_max·ε down to its first level,
    using `start` or else the statistics saved beside that fit (``sampling.data_stats``).

    With no `spacing`, the sampler's own default spacing is used (``sampling.steps.default_spacing``).
    Runs on `device` (default: the denoiser's own device). The result comes back on the CPU as float32
    unless ``to_cpu=False``. `callback(lo, step)` is called after every sampler step of the batch that starts
    at sample `lo` (progress bars, x̂0 previews, trajectories); raising from it stops sampling.
    """
    from noisecraft.sampling.data_stats import fitted_start
    from noisecraft.sampling.noise import per_sample_generators, randn
    from noisecraft.sampling.samplers import get_sampler
    from noisecraft.sampling.steps import step_sigmas

    fn = get_sampler(sampler)
    if batch_size < 1:
        raise NoisecraftError(f"batch size must be at least 1, got {batch_size}")
    device = model_device(denoiser) if device is None else torch.device(device)
    sigmas = step_sigmas(schedule, steps, spacing, sampler=sampler)  # (steps+1,) float64 on the CPU
    top = float(sigmas[0])
    if start is None:
        start = fitted_start(spacing, sigmas, schedule.sigma_max)
    elif top >= schedule.sigma_max * (1 - 1e-9):
        start = None  # the list starts at the top: nothing to jump over
    out = []
    for lo in range(0, len(seeds), batch_size):
        gens = per_sample_generators(seeds[lo : lo + batch_size])
        if start is None:
            x = top * randn((len(gens), *shape), gens, torch.float32, device)
        else:  # the analytic first step: σ_max·ε → the list's first level, no network call
            x = start.flow(schedule.sigma_max * randn((len(gens), *shape), gens, torch.float32, device),
                           schedule.sigma_max, top)  # fmt: skip
        c = {} if class_labels is None else {"class_labels": class_labels[lo : lo + batch_size].to(device)}
        c.update({k: v[lo : lo + batch_size].to(device) for k, v in (cond or {}).items()})
        cb = None if callback is None else functools.partial(callback, lo)
        x = fn(denoiser, x, sigmas, cond=c, generator=gens, callback=cb, **(knobs or {})).float()
        out.append(x.cpu() if to_cpu else x)
    return torch.cat(out)


def decode_latents(latent: str | None, x: Tensor, device: str | torch.device | None = None) -> Tensor:
    """Samples of a latent run (`latent`: its autoencoder folder) decoded to pixels, 64 at a time on `device`
    (models/autoencoder.py); returned on x's device. latent None (a pixel run): x unchanged."""
    if latent is None:
        return x
    from noisecraft.models.autoencoder import load_codec

    codec = load_codec(latent, device or "cpu")
    return torch.cat([codec.decode(x[i : i + 64]) for i in range(0, len(x), 64)])


def auto_clip_range(denoiser, latent: str | None, shape: tuple[int, ...]) -> float | None:
    """1 (the pixel range) for a model of pixel images that predicts ε, else None.

    Its x̂0 = x − σ·ε̂ (VE state) multiplies any error of ε̂ by σ and overshoots [−1, 1] at high σ, and
    deterministic samplers then end in saturated tiles (measured on ε/DDPM-linear digits and Fashion-MNIST
    models: 12–30 % of the samples, and FD at 10 steps 1.10× that at 200 without the clamp, 0.99× with it;
    benchmarks/results/fd_vs_nfe_eps.md). The exact denoiser of data in [−1, 1] never leaves that range, so the
    clamp only removes error; diffusers' DDPM/DDIM schedulers clamp by default too. The other parameterisations
    (EDM, x0, v), whose x̂0 does not scale the network's error by σ, are left as they are. Looks through
    wrappers (guidance) to the preconditioned network."""
    if latent is not None or len(shape) != 3:
        return None
    for _ in range(16):
        precond = getattr(denoiser, "precond", None)
        if precond is not None:
            return 1.0 if getattr(precond, "kind", None) == "eps" else None
        inner = getattr(denoiser, "denoiser", None)
        if inner is None or inner is denoiser:
            return None
        denoiser = inner
    return None


def clip_pixels(denoiser, clip_range: float | None, latent: str | None, shape: tuple[int, ...]):
    """The denoiser with each x̂0 clamped to [−clip_range, clip_range] (core.denoiser.ClippedDenoiser) for
    `sample --clip-x0`, `eval --clip-x0` and the studio alike; None: unchanged. Refused for a latent run or a
    model of vectors (`shape` of one dimension): they have no pixel range."""
    if clip_range is None:
        return denoiser
    if latent is not None or len(shape) == 1:
        raise NoisecraftError("--clip-x0 clamps pixels: this run generates latents or vectors, which have no range")
    from noisecraft.core.denoiser import ClippedDenoiser

    return ClippedDenoiser(denoiser, clip_range).eval()
