"""Denoising score-matching losses that return one value per sample (reduction belongs to the loop).

All weightings are stated as λ(σ) on the x0-space error ‖D(x; σ) − x0‖² (Karras et al. 2022, Eq. 2), and
evaluated in the network's output space, where ‖D − x0‖² = c_out²·‖F − F*‖²:

- "native": λ = 1/c_out², a plain MSE on what the network predicts. For ε-prediction this is the guide's
  (and Ho et al. 2020's) simple loss ‖ε̂ − ε‖²; for EDM preconditioning it is Karras et al.'s λ.
- "snr": λ = SNR = 1/σ² (the ε-MSE, whatever the parameterisation).
- "min_snr": λ = min(SNR, γ) (Hang et al. 2023): ε-MSE weight min(SNR, γ)/SNR, v-MSE weight min(SNR, γ)/(SNR+1).
- "edm": λ = (σ² + σ_d²)/(σ·σ_d)² (Karras et al. 2022, Table 1).
- "x0": λ = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.precond import Preconditioner
from noisecraft.core.process import add_noise
from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError, check_choice

WEIGHTINGS = ("native", "snr", "min_snr", "edm", "x0")


def loss_weight(weighting: str, sigma: Tensor, precond: Preconditioner, gamma: float = 5.0) -> Tensor:
    """Weight on the output-space error ‖F − F*‖²: λ(σ)·c_out(σ)². float64, shaped like σ, always finite."""
    check_choice("loss weighting", weighting, WEIGHTINGS)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    _, c_out, _ = precond.scalings(sigma)
    c2 = c_out**2
    if weighting == "native":
        return torch.ones_like(sigma)
    if weighting == "snr":
        return c2 / sigma**2
    if weighting == "min_snr":
        return (sigma**-2).clamp(max=gamma) * c2
    if weighting == "edm":
        sd = precond.sigma_data
        return (sigma**2 + sd**2) / (sigma * sd) ** 2 * c2
    return c2


@dataclass(frozen=True, eq=False)
class DenoisingLoss:
    """E_{σ, ε} λ(σ)‖D(x0 + σε; σ) − x0‖², one value per sample.

    Args:
        schedule: draws training σ (its density) when none are given.
        weighting: one of WEIGHTINGS.
        gamma: γ of min-SNR-γ.
    """

    schedule: Schedule
    weighting: str = "native"
    gamma: float = 5.0

    def __post_init__(self) -> None:
        check_choice("loss weighting", self.weighting, WEIGHTINGS)
        if self.gamma <= 0:
            raise NoisecraftError(f"min-SNR gamma must be positive, got {self.gamma}")

    def __call__(
        self,
        model: PreconditionedDenoiser,
        x0: Tensor,
        *,
        sigma: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        **cond,
    ) -> Tensor:
        """Per-sample loss (B,) for clean data x0 (B, ...)."""
        if sigma is None:
            sigma = self.schedule.training_sigmas(x0.shape[0], generator).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = add_noise(x0, sigma, noise)
        out = model.raw(x, sigma, **cond)
        target = model.precond.target(x, x0, sigma)
        err = (out - target).pow(2).flatten(1).mean(1)  # (B,)
        return loss_weight(self.weighting, sigma, model.precond, self.gamma).to(err.dtype) * err
