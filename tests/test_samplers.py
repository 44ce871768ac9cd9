"""The sampler API: registry, step-by-step iterator, statelessness, per-sample randomness, bad input."""

from __future__ import annotations

import pytest
import torch

import noisecraft as nc
from noisecraft.core.oracles import GaussianMixture
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.noise import per_sample_generators
from noisecraft.sampling.samplers import (
    SAMPLER_INFO,
    SAMPLER_SPECS,
    SAMPLERS,
    Step,
    ancestral_split,
    get_sampler,
    iterate,
    sampler_knobs,
)

EXPECTED = {
    "ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc",
    "adaptive", "langevin", "pc",
}  # fmt: skip


@pytest.fixture(scope="module")
def gm() -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    return GaussianMixture(torch.randn(3, 5, generator=g, dtype=torch.float64), torch.tensor([0.2, 0.1, 0.4]))


SIGMAS = torch.cat([torch.logspace(1, -2, 8, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def _start(n: int) -> torch.Tensor:
    return 10.0 * torch.randn(n, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_registry_is_complete_with_one_line_info():
    assert EXPECTED <= set(SAMPLERS)
    for name in SAMPLERS:
        assert SAMPLER_INFO[name] and "\n" not in SAMPLER_INFO[name]
        assert ("deterministic" in SAMPLER_INFO[name]) or ("stochastic" in SAMPLER_INFO[name]), name
    assert nc.get_sampler("heun") is SAMPLERS["heun"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_batch_size_invariance_and_statelessness(gm, name):
    """Sample i depends only on its own start and generator: same rows from a batch of 6 or of 2, twice."""
    x = _start(6)
    full = get_sampler(name)(gm, x, SIGMAS, generator=per_sample_generators(range(6)))
    again = get_sampler(name)(gm, x, SIGMAS, generator=per_sample_generators(range(6)))
    part = get_sampler(name)(gm, x[2:4], SIGMAS, generator=per_sample_generators([2, 3]))
    assert torch.isfinite(full).all()
    assert torch.equal(full, again)
    torch.testing.assert_close(part, full[2:4], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["dpmpp_2m", "ddpm", "adaptive"])
def test_iterator_and_callback_agree_with_the_sampler(gm, name):
    x = _start(4)
    gens = lambda: per_sample_generators(range(4))  # noqa: E731
    steps = list(iterate(name, gm, x, SIGMAS, generator=gens()))
    seen: list[Step] = []
    out = get_sampler(name)(gm, x, SIGMAS, generator=gens(), callback=seen.append)
    assert all(isinstance(s, Step) for s in steps) and len(seen) == len(steps)
    assert torch.equal(steps[-1].x, out)
    nfe = [s.nfe for s in steps]
    assert nfe == sorted(nfe) and nfe[-1] >= len(steps)
    if name != "adaptive":
        assert [s.i for s in steps] == list(range(len(SIGMAS) - 1))
        assert [s.sigma for s in steps] == SIGMAS[:-1].tolist()
        assert steps[-1].sigma_next == 0


def test_network_calls_per_step(gm):
    x = _start(2)
    counts = {n: list(iterate(n, gm, x, SIGMAS))[-1].nfe for n in ("euler", "heun", "dpmpp_3m", "unipc")}
    # Heun: 2 calls per step except the final Euler step into σ = 0; multistep: 1 call per step.
    assert counts == {"euler": 8, "heun": 15, "dpmpp_3m": 8, "unipc": 8}


def test_sampler_does_not_modify_its_input(gm):
    x = _start(3)
    before = x.clone()
    for name in SAMPLERS:
        get_sampler(name)(gm, x, SIGMAS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before)


def test_ancestral_split_identities():
    s, s_next = torch.tensor(3.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    for eta in (0.0, 0.5, 1.0):
        down, up = ancestral_split(s, s_next, eta)
        torch.testing.assert_close(down**2 + up**2, s_next**2)
    down, up = ancestral_split(s, s_next, 1.0)
    # η = 1 is the DDPM posterior: its mean coefficient (σ_down/σ) equals (σ'/σ)², the variance σ'²(σ²−σ'²)/σ².
    torch.testing.assert_close(down / s, (s_next / s) ** 2)
    torch.testing.assert_close(up**2, s_next**2 * (s**2 - s_next**2) / s**2)
    assert ancestral_split(s, s_next, 0.0)[1] == 0


def test_ddim_eta_zero_is_euler_and_eta_one_is_ddpm(gm):
    x = _start(4)
    torch.testing.assert_close(get_sampler("ddim")(gm, x, SIGMAS), get_sampler("euler")(gm, x, SIGMAS))
    a = get_sampler("ddim")(gm, x, SIGMAS, eta=1.0, generator=per_sample_generators(range(4)))
    b = get_sampler("ddpm")(gm, x, SIGMAS, generator=per_sample_generators(range(4)))
    torch.testing.assert_close(a, b)


def test_churn_only_adds_noise_inside_its_window(gm):
    x = _start(2)
    plain = get_sampler("heun")(gm, x, SIGMAS)
    outside = get_sampler("heun")(gm, x, SIGMAS, s_churn=10.0, s_tmin=100.0, generator=torch.Generator())
    inside = get_sampler("heun")(gm, x, SIGMAS, s_churn=10.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, outside) and not torch.allclose(plain, inside)


def test_knobs_are_listed():
    assert sampler_knobs("ddim") == {"eta": 0.0}
    assert {"order", "variant"} <= set(sampler_knobs("unipc"))
    for name, spec in SAMPLER_SPECS.items():
        assert spec.name == name


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda gm, x: get_sampler("dpm_fast"), "valid choices: .*adaptive.*unipc"),
        (lambda gm, x: get_sampler("euler")(gm, x, torch.tensor([1.0, 2.0, 0.0])), "descending"),
        (lambda gm, x: get_sampler("euler")(gm, x, torch.tensor([1.0])), "at least 2"),
        (lambda gm, x: get_sampler("euler")(gm, x, torch.tensor([1.0, -1.0])), "non-negative"),
        (lambda gm, x: get_sampler("ddpm")(gm, x, torch.tensor([2.0, 1.0])), "end at 0"),
        (lambda gm, x: get_sampler("ddim")(gm, x, SIGMAS, etta=1.0), "unknown knob.*etta.*eta=0.0"),
        (lambda gm, x: get_sampler("ddpm")(gm, x, SIGMAS, variance="medium"), "variance.*large, small"),
        (lambda gm, x: get_sampler("unipc")(gm, x, SIGMAS, order=5), "order must be"),
        (lambda gm, x: get_sampler("adaptive")(gm, x, SIGMAS, method="rk4"), "bs32, dopri5, dpm12"),
        (lambda gm, x: get_sampler("pc")(gm, x, SIGMAS, predictor="x"), "ancestral, euler, reverse_diffusion"),
        (lambda gm, x: get_sampler("euler")(gm, x, SIGMAS, generator=per_sample_generators([1])), "generators"),
    ],
)
def test_bad_input_is_a_clear_error(gm, call, match):
    with pytest.raises((NoisecraftError, ValueError), match=match):
        call(gm, _start(2))


def test_adaptive_slices_per_sample_conditioning(gm):
    """Samples finish at different times; the active rows keep their own class labels."""
    x = _start(6)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    full = get_sampler("adaptive")(gm, x, SIGMAS, cond={"class_labels": labels}, rtol=1e-5, atol=1e-5)
    for i in range(6):
        one = get_sampler("adaptive")(
            gm, x[i : i + 1], SIGMAS, cond={"class_labels": labels[i : i + 1]}, rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(one, full[i : i + 1], rtol=1e-10, atol=1e-10)
    # each sample lands near the mean of its own component
    assert (full - gm.means[labels]).norm(dim=1).max() < 4 * gm.covs.diagonal(dim1=1, dim2=2).max().sqrt() * 5**0.5
