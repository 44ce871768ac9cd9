"""Guidance transforms against exact oracles: a Gaussian mixture whose class posterior p(y | x_σ) is known.

With exact ingredients, ∇ log p(y | x_σ) = score_c − score_u, so classifier guidance at scale 1 on the
unconditional model IS the conditional model, and CFG at scale w equals classifier guidance at w (on the
unconditional model) or w − 1 (on the conditional model). Sampling those must give the chosen component.
"""

from __future__ import annotations

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.guidance import (
    CFGDenoiser,
    ClassConditioned,
    ClassifierGuidedDenoiser,
    MixtureClassifier,
    build_guided_denoiser,
    parse_interval,
)
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

K = 3


def mixture(shape=None) -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]])
    covs = torch.tensor([[0.3, 0.1], [0.2, 0.4], [0.25, 0.25]])
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]), shape)


class LabelledMixture:
    """An exact class-conditional model whose null label K gives the unconditional one; counts its calls."""

    def __init__(self, gm: GaussianMixture):
        self.gm = gm
        self.num_classes = gm.num_components
        self.calls: list[int] = []

    def __call__(self, x, sigma, class_labels=None, **_):
        self.calls.append(x.shape[0])
        if class_labels is None:
            return self.gm(x, sigma)
        null = class_labels == self.num_classes
        cond = self.gm(x, sigma, class_labels=class_labels.clamp(max=self.num_classes - 1))
        return torch.where(null.reshape(-1, *([1] * (x.ndim - 1))), self.gm(x, sigma), cond)


def points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_cfg_scale_zero_is_unconditional_and_one_is_conditional():
    gm = mixture()
    model = LabelledMixture(gm)
    x, y = points(), torch.randint(0, K, (64,), generator=torch.Generator().manual_seed(1))
    for sigma in (0.1, 1.0, 4.0):
        torch.testing.assert_close(CFGDenoiser(model, 0.0, null_label=K)(x, sigma, class_labels=y), gm(x, sigma))
        cond = gm(x, sigma, class_labels=y)
        torch.testing.assert_close(CFGDenoiser(model, 1.0, null_label=K)(x, sigma, class_labels=y), cond)
        w = 3.0
        guided = CFGDenoiser(model, w, null_label=K)(x, sigma, class_labels=y)
        torch.testing.assert_close(guided, gm(x, sigma) + w * (cond - gm(x, sigma)))


def test_cfg_is_one_batched_call():
    model = LabelledMixture(mixture())
    x = points(10)
    CFGDenoiser(model, 2.5, null_label=K)(x, torch.full((10,), 0.7), class_labels=torch.zeros(10, dtype=torch.long))
    assert model.calls == [20]


def test_cfg_interval_uses_plain_conditional_outside():
    gm = mixture()
    model = LabelledMixture(gm)
    cfg = CFGDenoiser(model, 4.0, null_label=K, interval=(0.5, 2.0))
    x, y = points(8), torch.full((8,), 2)
    for sigma in (0.2, 0.5, 3.0):  # outside (σ_lo excluded): conditional, from one un-doubled call
        model.calls.clear()
        torch.testing.assert_close(cfg(x, sigma, class_labels=y), gm(x, sigma, class_labels=y))
        assert model.calls == [8]
    # per-sample σ straddling the interval: guided rows inside, conditional rows outside
    sigma = torch.tensor([0.1, 0.6, 1.0, 2.0, 2.5, 5.0, 1.5, 0.3], dtype=torch.float64)
    out = cfg(x, sigma, class_labels=y)
    inside = (sigma > 0.5) & (sigma <= 2.0)
    full = CFGDenoiser(model, 4.0, null_label=K)(x, sigma, class_labels=y)
    torch.testing.assert_close(out[inside], full[inside])
    torch.testing.assert_close(out[~inside], gm(x, sigma, class_labels=y)[~inside])
    assert not torch.allclose(out[inside], gm(x, sigma, class_labels=y)[inside])


