"""Schedules: parity with diffusers' ᾱ, σ ↔ t round trips, spacings, training densities, bad input."""

import math

import pytest
import torch

from noisecraft.core.schedules import (
    EDM,
    SCHEDULES,
    VE,
    DiscreteVP,
    VPContinuous,
    alpha_bar_from_sigma,
    check_sigmas,
    log_snr_from_sigma,
    make_schedule,
    sigma_from_alpha_bar,
    sigma_from_log_snr,
)
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.steps import step_sigmas

DIFFUSERS_NAMES = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}


@pytest.fixture(scope="module")
def ddpm_scheduler():
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DDPMScheduler


@pytest.mark.parametrize("name", list(DIFFUSERS_NAMES))
@pytest.mark.parametrize("zsnr", [False, True])
def test_alpha_bar_matches_diffusers(ddpm_scheduler, name, zsnr):
    ends = {} if name == "cosine" else {"beta_start": 0.00085, "beta_end": 0.012}
    ref = ddpm_scheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name], rescale_betas_zero_snr=zsnr, **ends
    )
    ours = DiscreteVP.named(name, 1000, zero_terminal_snr=zsnr, **ends)
    torch.testing.assert_close(ours.alphas_cumprod.float(), ref.alphas_cumprod.float(), rtol=2e-5, atol=1e-7)
    # β from ratios of float32 ᾱ carries float32 rounding in diffusers: compare absolutely
    torch.testing.assert_close(ours.betas.float(), ref.betas.float(), rtol=2e-5, atol=2e-6)


def test_zero_terminal_snr_has_finite_top_sigma():
    s = DiscreteVP.named("linear", zero_terminal_snr=True)
    assert s.alphas_cumprod[-1] == 0
    assert math.isfinite(s.sigma_max) and s.sigma_max > 1000
    assert torch.isfinite(step_sigmas(s, 10)).all()


@pytest.mark.parametrize("name", SCHEDULES)
def test_sigma_t_round_trip_and_monotone(name):
    s = make_schedule(name)
    t_hi, t_lo = s.t_range
    t = torch.linspace(t_lo, t_hi, 101, dtype=torch.float64)
    sig = s.sigma(t)
    assert (sig[1:] > sig[:-1]).all(), "σ must grow with t"
    torch.testing.assert_close(s.t(sig), t, rtol=1e-7, atol=1e-7)
    assert sig[0].item() == pytest.approx(s.sigma_min) and sig[-1].item() == pytest.approx(s.sigma_max)


def test_discrete_sigma_interpolates_log_sigma_between_steps():
    s = make_schedule("cosine")
    exact = s.sigmas[10:12].log().mean().exp()
    torch.testing.assert_close(s.sigma(torch.tensor(10.5)), exact)
    torch.testing.assert_close(s.sigma(torch.arange(1000.0)), s.sigmas)


def test_conversions_are_inverse():
    sig = torch.logspace(-3, 3, 50, dtype=torch.float64)
    torch.testing.assert_close(sigma_from_alpha_bar(alpha_bar_from_sigma(sig)), sig)
    torch.testing.assert_close(sigma_from_log_snr(log_snr_from_sigma(sig)), sig)
    ab = alpha_bar_from_sigma(sig)
    torch.testing.assert_close(log_snr_from_sigma(sig), (ab / (1 - ab)).log())


def test_vp_continuous_matches_its_integral():
    s = VPContinuous()
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    integral = s.beta_min * t + 0.5 * (s.beta_max - s.beta_min) * t**2
    torch.testing.assert_close(s.alpha_bar(t), torch.exp(-integral))


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", ["linspace", "karras", "logsnr", None])
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_step_sigmas_contract(name, spacing, steps):
    s = make_schedule(name)
    sig = step_sigmas(s, steps, spacing)
    assert sig.shape == (steps + 1,) and sig.dtype == torch.float64
    assert sig[-1] == 0 and (sig[1:] < sig[:-1]).all()
    assert sig[0].item() == pytest.approx(s.sigma_max, rel=1e-9), "sampling must start at the top noise level"
    check_sigmas(sig, final_zero=True)


def test_discrete_spacings_match_diffusers_timesteps():
    diffusers = pytest.importorskip("diffusers")
    s = make_schedule("linear")
    for spacing in ("linspace", "leading", "trailing"):
        ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        ref.set_timesteps(10)
        ours = s.t(step_sigmas(s, 10, spacing)[:-1]).round()
        assert ours.long().tolist() == ref.timesteps.tolist(), spacing


def test_default_spacing_of_cosine_avoids_leading_trap():
    s = make_schedule("cosine")
    assert step_sigmas(s, 10)[0].item() == pytest.approx(s.sigmas[-1].item(), rel=1e-12)  # trailing starts at t = T-1
    assert step_sigmas(s, 10, "leading")[0] < s.sigmas[-1]


@pytest.mark.parametrize(
    "schedule,expect",
    [
        (
            EDM(),
            lambda sig: (sig.log().mean().item(), sig.log().std().item()),
        ),
    ],
)
def test_lognormal_training_density(schedule, expect):
    g = torch.Generator().manual_seed(0)
    m, sd = expect(schedule.training_sigmas(20000, g))
    assert m == pytest.approx(schedule.p_mean, abs=0.05) and sd == pytest.approx(schedule.p_std, abs=0.05)


def test_uniform_training_density_discrete_hits_every_level():
    s = make_schedule("linear", steps=50)
    sig = s.training_sigmas(5000, torch.Generator().manual_seed(0))
    assert set(sig.tolist()) == set(s.sigmas.tolist())


def test_loguniform_density_covers_range():
    s = VE()
    sig = s.training_sigmas(5000, torch.Generator().manual_seed(0))
    u = (sig.log() - math.log(s.sigma_min)) / math.log(s.sigma_max / s.sigma_min)
    assert 0 <= u.min() and u.max() <= 1 and abs(u.mean().item() - 0.5) < 0.02


@pytest.mark.parametrize(
    "betas",
    [torch.tensor([0.1, 1.5]), torch.tensor([0.0, 0.1]), torch.tensor([-0.1, 0.2]), torch.tensor([1.0, 0.5])],
)
def test_bad_betas_are_rejected(betas):
    with pytest.raises(NoisecraftError, match="betas must lie in"):
        DiscreteVP(betas=betas)


def test_unknown_names_list_valid_choices():
    with pytest.raises(NoisecraftError, match="unknown schedule 'cosin'.*cosine.*edm"):
        make_schedule("cosin")
    with pytest.raises(NoisecraftError, match="unknown step schedule 'foo'.*karras"):
        step_sigmas(make_schedule("edm"), 5, "foo")
    with pytest.raises(NoisecraftError, match="steps must be a positive integer"):
        step_sigmas(make_schedule("edm"), 0)


def test_bad_sigma_lists():
    with pytest.raises(NoisecraftError, match="strictly descending"):
        check_sigmas(torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(NoisecraftError, match="end at 0"):
        check_sigmas(torch.tensor([2.0, 1.0]), final_zero=True)
    with pytest.raises(NoisecraftError, match="non-negative"):
        check_sigmas(torch.tensor([2.0, -1.0]))
