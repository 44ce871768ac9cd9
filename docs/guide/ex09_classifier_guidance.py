"""Classifier guidance: steer an unconditional model with the gradient of a noisy classifier.

Dhariwal & Nichol 2021: sample p(x | y) ∝ p(x)·p(y | x)^s by adding s·∇log p(y | x_σ, σ) to the score. Here the
classifier is the exact posterior p(k | x_σ) of a Gaussian mixture, so s = 1 samples the true class-conditional
distribution and s > 1 sharpens it (higher "precision", lower diversity). We sweep scale × class.

    python docs/guide/ex09_classifier_guidance.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import gmm_mixture
from noisecraft.evaluation.plots import plot_sweep_grid
from noisecraft.sampling.guidance import ClassifierGuidedDenoiser, MixtureClassifier
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

SMALLEST = {"samples": 100, "steps": 10}


def main(
    out_dir: str | Path = "pictures/guide",
    samples: int = 1000,
    steps: int = 50,
    scales: tuple[float, ...] = (0.0, 1.0, 4.0),
) -> list[Path]:
    gm = gmm_mixture()
    schedule = make_schedule("linear")
    sig = step_sigmas(schedule, steps)
    z = torch.randn(samples, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    K = gm.num_components
    grid = torch.zeros(len(scales), K, samples, 2, dtype=torch.float64)
    for i, s in enumerate(scales):
        guided = ClassifierGuidedDenoiser(gm, MixtureClassifier(gm), s)
        for k in range(K):
            y = torch.full((samples,), k)
            x = get_sampler("ddim")(guided, sig[0] * z, sig, cond={"class_labels": y})
            grid[i, k] = x
            hit = float((gm.class_posterior(x, 1e-3).argmax(1) == k).double().mean())
            print(f"scale {s:3.1f}, class {k}: {hit:6.1%} of samples in the class")
    return [
        plot_sweep_grid(
            grid,
            Path(out_dir) / "classifier_guidance.png",
            row_labels=[f"s={s:g}" for s in scales],
            col_labels=[f"class {k}" for k in range(K)],
            row_title="classifier scale",
            col_title="target class",
        )
    ]


if __name__ == "__main__":
    print(*main(), sep="\n")