def test_cfg_rescale_matches_conditional_std_in_its_space():
    from noisecraft.core.precond import output_from_x0

    gm = mixture(shape=(1, 2, 1))  # acts on image-shaped tensors too
    model = LabelledMixture(mixture())
    model.gm = gm
    x = points(16).reshape(16, 1, 2, 1)
    y = torch.full((16,), 1)
    sigma = 1.3
    plain = CFGDenoiser(model, 5.0, null_label=K)(x, sigma, class_labels=y)
    torch.testing.assert_close(CFGDenoiser(model, 5.0, K, rescale=0.0)(x, sigma, class_labels=y), plain)
    cond = gm(x, sigma, class_labels=y)
    for space in ("v", "eps"):
        full = CFGDenoiser(model, 5.0, K, rescale=1.0, rescale_space=space)(x, sigma, class_labels=y)
        f_full, f_cond = (output_from_x0(space, x, sigma, v).flatten(1) for v in (full, cond))
        torch.testing.assert_close(f_full.std(1), f_cond.std(1))
        half = CFGDenoiser(model, 5.0, K, rescale=0.5, rescale_space=space)(x, sigma, class_labels=y)
        torch.testing.assert_close(half, 0.5 * (full + plain))  # the mix is affine in F, hence in x0
    # at w = 1 the guided prediction is the conditional one, so rescale changes nothing
    torch.testing.assert_close(CFGDenoiser(model, 1.0, K, rescale=1.0)(x, sigma, class_labels=y), cond)


@pytest.mark.parametrize("sigma", [0.05, 0.8, 6.0])
def test_exact_classifier_guidance_equals_conditional_and_cfg(sigma):
    gm = mixture()
    clf = MixtureClassifier(gm)
    x, y = points(), torch.arange(64) % K
    cond = gm(x, sigma, class_labels=y)
    # scale 1 on the unconditional model: exactly the conditional model (Bayes)
    torch.testing.assert_close(ClassifierGuidedDenoiser(gm, clf, 1.0)(x, sigma, class_labels=y), cond)
    # CFG(w) == classifier guidance at w on the unconditional model == at w − 1 on the conditional one
    w = 2.5
    cfg = CFGDenoiser(LabelledMixture(gm), w, null_label=K)(x, sigma, class_labels=y)
    torch.testing.assert_close(ClassifierGuidedDenoiser(gm, clf, w)(x, sigma, class_labels=y), cfg)
    conditional = ClassifierGuidedDenoiser(LabelledMixture(gm), clf, w - 1, condition_model=True)
    torch.testing.assert_close(conditional(x, sigma, class_labels=y), cfg)
    # the classifier gradient is a real gradient: scale 0 returns the model, and guidance moves x̂0
    torch.testing.assert_close(ClassifierGuidedDenoiser(gm, clf, 0.0)(x, sigma, class_labels=y), gm(x, sigma))
    assert not torch.allclose(cond, gm(x, sigma))


def _moments(x):
    return x.mean(0), torch.cov(x.T)


@pytest.mark.parametrize(
    ("how", "sampler"),
    [("classifier", "euler"), ("classifier", "ddpm"), ("cfg", "euler"), ("cfg", "ddpm")],
)
def test_guided_sampling_draws_the_chosen_component(how, sampler):
    torch.manual_seed(0)
    gm, label, n = mixture(), 2, 3000
    if how == "classifier":  # unconditional exact model + exact classifier at scale 1
        guided = ClassifierGuidedDenoiser(gm, MixtureClassifier(gm), 1.0)
    else:  # exact conditional/unconditional pair at w = 1
        guided = CFGDenoiser(LabelledMixture(gm), 1.0, null_label=K)
    from noisecraft.core.schedules import make_schedule

    sigmas = step_sigmas(make_schedule("edm", sigma_hi=40.0), 80)
    g = torch.Generator().manual_seed(3)
    x = sigmas[0] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    out = get_sampler(sampler)(ClassConditioned(guided, label), x, sigmas, generator=torch.Generator().manual_seed(4))
    mean, cov = _moments(out)
    target = gm.component(label)
    torch.testing.assert_close(mean, target.mean(), atol=0.06, rtol=0)
    torch.testing.assert_close(cov, target.covariance(), atol=0.05, rtol=0)
    assert (gm.class_posterior(out, 0.0).argmax(-1) == label).float().mean() > 0.97


def test_per_sample_conditioning_is_doubled_for_the_batched_call():
    seen = {}

    def model(x, sigma, class_labels, mask=None, scale=None):
        seen.update(x=x.shape[0], mask=mask.shape[0], scale=scale, labels=class_labels.tolist())
        return x

    x = points(4)
    CFGDenoiser(model, 2.0, null_label=9)(x, 1.0, class_labels=torch.arange(4), mask=torch.ones(4, 3), scale=0.5)
    assert seen == {"x": 8, "mask": 8, "scale": 0.5, "labels": [0, 1, 2, 3, 9, 9, 9, 9]}


