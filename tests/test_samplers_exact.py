"""Exactness against closed forms: with the exact Gaussian-mixture denoiser, deterministic samplers converge to
the probability-flow ODE solution at their stated order, and stochastic samplers reproduce the exact
distribution (moments and MMD against exact samples).

Reference solution: the adaptive Dormand–Prince 5(4) solver at rtol = atol = 1e-11.
"""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.evaluation.distances import mmd_rbf
from noisecraft.sampling.samplers import SAMPLER_SPECS, get_sampler

S_MAX, S_MIN = 80.0, 0.05


@pytest.fixture(scope="module")
def gm() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 4, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.1 + 0.4 * torch.rand(3, 4, generator=g, dtype=torch.float64))


@pytest.fixture(scope="module")
def ode_problem(gm):
    x = S_MAX * torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ends = torch.tensor([S_MAX, S_MIN], dtype=torch.float64)
    ref = get_sampler("adaptive")(gm, x, ends, rtol=1e-11, atol=1e-11, method="dopri5")
    return x, ref


def log_sigmas(n: int) -> torch.Tensor:
    return torch.logspace(math.log10(S_MAX), math.log10(S_MIN), n + 1, dtype=torch.float64)


def observed_order(gm, x, ref, name, knobs, ns=(16, 32, 64)) -> tuple[float, list[float]]:
    errs = [float((get_sampler(name)(gm, x, log_sigmas(n), **knobs) - ref).norm()) for n in ns]
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(ns) - 1)]
    return sum(slopes) / len(slopes), errs


# (sampler, knobs, expected global order). lower_order_final is off so that every step has the stated order.
ORDERS = [
    ("euler", {}, 1),
    ("ddim", {}, 1),
    ("heun", {}, 2),
    ("dpmpp_2m", {"lower_order_final": False}, 2),
    ("dpmpp_3m", {"lower_order_final": False}, 3),
    ("unipc", {"order": 2, "lower_order_final": False}, 3),  # UniP-2 + UniC: order 3
]


@pytest.mark.parametrize(("name", "knobs", "order"), ORDERS)
def test_step_halving_shows_the_order(gm, ode_problem, name, knobs, order):
    """Tolerance: the mean log2 error ratio over N = 16 → 32 → 64 is within 0.35 of the order."""
    x, ref = ode_problem
    slope, errs = observed_order(gm, x, ref, name, knobs)
    assert abs(slope - order) < 0.35, (slope, errs)
    assert errs[-1] < errs[0]


def test_dpmpp_3m_compat_weighting_is_only_second_order(gm, ode_problem):
    """diffusers'/k-diffusion's half weight on the second difference: the error is larger and the slope falls
    towards 2 (measured here at finer steps, where the lost third-order term dominates)."""
    x, ref = ode_problem
    knobs = {"lower_order_final": False}
    slope_compat, e_compat = observed_order(gm, x, ref, "dpmpp_3m", {**knobs, "compat": True}, ns=(32, 64, 128))
    slope_full, e_full = observed_order(gm, x, ref, "dpmpp_3m", knobs, ns=(32, 64, 128))
    assert slope_compat < 2.5 < slope_full
    assert e_full[-1] < 0.5 * e_compat[-1]


def test_unipc3_lower_order_final_keeps_the_order_on_a_list_ending_at_sigma_min(gm, ode_problem):
    """The lists here stop at σ_min > 0. With lower_order_final (the default) UniPC-3's last step is second order,
    so the global order stays ≥ 3; diffusers' counting (compat=True) makes it first order, whose O(h²) local
    error caps the global order at 2 (the negative control)."""
    x, ref = ode_problem
    ns = (32, 64, 128, 256)
    slope, errs = observed_order(gm, x, ref, "unipc", {"order": 3}, ns=ns)
    slope_compat, errs_compat = observed_order(gm, x, ref, "unipc", {"order": 3, "compat": True}, ns=ns)
    assert slope > 3 and abs(slope_compat - 2) < 0.35, (slope, slope_compat)
    assert errs[-1] < 0.1 * errs_compat[-1], (errs, errs_compat)


def test_deterministic_samplers_converge_to_the_ode_solution(gm, ode_problem):
    x, ref = ode_problem
    scale = float(ref.norm())
    for name, spec in SAMPLER_SPECS.items():
        if spec.deterministic and name != "adaptive":
            err = float((get_sampler(name)(gm, x, log_sigmas(256)) - ref).norm()) / scale
            assert err < (5e-3 if spec.order == 1 else 1e-4), (name, err)


