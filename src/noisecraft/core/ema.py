"""Exponential moving average of model weights, with warm-up or an EDM-style half-life in images."""

from __future__ import annotations

import copy

import torch
from torch import nn

from noisecraft.errors import NoisecraftError


class EMA:
    """θ_ema ← β·θ_ema + (1−β)·θ after each optimiser step.

    Two ways to choose β:
    - ``decay`` with warm-up (Karras/diffusers): β_k = min(decay, 1 − (1 + k)^(−power)), so early
      averages are not dominated by the random initialisation;
    - ``half_life_images`` (Karras et al. 2022, EDM): β = 0.5^(batch / h), the average's weight halves every
      h training images, with h ramped up as min(h, rampup·images_seen) when ``rampup`` is given.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        power: float = 2 / 3,
        half_life_images: float | None = None,
        rampup: float | None = 0.05,
    ):
        if not 0 <= decay < 1:
            raise NoisecraftError(f"EMA decay must lie in [0, 1), got {decay}")
        if half_life_images is not None and half_life_images <= 0:
            raise NoisecraftError(f"EMA half_life_images must be positive, got {half_life_images}")
        self.decay, self.power = decay, power
        self.half_life_images, self.rampup = half_life_images, rampup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.steps = 0
        self.images = 0

    def beta(self, batch_size: int) -> float:
        """The averaging factor for the next update, given the images in this step."""
        if self.half_life_images is not None:
            h = self.half_life_images
            if self.rampup is not None:
                h = min(h, self.rampup * (self.images + batch_size))
            return 0.5 ** (batch_size / max(h, 1e-8))
        return min(self.decay, 1 - (1 + self.steps) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module, batch_size: int = 1) -> None:
        beta = self.beta(batch_size)
        ema_params = list(self.model.parameters())
        params = [p.detach().to(e.dtype) for e, p in zip(ema_params, model.parameters(), strict=True)]
        torch._foreach_lerp_(ema_params, params, 1 - beta)  # one fused pass over all tensors
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)
        self.steps += 1
        self.images += batch_size

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "steps": self.steps, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.steps, self.images = int(state["steps"]), int(state["images"])
