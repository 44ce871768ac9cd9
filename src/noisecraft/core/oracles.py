"""Exact denoisers: closed-form D(x; σ) = E[x0 | x0 + σε = x] for data whose noisy marginals are known.

These are the oracles the test suite measures samplers, guidance, likelihood and editing against:
- ``GaussianMixture`` (and ``GaussianData``, one component): each noisy marginal is again a mixture,
  p_σ = Σ_k w_k N(μ_k, Σ_k + σ²I), so the denoiser, score, log-density and class posterior p(k | x_σ) are exact;
- ``EmpiricalDenoiser``: the ideal denoiser of a finite dataset (a mixture of Dirac masses), whose
  probability-flow ODE reproduces training points (Karras et al. 2022, Sec. 3, "ideal denoiser").

All return x̂0 with the shape of x; computations run in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from noisecraft.core.denoiser import batch_sigma
from noisecraft.errors import NoisecraftError


class GaussianMixture:
    """Mixture of K Gaussians in d dimensions; exact D, score, log p_σ and class posterior at every σ.

    Args:
        means: (K, d) component means.
        covs: (K, d, d) covariances, or (K, d) diagonal variances, or (K,) isotropic variances.
        weights: (K,) mixture weights (normalised here); uniform when omitted.
        shape: the per-sample shape of x (default (d,)), e.g. (1, 8, 8) to act on images.
    """

    def __init__(
        self,
        means: Tensor,
        covs: Tensor | float,
        weights: Tensor | None = None,
        shape: tuple[int, ...] | None = None,
    ):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise NoisecraftError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 0:
            covs = covs.expand(K)
        if covs.ndim == 1:
            covs = covs[:, None].expand(K, d)
        if covs.ndim == 2:
            covs = torch.diag_embed(covs)
        if covs.shape != (K, d, d):
            raise NoisecraftError(f"covs must be (K, d, d), (K, d) or (K,), got {tuple(covs.shape)}")
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
        if w.shape != (K,) or (w < 0).any() or w.sum() <= 0:
            raise NoisecraftError("weights must be K non-negative numbers with a positive sum")
        lam, U = torch.linalg.eigh(0.5 * (covs + covs.transpose(-1, -2)))  # (K, d), (K, d, d)
        if (lam < -1e-10).any():
            raise NoisecraftError("covariances must be positive semi-definite")
        self.means, self.covs, self.weights = means, covs, w / w.sum()
        self.lam, self.U = lam.clamp(min=0), U
        self.shape = tuple(shape) if shape is not None else (d,)
        if math.prod(self.shape) != d:
            raise NoisecraftError(f"shape {self.shape} does not hold {d} values")

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def component(self, k: int) -> GaussianMixture:
        """The k-th component alone, as a (one-component) mixture."""
        return GaussianMixture(self.means[k : k + 1], self.covs[k : k + 1], None, self.shape)

    # -- per-component quantities in each component's eigenbasis ----------------------------------------
    def _parts(self, x: Tensor, sigma: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """(log w_k N(x; μ_k, Σ_k + σ²I) (B, K), z (B, K, d), variances λ + σ² (B, K, d))."""
        xf = x.reshape(x.shape[0], -1).to(torch.float64)  # (B, d)
        s2 = batch_sigma(sigma, x).to(xf.device)[:, None, None] ** 2  # (B, 1, 1)
        z = torch.einsum("kdj,bkd->bkj", self.U, xf[:, None, :] - self.means)  # (B, K, d)
        var = self.lam + s2  # (B, K, d)
        logp = -0.5 * (z**2 / var).sum(-1) - 0.5 * torch.log(2 * math.pi * var).sum(-1) + self.weights.log()
        return logp, z, var

    def class_posterior(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """p(k | x_σ) (B, K): the exact noisy classifier."""
        return self._parts(x, sigma)[0].softmax(-1)

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log p_σ(x) (B,): the density of the data convolved with N(0, σ²I)."""
        return self._parts(x, sigma)[0].logsumexp(-1)

    def __call__(self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None, **_) -> Tensor:
        """Exact x̂0; with class_labels (B,) the denoiser of the chosen component (the conditional model)."""
        logp, z, var = self._parts(x, sigma)
        if class_labels is not None:
            keep = torch.nn.functional.one_hot(torch.as_tensor(class_labels).long(), self.num_components).bool()
            logp = logp.masked_fill(~keep.to(logp.device), -math.inf)
        r = logp.softmax(-1)  # (B, K)
        shrunk = self.lam / var * z  # (B, K, d): Σ(Σ+σ²I)^{-1}(x−μ) in the eigenbasis
        x0_k = self.means + torch.einsum("kdj,bkj->bkd", self.U, shrunk)  # (B, K, d)
        x0 = torch.einsum("bk,bkd->bd", r, x0_k)
        return x0.reshape(x.shape).to(x.dtype)

    def score(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        """∇_x log p_σ(x) = (D(x; σ) − x)/σ² (Tweedie)."""
        s = batch_sigma(sigma, x).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return (self(x, sigma, **cond) - x) / s**2

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n exact samples (n, *shape) and their component labels (n,)."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        root = self.U[labels] * self.lam[labels].sqrt()[:, None, :]  # (n, d, d): U diag(√λ)
        x = self.means[labels] + torch.einsum("ndj,nj->nd", root, eps)
        return x.reshape(n, *self.shape), labels

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> Tensor:
        """Total covariance Σ_k w_k(Σ_k + μ_kμ_kᵀ) − μμᵀ (d, d)."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]


class GaussianData(GaussianMixture):
    """Gaussian data N(μ, Σ): D(x; σ) = μ + Σ(Σ + σ²I)^{-1}(x − μ)."""

    def __init__(self, mean: Tensor, cov: Tensor | float, shape: tuple[int, ...] | None = None):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        super().__init__(mean[None], cov[None] if cov.ndim else cov, None, shape)


class EmpiricalDenoiser:
    """The ideal denoiser of a finite dataset: D(x; σ) = Σ_i softmax_i(−‖x − x_i‖²/2σ²)·x_i."""

    def __init__(self, data: Tensor, chunk: int = 4096):
        self.data = torch.as_tensor(data, dtype=torch.float64)  # (N, ...)
        self.flat = self.data.reshape(self.data.shape[0], -1)  # (N, d)
        self.chunk = chunk

    def __call__(self, x: Tensor, sigma: Tensor | float, **_) -> Tensor:
        xf = x.reshape(x.shape[0], -1).to(torch.float64)  # (B, d)
        s2 = batch_sigma(sigma, x).to(xf.device)[:, None] ** 2  # (B, 1)
        logits = -torch.cdist(xf, self.flat).pow(2) / (2 * s2)  # (B, N)
        x0 = logits.softmax(-1) @ self.flat  # (B, d)
        return x0.reshape(x.shape).to(x.dtype)
