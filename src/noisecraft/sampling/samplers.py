"""Shared pieces of the samplers, written once, and the one-step samplers (Euler, Heun, DDIM, ancestral, DDPM).

``ancestral_split`` (η-split of a step into a deterministic part and fresh noise), ``churn`` (Karras et al. 2022
Alg. 2 lines 4–6), ``exp_step`` (the first-order exponential-integrator / DDIM step) and ``heun_correct`` (the
trapezoidal correction) are reused by all sampler families. The registry (``get_sampler``, ``iterate``, ``Step``)
lives in ``sampling/registry.py`` and is re-exported here; ``x`` is the starting state at sigmas[0]
(x = σ_max·ε for generation), `sigmas` a strictly descending σ list (usually ending at 0), `generator` one
torch.Generator or a list with one per sample (sample i then never depends on the batch size). Multistep
history lives in local variables; there is no hidden state between calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from noisecraft.errors import check_choice
from noisecraft.sampling.noise import Generators, randn
from noisecraft.sampling.registry import (  # noqa: F401  (re-exported: the registry's public names)
    SAMPLER_INFO,
    SAMPLER_SPECS,
    SAMPLERS,
    Callback,
    Model,
    Sampler,
    SamplerSpec,
    Step,
    get_sampler,
    iterate,
    register,
    sampler_knobs,
)


# ----------------------------------------------------------------------------------------------------------
# Shared pieces, written once.
def ancestral_split(sigma: Tensor | float, sigma_next: Tensor | float, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split σ → σ' into a deterministic move to σ_down and fresh noise of size σ_up, σ_down² + σ_up² = σ'².

    With η = 1 the pair reproduces the DDPM posterior q(x_{σ'} | x_σ, x̂0) (Ho et al. 2020, Eq. 7):
    σ_up = σ'·√(σ² − σ'²)/σ.  η = 0 gives the deterministic DDIM step; in between, DDIM's σ_t(η)
    (Song et al. 2021, Eq. 16) written in σ.  Works on floats or tensors.
    """
    sigma, sigma_next = torch.as_tensor(sigma, dtype=torch.float64), torch.as_tensor(sigma_next, dtype=torch.float64)
    up = (eta * sigma_next * ((sigma**2 - sigma_next**2).clamp(min=0)).sqrt() / sigma).clamp(max=sigma_next)
    down = (sigma_next**2 - up**2).clamp(min=0).sqrt()
    return down, up


def _split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    down, up = ancestral_split(sigma, sigma_next, eta)
    return float(down), float(up)


def exp_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """First-order exponential-integrator step in σ (DDIM, Song et al. 2021; DPM-Solver++(1), Lu et al. 2022):

    x' = (σ'/σ)·x + (1 − σ'/σ)·x̂0, exact for the PF-ODE when x̂0 is constant over the step; x' = x̂0 at σ' = 0.
    """
    r = sigma_next / sigma
    return x0 + r * (x - x0) if r else x0


def churn(
    x: Tensor,
    sigma: float,
    steps: int,
    generator: Generators,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> tuple[Tensor, float]:
    """Karras et al. 2022, Alg. 2 lines 4–6: raise σ to σ̂ = σ(1+γ) by adding fresh noise of variance σ̂² − σ².

    γ = min(S_churn/N, √2 − 1) for σ in [S_tmin, S_tmax], else 0 (then nothing is drawn).
    """
    gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1 + gamma)
    eps = randn(x.shape, generator, x.dtype, x.device)
    return x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * eps, sigma_hat


