"""Solver weights fitted to one model (sampling/solver_fit.py, sampler "fitted_ms").

Oracles: Gaussian data, where the best one-step weight is known in closed form, and a Gaussian mixture with
its exact denoiser, judged on start noise the fit never saw against the exact PF-ODE solution.
"""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.solver_fit import base_coefficients, fit_solver, load_solvers, save_solvers
from noisecraft.sampling.steps import step_sigmas


def blobs(dim: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.01 + 0.2 * torch.rand(8, dim, generator=g, dtype=torch.float64))


def exact(gm, x, sigma_max):
    ends = torch.tensor([sigma_max, 1e-4], dtype=torch.float64)
    return gm(get_sampler("adaptive")(gm, x, ends, rtol=1e-8, atol=1e-8, method="dopri5"), torch.tensor(1e-4))


@pytest.mark.parametrize(
    ("sampler", "knobs"),
    [
        ("ddim", {}),
        ("dpmpp_2m", {}),
        ("dpmpp_3m", {}),
        ("unipc", {}),
        ("unipc", {"order": 3}),
        ("unipc", {"order": 3, "variant": "bh1"}),
    ],
)
def test_base_weights_reproduce_the_sampler(sampler, knobs):
    gm = blobs(4, 0)
    sig = step_sigmas(make_schedule("edm"), 7, "karras")
    x = 80.0 * torch.randn(64, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a, b = base_coefficients(sampler, sig, knobs)
    want = get_sampler(sampler)(gm, x, sig, **knobs)
    got = get_sampler("fitted_ms")(gm, x, sig, a=a, b=b)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)
    assert torch.allclose(a, sig[1:] / sig[:-1])  # the state weight is σ'/σ, the step into 0 has none


def test_samplers_that_are_not_linear_multistep_maps_are_refused():
    sig = step_sigmas(make_schedule("edm"), 4, "karras")
    with pytest.raises(NoisecraftError, match="calls"):
        base_coefficients("heun", sig)
    gm = blobs(4, 0)
    stats = GaussianStart.from_samples(gm.sample(512, torch.Generator().manual_seed(1))[0])
    with pytest.raises(NoisecraftError, match="not a linear multistep"):  # per-direction weights
        fit_solver(gm, make_schedule("edm"), sig, shape=(4,), base="gauss_pc", knobs={"stats": stats}, n=8, n_val=8)


def test_gaussian_data_one_step_weight_is_the_exact_one():
    """Gaussian data N(0, s²I), list [σ, 0] after the exact analytic start: x_out = b·D(x) = b·s²/(s²+σ²)·x and
    the PF-ODE ends at s/√(s²+σ²)·x, so the exact weight is b* = √(s²+σ²)/s (DDIM's b = 1 is far off)."""
    s, sigma, dim = 0.5, 2.0, 4
    gd = GaussianData(torch.zeros(dim), s**2 * torch.eye(dim))
    stats = GaussianStart.from_covariance(torch.zeros(dim), s**2 * torch.eye(dim))
    sig = torch.tensor([sigma, 0.0], dtype=torch.float64)
    sol = fit_solver(
        gd, make_schedule("edm"), sig, shape=(dim,), base="ddim", start=stats, n=64, n_val=64, sweeps=30, step=0.5
    )
    b_star = math.sqrt(s**2 + sigma**2) / s
    assert sol.chosen == "fitted"
    assert abs(float(sol.b[0, 0]) - b_star) < 0.02, (float(sol.b[0, 0]), b_star)
    assert sol.validation["fitted"] < 0.02 * sol.validation["base"]


def _mixture_fit(z: float):
    gm, sch = blobs(8, 4), make_schedule("edm")
    sig = step_sigmas(sch, 5, "powerlog")
    return gm, sch, sig, fit_solver(gm, sch, sig, shape=(8,), base="dpmpp_2m", n=256, n_val=256, seed=5, z=z)


