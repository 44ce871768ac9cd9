"""The analytic first step: cross the high noise levels with the closed-form flow of Gaussian data, no network call.

    start = GaussianStart.from_samples(train_images)          # mean (D,) and covariance of (a sample of) the data
    x = start.flow(sigma_max * eps, sigma_max, sigma_skip)    # exact PF-ODE of N(μ, Σ) from σ_max down to σ_skip
    x = sampler(denoiser, x, sigmas)                          # sigmas starts at sigma_skip: all calls below it

Wang & Vastola 2023 ("The hidden linear structure in score-based models and its application") observe that at
high noise the learned denoiser of real data is close to the denoiser of the Gaussian with the data's mean and
covariance, D_G(x; σ) = μ + Σ(Σ + σ²I)^{-1}(x − μ). For that denoiser the probability-flow ODE
dx/dσ = (x − D(x; σ))/σ decouples in the eigenbasis Σ = U diag(λ) Uᵀ: each coordinate z_k = u_kᵀ(x − μ) obeys
dz_k/dσ = σ z_k / (λ_k + σ²), whose solution is

    z_k(σ') = z_k(σ) · √((λ_k + σ'²) / (λ_k + σ²)).

So the sampler can jump from σ_max to a level σ_skip in closed form and spend all of its network calls below it,
where the data's non-Gaussian structure (its modes) is decided. The jump is exact for Gaussian data and its
error for other data is that of the Gaussian approximation above σ_skip; how low σ_skip may go is a property
of the data, chosen on held-out noise by ``sampling.fit.fit_steps(..., start=...)``.

For large images the full D×D eigenbasis is costly; ``rank`` keeps the leading k eigenvectors and treats the
orthogonal complement as isotropic with the mean of the remaining eigenvalues (exact when those are equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.denoiser import batch_sigma
from noisecraft.errors import NoisecraftError


@dataclass(frozen=True)
class GaussianStart:
    """N(μ, Σ) with Σ = U diag(λ) Uᵀ + λ_rest (I − U Uᵀ): the Gaussian stand-in for the data at high noise.

    mean: (D,) float64; eigvals: (k,) ≥ 0; eigvecs: (D, k) orthonormal columns; rest: the variance of every
    direction orthogonal to them (unused when k = D); shape: the per-sample shape of x (D values).
    """

    mean: Tensor
    eigvals: Tensor
    eigvecs: Tensor
    rest: float = 0.0
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        D = self.mean.numel()
        if self.mean.ndim != 1 or self.eigvecs.shape != (D, self.eigvals.numel()):
            raise NoisecraftError(
                f"GaussianStart needs mean (D,), eigvals (k,), eigvecs (D, k); got {tuple(self.mean.shape)}, "
                f"{tuple(self.eigvals.shape)}, {tuple(self.eigvecs.shape)}"
            )
        if (self.eigvals < 0).any() or self.rest < 0 or not torch.isfinite(self.eigvals).all():
            raise NoisecraftError("GaussianStart variances must be finite and non-negative")
        if not self.shape:
            object.__setattr__(self, "shape", (D,))
        if math.prod(self.shape) != D:
            raise NoisecraftError(f"shape {self.shape} does not hold {D} values")

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @property
    def scale(self) -> float:
        """The data scale √(tr Σ / D): the RMS standard deviation per value."""
        total = float(self.eigvals.sum()) + self.rest * (self.dim - self.eigvals.numel())
        return math.sqrt(total / self.dim)

    @classmethod
    def from_covariance(
        cls, mean: Tensor, cov: Tensor, shape: tuple[int, ...] | None = None, rank: int | None = None
    ) -> GaussianStart:
        """From a mean (D,) and a covariance (D, D); `rank` keeps the leading eigenvectors (see the module doc)."""
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        D = mean.numel()
        if cov.shape != (D, D):
            raise NoisecraftError(f"covariance must be ({D}, {D}) for a mean of {D} values, got {tuple(cov.shape)}")
        lam, U = torch.linalg.eigh(0.5 * (cov + cov.T))  # ascending
        lam, U = lam.flip(0).clamp(min=0), U.flip(1)  # (D,), (D, D): largest first
        k = D if rank is None else max(0, min(int(rank), D))
        rest = float(lam[k:].mean()) if k < D else 0.0
        return cls(mean, lam[:k].contiguous(), U[:, :k].contiguous(), rest, tuple(shape or (D,)))

    @classmethod
    def from_samples(cls, x: Tensor, rank: int | None = None) -> GaussianStart:
        """The sample mean and covariance of data x (n, *shape), n ≥ 2 (e.g. a few thousand training images).

        With rank k < D, the D×D covariance is never formed: the leading k directions come from the eigenvectors
        of the n×n Gram matrix of the centred samples (v = cᵀu/√((n−1)λ); about 5× faster than their SVD at n = 4096,
        D = 12288, the same directions to 1e-14), and the rest variance is the remaining share of the total
        variance. Directions of zero variance (fewer distinct samples than k) are left to the rest."""
        x = torch.as_tensor(x)
        if x.ndim < 2 or x.shape[0] < 2:
            raise NoisecraftError(f"from_samples needs a batch of at least 2 samples (n, ...), got {tuple(x.shape)}")
        shape = tuple(x.shape[1:])
        xf = x.reshape(x.shape[0], -1).to(torch.float64).cpu()  # (n, D)
        n, D = xf.shape
        mean = xf.mean(0)
        if rank is None or rank >= D:
            c = xf - mean
            return cls.from_covariance(mean, c.T @ c / (n - 1), shape)
        c = xf - mean
        if n <= D:  # the Gram matrix is the smaller one: (n, n)
            ev, u = torch.linalg.eigh(c @ c.T)  # ascending
            lam = ev.flip(0) / (n - 1)  # (n,) the nonzero eigenvalues of the covariance, descending
            k = min(int(rank), int((lam > 1e-12 * lam[0].clamp_min(1e-300)).sum()))
            if k == 0:  # all samples equal: no direction has variance
                return cls(mean, lam[:0].contiguous(), c.new_zeros(D, 0), 0.0, shape)
            vecs = (c.T @ u.flip(1)[:, :k]) / ev.flip(0)[:k].sqrt()  # (D, k) orthonormal directions
        else:
            ev, vecs = torch.linalg.eigh(c.T @ c / (n - 1))
            lam, vecs = ev.flip(0), vecs.flip(1)
            k = min(int(rank), D)
            vecs = vecs[:, :k]
        total = float(c.pow(2).sum()) / (n - 1)
        rest = max(total - float(lam[:k].sum()), 0.0) / max(D - k, 1)
        return cls(mean, lam[:k].contiguous(), vecs.contiguous(), rest, shape)

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dt = x.dtype if x.dtype.is_floating_point else torch.float64
        return (
            self.mean.to(device=x.device, dtype=dt),
            self.eigvals.to(device=x.device, dtype=dt),
            self.eigvecs.to(device=x.device, dtype=dt),
        )

    def linear(self, y: Tensor, gains: Tensor, rest_gain: float | Tensor) -> Tensor:
        """f(Σ)·y for a function f of the variance given by its values: U diag(gains) Uᵀ y + rest_gain·(I − UUᵀ) y.

        y (B, *shape); gains (k,) or (B, k); rest_gain a number or (B, 1). Runs in y's dtype on y's device."""
        _, _, U = self._parts(y)
        c = y.reshape(y.shape[0], -1)  # (B, D)
        if torch.is_tensor(rest_gain):
            rest_gain = rest_gain.to(device=y.device, dtype=c.dtype)
        gains = gains.to(device=y.device, dtype=c.dtype)
        out = rest_gain * c + ((c @ U) * (gains - rest_gain)) @ U.T  # (B, D)
        return out.reshape(y.shape)

    def _apply(self, x: Tensor, gains: Tensor, rest_gain: Tensor) -> Tensor:
        """μ + f(Σ)(x − μ) (``linear``)."""
        mu, _, _ = self._parts(x)
        c = x.reshape(x.shape[0], -1) - mu  # (B, D)
        return (mu + self.linear(c, gains, rest_gain)).reshape(x.shape)

    def denoise(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The Gaussian denoiser D_G(x; σ) = μ + Σ(Σ + σ²I)^{-1}(x − μ), x (B, *shape), σ scalar or (B,)."""
        _, lam, _ = self._parts(x)
        s2 = batch_sigma(sigma, x).to(device=x.device, dtype=lam.dtype)[:, None] ** 2  # (B, 1)
        return self._apply(x, lam / (lam + s2), self.rest / (self.rest + s2))

    def flow(self, x: Tensor, sigma: float, sigma_next: float) -> Tensor:
        """The exact probability-flow ODE map of N(μ, Σ) from level σ to σ' (VE state x = x0 + σε), x (B, *shape).

        x' = μ + U diag(√((λ + σ'²)/(λ + σ²))) Uᵀ (x − μ) (+ the same for the rest variance). σ' = 0 is allowed
        (a direction of zero variance then collapses onto the mean)."""
        sigma, sigma_next = float(sigma), float(sigma_next)
        if not (sigma > 0 and 0 <= sigma_next <= sigma) or not math.isfinite(sigma):
            raise NoisecraftError(f"flow goes down from σ > 0 to 0 ≤ σ' ≤ σ, got σ={sigma}, σ'={sigma_next}")
        _, lam, _ = self._parts(x)
        gains = ((lam + sigma_next**2) / (lam + sigma**2)).sqrt().expand(x.shape[0], -1)  # (B, k)
        r = math.sqrt((self.rest + sigma_next**2) / (self.rest + sigma**2))
        return self._apply(x, gains, torch.full((x.shape[0], 1), r, dtype=lam.dtype, device=x.device))

    def to_dict(self) -> dict:
        """JSON-ready form (lists of floats), e.g. to save beside a checkpoint."""
        return {
            "mean": self.mean.tolist(),
            "eigvals": self.eigvals.tolist(),
            "eigvecs": self.eigvecs.tolist(),
            "rest": self.rest,
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict) -> GaussianStart:
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return cls(
            t(d["mean"]), t(d["eigvals"]), t(d["eigvecs"]).reshape(len(d["mean"]), -1), d["rest"], tuple(d["shape"])
        )
