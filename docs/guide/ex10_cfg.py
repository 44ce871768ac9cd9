"""Classifier-free guidance: extrapolate from the unconditional to the conditional prediction.

Ho & Salimans 2022: one network trained with label dropout is both conditional D(x; σ, y) and unconditional
D(x; σ, ∅); sampling with D_w = D_∅ + w·(D_y − D_∅) trades diversity for class fidelity as w grows. Here the
conditional and unconditional denoisers are exact (a Gaussian mixture and its components), so the only
effect is guidance itself; w = 1 samples the true p(x | y).

    python docs/guide/ex10_cfg.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import gmm_mixture
from noisecraft.evaluation.plots import plot_sweep_grid
from noisecraft.sampling.guidance import CFGDenoiser
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

SMALLEST = {"samples": 100, "steps": 10}


def main(
    out_dir: str | Path = "pictures/guide",
    samples: int = 1000,
    steps: int = 50,
    scales: tuple[float, ...] = (0.0, 1.0, 3.0, 6.0),
) -> list[Path]:
    gm = gmm_mixture()
    K = gm.num_components

    def model(x, sigma, class_labels):  # label K is the null label: the unconditional model
        null = (class_labels == K)[:, None]
        return torch.where(null, gm(x, sigma), gm(x, sigma, class_labels=class_labels.clamp(max=K - 1)))

    sig = step_sigmas(make_schedule("linear"), steps)
    z = torch.randn(samples, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = torch.zeros(len(scales), K, samples, 2, dtype=torch.float64)
    for i, w in enumerate(scales):
        for k in range(K):
            y = torch.full((samples,), k)
            x = get_sampler("ddim")(CFGDenoiser(model, w, null_label=K), sig[0] * z, sig, cond={"class_labels": y})
            grid[i, k] = x
            print(
                f"w = {w:3.1f}, class {k}: spread {float(x.std(0).mean()):.3f}, "
                f"{float((gm.class_posterior(x, 1e-3).argmax(1) == k).double().mean()):6.1%} in the class"
            )
    return [
        plot_sweep_grid(
            grid,
            Path(out_dir) / "cfg.png",
            row_labels=[f"w={w:g}" for w in scales],
            col_labels=[f"class {k}" for k in range(K)],
            row_title="guidance scale w",
            col_title="class",
        )
    ]


if __name__ == "__main__":
    print(*main(), sep="\n")
