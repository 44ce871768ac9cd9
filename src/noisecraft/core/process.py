"""The forward (noising) process: the Markov chain, its closed form, and the posterior it implies.

Ho et al. 2020, Sec. 2: q(x_t | x_{t−1}) = N(√(1−β_t)·x_{t−1}, β_t·I), whose marginal has the closed form
q(x_t | x_0) = N(√ᾱ_t·x_0, (1−ᾱ_t)·I) (the "reparameterisation trick": x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε), and
whose posterior q(x_{t−1} | x_t, x_0) is Gaussian with the mean and variance of their Eq. 6–7.

Functions on VP states take ᾱ or β values; functions on the canonical VE state x = x0 + σ·ε take σ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from noisecraft.core.schedules import vp_scale


def expand(v: Tensor | float, like: Tensor) -> Tensor:
    """Broadcast a scalar or per-sample (B,) value against a (B, ...) tensor, in like's dtype."""
    v = torch.as_tensor(v, device=like.device)
    if v.ndim == 1 and like.ndim > 1:
        v = v.reshape(-1, *([1] * (like.ndim - 1)))
    return v.to(like.dtype)


def markov_step(x_prev: Tensor, beta: Tensor | float, noise: Tensor) -> Tensor:
    """One forward step: x_t = √(1−β_t)·x_{t−1} + √β_t·ε (Ho et al. 2020, Eq. 2)."""
    beta = expand(beta, x_prev)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def q_sample(x0: Tensor, alpha_bar: Tensor | float, noise: Tensor) -> Tensor:
    """Closed-form jump to x_t in VP form: √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020, Eq. 4)."""
    ab = expand(alpha_bar, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def add_noise(x0: Tensor, sigma: Tensor | float, noise: Tensor) -> Tensor:
    """Closed-form jump in the canonical VE form: x = x0 + σ·ε."""
    return x0 + expand(sigma, x0) * noise


def ve_to_vp(x: Tensor, sigma: Tensor | float) -> Tensor:
    """VE state x0 + σε → VP state √ᾱ·x0 + √(1−ᾱ)·ε, with ᾱ = 1/(1+σ²)."""
    return x * expand(vp_scale(torch.as_tensor(sigma, dtype=torch.float64)), x)


def vp_to_ve(x_vp: Tensor, sigma: Tensor | float) -> Tensor:
    """VP state → VE state: divide by √ᾱ."""
    return x_vp / expand(vp_scale(torch.as_tensor(sigma, dtype=torch.float64)), x_vp)


def posterior_vp(
    x_t: Tensor, x0: Tensor, alpha_bar_t: Tensor | float, alpha_bar_prev: Tensor | float
) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t−1} | x_t, x_0) in VP form (Ho et al. 2020, Eq. 6–7).

    With β_t = 1 − ᾱ_t/ᾱ_{t−1}:  μ̃ = √ᾱ_{t−1}β_t/(1−ᾱ_t)·x0 + √(1−β_t)(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t,
    β̃ = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t.  Returns (mean (B, ...), variance broadcastable to it).
    """
    ab_t, ab_prev = expand(alpha_bar_t, x_t), expand(alpha_bar_prev, x_t)
    beta = 1 - ab_t / ab_prev
    mean = ab_prev.sqrt() * beta / (1 - ab_t) * x0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t) * x_t
    var = (1 - ab_prev) / (1 - ab_t) * beta
    return mean, var


def posterior_ve(x: Tensor, x0: Tensor, sigma: Tensor | float, sigma_next: Tensor | float) -> tuple[Tensor, Tensor]:
    """q(x_{σ'} | x_σ, x0) for the VE process, σ' < σ: the same posterior as posterior_vp in VE coordinates.

    mean = x0 + (σ'²/σ²)(x − x0),  variance = σ'²(σ² − σ'²)/σ².
    """
    s, s_next = expand(sigma, x), expand(sigma_next, x)
    ratio = (s_next / s) ** 2
    return x0 + ratio * (x - x0), s_next**2 * (1 - ratio)
