"""Parameterisation as data: conversions round-trip; every parameterisation yields the same exact denoiser."""

import pytest
import torch
from torch import nn

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.oracles import GaussianData
from noisecraft.core.precond import (
    PARAMETERISATIONS,
    Preconditioner,
    convert,
    eps_from_x0,
    output_from_x0,
    score_from_x0,
    v_from_x0,
)
from noisecraft.core.process import add_noise, q_sample
from noisecraft.core.schedules import alpha_bar_from_sigma, make_schedule
from noisecraft.errors import NoisecraftError

KINDS = list(PARAMETERISATIONS)


def _state(seed=0, n=16, d=3):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    eps = torch.randn(n, d, generator=g, dtype=torch.float64)
    sigma = torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 2)
    return x0, eps, sigma, add_noise(x0, sigma, eps)


@pytest.mark.parametrize("src", KINDS)
@pytest.mark.parametrize("dst", KINDS)
def test_conversions_round_trip(src, dst):
    x0, _, sigma, x = _state()
    val = output_from_x0(src, x, sigma, x0, 0.7)
    back = convert(x, sigma, convert(x, sigma, val, src, dst, 0.7), dst, src, 0.7)
    torch.testing.assert_close(back, val)


def test_named_conversions_match_textbook_formulas():
    x0, eps, sigma, x = _state()
    s = sigma[:, None]
    ab = alpha_bar_from_sigma(s)
    torch.testing.assert_close(eps_from_x0(x, sigma, x0), eps)
    torch.testing.assert_close(score_from_x0(x, sigma, x0), -eps / s)
    torch.testing.assert_close(v_from_x0(x, sigma, x0), ab.sqrt() * eps - (1 - ab).sqrt() * x0)


def test_eps_input_scaling_gives_the_vp_state():
    s = make_schedule("linear")
    x0, eps, _, _ = _state()
    t = torch.randint(0, 1000, (16,))
    pre = Preconditioner("eps", noise_input="t", schedule=s)
    sigma = s.sigmas[t]
    _, _, c_in = pre.scalings(sigma)
    torch.testing.assert_close(c_in[:, None] * add_noise(x0, sigma, eps), q_sample(x0, s.alphas_cumprod[t], eps))
    torch.testing.assert_close(pre.c_noise(sigma), t.double())


class OracleNet(nn.Module):
    """A 'network' that outputs exactly what parameterisation `kind` should output for Gaussian data."""

    def __init__(self, data: GaussianData, precond: Preconditioner):
        super().__init__()
        self.data, self.precond = data, precond

    def forward(self, x_in, c_noise):
        sigma = torch.exp(4 * c_noise.double())  # invert c_noise = ¼ ln σ
        _, _, c_in = self.precond.scalings(sigma)
        x = x_in / c_in[:, None]
        return output_from_x0(self.precond.kind, x, sigma, self.data(x, sigma), self.precond.sigma_data)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_every_parameterisation_gives_the_exact_gaussian_denoiser(kind, sigma_data):
    data = GaussianData(
        torch.tensor([0.5, -1.0, 2.0]), torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]])
    )
    pre = Preconditioner(kind, sigma_data=sigma_data)
    model = PreconditionedDenoiser(OracleNet(data, pre), pre)
    _, _, sigma, x = _state(1)
    torch.testing.assert_close(model(x, sigma), data(x, sigma))
    # a scalar σ behaves like a per-sample σ filled with it
    torch.testing.assert_close(model(x, 0.8), model(x, torch.full((16,), 0.8)))


def test_preconditioner_bad_input():
    with pytest.raises(NoisecraftError, match="unknown parameterisation 'epsilon'.*eps.*v"):
        Preconditioner("epsilon")
    with pytest.raises(NoisecraftError, match="needs the schedule"):
        Preconditioner("eps", noise_input="t")
    with pytest.raises(NoisecraftError, match="sigma_data must be positive"):
        Preconditioner("edm", sigma_data=0)
