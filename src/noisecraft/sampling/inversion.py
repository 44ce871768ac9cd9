"""Probability-flow ODE inversion: encode an image x (σ = 0) to the noise z that a sampler maps back to it.

    z = invert(denoiser, x, sigmas, sampler="euler", iters=3)      # x at σ = 0 → z at sigmas[0]
    x_again = regenerate(denoiser, z, sigmas, sampler="euler")     # the sampler run from z
    x_again, z = reconstruct(denoiser, x, sigmas, iters=3)         # both: the round-trip test of inversion

This is noisecraft's one inversion API (``noisecraft.invert``; ``noisecraft.editing`` re-exports it for the
edits built on it). Encoding is DDIM inversion (Song et al. 2021, "Denoising Diffusion Implicit Models",
Sec. 4.3; Dhariwal & Nichol 2021, App. F; Mokady et al. 2023) of the sampler, run backwards along the same σ
list (σ ascending; every deterministic ODE solver here is a valid integrator in either direction):

- The decoding step into σ = 0 is x0 = D(x; σ_last), which cannot be run backwards explicitly; its inverse
  starts from DDIM inversion's first step x0 + σ·ε̂(x0, σ).
- Each step up σ' → σ starts from the solver's own step run upward (e.g. Heun's trapezoid, second order) for
  the solvers of INVERTIBLE, else an explicit Euler step on the PF-ODE.
- With ``iters`` > 0 each step is then solved exactly by the fixed-point iteration y ← y + c·(x − S(y)), S
  the sampler's own step σ → σ' (``fixed_point_step``; Pan et al. 2023, "Effective Real Image Editing with
  Accelerated Iterative Diffusion Inversion"; Garibi et al. 2024, "ReNoise"), so that regeneration returns
  the image up to the iteration's residual rather than the sampler's discretisation error.

Multistep solvers: the MULTISTEP ones (dpmpp_2m, dpmpp_3m) are inverted with their history (their upward
run is a multistep integrator of the same order), and ``regenerate`` runs them as the sampler does, with
history; fixed-point iterations need a one-step solver and are refused for them. Any other sampler (a
sampler function, a registry name with knobs such as ddpm with eta=0, or another multistep sampler such as
unipc) is stepped one pair of levels at a time by both ``invert`` and ``regenerate``, so a multistep sampler
there acts as its first-order start; the two stay exact inverses of each other.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import check_sigmas
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.registry import SAMPLER_SPECS, Callback, Model, Sampler, Step, get_sampler

INVERTIBLE = ("ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m")
# Solvers inverted with their multistep history (and regenerated with it); fixed-point iterations need a
# one-step solver. For a DDIM/Euler step the plain iteration map has Jacobian (1 − σ'/σ)(I − ∂D/∂x), a
# contraction when ∂D/∂x has eigenvalues in [0, 1]; for Heun's step the iteration made the round trip worse on
# a Gaussian mixture (tests/test_inversion.py) though it helped on digits (tests/test_editing.py).
MULTISTEP = ("dpmpp_2m", "dpmpp_3m")
DEFAULT_SAMPLER = "euler"


def _check(sampler: str | Sampler, iters: int, knobs: dict) -> None:
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 0:
        raise NoisecraftError(f"iters (fixed-point iterations per step) must be an integer >= 0, got {iters!r}")
    if not isinstance(sampler, str) or knobs:
        return  # a sampler function, or knobs (e.g. ddpm with eta=0): the caller vouches it is deterministic
    deterministic = [n for n, s in SAMPLER_SPECS.items() if s.deterministic and n not in MULTISTEP]
    check_choice("inversion sampler", sampler, sorted(set(INVERTIBLE) | set(deterministic)))
    if iters and sampler in MULTISTEP:
        raise NoisecraftError(
            f"iters > 0 needs a one-step solver (e.g. {', '.join(s for s in INVERTIBLE if s not in MULTISTEP)}), "
            f"not the multistep {sampler!r}; use iters=0 or another sampler"
        )


def _with_history(sampler: str | Sampler, knobs: dict) -> bool:
    """True for the MULTISTEP solvers run with their history; warns for other multistep samplers, which are
    stepped one pair of levels at a time and so act as their first-order start step."""
    if isinstance(sampler, str) and not knobs and sampler in MULTISTEP:
        return True
    spec = SAMPLER_SPECS.get(sampler) if isinstance(sampler, str) else None
    if spec is not None and spec.multistep:
        warnings.warn(
            f"{sampler} is a multistep sampler: invert/regenerate take it one step per call, so it runs as its "
            f"first-order start step; {', '.join(MULTISTEP)} (without knobs) keep their history, and euler, heun "
            "or ddim say what they do",
            stacklevel=4,  # the caller of invert/regenerate (behind torch.no_grad's wrapper)
        )
    return False


@torch.no_grad()
def invert(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    iters: int = 0,
    cond: dict | None = None,
    callback: Callback = None,
    info: dict | None = None,
    **knobs,
) -> Tensor:
    """The state z at sigmas[0] that ``regenerate`` with the same sampler maps back to x (B, ...) at sigmas[-1].

    Args:
        sigmas: the descending σ list that will decode (the same one gives the best round trip), usually ending
            at 0; a tail of it (editing.sdedit.strength_sigmas) gives a partial inversion.
        sampler: a deterministic sampler, registry name (default "euler") or function; "ddpm" only with eta=0.
        iters: fixed-point iterations per step (0 = classic DDIM inversion; each iteration costs one sampler
            step, e.g. 1 NFE for euler). Not for the MULTISTEP solvers. Guaranteed to help for euler/ddim only:
            with heun it made the round trip worse on a Gaussian mixture, though it helped on digits.
        callback: called with a Step after each step up (``Step.sigma`` is the level left, ``sigma_next`` the one
            reached).
        info: a dict that receives "nfe", the number of network calls.
        knobs: passed on to the sampler.
    """
    _check(sampler, iters, knobs)
    sigmas = check_sigmas(torch.as_tensor(sigmas, dtype=torch.float64).cpu())
    model = Model(denoiser, cond)
    if _with_history(sampler, knobs):
        x = _invert_with_history(model, x, sigmas, SAMPLER_SPECS[sampler].stepper, callback)
    else:
        step = get_sampler(sampler) if isinstance(sampler, str) else sampler
        n = len(sigmas) - 1
        for i in reversed(range(n)):
            pair = sigmas[i : i + 2]
            s_hi, s_lo = float(pair[0]), float(pair[1])
            x_hi, x0 = _explicit_up(model, x, pair, sampler, knobs)
            x = fixed_point_step(lambda v, pair=pair: step(model, v, pair, **knobs), x, x_hi, iters, s_lo / s_hi)
            if callback is not None:
                callback(Step(n - 1 - i, s_lo, s_hi, x, x0, model.nfe))
    if info is not None:
        info["nfe"] = model.nfe
    return x


def _explicit_up(model: Model, x: Tensor, pair: Tensor, sampler: str | Sampler, knobs: dict) -> tuple[Tensor, Tensor]:
    """The explicit step up pair[1] → pair[0] (B, ...) and the denoised estimate it used: each step's start.

    Out of σ' = 0, where the ODE is singular, DDIM inversion's first step x + σ·ε̂(x, σ). Otherwise the
    solver's own step run upward for the solvers of INVERTIBLE, else an explicit Euler step on the PF-ODE.
    """
    s_hi, s_lo = float(pair[0]), float(pair[1])
    if s_lo == 0:
        x0 = model(x, s_hi)
        return x + (x - x0), x0  # x0 + σ·ε̂(x0, σ)
    if isinstance(sampler, str) and not knobs and sampler in INVERTIBLE:
        last = _last(SAMPLER_SPECS[sampler].stepper(model, x, pair.flip(0), None))
        return last.x, last.x0_hat
    x0 = model(x, s_lo)
    return x + (s_hi - s_lo) / s_lo * (x - x0), x0  # Euler: x + (σ − σ')·(x − D(x; σ'))/σ'


def _invert_with_history(model: Model, x: Tensor, sigmas: Tensor, stepper, callback: Callback) -> Tensor:
    """A multistep solver run upward along the whole list (its history makes it a high-order integrator)."""
    sig = sigmas.tolist()
    k = 0
    if sig[-1] == 0:
        x0 = model(x, sig[-2])
        x = x + (x - x0)  # DDIM inversion's first step: x0 + σ·ε̂(x0, σ)
        if callback is not None:
            callback(Step(0, 0.0, sig[-2], x, x0, model.nfe))
        sig, k = sig[:-1], 1
    if len(sig) > 1:
        for step in stepper(model, x, torch.tensor(sig[::-1], dtype=torch.float64), None):
            x = step.x
            if callback is not None:
                callback(Step(step.i + k, step.sigma, step.sigma_next, step.x, step.x0_hat, model.nfe))
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


def _last(steps) -> Step:
    last = None
    for last in steps:  # noqa: B007
        pass
    return last


@torch.no_grad()
def regenerate(
    denoiser: Denoiser,
    z: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    cond: dict | None = None,
    callback: Callback = None,
    **knobs,
) -> Tensor:
    """Decode z at sigmas[0] down to sigmas[-1] with `sampler`: the exact inverse of ``invert``.

    The MULTISTEP solvers run as the sampler (with history); every other sampler is run one pair of levels per
    call, which for one-step samplers is the sampler itself and for other multistep ones their first-order
    start (the step ``invert`` inverts).
    """
    sigmas = check_sigmas(torch.as_tensor(sigmas, dtype=torch.float64).cpu())
    if _with_history(sampler, knobs):
        return get_sampler(sampler)(denoiser, z, sigmas, cond=cond, callback=callback)
    step = get_sampler(sampler) if isinstance(sampler, str) else sampler
    for i in range(len(sigmas) - 1):
        z = step(denoiser, z, sigmas[i : i + 2], cond=cond, **knobs)
        if callback is not None:
            callback(Step(i, float(sigmas[i]), float(sigmas[i + 1]), z, z))
    return z


@torch.no_grad()
def reconstruct(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    sampler: str | Sampler = DEFAULT_SAMPLER,
    iters: int = 0,
    cond: dict | None = None,
    **knobs,
) -> tuple[Tensor, Tensor]:
    """Invert x then regenerate it: (reconstruction (B, ...), noise z (B, ...)). The round-trip test of inversion."""
    z = invert(denoiser, x, sigmas, sampler=sampler, iters=iters, cond=cond, **knobs)
    return regenerate(denoiser, z, sigmas, sampler=sampler, cond=cond, **knobs), z
