"""Sample-based distances between point clouds (2-D and low-dimensional data)."""

from __future__ import annotations

import torch
from torch import Tensor


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)) -> float:
    """Unbiased squared maximum mean discrepancy with a sum of RBF kernels (Gretton et al. 2012, Eq. 3).

    x (n, d), y (m, d). 0 in expectation when both come from one distribution; can be slightly negative.
    """
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    n, m = len(x), len(y)

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance: mean over random unit directions of W1 between the 1-D projections.

    x and y must hold the same number of points (n, d).
    """
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    if len(x) != len(y):
        raise ValueError("sliced_wasserstein needs two sets of the same size")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, py = (x @ dirs).sort(0).values, (y @ dirs).sort(0).values
    return float((px - py).abs().mean())
