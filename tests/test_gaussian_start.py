"""The analytic first step (sampling/gaussian_start.py) and fitted lists that use it (fit_steps(start=...)).

Oracles: for Gaussian data N(μ, Σ) the closed-form flow must equal the probability-flow ODE solution computed by
the adaptive Dormand–Prince solver on the exact denoiser (core/oracles.GaussianData), an independent route; the
Gaussian denoiser must equal the oracle's. The fit with a start is judged on fresh noise against the exact
mixture PF-ODE, and a wrong start must never be kept (the validation fall-back).
"""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.fit import fit_steps
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.steps import step_sigmas


def gaussian(dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean and a full covariance with spread-out eigenvalues (one of them 0: a degenerate direction)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(-2, 0.5, dim, dtype=torch.float64)
    lam[0] = 0.0
    return torch.randn(dim, generator=g, dtype=torch.float64), q @ torch.diag(lam) @ q.T


def ode(denoiser, x, s0, s1):
    """Reference PF-ODE solution from level s0 to s1 > 0 (adaptive Dormand–Prince, tight tolerances)."""
    ends = torch.tensor([s0, s1], dtype=torch.float64)
    return get_sampler("adaptive")(denoiser, x, ends, rtol=1e-10, atol=1e-10, method="dopri5")


@pytest.mark.parametrize(("s0", "s1"), [(80.0, 0.5), (157.0, 3.0), (2.0, 0.05)])
def test_flow_equals_the_exact_ode_solution_for_gaussian_data(s0, s1):
    mean, cov = gaussian()
    start = GaussianStart.from_covariance(mean, cov)
    x = mean + s0 * torch.randn(64, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = ode(GaussianData(mean, cov), x, s0, s1)
    out = start.flow(x, s0, s1)
    assert (out - ref).abs().max() < 1e-7 * (1 + ref.abs().max())
    # the check can fail: a map that ignores the covariance (the DDIM step with D = μ) is far off
    ddim = mean + (s1 / s0) * (x - mean)
    assert (ddim - ref).abs().max() > 0.1


def test_flow_to_zero_is_the_exact_sample_with_no_network_call():
    mean, cov = gaussian(seed=2)
    data = GaussianData(mean, cov)
    x = 100.0 * torch.randn(32, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = data(ode(data, x, 100.0, 1e-4), torch.tensor(1e-4))  # the last step: one exact denoising call
    assert (GaussianStart.from_covariance(mean, cov).flow(x, 100.0, 0.0) - ref).abs().max() < 1e-6


def test_flow_composes_and_denoise_matches_the_oracle():
    mean, cov = gaussian(seed=4)
    start = GaussianStart.from_covariance(mean, cov)
    x = 20.0 * torch.randn(16, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    two = start.flow(start.flow(x, 20.0, 3.0), 3.0, 0.2)
    assert torch.allclose(two, start.flow(x, 20.0, 0.2), atol=1e-12)
    assert torch.allclose(start.flow(x, 3.0, 3.0), x, atol=1e-12)
    sigma = torch.tensor([0.1, 1.0, 10.0, 100.0] * 4, dtype=torch.float64)  # per-sample σ
    assert torch.allclose(start.denoise(x, sigma), GaussianData(mean, cov)(x, sigma), atol=1e-12)


def test_low_rank_start_is_exact_when_the_remaining_variances_are_equal():
    g = torch.Generator().manual_seed(6)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    lam = torch.tensor([3.0, 1.0, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2], dtype=torch.float64)
    cov, mean = q @ torch.diag(lam) @ q.T, torch.zeros(8, dtype=torch.float64)
    full, low = GaussianStart.from_covariance(mean, cov), GaussianStart.from_covariance(mean, cov, rank=3)
    assert low.eigvecs.shape == (8, 3) and low.rest == pytest.approx(0.2)
    x = 50.0 * torch.randn(10, 8, generator=g, dtype=torch.float64)
    assert torch.allclose(low.flow(x, 50.0, 0.3), full.flow(x, 50.0, 0.3), atol=1e-10)
    assert low.scale == pytest.approx(full.scale) and full.scale == pytest.approx(math.sqrt(float(lam.mean())))


def test_from_samples_estimates_the_statistics_and_keeps_the_sample_shape():
    mean, cov = gaussian(dim=16, seed=7)
    data = GaussianData(mean, cov, shape=(1, 4, 4))
    x, _ = data.sample(20000, torch.Generator().manual_seed(8))
    start = GaussianStart.from_samples(x)
    assert start.shape == (1, 4, 4)
    assert torch.allclose(start.mean, mean, atol=0.05)
    est = start.eigvecs @ torch.diag(start.eigvals) @ start.eigvecs.T
    assert (est - cov).abs().max() < 0.1
    low = GaussianStart.from_samples(x, rank=4)  # n > D: the covariance route
    ref = GaussianStart.from_covariance(start.mean, est, rank=4)
    assert torch.allclose(low.eigvals, ref.eigvals, rtol=1e-8) and low.rest == pytest.approx(ref.rest, rel=1e-8)
    z = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert start.flow(80.0 * z, 80.0, 2.0).shape == (5, 1, 4, 4)
    again = GaussianStart.from_dict(start.to_dict())
    assert torch.allclose(again.flow(80.0 * z, 80.0, 2.0), start.flow(80.0 * z, 80.0, 2.0), atol=1e-12)


def test_flow_keeps_the_input_dtype_and_device():
    mean, cov = gaussian()
    start = GaussianStart.from_covariance(mean, cov)
    x = torch.randn(4, 6, dtype=torch.float32)
    assert start.flow(x, 10.0, 1.0).dtype == torch.float32
    meta = torch.empty(4, 6, device="meta")  # no tensor is made on the CPU behind the input's back
    assert start.flow(meta, 10.0, 1.0).device.type == "meta"
    assert start.denoise(meta, 1.0).device.type == "meta"


def test_bad_input_is_a_clear_error():
    mean, cov = gaussian()
    with pytest.raises(NoisecraftError, match="covariance must be"):
        GaussianStart.from_covariance(mean, cov[:5, :5])
    with pytest.raises(NoisecraftError, match="at least 2 samples"):
        GaussianStart.from_samples(torch.zeros(1, 6))
    with pytest.raises(NoisecraftError, match="flow goes down"):
        GaussianStart.from_covariance(mean, cov).flow(torch.zeros(2, 6), 1.0, 2.0)


def blobs(dim: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(10, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.01 + 0.2 * torch.rand(10, dim, generator=g, dtype=torch.float64))


def fresh_error(gm, sch, fit, start, n_steps, dim, knobs, n=1024):
    """RMS error on fresh noise (seed 99, not the fit's) against the exact mixture PF-ODE from σ_max."""
    x = sch.sigma_max * torch.randn(n, dim, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    ends = torch.tensor([sch.sigma_max, 1e-4], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends, rtol=1e-8, atol=1e-8, method="dopri5"), torch.tensor(1e-4))
    fn = get_sampler("unipc")
    errs = {
        "fit": float(
            (fn(gm, fit.start_state(x, n_steps, start), fit.sigmas[n_steps], **knobs) - ref).pow(2).mean().sqrt()
        )
    }
    for name in ("default", "powerlog", "logsnr", "karras"):
        s = step_sigmas(sch, n_steps, name)
        errs[name] = float((fn(gm, x, s, **knobs) - ref).pow(2).mean().sqrt())
    return errs


def test_fit_with_the_analytic_start_skips_and_wins_on_fresh_noise():
    """A 16-D mixture under DDPM linear (σ_max ≈ 157), UniPC-2 at 5 calls; statistics from 4096 data samples. The
    fit keeps a list that starts with the analytic jump, and on fresh noise it beats every named spacing by far
    and the fit without the start."""
    gm, sch, knobs = blobs(16, 3), make_schedule("linear"), {}
    start = GaussianStart.from_samples(gm.sample(4096, torch.Generator().manual_seed(11))[0])
    kw = dict(shape=(16,), sampler="unipc", knobs=knobs, n=96, n_val=384, dtype=torch.float64, sweeps=3)
    fit = fit_steps(gm, sch, (5,), start=start, **kw)
    plain = fit_steps(gm, sch, (5,), **kw)
    assert fit.chosen[5].startswith("gauss-") and fit.skips(5), (fit.chosen, fit.validation)
    s = fit.sigmas[5]
    assert s.shape == (6,) and s[-1] == 0 and (s[1:] < s[:-1]).all() and float(s[0]) < sch.sigma_max
    errs = fresh_error(gm, sch, fit, start, 5, 16, knobs)
    errs["plain fit"] = fresh_error(gm, sch, plain, None, 5, 16, knobs)["fit"]
    assert errs["fit"] < 0.7 * min(v for k, v in errs.items() if k not in ("fit", "plain fit")), errs
    assert errs["fit"] < 0.9 * errs["plain fit"], errs
    with pytest.raises(NoisecraftError, match="GaussianStart"):
        fit.start_state(torch.zeros(2, 16), 5)


def test_a_wrong_start_is_never_kept():
    """Statistics of other data (mean shifted by 3, 1/10 of the spread): every skipping list is far off on the
    calibration and validation paths, so the fit falls back to a list that starts at σ_max."""
    gm, sch = blobs(8, 4), make_schedule("scaled_linear")
    x, _ = gm.sample(2048, torch.Generator().manual_seed(12))
    wrong = GaussianStart.from_samples(3.0 + 0.1 * x)
    fit = fit_steps(gm, sch, (5,), shape=(8,), sampler="unipc", n=64, n_val=256, dtype=torch.float64, sweeps=2,
                    start=wrong)  # fmt: skip
    assert not fit.chosen[5].startswith("gauss-") and not fit.skips(5), fit.chosen
    assert fit.validation[5]["gauss-refined"] > 2 * fit.validation[5][fit.chosen[5]]
    x0 = torch.randn(3, 8, dtype=torch.float64)
    assert torch.equal(fit.start_state(x0, 5, wrong), x0)


def test_low_rank_statistics_from_fewer_samples_than_values_match_an_svd():
    """n < D (e.g. 4096 images of 128 px): the Gram-matrix route gives the SVD's leading variances and
    directions; directions of zero variance are left out; equal samples give none."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 300, generator=g, dtype=torch.float64)
    x = x + 0.01 * torch.randn(64, 300, generator=g, dtype=torch.float64)
    low = GaussianStart.from_samples(x.reshape(64, 3, 10, 10), rank=8)
    c = x - x.mean(0)
    _, s, vh = torch.linalg.svd(c, full_matrices=False)
    torch.testing.assert_close(low.eigvals, s[:8] ** 2 / 63, rtol=1e-10, atol=0)
    torch.testing.assert_close(low.eigvecs.T @ low.eigvecs, torch.eye(8, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(low.eigvecs @ low.eigvecs.T, vh[:8].T @ vh[:8], rtol=0, atol=1e-8)  # same subspace
    assert low.rest == pytest.approx(float((s[8:] ** 2).sum()) / 63 / (300 - 8), rel=1e-8)
    few = GaussianStart.from_samples(x[:5], rank=8)  # 5 samples: at most 4 directions with variance
    assert few.eigvals.shape == (4,) and few.rest == pytest.approx(0.0, abs=1e-12)
    same = GaussianStart.from_samples(x[:1].repeat(4, 1), rank=8)
    assert same.eigvals.numel() == 0 and same.rest == 0.0
