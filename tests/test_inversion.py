"""PF-ODE inversion: encode → decode returns the input with an error that shrinks with the number of steps,
and for Gaussian data the encoding matches the closed-form flow map."""

from __future__ import annotations

import itertools

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.inversion import invert, regenerate
from noisecraft.sampling.steps import step_sigmas

SCHEDULE = make_schedule("edm", sigma_hi=20.0)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    gm = GaussianMixture(torch.randn(3, 6, generator=g, dtype=torch.float64), 0.1 + 0.4 * torch.rand(3, 6, generator=g))
    return gm, gm.sample(32, g)[0]


def round_trip(gm, x0, n, sampler, **kw) -> float:
    sig = step_sigmas(SCHEDULE, n, "karras")
    return float((regenerate(gm, invert(gm, x0, sig, sampler=sampler, **kw), sig, sampler=sampler) - x0).abs().max())


@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m", "dpmpp_3m"])
def test_round_trip_error_shrinks_with_steps(data, sampler):
    gm, x0 = data
    errs = [round_trip(gm, x0, n, sampler) for n in (10, 20, 40, 80)]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < (0.2 if sampler == "ddim" else 0.02), errs


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_fixed_point_inversion_is_exact_per_step(data, sampler):
    gm, x0 = data
    plain = round_trip(gm, x0, 20, sampler)
    errs = [round_trip(gm, x0, 20, sampler, iters=k) for k in (2, 8, 16)]
    assert errs[0] > errs[1] > errs[2] and errs[1] < 0.05 * plain and errs[2] < 1e-3, (plain, errs)


def test_encoding_matches_the_gaussian_flow_map():
    """Gaussian data: the PF-ODE moves each eigen-coordinate as x_σ − μ = √((λ+σ²)/λ)·(x0 − μ)."""
    g = torch.Generator().manual_seed(1)
    lam = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0, 0.0], dtype=torch.float64)
    gd = GaussianData(mu, lam)
    x0 = gd.sample(16, g)[0]

    def err(n: int, sampler: str) -> float:
        sig = step_sigmas(SCHEDULE, n, "karras")
        exact = mu + ((lam + sig[0] ** 2) / lam).sqrt() * (x0 - mu)
        return float(((invert(gd, x0, sig, sampler=sampler) - exact) / exact.abs().max()).abs().max())

    assert err(64, "heun") < err(16, "heun") / 8  # second order
    assert err(64, "dpmpp_3m") < 1e-3
    enc = invert(gd, x0, step_sigmas(SCHEDULE, 64, "karras"), sampler="dpmpp_3m")
    assert float((enc - mu).std() / SCHEDULE.sigma_max) == pytest.approx(1.0, abs=0.3)  # ≈ σ_max·N(0, I)


def test_partial_inversion_to_an_intermediate_level(data):
    """Encoding to σ_k only (the σ list of an img2img/SDEdit edit), then decoding, still round-trips."""
    gm, x0 = data
    sig = step_sigmas(SCHEDULE, 40, "karras")[20:]
    x_k = invert(gm, x0, sig, sampler="ddim", iters=16)
    assert float((regenerate(gm, x_k, sig, sampler="ddim") - x0).abs().max()) < 1e-3


def test_inversion_reports_calls_and_rejects_bad_input(data):
    gm, x0 = data
    sig = step_sigmas(SCHEDULE, 5, "karras")
    info: dict = {}
    invert(gm, x0, sig, sampler="ddim", info=info)
    assert info["nfe"] == 5
    with pytest.raises(NoisecraftError, match="valid choices: .*ddim.*heun"):
        invert(gm, x0, sig, sampler="ddpm")
    with pytest.raises(NoisecraftError, match="one-step solver"):
        invert(gm, x0, sig, sampler="dpmpp_2m", iters=2)
    with pytest.raises(NoisecraftError, match="descending"):
        invert(gm, x0, sig.flip(0), sampler="ddim")


def test_one_inversion_api_and_multistep_regenerate_uses_history(data):
    """nc.invert, noisecraft.editing.invert and sampling.inversion.invert are one function; regenerate runs
    dpmpp_2m as the sampler does (with history), and other samplers one pair of levels at a time."""
    import noisecraft as nc
    from noisecraft import editing
    from noisecraft.sampling import inversion
    from noisecraft.sampling.samplers import get_sampler

    assert nc.invert is editing.invert is inversion.invert
    assert nc.regenerate is editing.regenerate is inversion.regenerate
    gm, x0 = data
    sig = step_sigmas(SCHEDULE, 12, "karras")
    z = SCHEDULE.sigma_max * torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=x0.dtype)
    full = get_sampler("dpmpp_2m")(gm, z, sig)
    assert torch.equal(regenerate(gm, z, sig, sampler="dpmpp_2m"), full)
    with pytest.warns(UserWarning, match="first-order"):
        pairwise = regenerate(gm, z, sig, sampler="unipc")
    assert not torch.allclose(pairwise, get_sampler("unipc")(gm, z, sig))  # unipc runs as its first-order start
