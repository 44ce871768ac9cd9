"""Likelihood: probability-flow ODE NLL against exact Gaussian log-densities; the DDPM bound above it."""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.evaluation.likelihood import (
    bits_per_dim,
    ddpm_vlb,
    dequantize,
    discretized_gaussian_log_likelihood,
    ode_log_likelihood,
)


@pytest.fixture(scope="module")
def gaussian():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cov = a @ a.T / 4 + 0.05 * torch.eye(4, dtype=torch.float64)
    oracle = GaussianData(torch.tensor([0.3, -0.2, 0.1, 0.5]), cov)
    x, _ = oracle.sample(256, torch.Generator().manual_seed(1))
    return oracle, x


def test_ode_nll_of_gaussian_data_within_one_percent(gaussian):
    oracle, x = gaussian
    exact_nll = -oracle.log_prob(x, 0.0).mean()
    r = ode_log_likelihood(oracle, x, sigma_min=1e-3, sigma_max=80.0, steps=24, divergence="exact")
    assert float(-r.log_prob.mean()) == pytest.approx(float(exact_nll), rel=0.01)
    # per sample too, not only on average
    assert torch.allclose(r.log_prob, oracle.log_prob(x, 0.0), atol=0.05 * math.sqrt(4))
    assert r.nfe == 4 * 24


def test_hutchinson_estimate_is_unbiased(gaussian):
    oracle, x = gaussian
    exact = oracle.log_prob(x, 0.0)
    r = ode_log_likelihood(
        oracle,
        x,
        sigma_min=1e-3,
        sigma_max=80.0,
        steps=16,
        divergence="hutchinson",
        generator=torch.Generator().manual_seed(0),
    )
    err = r.log_prob - exact
    assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(len(err)) + 0.01
    assert float(err.std()) > 0  # it is an estimate


def test_ode_nll_of_gaussian_mixture_image_shaped():
    # a 2-component mixture acting on (1, 2, 2) "images": exercises the reshape path and a non-Gaussian density
    gm = GaussianMixture(torch.tensor([[1.0, 0, 0, 1], [-1.0, 0, 0, -1]]), torch.tensor([0.2, 0.3]), shape=(1, 2, 2))
    x, _ = gm.sample(64, torch.Generator().manual_seed(0))
    r = ode_log_likelihood(gm, x, sigma_min=2e-3, sigma_max=60.0, steps=32)
    exact = gm.log_prob(x, 2e-3)
    assert float((r.log_prob - exact).abs().mean()) < 0.01 * float(exact.abs().mean())


def test_vlb_upper_bounds_the_nll(gaussian):
    oracle, x = gaussian
    nll = -oracle.log_prob(x, 0.0)
    ode = -ode_log_likelihood(oracle, x, sigma_min=1e-3, sigma_max=80.0, steps=16).log_prob
    vlb = ddpm_vlb(oracle, x, make_schedule("linear"), decoder="gaussian", generator=torch.Generator().manual_seed(0))
    assert float(vlb.total.mean()) > float(nll.mean()) + 0.5
    assert float(vlb.total.mean()) > float(ode.mean())
    assert torch.allclose(vlb.total, vlb.prior + vlb.diffusion + vlb.decoder)
    assert vlb.terms.shape == (len(x), 999)
    assert float(vlb.prior.max()) < 1e-3  # q(x_T | x0) ≈ N(0, I) for the linear schedule
    # a shorter (respaced) chain with the small posterior variance is a much looser bound
    short = ddpm_vlb(oracle, x, make_schedule("linear"), timesteps=torch.arange(0, 1000, 50), decoder="gaussian")
    assert float(short.total.mean()) > float(vlb.total.mean())


def test_discretized_decoder_is_a_distribution():
    levels = 8
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64)
    mean = torch.tensor(0.23, dtype=torch.float64)
    p = discretized_gaussian_log_likelihood(grid, mean.expand(levels), 0.3, levels).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)


def test_dequantization_and_bits_per_dim():
    x = torch.linspace(-1, 1, 256).repeat(4)
    y = dequantize(x, 256, torch.Generator().manual_seed(0))
    k = ((x + 1) / 2 * 255).round()
    assert ((y + 1) / 2 * 256 - k).min() >= 0 and ((y + 1) / 2 * 256 - k).max() < 1
    # uniform density on [−1, 1]^d: log p = −d log 2 → exactly log2(256) = 8 bits/dim of the discrete data
    d = 10
    assert float(bits_per_dim(torch.tensor(-d * math.log(2.0)), d, 256)) == pytest.approx(8.0)


def test_bad_input():
    with pytest.raises(NoisecraftError, match="divergence"):
        ode_log_likelihood(lambda x, s: x, torch.zeros(2, 2), sigma_min=0.1, sigma_max=1.0, divergence="trace")
    with pytest.raises(NoisecraftError, match="sigma_min"):
        ode_log_likelihood(lambda x, s: x, torch.zeros(2, 2), sigma_min=1.0, sigma_max=0.1)
    with pytest.raises(NoisecraftError, match="discrete"):
        ddpm_vlb(lambda x, s: x, torch.zeros(2, 2), make_schedule("edm"))
