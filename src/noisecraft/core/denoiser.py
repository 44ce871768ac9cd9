"""The one model contract: a denoiser D(x, sigma, **cond) -> x0_hat.

Every network, whatever it predicts and whatever time variable it was trained on, is wrapped into a
``PreconditionedDenoiser``; samplers, guidance, editing and likelihood only ever call D. Guidance and
latent spaces are denoisers that wrap denoisers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from noisecraft.core.precond import Preconditioner
from noisecraft.core.process import expand


@runtime_checkable
class Denoiser(Protocol):
    """D(x, σ, **cond) → x̂0, same shape as x; σ is a scalar or (B,)."""

    def __call__(self, x: Tensor, sigma: Tensor, **cond) -> Tensor: ...


def batch_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """σ as a (B,) float64 tensor on x's device, from a scalar or a (B,) tensor."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma.reshape(x.shape[0])


class PreconditionedDenoiser(nn.Module):
    """D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ), **cond) (Karras et al. 2022, Eq. 7).

    `net` is called as ``net(x_in, c_noise, **cond)`` with x_in (B, ...) and c_noise (B,), and returns F.
    """

    def __init__(self, net: nn.Module, precond: Preconditioner):
        super().__init__()
        self.net = net
        self.precond = precond

    def raw(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        """The network output F at (x, σ): what the loss compares with precond.target."""
        sigma = batch_sigma(sigma, x)
        _, _, c_in = self.precond.scalings(sigma)
        c_noise = self.precond.c_noise(sigma).to(x.dtype)
        return self.net(expand(c_in, x) * x, c_noise, **cond)

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        sigma = batch_sigma(sigma, x)
        return self.precond.denoise(x, sigma, self.raw(x, sigma, **cond))


class ClippedDenoiser(nn.Module):
    """D'(x, σ) = clamp(D(x, σ), −r, r): the data range as a denoiser transform (samplers never see it).

    diffusers' schedulers clamp x̂0 this way when their config says ``clip_sample=True`` (Ho et al. 2020 clip
    x̂0 to [−1, 1] in DDPM's sampler). It rescues an imperfect ε-model, whose x̂0 = (x − σ·ε̂) overshoots at high
    σ and drives deterministic samplers into saturated images; on data that is not bounded (latents) it is wrong.
    """

    def __init__(self, denoiser: nn.Module, clip_range: float = 1.0):
        super().__init__()
        self.denoiser = denoiser
        self.clip_range = float(clip_range)

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        return self.denoiser(x, sigma, **cond).clamp(-self.clip_range, self.clip_range)
