"""The gauss_pc sampler (sampling/gauss_pc.py): the Gaussian part of the denoiser integrated exactly.

Oracles: on Gaussian data with its own statistics the residual is zero and any σ list, however coarse, gives the
exact PF-ODE solution (adaptive Dormand–Prince on the exact denoiser); without statistics its second step is
k-diffusion's DPM-Solver++(3M) second step (dpmpp_3m compat="k-diffusion", an independent implementation); on a
mixture it converges to the ODE solution at order 3 (predictor 2 + corrector), with or without statistics.
"""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.registry import get_sampler

S_MAX, S_MIN = 80.0, 0.05


def gaussian(dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(-2, 0.5, dim, dtype=torch.float64)
    return torch.randn(dim, generator=g, dtype=torch.float64), q @ torch.diag(lam) @ q.T


def ode(denoiser, x, s0, s1):
    ends = torch.tensor([s0, s1], dtype=torch.float64)
    return get_sampler("adaptive")(denoiser, x, ends, rtol=1e-11, atol=1e-11, method="dopri5")


def test_exact_on_gaussian_data_with_its_statistics_in_three_steps():
    mean, cov = gaussian()
    data, stats = GaussianData(mean, cov), GaussianStart.from_covariance(mean, cov)
    x = S_MAX * torch.randn(32, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sig = torch.tensor([S_MAX, 2.0, 0.3, S_MIN], dtype=torch.float64)
    ref = ode(data, x, S_MAX, S_MIN)
    out = get_sampler("gauss_pc")(data, x, sig, stats=stats)
    assert (out - ref).abs().max() < 1e-7
    # the check can fail: the same three steps without the statistics are far off
    assert (get_sampler("gauss_pc")(data, x, sig) - ref).abs().max() > 1e-2
    with_zero = get_sampler("gauss_pc")(data, x, torch.cat([sig, sig.new_zeros(1)]), stats=stats)
    assert (with_zero - data(ref, torch.tensor(S_MIN))).abs().max() < 1e-7  # the step to 0: the denoised estimate


def test_without_statistics_its_second_step_is_k_diffusions_dpmpp_3m():
    g = torch.Generator().manual_seed(2)
    gm = GaussianMixture(torch.randn(3, 4, generator=g, dtype=torch.float64), 0.2)
    x = 10.0 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    sig = torch.tensor([10.0, 2.0, 0.4, 0.0], dtype=torch.float64)
    ours = get_sampler("gauss_pc")(gm, x, sig, order=2, corrector=False, lower_order_final=False)
    theirs = get_sampler("dpmpp_3m")(gm, x, sig, compat="k-diffusion")
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    other = get_sampler("dpmpp_3m")(gm, x, sig, compat="diffusers")  # the −(e^{−h}−1)/2 weight differs
    assert (ours - other).abs().max() > 1e-4


@pytest.mark.parametrize("with_stats", [False, True])
def test_converges_at_order_three_on_a_mixture(with_stats):
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture(torch.randn(3, 4, generator=g, dtype=torch.float64), 0.1 + 0.4 * torch.rand(3, 4, generator=g))
    stats = GaussianStart.from_covariance(gm.mean(), gm.covariance()) if with_stats else None
    x = S_MAX * torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = ode(gm, x, S_MAX, S_MIN)
    errs = []
    for n in (16, 32, 64):
        sig = torch.logspace(math.log10(S_MAX), math.log10(S_MIN), n + 1, dtype=torch.float64)
        out = get_sampler("gauss_pc")(gm, x, sig, stats=stats, lower_order_final=False)
        errs.append(float((out - ref).norm()))
    slope = sum(math.log2(errs[i] / errs[i + 1]) for i in range(2)) / 2
    assert slope > 2.6, (slope, errs)


def test_float32_input_and_image_shapes():
    mean, cov = gaussian(dim=16, seed=3)
    data = GaussianData(mean, cov, shape=(1, 4, 4))
    stats = GaussianStart.from_samples(data.sample(4096, torch.Generator().manual_seed(4))[0])
    x = (S_MAX * torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(5))).float()
    sig = torch.tensor([S_MAX, 5.0, 1.0, 0.2, 0.0], dtype=torch.float64)
    out = get_sampler("gauss_pc")(lambda z, s: data(z.double(), s).float(), x, sig, stats=stats)
    assert out.dtype == torch.float32 and out.shape == (4, 1, 4, 4) and torch.isfinite(out).all()


def test_bad_knobs_are_clear_errors():
    mean, cov = gaussian()
    data = GaussianData(mean, cov)
    x = torch.zeros(2, 6, dtype=torch.float64)
    sig = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(NoisecraftError, match="order must be"):
        get_sampler("gauss_pc")(data, x, sig, order=4)
    with pytest.raises(NoisecraftError, match="stats are for 4 values"):
        get_sampler("gauss_pc")(data, x, sig, stats=GaussianStart.from_covariance(mean[:4], cov[:4, :4]))


def test_fitted_with_the_analytic_start_it_beats_unipc_on_fresh_noise():
    """The documented use (docs/samplers.md): statistics from data samples, fit_steps for gauss_pc with the start,
    then the jump and the sampler. A 16-D mixture under DDPM cosine (σ_max ≈ 4096) at 5 calls: on fresh noise it
    beats UniPC-2 and UniPC-3 with every named spacing by far."""
    from noisecraft.core.schedules import make_schedule
    from noisecraft.sampling.fit import fit_steps
    from noisecraft.sampling.steps import step_sigmas

    g = torch.Generator().manual_seed(1)
    gm = GaussianMixture(0.6 * torch.randn(10, 16, generator=g, dtype=torch.float64),
                         0.01 + 0.2 * torch.rand(10, 16, generator=g, dtype=torch.float64))  # fmt: skip
    sch = make_schedule("cosine")
    stats = GaussianStart.from_samples(gm.sample(4096, torch.Generator().manual_seed(5))[0])
    fit = fit_steps(gm, sch, (5,), shape=(16,), sampler="gauss_pc", knobs={"stats": stats}, n=64, n_val=256,
                    dtype=torch.float64, sweeps=2, start=stats)  # fmt: skip
    x = sch.sigma_max * torch.randn(512, 16, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    ref = gm(ode(gm, x, sch.sigma_max, 1e-4), torch.tensor(1e-4))
    ours = get_sampler("gauss_pc")(gm, fit.start_state(x, 5, stats), fit.sigmas[5], stats=stats)
    err = float((ours - ref).pow(2).mean().sqrt())
    theirs = {}
    for order in (2, 3):
        for name in ("default", "powerlog", "logsnr"):
            s = step_sigmas(sch, 5, name)
            out = get_sampler("unipc")(gm, x, s, order=order)
            theirs[f"unipc{order}/{name}"] = float((out - ref).pow(2).mean().sqrt())
    assert fit.skips(5), fit.chosen
    assert err < 0.75 * min(theirs.values()), (err, theirs)
