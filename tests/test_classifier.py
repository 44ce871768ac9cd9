"""The noise-conditioned classifier: training, persistence, pairing checks, and guidance with a trained one.

The cheap end-to-end check trains a tiny classifier on noisy samples of an image-shaped Gaussian mixture
and guides the mixture's EXACT unconditional denoiser with it; the judge is the mixture's exact clean
posterior, independent of the guidance classifier. The digits version (a trained model) is marked slow.
"""

from __future__ import annotations

import json

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.models.classifier import (
    ClassifierConfig,
    ClassifierTraining,
    NoisyClassifier,
    accuracy_by_sigma,
    holdout_accuracy,
    holdout_split,
    load_classifier,
    train_classifier,
)
from noisecraft.sampling.guidance import ClassConditioned, ClassifierGuidedDenoiser, build_guided_denoiser
from noisecraft.sampling.noise import per_sample_generators, randn
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

SHAPE = (1, 4, 4)


def image_mixture() -> GaussianMixture:
    """Three 16-pixel patterns (top rows, left columns, a diagonal) with isotropic pixel noise."""
    pats = torch.zeros(3, *SHAPE)
    pats[0, 0, :2] = 1.0
    pats[1, 0, :, :2] = 1.0
    pats[2, 0].fill_diagonal_(1.0)
    means = (2 * pats - 0.5).reshape(3, -1)
    return GaussianMixture(means, torch.full((3,), 0.25), shape=SHAPE)


@pytest.fixture(scope="module")
def trained():
    gm = image_mixture()
    x, y = gm.sample(3000, torch.Generator().manual_seed(0))
    cfg = ClassifierConfig(resolution=4, channels=1, num_classes=3, schedule="edm", width=8, mult=(1, 2))
    model = train_classifier(x.float(), y, cfg, ClassifierTraining(steps=150, batch=128, lr=3e-3), progress=False)
    return gm, model


def test_trained_classifier_is_accurate_at_low_noise_and_degrades_with_sigma(trained):
    gm, model = trained
    x, y = gm.sample(600, torch.Generator().manual_seed(1))
    acc = accuracy_by_sigma(model, x.float(), y, [0.05, 1.0, 20.0])
    assert acc[0.05] > 0.95
    assert acc[20.0] < 0.6  # at σ = 20 the image is almost pure noise: near chance (1/3)
    assert acc[0.05] >= acc[1.0] >= acc[20.0] - 0.05


def test_holdout_split_and_accuracy(trained):
    gm, model = trained
    train, test = holdout_split(50, 0.1, seed=3)
    assert len(test) == 5 and sorted(torch.cat([train, test]).tolist()) == list(range(50))
    assert torch.equal(holdout_split(50, 0.1, seed=3)[1], test) and not torch.equal(holdout_split(50, 0.1, 4)[1], test)
    assert len(holdout_split(50, 0.0)[1]) == 0
    with pytest.raises(NoisecraftError, match=r"\[0, 1\)"):
        holdout_split(50, 1.0)
    x, y = gm.sample(300, torch.Generator().manual_seed(2))
    acc = holdout_accuracy(model, x.float(), y, seed=1)
    sched = model.config.build_schedule()
    assert list(acc) == [s for s in (0.02, 0.1, 0.3, 1.0, 3.0, 10.0) if sched.sigma_min <= s <= sched.sigma_max]
    assert acc == accuracy_by_sigma(model, x.float(), y, list(acc), seed=1) and acc[0.1] > 0.9


def test_save_load_round_trip(trained, tmp_path):
    _, model = trained
    model.save(tmp_path / "clf")
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert (meta["resolution"], meta["channels"], meta["num_classes"], meta["schedule"]) == (4, 1, 3, "edm")
    again = load_classifier(tmp_path / "clf")
    x, sigma = torch.randn(5, *SHAPE), torch.tensor([0.1, 0.5, 1.0, 5.0, 20.0])
    with torch.no_grad():
        torch.testing.assert_close(again(x, sigma), model(x, sigma))
    with pytest.raises(NoisecraftError, match="no classifier"):
        load_classifier(tmp_path / "nothing-here")
    weights = next((tmp_path / "clf").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    with pytest.raises(NoisecraftError, match="cannot load"):
        load_classifier(tmp_path / "clf")


def test_classifier_from_another_resolution_is_refused(trained):
    gm, model = trained
    with pytest.raises(NoisecraftError, match=r"trained on 1x4x4 images .* 1x8x8"):
        model(torch.randn(2, 1, 8, 8), 1.0)
    with pytest.raises(NoisecraftError, match="resolution"):
        build_guided_denoiser(
            gm, class_label=0, classifier=model, classifier_scale=1.0, num_classes=0, sample_shape=(1, 8, 8)
        )
    with pytest.raises(NoisecraftError, match="classifier knows 3 classes but the model 10"):
        build_guided_denoiser(gm, class_label=0, classifier=model, num_classes=10)
    model(torch.randn(2, 16), 1.0)  # a flat (MLP) model of the same size is fine


def test_config_and_training_input_are_validated():
    with pytest.raises(NoisecraftError, match="num_classes"):
        ClassifierConfig(num_classes=1)
    with pytest.raises(NoisecraftError, match="schedule"):
        ClassifierConfig(schedule="nope")
    cfg = ClassifierConfig(resolution=4, channels=1, num_classes=3, width=8)
    with pytest.raises(NoisecraftError, match="images must be"):
        train_classifier(torch.zeros(4, 1, 8, 8), torch.zeros(4), cfg, ClassifierTraining(steps=1))
    with pytest.raises(NoisecraftError, match="labels must be"):
        train_classifier(torch.zeros(4, *SHAPE), torch.full((4,), 3), cfg, ClassifierTraining(steps=1))


def guided_accuracy(gm, classifier, scale, label, n=400, seed=0) -> float:
    """Fraction of samples the exact clean posterior assigns to `label` (the independent judge)."""
    sigmas = step_sigmas(make_schedule("edm", sigma_hi=20.0), 24)
    gens = per_sample_generators(range(seed, seed + n))
    x = sigmas[0] * randn((n, *SHAPE), gens, torch.float32)
    guided = ClassConditioned(ClassifierGuidedDenoiser(gm, classifier, scale), label)
    out = get_sampler("euler")(guided, x, sigmas)
    return (gm.class_posterior(out, 0.0).argmax(-1) == label).float().mean().item()


def test_accuracy_rises_with_scale_using_a_trained_classifier(trained):
    gm, model = trained
    for label in (0, 2):
        acc = [guided_accuracy(gm, model, s, label) for s in (0.0, 1.0, 4.0)]
        assert acc[0] < 0.5  # unguided: the class's share of the mixture (1/3)
        assert acc[1] > acc[0] + 0.3 and acc[2] >= acc[1] - 0.02 and acc[2] > 0.9, acc


def test_guidance_gradient_flows_under_no_grad(trained):
    gm, model = trained
    x = torch.randn(6, *SHAPE)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        plain = gm(x, 1.0)
        guided = ClassifierGuidedDenoiser(gm, model, 2.0)(x, 1.0, class_labels=torch.zeros(6, dtype=torch.long))
    assert not torch.allclose(plain, guided)
    assert all(p.grad is None for p in model.parameters())  # only ∇_x was taken, no parameter gradients


def test_network_accepts_scalar_and_batched_sigma():
    model = NoisyClassifier(ClassifierConfig(resolution=8, channels=3, num_classes=4, width=8)).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 0.7), model(x, torch.full((3,), 0.7)))
        assert model(x, 0.7).shape == (3, 4)
