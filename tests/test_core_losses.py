"""Losses: targets consistent with the forward pass, weights match their formulas, finite on zero-SNR schedules."""

import pytest
import torch
from torch import nn

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.losses import WEIGHTINGS, DenoisingLoss, loss_weight
from noisecraft.core.precond import PARAMETERISATIONS, Preconditioner
from noisecraft.core.schedules import DiscreteVP, make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.models.mlp import MLP

KINDS = list(PARAMETERISATIONS)


class KnowsX0(nn.Module):
    """Outputs the parameterisation's target for a fixed clean batch: a perfect network."""

    def __init__(self, x0, precond):
        super().__init__()
        self.x0, self.precond = x0, precond

    def forward(self, x_in, c_noise):
        sigma = torch.exp(4 * c_noise.double())  # invert c_noise = ¼ ln σ
        _, _, c_in = self.precond.scalings(sigma)
        return self.precond.target(x_in / c_in[:, None], self.x0, sigma)


@pytest.mark.parametrize("kind", KINDS)
def test_perfect_prediction_has_zero_loss_and_recovers_x0(kind):
    s = make_schedule("edm")
    pre = Preconditioner(kind, sigma_data=0.5, schedule=s)
    x0 = torch.randn(32, 4, dtype=torch.float64)
    model = PreconditionedDenoiser(KnowsX0(x0, pre), pre)
    sigma = s.training_sigmas(32, torch.Generator().manual_seed(0))
    loss = DenoisingLoss(s, "native")(model, x0, sigma=sigma)
    assert loss.shape == (32,)
    assert loss.abs().max() < 1e-20
    x = x0 + sigma[:, None] * torch.randn_like(x0)
    torch.testing.assert_close(model(x, sigma), x0)


@pytest.mark.parametrize("kind", KINDS)
def test_native_loss_is_the_mse_of_the_networks_own_target(kind):
    """For ε-prediction the native loss is the guide's ‖ε̂ − ε‖²; in general the x0 error weighted by 1/c_out²."""
    s = make_schedule("linear")
    pre = Preconditioner(kind, noise_input="t", schedule=s)
    torch.manual_seed(0)
    model = PreconditionedDenoiser(MLP(dim=4, hidden=16, depth=1), pre).double()
    x0, eps = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    sigma = s.sigmas[torch.randint(0, 1000, (8,))]
    x = x0 + sigma[:, None] * eps
    loss = DenoisingLoss(s, "native")(model, x0, sigma=sigma, noise=eps)
    _, c_out, _ = pre.scalings(sigma)
    x0_err = (model(x, sigma) - x0).pow(2).mean(1)
    torch.testing.assert_close(loss, x0_err / c_out**2)
    if kind == "eps":
        torch.testing.assert_close(loss, (model.raw(x, sigma) - eps).pow(2).mean(1))


def test_min_snr_weights_match_their_formula():
    s = make_schedule("linear")
    sigma = s.sigmas
    snr = sigma**-2
    gamma = 5.0
    expected = {
        "eps": snr.clamp(max=gamma) / snr,
        "v": snr.clamp(max=gamma) / (snr + 1),
        "x0": snr.clamp(max=gamma),
    }
    for kind, w in expected.items():
        pre = Preconditioner(kind, noise_input="t", schedule=s)
        torch.testing.assert_close(loss_weight("min_snr", sigma, pre, gamma), w)


def test_edm_weighting_is_uniform_in_edm_output_space():
    pre = Preconditioner("edm", sigma_data=0.5)
    sigma = torch.logspace(-3, 2, 20, dtype=torch.float64)
    torch.testing.assert_close(loss_weight("edm", sigma, pre), torch.ones_like(sigma))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_zero_terminal_snr_weights_and_losses_are_finite(kind, weighting):
    s = DiscreteVP.named("scaled_linear", zero_terminal_snr=True)
    pre = Preconditioner(kind, noise_input="t", schedule=s)
    assert torch.isfinite(loss_weight(weighting, s.sigmas, pre)).all()
    torch.manual_seed(0)
    model = PreconditionedDenoiser(MLP(dim=2, hidden=16, depth=1), pre)
    x0 = torch.randn(len(s.sigmas), 2)
    loss = DenoisingLoss(s, weighting)(model, x0, sigma=s.sigmas.float())
    assert torch.isfinite(loss).all()


def test_bad_loss_settings():
    with pytest.raises(NoisecraftError, match="unknown loss weighting 'p2'.*min_snr"):
        DenoisingLoss(make_schedule("edm"), "p2")
    with pytest.raises(NoisecraftError, match="gamma must be positive"):
        DenoisingLoss(make_schedule("edm"), "min_snr", gamma=0)