def test_bad_input_gives_clear_errors():
    model = LabelledMixture(mixture())
    with pytest.raises(NoisecraftError, match="cfg scale"):
        CFGDenoiser(model, -1.0, null_label=K)
    with pytest.raises(NoisecraftError, match="classifier scale"):
        ClassifierGuidedDenoiser(model, MixtureClassifier(mixture()), -0.5)
    with pytest.raises(NoisecraftError, match="rescale"):
        CFGDenoiser(model, 2.0, null_label=K, rescale=1.5)
    with pytest.raises(NoisecraftError, match="sigma_lo < sigma_hi"):
        parse_interval("5,0.3")
    with pytest.raises(NoisecraftError, match="sigma_lo,sigma_hi"):
        parse_interval("a,b")
    assert parse_interval("0.3,5") == (0.3, 5.0)
    with pytest.raises(NoisecraftError, match=r"outside the model's labels 0\.\.2"):
        build_guided_denoiser(model, class_label=3, cfg_scale=2.0)
    with pytest.raises(NoisecraftError, match="cfg scale"):
        build_guided_denoiser(model, class_label=1, cfg_scale=-2.0)
    with pytest.raises(NoisecraftError, match="needs a class"):
        build_guided_denoiser(model, cfg_scale=2.0)
    with pytest.raises(NoisecraftError, match="no classes"):
        build_guided_denoiser(mixture(), class_label=1, cfg_scale=2.0, num_classes=0)


def test_build_guided_denoiser_composes_the_pieces():
    gm = mixture()
    model = LabelledMixture(gm)
    x, sigma = points(32), 0.9
    plain = build_guided_denoiser(model, class_label=1)
    torch.testing.assert_close(plain(x, sigma), gm(x, sigma, class_labels=torch.full((32,), 1)))
    w = build_guided_denoiser(model, class_label=1, cfg_scale=3.0, cfg_interval="0.5,2")
    assert isinstance(w.denoiser, CFGDenoiser) and w.denoiser.interval == (0.5, 2.0)
    ref = CFGDenoiser(model, 3.0, K)(x, sigma, class_labels=torch.full((32,), 1))
    torch.testing.assert_close(w(x, sigma), ref)
    # classifier guidance on the unconditional model (num_classes 0): the classifier's classes are valid
    clf = build_guided_denoiser(gm, class_label=2, classifier=MixtureClassifier(gm), classifier_scale=1.0)
    torch.testing.assert_close(clf(x, sigma), gm(x, sigma, class_labels=torch.full((32,), 2)))
    assert build_guided_denoiser(gm) is gm


def test_classifier_guidance_works_under_inference_mode():
    gm = mixture()
    x, y = points(8), torch.full((8,), 1)
    guided = ClassifierGuidedDenoiser(gm, MixtureClassifier(gm), 2.0)
    ref = guided(x, 0.8, class_labels=y)
    with torch.inference_mode():
        out = guided(x, 0.8, class_labels=y)
    torch.testing.assert_close(out.clone(), ref)


def test_guidance_sweep_cells_are_the_guided_samples_with_shared_seeds():
    """Each cell of the sweep is the guided model sampled with the row's seeds; at CFG scale 0 (unconditional)
    every row's block is the same samples, and a vector model is refused."""
    from noisecraft.sampling.generate import generate
    from noisecraft.sampling.sweep import guidance_sweep

    model, shape = LabelledMixture(mixture(shape=(1, 1, 2))), (1, 1, 2)
    sch = make_schedule("edm")
    classes, scales = [0, 2], [0.0, 3.0]
    imgs, layout = guidance_sweep(model, sch, shape, classes, scales, per_cell=2, seed=5, steps=6)
    assert imgs.shape == (8, *shape)
    assert layout["rows"] == classes and layout["columns"] == [0.0, 0.0, 3.0, 3.0] and layout["seeds"] == [5, 6]
    for r, k in enumerate(classes):
        for j, s in enumerate(scales):
            guided = build_guided_denoiser(model, class_label=k, cfg_scale=s, sample_shape=shape)
            ref = generate(guided, sch, shape, [5, 6], steps=6, class_labels=torch.full((2,), k))
            assert torch.equal(imgs[(2 * r + j) * 2 : (2 * r + j + 1) * 2], ref)
    assert torch.equal(imgs[0:2], imgs[4:6])  # scale 0: the class does not matter
    assert not torch.equal(imgs[2:4], imgs[6:8])  # scale 3: it does
    _, layout = guidance_sweep(model, sch, shape, [1], [1.0], classifier=MixtureClassifier(model.gm), steps=2)
    assert layout["method"] == "classifier"
    with pytest.raises(NoisecraftError, match="image grids"):
        guidance_sweep(model, sch, (2,), [0], [1.0], steps=2)
