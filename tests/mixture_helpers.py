"""The small exact problem the parity tests share: a 3-component Gaussian mixture in 6-D, and a relative error."""

from __future__ import annotations

import torch

from noisecraft.core.oracles import GaussianMixture


def small_mixture() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 6, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.05 + 0.3 * torch.rand(3, 6, generator=g, dtype=torch.float64))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())
