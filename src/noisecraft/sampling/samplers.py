"""Stateless samplers with one signature, and their registry.

    sampler(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, **knobs) -> x

`x` is the starting state at sigmas[0] (x = σ_max·ε for generation), `sigmas` a descending σ list ending
at 0, `cond` keyword arguments passed to the denoiser. `callback` receives a ``Step`` record after every
step. Multistep history lives in local variables; there is no hidden state between calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.precond import to_d
from noisecraft.core.schedules import check_sigmas
from noisecraft.errors import check_choice
from noisecraft.sampling.noise import Generators, randn


@dataclass(frozen=True)
class Step:
    """One sampler step: index i, σ_i → σ_{i+1}, the state after the step, and the denoised estimate used."""

    i: int
    sigma: float
    sigma_next: float
    x: Tensor
    x0_hat: Tensor


Callback = Callable[[Step], None] | None
Sampler = Callable[..., Tensor]
SAMPLERS: dict[str, Sampler] = {}
SAMPLER_INFO: dict[str, str] = {}


def register(name: str, info: str) -> Callable[[Sampler], Sampler]:
    """Add a sampler to the registry under `name`, with a one-line description (paper, order, stochastic?)."""

    def wrap(fn: Sampler) -> Sampler:
        SAMPLERS[name] = fn
        SAMPLER_INFO[name] = info
        return fn

    return wrap


def get_sampler(name: str) -> Sampler:
    return SAMPLERS[check_choice("sampler", name, SAMPLERS)]


def ancestral_split(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split σ → σ' into a deterministic move to σ_down and fresh noise of size σ_up, σ_down² + σ_up² = σ'².

    With η = 1 the pair reproduces the DDPM posterior q(x_{σ'} | x_σ, x̂0) (Ho et al. 2020, Eq. 7):
    σ_up = σ'·√(σ² − σ'²)/σ.  η = 0 gives the deterministic DDIM step.
    """
    up = (eta * sigma_next * ((sigma**2 - sigma_next**2).clamp(min=0)).sqrt() / sigma).clamp(max=sigma_next)
    down = (sigma_next**2 - up**2).clamp(min=0).sqrt()
    return down, up


def _report(callback: Callback, i: int, sigmas: Tensor, x: Tensor, x0: Tensor) -> None:
    if callback is not None:
        callback(Step(i, float(sigmas[i]), float(sigmas[i + 1]), x, x0))


@register("euler", "Euler on the probability-flow ODE (Karras et al. 2022, Alg. 1 without churn); order 1, deterministic")
@torch.no_grad()
def sample_euler(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, cond: dict | None = None, generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    sigmas = check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        x0 = denoiser(x, sigmas[i], **(cond or {}))
        x = x + (sigmas[i + 1] - sigmas[i]).to(x.dtype) * to_d(x, sigmas[i], x0)
        _report(callback, i, sigmas, x, x0)
    return x


@register("ddpm", "DDPM ancestral sampling, the reverse Markov chain (Ho et al. 2020, Alg. 2); stochastic")
@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, cond: dict | None = None, generator: Generators = None,
    callback: Callback = None, eta: float = 1.0,
) -> Tensor:
    """Each step samples the posterior q(x_{σ'} | x_σ, x̂0): a DDIM step to σ_down plus fresh noise σ_up."""
    sigmas = check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        x0 = denoiser(x, sigmas[i], **(cond or {}))
        down, up = ancestral_split(sigmas[i], sigmas[i + 1], eta)
        x = x0 + (down / sigmas[i]).to(x.dtype) * (x - x0)
        if up > 0:
            x = x + up.to(x.dtype) * randn(x.shape, generator, x.dtype, x.device)
        _report(callback, i, sigmas, x, x0)
    return x
