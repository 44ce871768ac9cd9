"""Sample-quality metrics between generated samples and a reference set, in a feature space.

- Fréchet distance (Heusel et al. 2017, "FID" when the features are InceptionV3's pool3):
  FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁^{½} Σ₂ Σ₁^{½})^{½}), in float64, with the matrix square root taken
  through symmetric eigendecompositions so that near-singular covariances (fewer samples than features)
  stay finite and real.
- Kernel inception distance (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(a, b) = (aᵀb/d + 1)³, averaged over random subsets; reported as mean and standard deviation.
- Improved precision and recall (Kynkäänniemi et al. 2019): a sample is "precise" when it falls inside the
  real manifold (the union of k-NN balls around real features), and a real point is "recalled" when it
  falls inside the generated manifold.

Every function takes features (N, d) (torch or numpy); ``QualityReport`` carries the numbers together with
the protocol that produced them (see ``evaluation.protocol``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError


def _as64(feats: Tensor | np.ndarray, name: str) -> Tensor:
    f = torch.as_tensor(np.asarray(feats) if not isinstance(feats, Tensor) else feats).detach().cpu().double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise NoisecraftError(f"{name} must be features of shape (N, d) with N ≥ 2, got {tuple(f.shape)}")
    if not torch.isfinite(f).all():
        raise NoisecraftError(f"{name} contains NaN or inf features; check the samples")
    return f


# ----------------------------------------------------------------------------------------------------------
# Fréchet distance
def gaussian_stats(feats: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), float64."""
    f = _as64(feats, "features")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def _sqrt_psd(a: Tensor) -> Tensor:
    """Symmetric square root of a positive semi-definite matrix (eigenvalues clamped at 0)."""
    lam, u = torch.linalg.eigh(0.5 * (a + a.T))
    return (u * lam.clamp(min=0).sqrt()) @ u.T


def frechet_distance_from_stats(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64.

    tr((Σ₁^{½}Σ₂Σ₁^{½})^{½}) is computed from the eigenvalues of the symmetric PSD matrix Σ₁^{½}Σ₂Σ₁^{½}, which
    equal those of Σ₁Σ₂; unlike scipy.linalg.sqrtm(Σ₁Σ₂) this never returns complex parts or NaN for
    rank-deficient covariances.
    """
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    cov1, cov2 = torch.as_tensor(cov1).double(), torch.as_tensor(cov2).double()
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise NoisecraftError(f"feature dimensions differ: {tuple(mu1.shape)} vs {tuple(mu2.shape)}")
    r1 = _sqrt_psd(cov1)
    m = r1 @ cov2 @ r1
    tr_cross = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * tr_cross
    return float(fd.clamp(min=0))


def frechet_distance(feats1: Tensor | np.ndarray, feats2: Tensor | np.ndarray) -> float:
    """FD between two feature sets (N₁, d) and (N₂, d); 0 for a set with itself."""
    return frechet_distance_from_stats(*gaussian_stats(feats1), *gaussian_stats(feats2))


def frechet_distance_ci(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, level: float = 0.95, boots: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of the FD over the generated samples: (low, high) at `level`.

    The generated set is resampled with replacement `boots` times (the reference set stays fixed: it is the
    same for every model compared against it), and the interval is FD ± z·sd of the resampled FDs (the normal
    bootstrap interval, Efron & Tibshirani 1993, Sec. 13.2). It measures how much the number moves with the
    luck of which samples were drawn: two FDs (same sample count, same reference) whose intervals do not
    overlap are told apart. FD itself is biased upward by O(1/N) (a resampled set's duplicates shift the
    resampled FDs further up, which is why the percentile interval would not contain FD), so FDs measured with
    different sample counts are not comparable at all.
    """
    r, f = _as64(real, "real"), _as64(fake, "fake")
    mu_r, cov_r = gaussian_stats(r)
    root = _sqrt_psd(cov_r)
    fd = frechet_distance_from_stats(mu_r, cov_r, *gaussian_stats(f))
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(boots):
        mu_f, cov_f = gaussian_stats(f[torch.randint(len(f), (len(f),), generator=g)])
        m = root @ cov_f @ root
        cross = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp(min=0).sqrt().sum()
        vals.append(float((mu_r - mu_f).pow(2).sum() + cov_r.trace() + cov_f.trace() - 2 * cross))
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)  # 1.96 for 95 %
    half = z * float(torch.tensor(vals, dtype=torch.float64).std())
    return max(0.0, fd - half), fd + half