def test_fitted_weights_lower_the_error_on_fresh_noise(tmp_path):
    gm, sch, sig, sol = _mixture_fit(z=2.0)
    assert sol.calibration["fitted"] < 0.6 * sol.calibration["base"]
    assert sol.chosen == "fitted" and sol.z < -2.0
    x = sch.sigma_max * torch.randn(512, 8, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    ref = exact(gm, x, sch.sigma_max)
    base = float((get_sampler("dpmpp_2m")(gm, x, sig) - ref).pow(2).mean().sqrt())
    fitted = float((sol.sample(gm, x) - ref).pow(2).mean().sqrt())
    assert fitted < 0.6 * base, (fitted, base)  # measured 0.062 against 0.137
    save_solvers(tmp_path, {5: sol})  # saved beside a schedule and loaded: the same sampler
    back = load_solvers(tmp_path)[5]
    assert back.chosen == "fitted" and torch.equal(back.sample(gm, x), sol.sample(gm, x))
    with pytest.raises(NoisecraftError, match="no fitted solver"):
        load_solvers(tmp_path / "elsewhere")


def test_validation_rule_keeps_the_base_when_the_win_is_not_significant():
    """The same fit with a margin no win can pass: the base sampler's own weights, the same output."""
    gm, sch, sig, sol = _mixture_fit(z=1e9)
    assert sol.chosen == "base" and sol.validation["fitted"] < sol.validation["base"]
    x = sch.sigma_max * torch.randn(64, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.allclose(sol.sample(gm, x), get_sampler("dpmpp_2m")(gm, x, sig), rtol=1e-9, atol=1e-9)


def test_bad_inputs_get_clear_errors():
    gm, sch = blobs(4, 0), make_schedule("edm")
    with pytest.raises(NoisecraftError, match="ending at 0"):
        fit_solver(gm, sch, torch.tensor([80.0, 1.0]), shape=(4,), n=8, n_val=8)
    with pytest.raises(NoisecraftError, match="GaussianStart"):
        fit_solver(gm, sch, torch.tensor([5.0, 1.0, 0.0]), shape=(4,), n=8, n_val=8)
    with pytest.raises(NoisecraftError, match="needs a"):
        get_sampler("fitted_ms")(gm, torch.zeros(2, 4), torch.tensor([80.0, 0.0]), a=torch.ones(3), b=torch.ones(3, 1))


def test_documented_use(tmp_path):
    """docs/samplers.md: fit_steps on a large calibration batch with the analytic start, fit_solver on its list,
    sample, save and load; at a small size (8-D mixture under DDPM cosine, 6 calls). On fresh noise the kept
    solver is no worse than the fitted list with its base sampler."""
    from noisecraft.sampling.fit import fit_steps

    gm, sch = blobs(8, 2), make_schedule("cosine")
    stats = GaussianStart.from_samples(gm.sample(2048, torch.Generator().manual_seed(5))[0])
    knobs = {"order": 3}
    fit = fit_steps(gm, sch, (6,), shape=(8,), sampler="unipc", knobs=knobs, n=256, n_val=256, start=stats, sweeps=2)
    sol = fit_solver(gm, sch, fit.sigmas[6], shape=(8,), base="unipc", knobs=knobs, start=stats, n=256, n_val=256)
    save_solvers(tmp_path, {6: sol})
    eps = torch.randn(512, 8, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    ref = exact(gm, sch.sigma_max * eps, sch.sigma_max)
    out = load_solvers(tmp_path)[6].sample(gm, sch.sigma_max * eps, stats)
    base = get_sampler("unipc")(gm, fit.start_state(sch.sigma_max * eps, 6, stats), fit.sigmas[6], **knobs)
    rms = lambda v: float((v - ref).pow(2).mean().sqrt())  # noqa: E731
    assert rms(out) <= 1.05 * rms(base), (sol.chosen, rms(out), rms(base))
    assert rms(out) < 0.2  # a sensible sample: the mixture's scale is about 0.6