def heun_correct(model: Model, x: Tensor, sigma: float, sigma_next: float, x0: Tensor) -> Tensor:
    """Euler step σ → σ' from the denoised x̂0, then the trapezoidal (Heun) correction with D at σ' (Karras
    et al. 2022, Alg. 2 lines 7–10); at σ' = 0 the Euler step alone (D is not evaluated at σ = 0)."""
    d = (x - x0) / sigma
    x_next = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_next
    d_next = (x_next - model(x_next, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * 0.5 * (d + d_next)


def noise_like(x: Tensor, generator: Generators) -> Tensor:
    return randn(x.shape, generator, x.dtype, x.device)


# ----------------------------------------------------------------------------------------------------------
# One-step samplers.
@register(
    "euler",
    "Euler on the probability-flow ODE (Karras et al. 2022, Alg. 1; churn knobs of Alg. 2); order 1, "
    "deterministic (unless s_churn > 0)",
    deterministic=True,
    order=1,
)
def euler(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Iterator[Step]:
    """x ← x + (σ' − σ)·(x − D(x; σ))/σ; with s_churn > 0, noise is first added to raise σ to σ̂."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x, s = churn(x, sig[i], len(sig) - 1, generator, s_churn, s_tmin, s_tmax, s_noise)
        x0 = model(x, s)
        x = x + (sig[i + 1] - s) * ((x - x0) / s)
        yield model.step(i, sig[i], sig[i + 1], x, x0)


@register(
    "heun",
    "Heun's 2nd-order method on the PF-ODE (Karras et al. 2022, Alg. 2, optional churn); order 2, "
    "deterministic (unless s_churn > 0), 2 NFE per step",
    deterministic=True,
    order=2,
)
def heun(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Iterator[Step]:
    """Euler predictor then trapezoidal corrector; the last step to σ = 0 is a plain Euler step."""
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x, s = churn(x, sig[i], len(sig) - 1, generator, s_churn, s_tmin, s_tmax, s_noise)
        x0 = model(x, s)
        x = heun_correct(model, x, s, sig[i + 1], x0)
        yield model.step(i, sig[i], sig[i + 1], x, x0)


def _ancestral(
    model: Model, x: Tensor, sigmas: Tensor, generator: Generators, eta: float, s_noise: float
) -> Iterator[Step]:
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        x0 = model(x, sig[i])
        down, up = _split(sig[i], sig[i + 1], eta)
        x = exp_step(x, x0, sig[i], down)
        if up > 0:
            x = x + up * s_noise * noise_like(x, generator)
        yield model.step(i, sig[i], sig[i + 1], x, x0)


@register(
    "ddim",
    "DDIM (Song et al. 2021): exponential-integrator step with η-noise; order 1, deterministic at eta=0, "
    "stochastic for eta > 0 (eta=1: DDPM)",
    deterministic=True,
    order=1,
)
def ddim(model: Model, x: Tensor, sigmas: Tensor, generator: Generators, *, eta: float = 0.0) -> Iterator[Step]:
    """x' = x̂0 + (σ_down/σ)(x − x̂0) + σ_up·z with (σ_down, σ_up) = ancestral_split(σ, σ', η)."""
    yield from _ancestral(model, x, sigmas, generator, eta, 1.0)


@register(
    "euler_ancestral",
    "Euler ancestral (k-diffusion): Euler to σ_down plus fresh noise σ_up; order 1, stochastic",
    deterministic=False,
)
def euler_ancestral(
    model: Model, x: Tensor, sigmas: Tensor, generator: Generators, *, eta: float = 1.0, s_noise: float = 1.0
) -> Iterator[Step]:
    """An Euler step to σ_down is the same move as DDIM's, so this is DDIM with η = 1 and an s_noise knob."""
    yield from _ancestral(model, x, sigmas, generator, eta, s_noise)


@register(
    "ddpm",
    "DDPM ancestral sampling, the reverse Markov chain (Ho et al. 2020, Alg. 2); variance 'small' (posterior β̃) "
    "or 'large' (β); stochastic",
    deterministic=False,
    final_zero=True,
)
def ddpm(model: Model, x: Tensor, sigmas: Tensor, generator: Generators, *, variance: str = "small") -> Iterator[Step]:
    """Each step draws x_{σ'} from N(μ̃(x, x̂0), v): μ̃ the posterior mean x̂0 + (σ'/σ)²(x − x̂0) (in VE form) and
    v = β̃ (posterior variance, fixed-small) or β (fixed-large), both written in σ: with β = 1 − ᾱ/ᾱ' =
    (σ² − σ'²)/(1 + σ²), the VE noise std is σ'√(σ² − σ'²)/σ (small) or √(β(1 + σ'²)) (large). No noise at σ' = 0.
    """
    check_choice("variance", variance, ("small", "large"))
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        x = x0 + (s_next / s) ** 2 * (x - x0)
        if s_next > 0:
            if variance == "small":
                std = s_next * math.sqrt(s**2 - s_next**2) / s
            else:
                std = math.sqrt((s**2 - s_next**2) / (1 + s**2) * (1 + s_next**2))
            x = x + std * noise_like(x, generator)
        yield model.step(i, s, s_next, x, x0)