def test_adaptive_meets_its_tolerance_and_reports_calls(gm, ode_problem):
    x, ref = ode_problem
    ends = torch.tensor([S_MAX, S_MIN], dtype=torch.float64)
    errs, nfes = [], []
    for tol in (1e-3, 1e-5):
        info: dict = {}
        out = get_sampler("adaptive")(gm, x, ends, rtol=tol, atol=tol, info=info)
        errs.append(float((out - ref).abs().max()))
        nfes.append(info["nfe"])
        assert info["steps"].shape == (16,) and (info["steps"] > 0).all()
    assert errs[1] < 1e-3 and errs[1] < errs[0] / 10
    assert nfes[1] > nfes[0]


def test_adaptive_final_denoise_into_zero(gm, ode_problem):
    x, ref = ode_problem
    out = get_sampler("adaptive")(gm, x, torch.tensor([S_MAX, S_MIN, 0.0]), rtol=1e-9, atol=1e-9, method="dopri5")
    assert torch.allclose(out, gm(ref, torch.tensor(S_MIN)), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Stochastic samplers reproduce the data distribution.
@pytest.fixture(scope="module")
def mix2d() -> GaussianMixture:
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.5], [0.0, -1.5]], dtype=torch.float64)
    return GaussianMixture(means, torch.tensor([0.1, 0.3, 0.05]), torch.tensor([0.5, 0.3, 0.2]))


N_SAMPLES = 1000


def _draw(mix2d, name, steps, knobs, seed=5):
    g = torch.Generator().manual_seed(seed)
    sigmas = torch.cat([torch.logspace(math.log10(20.0), math.log10(0.005), steps), torch.zeros(1)]).double()
    x = 20.0 * torch.randn(N_SAMPLES, 2, generator=g, dtype=torch.float64)
    return get_sampler(name)(mix2d, x, sigmas, generator=g, **knobs)


@pytest.fixture(scope="module")
def exact_and_null(mix2d):
    g = torch.Generator().manual_seed(99)
    a, b = mix2d.sample(N_SAMPLES, g)[0], mix2d.sample(N_SAMPLES, g)[0]
    return a, abs(mmd_rbf(a, b))


STOCHASTIC = [
    ("ddpm", 100, {}),
    ("ddpm", 200, {"variance": "large"}),
    ("ddim", 100, {"eta": 1.0}),
    ("euler_ancestral", 100, {}),
    ("dpmpp_2m_sde", 50, {}),
    ("heun", 40, {"s_churn": 40.0}),
    ("pc", 50, {}),
    ("pc", 50, {"predictor": "ancestral"}),
    ("langevin", 30, {"n_steps": 20, "step_size": 0.3}),
]


@pytest.mark.parametrize(("name", "steps", "knobs"), STOCHASTIC)
def test_stochastic_samplers_reproduce_the_distribution(mix2d, exact_and_null, name, steps, knobs):
    """MMD to exact samples within 3× a null draw (+1e-3), mean within 0.1 and covariance within 0.3 (Frobenius);
    the negative controls below show that these bounds reject wrong samplers."""
    exact, null = exact_and_null
    out = _draw(mix2d, name, steps, knobs)
    assert mmd_rbf(out, exact) < 3 * null + 1e-3
    assert float((out.mean(0) - mix2d.mean()).norm()) < 0.1
    assert float((torch.cov(out.T) - mix2d.covariance()).norm()) < 0.3


@pytest.mark.parametrize(
    ("name", "steps", "knobs"),
    [("ddpm", 10, {"variance": "large"}), ("euler", 3, {}), ("pc", 50, {"step_rule": "snr"})],
)
def test_negative_controls_are_rejected(mix2d, exact_and_null, name, steps, knobs):
    """DDPM's large variance at 10 steps (DDIM paper, Table 1), a 3-step Euler run and the per-sample snr
    corrector rule in 2-D are all measurably wrong, so the bounds above can fail."""
    exact, null = exact_and_null
    assert mmd_rbf(_draw(mix2d, name, steps, knobs), exact) > 3 * null + 1e-3


def test_langevin_defaults_keep_up_with_a_short_karras_list():
    """Issue 11: `sample --sampler langevin --steps 20` on the default ρ=7 list (80 → 0.002, levels up to 3×
    apart) with the default knobs. On Gaussian data N(0, 0.25·I) in 256-D (exact denoiser) the sample std must
    be within 20 % of 0.5; the old fixed δ = 0.05σ² lagged behind σ and froze 2.7× the std into the samples."""
    from noisecraft.core.oracles import GaussianData
    from noisecraft.core.schedules import karras_sigmas

    data = GaussianData(torch.zeros(256, dtype=torch.float64), 0.25)
    g = torch.Generator().manual_seed(3)
    sigmas = torch.cat([karras_sigmas(20, 0.002, 80.0), torch.zeros(1, dtype=torch.float64)])
    x = 80.0 * torch.randn(200, 256, generator=g, dtype=torch.float64)
    out = get_sampler("langevin")(data, x, sigmas, generator=g)
    assert abs(float(out.std()) / 0.5 - 1) < 0.2
