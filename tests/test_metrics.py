"""Sample-quality metrics against closed forms and constructed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisecraft.core.oracles import GaussianData
from noisecraft.errors import NoisecraftError
from noisecraft.evaluation.distances import mmd_rbf, sliced_wasserstein
from noisecraft.evaluation.metrics import (
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    precision_recall,
    quality_scores,
)


def _rand_cov(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_fd_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_for_known_gaussians():
    d = 6
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(-1, 1, d, dtype=torch.float64)
    c1, c2 = _rand_cov(d, 1), _rand_cov(d, 2)
    # Closed form with scipy's sqrtm (the standard FID formula) as an independent reference.
    scipy_linalg = pytest.importorskip("scipy.linalg")
    covmean = scipy_linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    ref = float(((mu1 - mu2) ** 2).sum()) + float(np.trace(c1.numpy() + c2.numpy() - 2 * covmean))
    assert frechet_distance_from_stats(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)
    # Commuting (diagonal) case: Σ(√a − √b)² + ‖Δμ‖².
    a, b = torch.rand(d, dtype=torch.float64) + 0.5, torch.rand(d, dtype=torch.float64) + 0.5
    want = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance_from_stats(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(want, rel=1e-10)


def test_fd_from_samples_converges_to_closed_form():
    d = 4
    p, q = GaussianData(torch.zeros(d), _rand_cov(d, 3)), GaussianData(torch.full((d,), 0.5), _rand_cov(d, 4))
    want = frechet_distance_from_stats(p.mean(), p.covariance(), q.mean(), q.covariance())
    x, _ = p.sample(20000, torch.Generator().manual_seed(0))
    y, _ = q.sample(20000, torch.Generator().manual_seed(1))
    assert frechet_distance(x, y) == pytest.approx(want, rel=0.05)


def test_fd_finite_for_rank_deficient_covariances():
    # fewer samples than features: both covariances are singular
    x = torch.randn(20, 64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(20, 64, generator=torch.Generator().manual_seed(1)) + 1.0
    fd = frechet_distance(x, y)
    assert math.isfinite(fd) and fd > 64 * 0.9  # the mean shift alone contributes 64


def test_kid_unbiased_for_same_distribution_and_positive_for_different():
    g = torch.Generator().manual_seed(0)
    means = []
    for _ in range(40):  # many small independent draws from one distribution
        x, y = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
        means.append(kernel_distance(x, y, subsets=1, subset_size=30)[0])
    m = torch.tensor(means)
    assert abs(float(m.mean())) < 3 * float(m.std()) / math.sqrt(len(m))
    # a biased (V-statistic) estimate would be clearly positive here; the shift is clearly detected
    kid_shift, _ = kernel_distance(
        torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g) + 0.5, subsets=10, subset_size=100
    )
    assert kid_shift > 10 * float(m.std()) / math.sqrt(len(m))


def test_precision_recall_constructed_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 2, generator=g)
    # fakes collapsed on a subset of the real support: precise, low recall
    collapsed = real[0] + 0.001 * torch.randn(40, 2, generator=g)  # mode collapse onto one real point
    p, r = precision_recall(real, collapsed, k=3)
    assert p == 1.0 and r < 0.01
    # fakes far away: neither
    p, r = precision_recall(real, real + 100.0, k=3)
    assert p == 0.0 and r == 0.0
    # half of the fakes far away: precision 1/2, recall 1
    half = torch.cat([real + 1e-6, real + 100.0])
    p, r = precision_recall(real, half, k=3)
    assert p == pytest.approx(0.5) and r == 1.0


def test_quality_scores_and_bad_input():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    s = quality_scores(x, x)
    assert s.fd == pytest.approx(0, abs=1e-9) and s.precision == 1.0 and s.recall == 1.0
    with pytest.raises(NoisecraftError, match="shape"):
        frechet_distance(torch.randn(10), torch.randn(10))
    with pytest.raises(NoisecraftError, match="NaN"):
        frechet_distance(torch.full((4, 2), float("nan")), x[:, :2])


def test_toy_distances_detect_difference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g)
    c = torch.randn(300, 2, generator=g) * 0.3 + 2
    assert mmd_rbf(a, c) > 20 * abs(mmd_rbf(a, b))
    assert sliced_wasserstein(a, c) > 5 * sliced_wasserstein(a, b)
