"""Training: learn a denoiser on 2-D data with the simple ε-loss, then sample it.

The loss is E‖ε − ε_θ(√ᾱ·x0 + √(1−ᾱ)·ε, t)‖² with t uniform (Ho et al. 2020, Alg. 1). We train a small MLP on
the swiss roll, draw its loss curve, and compare its samples with the data (sliced Wasserstein distance,
beside the distance between two independent data draws as the floor).

    python docs/guide/ex04_training.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.process import add_noise
from noisecraft.data.toys import toy_data
from noisecraft.evaluation.distances import sliced_wasserstein
from noisecraft.evaluation.plots import _pyplot, _save, plot_toy_overview
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas
from noisecraft.training.toy import ToyConfig, build_toy_model, train_toy

SMALLEST = {"iterations": 30, "samples": 300, "steps": 10}


def main(
    out_dir: str | Path = "pictures/guide", iterations: int = 2000, samples: int = 2000, steps: int = 100
) -> list[Path]:
    out_dir = Path(out_dir)
    cfg = ToyConfig(dataset="swissroll", iterations=iterations, seed=0)
    model, losses = train_toy(cfg, progress=False)
    schedule = build_toy_model(cfg)[1].schedule
    sigmas = step_sigmas(schedule, steps).float()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = get_sampler("ddpm")(model, sigmas[0] * torch.randn(samples, 2, generator=g), sigmas, generator=g)
    data, data2 = toy_data("swissroll", samples, seed=2), toy_data("swissroll", samples, seed=3)
    sw, floor = sliced_wasserstein(x, data), sliced_wasserstein(data2, data)
    print(f"sliced W1 samples↔data {sw:.4f}   floor data↔data {floor:.4f}")
    noise = torch.randn(data.shape, generator=g)
    paths = [
        plot_toy_overview(data, {s: add_noise(data, s, noise) for s in (0.3, 1.0)}, x, out_dir / "training_samples.png")
    ]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(losses, lw=0.6)
    ax.set(yscale="log", xlabel="iteration", ylabel="ε-loss", title="training loss")
    paths.append(_save(fig, out_dir / "training_loss.png"))
    return paths


if __name__ == "__main__":
    print(*main(), sep="\n")
