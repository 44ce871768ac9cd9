"""2-D toy distributions for the first vertical slice: swiss roll, two moons, 8 Gaussians, checkerboard, GMM."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from noisecraft.core.oracles import GaussianMixture
from noisecraft.errors import check_choice


def swiss_roll(n: int, g: torch.Generator) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 5.0
    return x + 0.05 * torch.randn(n, 2, generator=g)


def two_moons(n: int, g: torch.Generator) -> Tensor:
    upper = torch.rand(n, generator=g) < 0.5
    a = math.pi * torch.rand(n, generator=g)
    x = torch.stack([torch.cos(a), torch.sin(a)], 1)
    x = torch.where(upper[:, None], x, torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1))
    return (x - torch.tensor([0.5, 0.25])) * 1.5 + 0.05 * torch.randn(n, 2, generator=g)


def eight_gaussians_mixture(radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Eight isotropic Gaussians on a circle: exact denoiser available."""
    ang = torch.arange(8, dtype=torch.float64) * math.pi / 4
    return GaussianMixture(radius * torch.stack([ang.cos(), ang.sin()], 1), std**2)


def gmm_mixture() -> GaussianMixture:
    """An anisotropic 3-component mixture with unequal weights: exact denoiser available."""
    means = torch.tensor([[-1.5, -0.5], [1.0, 1.2], [1.2, -1.3]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.30, 0.15], [0.15, 0.20]], [[0.10, -0.05], [-0.05, 0.25]], [[0.05, 0.0], [0.0, 0.05]]],
        dtype=torch.float64,
    )
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


def checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1)


TOYS = ("swissroll", "moons", "8gaussians", "checkerboard", "gmm")
EXACT = {"8gaussians": eight_gaussians_mixture, "gmm": gmm_mixture}


def toy_data(name: str, n: int, seed: int = 0) -> Tensor:
    """n samples (n, 2) float32 of the toy distribution `name` (one of TOYS)."""
    check_choice("toy dataset", name, TOYS)
    g = torch.Generator().manual_seed(seed)
    if name in EXACT:
        return EXACT[name]().sample(n, g)[0].float()
    return {"swissroll": swiss_roll, "moons": two_moons, "checkerboard": checkerboard}[name](n, g).float()
