"""Inversion-based edits of real images: invert → (change something) → regenerate.

- ``invert``: DDIM inversion (Song et al. 2021, "Denoising Diffusion Implicit Models", Sec. 4.3; Dhariwal &
  Nichol 2021, App. F) of any deterministic single-step sampler, run backwards along the σ list: the image is
  carried from σ = 0 up to σ_max, giving the noise z that the sampler maps back to the image. Each step starts
  from the explicit step upward (noisecraft.sampling.inversion's, one pair of levels at a time, for the
  solvers it knows; else explicit Euler); with ``iters > 0`` each step is then solved exactly by a
  fixed-point iteration x_σ ← x_σ + (x_σ' − S(x_σ)), where S is the sampler's own step σ → σ' (the
  "fixed-point" / implicit inversion of Pan et al. 2023, "Effective Real Image Editing with Accelerated
  Iterative Diffusion Inversion", and Garibi et al. 2024, "ReNoise"), so that regeneration reproduces the
  image up to the iteration's residual rather than up to the sampler's discretisation error.
- ``regenerate``: the sampler run forwards from z, step by step along the same σ list, so that ``invert`` and
  ``regenerate`` are inverses for every sampler of the registry (multistep samplers run as their one-step
  start, which is what their inversion inverts).
- ``swap_class``: invert under class A, regenerate under class B with classifier-free guidance (a
  class-level prompt-to-prompt, Hertz et al. 2022, without attention injection); ``strength`` < 1 inverts
  only part of the way for edits that keep more of the input.
- ``interpolate``: invert two images and regenerate from the spherical interpolation of their noises
  (Song et al. 2021, DDIM Sec. 5.3; slerp as in Shoemake 1985); t = 0 and t = 1 reproduce the two inputs.

Every function takes any denoiser D(x, σ, **cond) and any sampler name or function.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.precond import to_d
from noisecraft.core.schedules import check_sigmas
from noisecraft.editing.sdedit import resolve_sampler, strength_sigmas
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.inversion import INVERTIBLE, fixed_point_step
from noisecraft.sampling.inversion import invert as invert_pf_ode
from noisecraft.sampling.samplers import Callback, Sampler


def _check_iters(iters: int) -> int:
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 0:
        raise NoisecraftError(f"iters (fixed-point iterations per step) must be an integer >= 0, got {iters!r}")
    return iters


def _explicit_up(
    denoiser: Denoiser, x: Tensor, pair: Tensor, sampler: str | Sampler, cond: dict, knobs: dict
) -> tuple[Tensor, Tensor | None]:
    """The explicit step up pair[1] → pair[0]: the starting guess of each inversion step.

    For the registry's invertible solvers it is the solver's own step run upward, from
    noisecraft.sampling.inversion (e.g. Heun's trapezoid, second order); otherwise an explicit Euler step on the
    PF-ODE. Out of σ' = 0, where the ODE is singular, both take DDIM inversion's first step x + σ·ε̂(x, σ).
    """
    if isinstance(sampler, str) and not knobs and sampler in INVERTIBLE:
        return invert_pf_ode(denoiser, x, pair, sampler=sampler, cond=cond), None
    s_hi, s_lo = pair[0], pair[1]
    s_eval = s_lo if s_lo > 0 else s_hi
    x0 = denoiser(x, s_eval, **cond)
    return x + (s_hi - s_lo).to(x.dtype) * to_d(x, s_eval, x0), x0


@torch.no_grad()
def invert(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = "euler",
    iters: int = 0,
    cond: dict | None = None,
    callback: Callback = None,
    **knobs,
) -> Tensor:
    """The noise z at sigmas[0] that `regenerate` with the same sampler maps back to x (B, ...).

    Args:
        sigmas: the descending σ list of the sampler (ending at 0); inversion walks it from the end.
            A tail of the list (editing.sdedit.strength_sigmas) gives a partial inversion.
        sampler: a deterministic sampler (registry name or function); "ddpm" only with eta=0. A multistep
            sampler runs as its first-order start step (one step per call; a warning says so).
        iters: fixed-point iterations per step (0 = classic DDIM inversion; each iteration costs one sampler
            step, e.g. 1 NFE for euler). Guaranteed to help for euler/ddim only: with heun it made the round
            trip worse on a Gaussian mixture (tests/test_inversion.py), though it helped on digits.
        knobs: passed on to the sampler.
    """
    sigmas = check_sigmas(sigmas, final_zero=True)
    iters = _check_iters(iters)
    _warn_if_multistep(sampler)
    step = resolve_sampler(sampler)
    cond = cond or {}
    for i in reversed(range(len(sigmas) - 1)):
        s_hi, s_lo = sigmas[i], sigmas[i + 1]
        x_hi, x0 = _explicit_up(denoiser, x, sigmas[i : i + 2], sampler, cond, knobs)
        pair = sigmas[i : i + 2]
        x = fixed_point_step(
            lambda v, pair=pair: step(denoiser, v, pair, cond=cond, **knobs), x, x_hi, iters, float(s_lo / s_hi)
        )
        if callback is not None:
            from noisecraft.sampling.samplers import Step

            callback(Step(len(sigmas) - 2 - i, float(s_lo), float(s_hi), x, x if x0 is None else x0))
    return x


@torch.no_grad()
def regenerate(
    denoiser: Denoiser,
    z: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = "euler",
    cond: dict | None = None,
    callback: Callback = None,
    **knobs,
) -> Tensor:
    """Run `sampler` from z at sigmas[0] down to 0, one step per call (the exact inverse of ``invert``).

    One step per call means a multistep sampler (dpmpp_2m, dpmpp_3m, dpmpp_2m_sde, unipc) never has history: it
    runs as its first-order start step (DDIM), and a warning says so."""
    sigmas = check_sigmas(sigmas, final_zero=True)
    _warn_if_multistep(sampler)
    step = resolve_sampler(sampler)
    for i in range(len(sigmas) - 1):
        z = step(denoiser, z, sigmas[i : i + 2], cond=cond, **knobs)
        if callback is not None:
            from noisecraft.sampling.samplers import Step

            callback(Step(i, float(sigmas[i]), float(sigmas[i + 1]), z, z))
    return z


def _warn_if_multistep(sampler: str | Sampler) -> None:
    from noisecraft.sampling.registry import SAMPLER_SPECS

    spec = SAMPLER_SPECS.get(sampler) if isinstance(sampler, str) else None
    if spec is not None and spec.multistep:
        warnings.warn(
            f"{sampler} is a multistep sampler: invert/regenerate take one step per call, so it runs as its "
            "first-order start step (DDIM); euler, heun or ddim say what they do",
            stacklevel=3,
        )


def psnr(x: Tensor, ref: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per sample (B,), in dB; data_range 2 for images in [-1, 1]."""
    mse = (x.double() - ref.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-20))


@torch.no_grad()
def reconstruct(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = "euler",
    iters: int = 0,
    cond: dict | None = None,
    **knobs,
) -> tuple[Tensor, Tensor]:
    """Invert x then regenerate it: (reconstruction (B, ...), noise z (B, ...)). The round-trip test of inversion."""
    z = invert(denoiser, x, sigmas, sampler=sampler, iters=iters, cond=cond, **knobs)
    return regenerate(denoiser, z, sigmas, sampler=sampler, cond=cond, **knobs), z


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
    sampler: str | Sampler = "euler",
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
    sampler: str | Sampler = "euler",
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
