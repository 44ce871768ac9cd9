"""Parity: noisecraft samplers reproduce diffusers' schedulers (k-diffusion: tests/test_samplers_kdiffusion.py)
on the same σ list, the same deterministic denoiser (an exact Gaussian-mixture oracle) and the same noise.

diffusers' VP schedulers step the VP state x_vp = x/√(1+σ²) and take ε; the adapter below converts in both
directions, using σ_t = √((1−ᾱ_t)/ᾱ_t) from the scheduler's own ᾱ so that both run on identical noise levels.
"""

from __future__ import annotations

import pytest
import torch

from mixture_helpers import rel_err, small_mixture
from noisecraft.core.oracles import GaussianMixture
from noisecraft.sampling.samplers import get_sampler

diffusers = pytest.importorskip("diffusers")

REL = 1e-4


@pytest.fixture(scope="module")
def gm() -> GaussianMixture:
    return small_mixture()


def _sigma(sched, t) -> torch.Tensor:
    ab = sched.alphas_cumprod[int(t)].double()
    return ((1 - ab) / ab).sqrt()


def run_vp(sched, gm, steps: int, seed: int = 1, noise: bool = False, **step_kw):
    """Run a diffusers VP scheduler with an ε-model built from the exact denoiser; returns (x0, σ list, x_ve init)."""
    sched.set_timesteps(steps)
    last = sched.sigmas[-1].double() if hasattr(sched, "sigmas") else torch.zeros((), dtype=torch.float64)
    sigmas = torch.stack([_sigma(sched, t) for t in sched.timesteps] + [last])
    x_ve = sigmas[0] * torch.randn(4, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x_ve / (1 + sigmas[0] ** 2).sqrt()
    g = torch.Generator().manual_seed(123)
    for i, t in enumerate(sched.timesteps):
        s = sigmas[i]
        xv = x.double() * (1 + s**2).sqrt()
        eps = (xv - gm(xv, s)) / s
        kw = dict(step_kw)
        if noise:
            kw["generator"] = g
        if "variance_noise" in kw:
            kw["variance_noise"] = torch.randn(x.shape, generator=g, dtype=torch.float64) if sigmas[i + 1] > 0 else None
        x = sched.step(eps, t, x, **kw).prev_sample
    return x * (1 + last**2).sqrt(), sigmas, x_ve


LINEAR = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_diffusers(gm, spacing, eta):
    sched = diffusers.DDIMScheduler(**LINEAR, clip_sample=False, timestep_spacing=spacing, set_alpha_to_one=True)
    # diffusers' DDIM steps to t − T//N, not to the next listed timestep: the two agree (one σ list) when
    # N divides T for trailing spacing, and always for leading spacing.
    ref, sigmas, x = run_vp(sched, gm, 12 if spacing == "leading" else 10, noise=eta > 0, eta=eta)
    ours = get_sampler("ddim")(gm, x, sigmas, eta=eta, generator=torch.Generator().manual_seed(123))
    assert rel_err(ours, ref) < REL


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_matches_diffusers(gm, variance):
    sched = diffusers.DDPMScheduler(**LINEAR, clip_sample=False, variance_type=f"fixed_{variance}")
    ref, sigmas, x = run_vp(sched, gm, 25, noise=True)
    ours = get_sampler("ddpm")(gm, x, sigmas, variance=variance, generator=torch.Generator().manual_seed(123))
    assert rel_err(ours, ref) < REL


@pytest.mark.parametrize(("order", "steps"), [(2, 10), (2, 20), (3, 10), (3, 20)])
def test_dpmpp_multistep_matches_diffusers(gm, order, steps):
    sched = diffusers.DPMSolverMultistepScheduler(
        **LINEAR, solver_order=order, algorithm_type="dpmsolver++", timestep_spacing="trailing"
    )
    ref, sigmas, x = run_vp(sched, gm, steps)
    ours = get_sampler(f"dpmpp_{order}m")(gm, x, sigmas, **({"compat": True} if order == 3 else {}))
    assert rel_err(ours, ref) < REL


def test_dpmpp_2m_sde_matches_diffusers(gm):
    sched = diffusers.DPMSolverMultistepScheduler(
        **LINEAR, solver_order=2, algorithm_type="sde-dpmsolver++", timestep_spacing="trailing"
    )
    ref, sigmas, x = run_vp(sched, gm, 12, variance_noise=True)
    ours = get_sampler("dpmpp_2m_sde")(gm, x, sigmas, generator=torch.Generator().manual_seed(123))
    assert rel_err(ours, ref) < REL


@pytest.mark.parametrize(
    ("order", "steps", "variant", "final"),
    [(2, 10, "bh2", "zero"), (3, 10, "bh2", "zero"), (3, 20, "bh2", "zero"), (2, 8, "bh1", "sigma_min")],
)
def test_unipc_matches_diffusers(gm, order, steps, variant, final):
    # (diffusers 0.42's bh1 returns NaN when the last σ is 0 — B(h) = −h is infinite there — so bh1 is
    # compared on a list ending at σ_min; ours returns x̂0 on a step into σ = 0 for both variants. On such a list
    # diffusers' last step is first order; ours is second order unless compat=True.)
    sched = diffusers.UniPCMultistepScheduler(
        **LINEAR, solver_order=order, solver_type=variant, timestep_spacing="trailing", final_sigmas_type=final
    )
    ref, sigmas, x = run_vp(sched, gm, steps)
    ours = get_sampler("unipc")(gm, x, sigmas, order=order, variant=variant, compat=final == "sigma_min")
    assert rel_err(ours, ref) < REL
    if final == "sigma_min":  # ours (no compat) keeps second order in the last step, so it differs
        assert rel_err(get_sampler("unipc")(gm, x, sigmas, order=order, variant=variant), ref) > 1e-3


def run_ve(sched, gm, steps: int):
    """Run a diffusers σ-space (Euler/Heun) scheduler; the model reads σ from the scheduler's current index."""
    sched.set_timesteps(steps)
    x = sched.sigmas[0].double() * torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_init = x.clone()
    for t in sched.timesteps:
        sched.scale_model_input(x, t)  # also initialises the step index
        s = sched.sigmas[sched.step_index].double()
        eps = (x.double() - gm(x.double(), s)) / s
        x = sched.step(eps, t, x).prev_sample
    return x, torch.unique_consecutive(sched.sigmas.double()), x_init


@pytest.mark.parametrize(("cls", "name"), [("EulerDiscreteScheduler", "euler"), ("HeunDiscreteScheduler", "heun")])
@pytest.mark.parametrize("karras", [False, True])
def test_euler_heun_match_diffusers(gm, cls, name, karras):
    sched = getattr(diffusers, cls)(**LINEAR, use_karras_sigmas=karras, timestep_spacing="trailing")
    ref, sigmas, x = run_ve(sched, gm, 10)
    ours = get_sampler(name)(gm, x, sigmas)
    assert rel_err(ours, ref) < REL
