"""Probability-flow ODE encoding x0 → x_T (DDIM inversion) and decoding back, for editing and likelihoods.

    x_T = invert(denoiser, x0, sigmas, sampler="ddim")          # encode with the sampling σ list
    x0_again = reconstruct(denoiser, x_T, sigmas, sampler="ddim")  # = get_sampler("ddim")(denoiser, x_T, sigmas)

Encoding runs a deterministic solver along the same σ list backwards (σ ascending; every solver here is a
valid integrator in either direction). The decoding step into σ = 0 is x0 = D(x; σ_last), which cannot be run
backwards explicitly; like DDIM inversion (Song et al. 2021, Sec. 4.3; Mokady et al. 2023) its inverse starts
from the denoiser evaluated at the target level with the current state. With ``fixed_point_iters`` > 0 each
step of DDIM/Euler is then made an exact inverse of the matching decoding step F by iterating
y ← y + (x − F(y)) (a contraction for denoisers whose Jacobian has eigenvalues in [0, 1], e.g. Gaussian
data; cf. Pan et al. 2023, "Effective real image editing with accelerated iterative diffusion inversion"), so
encode → decode reproduces x0 to solver precision even with few steps.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import check_sigmas
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.samplers import SAMPLER_SPECS, Model, get_sampler

INVERTIBLE = ("ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m")
# One-step solvers whose steps fixed_point_step inverts: for a DDIM/Euler step the plain iteration map has
# Jacobian (1 − σ'/σ)(I − ∂D/∂x), a contraction when ∂D/∂x has eigenvalues in [0, 1]. For Heun's step the
# iteration made the round trip worse on a Gaussian mixture (tests/test_inversion.py), so it is not offered.
ONE_STEP = ("ddim", "euler")


@torch.no_grad()
def invert(
    denoiser: Denoiser,
    x0: Tensor,
    sigmas: Tensor,
    *,
    sampler: str = "ddim",
    cond: dict | None = None,
    fixed_point_iters: int = 0,
    info: dict | None = None,
) -> Tensor:
    """Encode x (at sigmas[-1], usually clean data at σ = 0) to the state at sigmas[0] along the PF-ODE.

    Args:
        sigmas: the descending σ list that will be used to decode (the same one gives the best round trip).
        sampler: one of INVERTIBLE (deterministic ODE solvers).
        fixed_point_iters: extra iterations per step making each step the exact inverse of the decoding step
            (one-step solvers ddim/euler; each iteration costs one decoding step).
        info: a dict that receives "nfe", the number of network calls.
    """
    check_choice("inversion sampler", sampler, INVERTIBLE)
    sigmas = check_sigmas(torch.as_tensor(sigmas, dtype=torch.float64).cpu())
    if fixed_point_iters < 0:
        raise NoisecraftError(f"fixed_point_iters must be >= 0, got {fixed_point_iters}")
    if fixed_point_iters and sampler not in ONE_STEP:
        raise NoisecraftError(f"fixed_point_iters needs a one-step solver ({', '.join(ONE_STEP)}), not {sampler!r}")
    model = Model(denoiser, cond)
    stepper = SAMPLER_SPECS[sampler].stepper
    sig = sigmas.tolist()
    x = x0
    if sig[-1] == 0:
        s = sig[-2]
        x = x0 + (x0 - model(x0, s))  # DDIM inversion's first step: x0 + σ·ε̂(x0, σ)
        x = fixed_point_step(lambda v: model(v, s), x0, x, fixed_point_iters, 0.0)  # solve D(x; σ) = x0
        sig = sig[:-1]
    up = sig[::-1]  # ascending
    if len(up) > 1 and not fixed_point_iters:
        for step in stepper(model, x, torch.tensor(up, dtype=torch.float64), None):
            x = step.x
    elif len(up) > 1:
        for lo, hi in itertools.pairwise(up):
            target = x
            x = _last(stepper(model, target, torch.tensor([lo, hi], dtype=torch.float64), None))
            down = torch.tensor([hi, lo], dtype=torch.float64)
            x = fixed_point_step(
                lambda v, d=down: _last(stepper(model, v, d, None)), target, x, fixed_point_iters, lo / hi
            )
    if info is not None:
        info["nfe"] = model.nfe
    return x


def fixed_point_step(step, target: Tensor, x: Tensor, iters: int, ratio: float) -> Tensor:
    """Solve step(x) = target (B, ...) from the guess x by `iters` relaxed iterations x ← x + c·(target − step(x)).

    The one fixed-point mechanism of inversion: `step` is a decoding step σ → σ' with r = σ'/σ = `ratio`.

    For a sampler step σ → σ' with r = σ'/σ, step(x) ≈ A·x + b where A = r·I + (1 − r)·J_D has eigenvalues
    in [r, 1] when the denoiser's Jacobian J_D has them in [0, 1] (Gaussian data). c = 1 is then always a
    contraction, but a slow one at large σ (J_D ≈ 0, A ≈ r·I: about 1/r iterations). After the first iteration
    c is the secant estimate ⟨Δx, Δx⟩ / ⟨Δx, A·Δx⟩ per sample, clamped to [1, 1/r], which solves such a step
    in one iteration. Safeguards (a mixture's J_D can leave [0, 1] near class boundaries): a sample whose
    residual grew goes back to its previous iterate and takes c = 1, and a last secant step that was not
    checked is checked (one more sampler step) and replaced by a c = 1 step from the best iterate if worse.
    """
    c_max = 1.0 / ratio if ratio > 0 else 1.0
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ...)
    c = torch.ones(shape, dtype=x.dtype, device=x.device)
    prev = None
    for _ in range(iters):
        res = target - step(x)  # (B, ...)
        rn = res.flatten(1).norm(dim=1)  # (B,)
        if prev is not None:
            px, pres, prn = prev
            dx, dres = x - px, res - pres  # dres = −A·dx
            den = -(dx * dres).flatten(1).sum(1)
            est = torch.where(den > 0, dx.flatten(1).pow(2).sum(1) / den.clamp(min=1e-30), torch.ones_like(den))
            c = est.clamp(1.0, c_max).reshape(shape).to(x.dtype)
            worse = rn > prn  # (B,)
            w = worse.reshape(shape)
            x, res, rn = torch.where(w, px, x), torch.where(w, pres, res), torch.where(worse, prn, rn)
            c = torch.where(w, torch.ones_like(c), c)
        prev = (x, res, rn)
        x = x + c * res
    if prev is not None and (c > 1).any():  # check the last secant step
        px, pres, prn = prev
        worse = ((target - step(x)).flatten(1).norm(dim=1) > prn).reshape(shape)
        x = torch.where(worse, px + pres, x)
    return x


def _last(steps) -> Tensor:
    x = None
    for step in steps:
        x = step.x
    return x


def reconstruct(
    denoiser: Denoiser, x_T: Tensor, sigmas: Tensor, *, sampler: str = "ddim", cond: dict | None = None
) -> Tensor:
    """Decode an encoding back along the same σ list (the sampler run forward)."""
    check_choice("inversion sampler", sampler, INVERTIBLE)
    return get_sampler(sampler)(denoiser, x_T, sigmas, cond=cond)
