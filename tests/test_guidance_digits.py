"""Accuracy rises with the guidance scale on a small trained digits model (slow: trains two small nets).

A class-conditional MLP denoiser is trained on 8x8 digits with label dropout; samples are judged by the
evaluation package's clean-image CNN (never the guidance classifier). A coarse monotone check on a few scales,
for classifier-free guidance and for classifier guidance of the unconditional (null-label) model.
The cheap default-suite variant of this check is in test_classifier.py (image-shaped Gaussian mixture).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_setup(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("slow: run with -m slow")
    from noisecraft.core.losses import DenoisingLoss
    from noisecraft.evaluation.reference import reference_images
    from noisecraft.models.classifier import ClassifierConfig, ClassifierTraining, train_classifier
    from noisecraft.models.factory import ModelConfig, build_denoiser

    torch.manual_seed(0)
    x, y = reference_images("digits", "train")  # (N, 1, 8, 8) in [−1, 1], (N,)
    cfg = ModelConfig(arch="mlp", preset="small", resolution=8, channels=1, num_classes=10,
                      parameterisation="edm", schedule="edm")  # fmt: skip
    model, schedule = build_denoiser(cfg)
    loss_fn = DenoisingLoss(schedule, "edm")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        idx = torch.randint(0, len(x), (128,), generator=g)
        labels = torch.where(torch.rand(128, generator=g) < 0.15, 10, y[idx])  # label dropout → null label 10
        loss = loss_fn(model, x[idx], generator=g, class_labels=labels).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    ccfg = ClassifierConfig(resolution=8, channels=1, num_classes=10, schedule="edm", width=16)
    clf = train_classifier(x, y, ccfg, ClassifierTraining(steps=400, batch=128), progress=False)
    return model, schedule, clf


def accuracy(guided, schedule, label: int, n: int = 60) -> float:
    from noisecraft.evaluation.features import BuiltinFeatures
    from noisecraft.sampling.generate import generate
    from noisecraft.sampling.guidance import ClassConditioned

    x = generate(ClassConditioned(guided, label), schedule, (1, 8, 8), list(range(n)), steps=24)
    judge = BuiltinFeatures("digits")
    with torch.no_grad():
        return (judge.net(x.clamp(-1, 1)).argmax(-1) == label).float().mean().item()


def test_cfg_accuracy_rises_with_scale(digits_setup):
    from noisecraft.sampling.guidance import CFGDenoiser

    model, schedule, _ = digits_setup
    for label in (2, 7):
        acc = [accuracy(CFGDenoiser(model, w, null_label=10), schedule, label) for w in (0.0, 1.0, 3.0)]
        assert acc[0] < 0.4 and acc[1] > acc[0] + 0.3 and acc[2] >= acc[1] - 0.05, acc


def test_classifier_guidance_accuracy_rises_with_scale(digits_setup):
    from noisecraft.sampling.guidance import ClassifierGuidedDenoiser

    model, schedule, clf = digits_setup
    for label in (2, 7):
        acc = [accuracy(ClassifierGuidedDenoiser(model, clf, s), schedule, label) for s in (0.0, 2.0, 6.0)]
        assert acc[0] < 0.4 and acc[1] > acc[0] + 0.2 and acc[2] >= acc[1] - 0.05, acc