# ----------------------------------------------------------------------------------------------------------
# Kernel inception distance
def _poly_mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD² with k(a, b) = (aᵀb/d + 1)³ (Bińkowski et al. 2018, Eq. 2 of the KID definition)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2 * kxy.mean()


def kernel_distance(
    feats1: Tensor | np.ndarray,
    feats2: Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: (mean, std) of the unbiased polynomial-kernel MMD² over `subsets` random subsets of each set.

    The subset size is capped at the smaller set size. Unbiased: its expectation is 0 when both sets come
    from the same distribution, so small negative values are expected.
    """
    x, y = _as64(feats1, "feats1"), _as64(feats2, "feats2")
    if x.shape[1] != y.shape[1]:
        raise NoisecraftError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(subset_size, len(x), len(y))
    g = torch.Generator().manual_seed(seed)
    vals = torch.stack(
        [
            _poly_mmd2_unbiased(
                x[torch.randperm(len(x), generator=g)[:size]], y[torch.randperm(len(y), generator=g)[:size]]
            )
            for _ in range(subsets)
        ]
    )
    return float(vals.mean()), float(vals.std()) if subsets > 1 else 0.0


# ----------------------------------------------------------------------------------------------------------
# Precision and recall
def _knn_radii(f: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded), (N,)."""
    if k >= len(f):
        raise NoisecraftError(f"k ({k}) must be smaller than the number of points ({len(f)})")
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def _inside(query: Tensor, support: Tensor, radii: Tensor, chunk: int = 2048) -> Tensor:
    """For each query row: is it within radii[j] of some support point j? (M,) bool."""
    out = []
    for q in query.split(chunk):
        out.append((torch.cdist(q, support) <= radii[None, :]).any(1))
    return torch.cat(out)


def precision_recall(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds (k = 3 as in the paper).

    precision = fraction of fake samples inside the real manifold; recall = fraction of real samples inside
    the fake manifold.
    """
    r, f = _as64(real, "real"), _as64(fake, "fake")
    precision = _inside(f, r, _knn_radii(r, k)).double().mean()
    recall = _inside(r, f, _knn_radii(f, k)).double().mean()
    return float(precision), float(recall)


# ----------------------------------------------------------------------------------------------------------
@dataclass
class QualityScores:
    """FD (with its 95 % bootstrap interval over the samples), KID (mean, std), precision and recall."""

    fd: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    fd_low: float | None = None  # 95 % bootstrap interval of fd (frechet_distance_ci)
    fd_high: float | None = None

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def quality_scores(
    real: Tensor | np.ndarray,
    fake: Tensor | np.ndarray,
    k: int = 3,
    kid_subsets: int = 50,
    seed: int = 0,
    fd_boots: int = 200,
) -> QualityScores:
    """All sample-quality numbers between real (reference) and fake (generated) features; `fd_boots` = 0
    skips the FD interval."""
    fd = frechet_distance(real, fake)
    kid_m, kid_s = kernel_distance(real, fake, subsets=kid_subsets, subset_size=1000, seed=seed)
    p, r = precision_recall(real, fake, k=k)
    lo, hi = frechet_distance_ci(real, fake, boots=fd_boots, seed=seed) if fd_boots else (None, None)
    return QualityScores(fd, kid_m, kid_s, p, r, lo, hi)
