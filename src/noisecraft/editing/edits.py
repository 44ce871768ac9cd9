"""Inversion-based edits of real images: invert → (change something) → regenerate.

The inversion itself (``invert``, ``regenerate``, ``reconstruct``) is noisecraft.sampling.inversion's, the
library's one inversion API; ``noisecraft.editing`` re-exports it. The edits built on it:

- ``swap_class``: invert under class A, regenerate under class B with classifier-free guidance (a
  class-level prompt-to-prompt, Hertz et al. 2022, without attention injection); ``strength`` < 1 inverts
  only part of the way for edits that keep more of the input.
- ``interpolate``: invert two images and regenerate from the spherical interpolation of their noises
  (Song et al. 2021, DDIM Sec. 5.3; slerp as in Shoemake 1985); t = 0 and t = 1 reproduce the two inputs.
- ``psnr``: the round-trip measure.

Every function takes any denoiser D(x, σ, **cond) and any sampler name or function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.editing.sdedit import strength_sigmas
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.inversion import DEFAULT_SAMPLER, invert, regenerate
from noisecraft.sampling.samplers import Sampler


def psnr(x: Tensor, ref: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per sample (B,), in dB; data_range 2 for images in [-1, 1]."""
    mse = (x.double() - ref.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-20))


def _labels(y: Tensor | int | Sequence[int], x: Tensor, name: str) -> Tensor:
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    if y.ndim == 0:
        y = y.expand(x.shape[0])
    if y.shape != (x.shape[0],):
        raise NoisecraftError(f"{name} must be one class or one per image ({x.shape[0]}), got shape {tuple(y.shape)}")
    return y


@torch.no_grad()
def swap_class(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    source: Tensor | int | Sequence[int],
    target: Tensor | int | Sequence[int],
    *,
    guidance: float = 1.0,
    null_label: int | None = None,
    strength: float = 1.0,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    iters: int = 0,
    invert_guidance: float = 1.0,
    **knobs,
) -> Tensor:
    """Class-swap edit: invert x under class `source`, regenerate under class `target` with CFG scale `guidance`.

    The inversion and the regeneration share the noise path, so pose, thickness and style carried by z stay,
    while the class changes. `strength` < 1 inverts only to the strength's σ (see editing.sdedit), keeping more
    of the input. Guidance ≠ 1 (for either pass) needs `null_label` (the label the model dropped to in
    training; noisecraft's convention is num_classes).
    """
    run = strength_sigmas(sigmas, strength)
    if len(run) == 1:
        return x.clone()
    ys, yt = _labels(source, x, "source class"), _labels(target, x, "target class")

    def guided(scale: float) -> Denoiser:
        if scale == 1.0:
            return denoiser
        if null_label is None:
            raise NoisecraftError("guidance other than 1 needs null_label (the unconditional label, e.g. num_classes)")
        from noisecraft.sampling.guidance import CFGDenoiser

        return CFGDenoiser(denoiser, scale, null_label)

    z = invert(guided(invert_guidance), x, run, sampler=sampler, iters=iters, cond={"class_labels": ys}, **knobs)
    return regenerate(guided(guidance), z, run, sampler=sampler, cond={"class_labels": yt}, **knobs)


def slerp(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """Spherical interpolation of each pair of rows of z0, z1 (B, ...); t = 0 gives z0, t = 1 gives z1 exactly.

    The angle is measured between the flattened rows; the result's norm interpolates linearly between the two
    norms, so a slerp between two noises of norm ≈ √d stays at that norm.
    """
    if t == 0:
        return z0.clone()
    if t == 1:
        return z1.clone()
    a, b = z0.flatten(1).double(), z1.flatten(1).double()  # (B, d)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp(min=1e-30), b / nb.clamp(min=1e-30)
    omega = (ua * ub).sum(1, keepdim=True).clamp(-1, 1).acos()  # (B, 1)
    so = omega.sin()
    small = so.abs() < 1e-6
    wa = torch.where(small, 1 - t, ((1 - t) * omega).sin() / so.where(~small, 1.0))
    wb = torch.where(small, torch.full_like(so, t), (t * omega).sin() / so.where(~small, 1.0))
    u = wa * ua + wb * ub
    u = u / u.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return (u * ((1 - t) * na + t * nb)).reshape(z0.shape).to(z0.dtype)


@torch.no_grad()
def interpolate(
    denoiser: Denoiser,
    x0: Tensor,
    x1: Tensor,
    sigmas: Tensor,
    ts: Sequence[float] | Tensor,
    *,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    iters: int = 0,
    cond0: dict | None = None,
    cond1: dict | None = None,
    **knobs,
) -> Tensor:
    """Frames between two real images: (T, B, ...) for the T mixing weights `ts` in [0, 1].

    Both images are inverted (with their own conditions), their noises slerped, and each mix regenerated.
    When both conditions hold class_labels, frame t is regenerated with the labels of the nearer end.
    """
    if x0.shape != x1.shape:
        raise NoisecraftError(f"the two images must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    ts = [float(t) for t in torch.as_tensor(ts, dtype=torch.float64).reshape(-1)]
    if not ts or any(not 0 <= t <= 1 for t in ts):
        raise NoisecraftError(f"interpolation weights must lie in [0, 1], got {ts}")
    z0 = invert(denoiser, x0, sigmas, sampler=sampler, iters=iters, cond=cond0, **knobs)
    z1 = invert(denoiser, x1, sigmas, sampler=sampler, iters=iters, cond=cond1, **knobs)
    frames = []
    for t in ts:
        c = cond0 if t < 0.5 else cond1
        frames.append(regenerate(denoiser, slerp(z0, z1, t), sigmas, sampler=sampler, cond=c, **knobs))
    return torch.stack(frames)
