"""Editing against exact denoisers: inversion round trips, SDEdit strength limits, inpainting, swaps, interpolation.

The data are Gaussian mixtures on 8x8 one-channel "images", whose denoiser, class posterior and conditional
distributions are known in closed form, so every check compares with the truth rather than a golden number.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from noisecraft.core.oracles import GaussianData, GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.editing.edits import interpolate, psnr, slerp, swap_class
from noisecraft.editing.inpaint import KnownRegionDenoiser, inpaint, repaint_schedule
from noisecraft.editing.sdedit import img2img, strength_sigmas
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.inversion import invert, reconstruct, regenerate
from noisecraft.sampling.noise import per_sample_generators
from noisecraft.sampling.samplers import SAMPLERS, get_sampler
from noisecraft.sampling.steps import step_sigmas

SHAPE = (1, 8, 8)


def mixture(k: int = 3, seed: int = 0, spread: float = 0.6) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(k, 64, generator=g, dtype=torch.float64)
    variances = 0.05 + 0.1 * torch.rand(k, 64, generator=g, dtype=torch.float64)
    return GaussianMixture(means, variances, shape=SHAPE)


def images(gm: GaussianMixture, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x, labels = gm.sample(n, torch.Generator().manual_seed(seed))
    return x.float(), labels


# -- inversion -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["edm", "linear"])
def test_ddim_inversion_error_shrinks_with_steps(schedule):
    gm = mixture()
    x, _ = images(gm)
    sch = make_schedule(schedule)
    errs = [(reconstruct(gm, x, step_sigmas(sch, n))[0] - x).pow(2).mean().item() for n in (8, 16, 32, 64)]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < errs[0] / 8  # at least first order: halving the step more than halves the error


@pytest.mark.parametrize("sampler", ["euler", "heun", "ddim"])
def test_fixed_point_inversion_inverts_each_sampler(sampler):
    if sampler not in SAMPLERS:
        pytest.skip(f"{sampler} not registered")
    gm = mixture()
    x, _ = images(gm)
    sigmas = step_sigmas(make_schedule("edm"), 16)
    plain = psnr(reconstruct(gm, x, sigmas, sampler=sampler)[0], x).mean()
    exact = psnr(reconstruct(gm, x, sigmas, sampler=sampler, iters=4)[0], x).mean()
    assert exact > plain + 10
    assert exact > 50


def test_inversion_handles_huge_sigma_max():
    # cosine schedules end at σ_max = 4096 with a first step down to ~6: plain fixed-point iteration needs
    # ~1/r iterations there; the secant step solves it
    gm = mixture()
    x, _ = images(gm)
    sigmas = step_sigmas(make_schedule("cosine"), 10)
    assert sigmas[0] / sigmas[1] > 100
    assert psnr(reconstruct(gm, x, sigmas, iters=3)[0], x).min() > 40


def test_regenerate_is_the_sampler_for_one_step_samplers():
    gm = mixture()
    z = 80 * torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(3))
    sigmas = step_sigmas(make_schedule("edm"), 12)
    assert torch.allclose(regenerate(gm, z, sigmas), get_sampler("euler")(gm, z, sigmas), atol=1e-5)


def test_inverted_noise_looks_like_noise():
    gm = mixture()
    x, _ = images(gm, n=32)
    sch = make_schedule("edm")
    z = invert(gm, x, step_sigmas(sch, 32), iters=2) / sch.sigma_max
    assert abs(z.std().item() - 1) < 0.15 and abs(z.mean().item()) < 0.1


# -- SDEdit ------------------------------------------------------------------------------------------------
def test_strength_zero_returns_input_exactly():
    gm = mixture()
    x, _ = images(gm)
    out = img2img(gm, x, step_sigmas(make_schedule("edm"), 20), 0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


@pytest.mark.parametrize("sampler", ["euler", "ddpm"])
def test_strength_one_ignores_the_input(sampler):
    gm = mixture()
    x, _ = images(gm, seed=1)
    y, _ = images(gm, seed=2)
    sigmas = step_sigmas(make_schedule("edm"), 20)
    a = img2img(gm, x, sigmas, 1.0, sampler=sampler, generator=per_sample_generators(range(8)))
    b = img2img(gm, y, sigmas, 1.0, sampler=sampler, generator=per_sample_generators(range(8)))
    assert torch.equal(a, b)
    c = img2img(gm, x, sigmas, 0.9, sampler=sampler, generator=per_sample_generators(range(8)))
    assert not torch.equal(a, c)  # below 1 the input matters


def test_strength_moves_output_away_from_input_monotonically():
    gm = mixture(k=4, spread=1.0)
    x, labels = images(gm, n=64)
    sigmas = step_sigmas(make_schedule("edm"), 30)
    dist, same_class = [], []
    for s in (0.2, 0.5, 0.8, 1.0):
        out = img2img(gm, x, sigmas, s, generator=torch.Generator().manual_seed(5))
        dist.append((out - x).pow(2).mean().item())
        same_class.append((gm.class_posterior(out, 1e-3).argmax(1) == labels).float().mean().item())
    assert all(b > a for a, b in itertools.pairwise(dist)), dist
    assert same_class[0] == 1.0 and same_class[-1] < 0.6  # weak edits keep the class, full strength forgets it


def test_strength_maps_to_the_tail_of_the_sigma_list():
    sigmas = step_sigmas(make_schedule("edm"), 10)
    assert torch.equal(strength_sigmas(sigmas, 1.0), sigmas)
    assert torch.equal(strength_sigmas(sigmas, 0.3), sigmas[7:])
    assert len(strength_sigmas(sigmas, 0.0)) == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_strength_outside_unit_interval_is_an_error(bad):
    gm = mixture()
    x, _ = images(gm, n=2)
    with pytest.raises(NoisecraftError, match="strength must be in"):
        img2img(gm, x, step_sigmas(make_schedule("edm"), 5), bad)


# -- inpainting ----------------------------------------------------------------------------------------------
def _mask() -> torch.Tensor:
    m = torch.zeros(1, 8, 8)
    m[:, 2:6, 3:8] = 1
    return m


@pytest.mark.parametrize(
    "method,sampler",
    [("replace", "euler"), ("replace", "dpmpp_2m"), ("repaint", "ddim"), ("repaint", "euler_ancestral")],
)
def test_inpainting_keeps_unmasked_pixels_exactly(method, sampler):
    if sampler not in SAMPLERS:
        pytest.skip(f"{sampler} not registered")
    gm = mixture()
    x, _ = images(gm)
    m = _mask()
    out = inpaint(
        gm,
        x,
        m,
        step_sigmas(make_schedule("edm"), 10),
        method=method,
        sampler=sampler,
        jump_length=3,
        resample=2,
        generator=torch.Generator().manual_seed(0),
    )
    keep = (m == 0).expand_as(x)
    assert torch.equal(out[keep], x[keep])
    assert not torch.allclose(out[~keep], x[~keep])


def _correlated_gaussian(seed: int = 0) -> GaussianData:
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(8, dtype=torch.float64)
    yy, xx = torch.meshgrid(i, i, indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1)  # (64, 2)
    cov = 0.5 * torch.exp(-(torch.cdist(pos, pos) ** 2) / 8) + 0.01 * torch.eye(64, dtype=torch.float64)
    return GaussianData(0.3 * torch.randn(64, generator=g, dtype=torch.float64), cov, shape=SHAPE)


def test_inpainting_fills_with_the_conditional_mean_and_resampling_helps():
    # Gaussian data: E[x_missing | x_known] = μ_m + Σ_mk Σ_kk⁻¹ (x_k − μ_k). The average of many inpaintings of
    # one image must land closer to it than the unconditional mean μ_m, and RePaint's resampling (which lets
    # the generated region adapt to the known one) must land closer than plain replacement.
    gd = _correlated_gaussian()
    x, _ = gd.sample(1, torch.Generator().manual_seed(4))
    m = _mask().flatten().bool()
    mu, cov, xf = gd.means[0], gd.covs[0], x.flatten()
    cond_mean = mu[m] + cov[m][:, ~m] @ torch.linalg.solve(cov[~m][:, ~m], xf[~m] - mu[~m])
    n = 48
    sigmas = step_sigmas(make_schedule("edm"), 16)

    def error(**kw) -> float:
        out = inpaint(gd, x.float().expand(n, *SHAPE), _mask(), sigmas, generator=per_sample_generators(range(n)), **kw)
        return (out.flatten(1)[:, m].double().mean(0) - cond_mean).pow(2).mean().item()

    prior = (mu[m] - cond_mean).pow(2).mean().item()
    replace = error(method="replace")
    repaint_once = error(method="repaint", resample=1)
    repaint = error(method="repaint", jump_length=2, resample=5)
    assert replace < prior / 2, (replace, prior)
    assert repaint < repaint_once / 1.5 and repaint < replace / 2, (repaint, repaint_once, replace)


def test_known_region_denoiser_returns_the_original_there():
    gm = mixture()
    x, _ = images(gm, n=4)
    keep = 1 - _mask()
    d = KnownRegionDenoiser(gm, x, keep, torch.randn_like(x))
    out = d(torch.randn_like(x), torch.tensor(2.0))
    assert torch.equal(out * keep, x * keep)


def test_repaint_schedule_visits_every_stretch_resample_times():
    assert repaint_schedule(6, 2, 1) == list(range(7))
    path = repaint_schedule(10, 5, 3)
    assert path[0] == 0 and path[-1] == 10
    assert all(abs(b - a) == 1 for a, b in itertools.pairwise(path))
    downs = [b for a, b in itertools.pairwise(path) if b > a]
    assert all(downs.count(i) == 3 for i in range(1, 11))


def test_mask_of_wrong_size_is_an_error():
    gm = mixture()
    x, _ = images(gm, n=2)
    with pytest.raises(NoisecraftError, match="mask of shape"):
        inpaint(gm, x, torch.ones(1, 7, 7), step_sigmas(make_schedule("edm"), 4))
    with pytest.raises(NoisecraftError, match="0 \\(keep\\) or 1"):
        inpaint(gm, x, 0.5 * torch.ones(1, 8, 8), step_sigmas(make_schedule("edm"), 4))


# -- class swap and interpolation ------------------------------------------------------------------------------
class _WithNull:
    """A conditional GaussianMixture whose label K means 'unconditional' (for CFG)."""

    def __init__(self, gm: GaussianMixture):
        self.gm, self.k = gm, gm.num_components

    def __call__(self, x, sigma, class_labels=None, **_):
        if class_labels is None:
            return self.gm(x, sigma)
        null = class_labels == self.k
        out = self.gm(x, sigma, class_labels=class_labels.clamp(max=self.k - 1))
        return torch.where(null.reshape(-1, 1, 1, 1), self.gm(x, sigma), out)


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_class_swap_changes_the_class_and_keeps_the_rest(guidance):
    gm = mixture(k=3, spread=0.8)
    x, labels = images(gm, n=24)
    src = labels
    tgt = (labels + 1) % 3
    sigmas = step_sigmas(make_schedule("edm"), 24)
    model = _WithNull(gm)
    out = swap_class(model, x, sigmas, src, tgt, guidance=guidance, null_label=3, iters=2)
    assert (gm.class_posterior(out, 1e-3).argmax(1) == tgt).float().mean() > 0.9
    # the edit keeps what the noise carries: closer to the input than an unrelated sample of the target class
    other = regenerate(
        model, 80 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9)), sigmas, cond={"class_labels": tgt}
    )
    assert (out - x).pow(2).mean() < (other - x).pow(2).mean()
    same = swap_class(model, x, sigmas, src, src, iters=3)  # swap to the same class is a reconstruction
    assert psnr(same, x).min() > 40


def test_swap_needs_null_label_for_guidance():
    gm = mixture()
    x, labels = images(gm, n=2)
    with pytest.raises(NoisecraftError, match="null_label"):
        swap_class(gm, x, step_sigmas(make_schedule("edm"), 4), labels, labels, guidance=3.0)


def test_interpolation_endpoints_reproduce_the_inputs():
    gm = mixture()
    x0, _ = images(gm, n=4, seed=1)
    x1, _ = images(gm, n=4, seed=2)
    frames = interpolate(gm, x0, x1, step_sigmas(make_schedule("edm"), 20), [0.0, 0.5, 1.0], iters=3)
    assert frames.shape == (3, 4, *SHAPE)
    assert psnr(frames[0], x0).min() > 40 and psnr(frames[2], x1).min() > 40
    mid = frames[1]
    assert (mid - x0).abs().mean() > 0.05 and (mid - x1).abs().mean() > 0.05
    assert gm.log_prob(mid, 1e-2).mean() > gm.log_prob((x0 + x1) / 2, 1e-2).mean()  # on the data, unlike a blend


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=1), (a.norm(dim=1) + b.norm(dim=1)) / 2, rtol=1e-4)
    e = torch.eye(2)[None]
    assert torch.allclose(slerp(e[:, :1].reshape(1, 2), e[:, 1:].reshape(1, 2), 0.5), torch.full((1, 2), 0.5**0.5))
