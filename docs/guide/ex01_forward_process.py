"""The forward process: noise is added step by step, yet x_t can be drawn in one shot.

Ho et al. 2020, Eq. 2 and Eq. 4: the Markov chain x_t = √(1−β_t)·x_{t−1} + √β_t·ε_t has the closed-form
marginal q(x_t | x0) = N(√ᾱ_t·x0, (1−ᾱ_t)I). We run the chain on 2-D data, draw the closed form at the same
t, check that their spread agrees, and draw both, plus the forward process on a real digit.

    python docs/guide/ex01_forward_process.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.process import markov_step, q_sample
from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import toy_data
from noisecraft.evaluation.plots import _pyplot, _save, plot_forward_process
from noisecraft.evaluation.reference import reference_images

SMALLEST = {"points": 500}


def main(out_dir: str | Path = "pictures/guide", points: int = 3000, seed: int = 0) -> list[Path]:
    out_dir = Path(out_dir)
    schedule = make_schedule("linear")
    g = torch.Generator().manual_seed(seed)
    x0 = toy_data("swissroll", points, seed=seed).double()
    checkpoints = (0, 50, 150, 400, 999)
    x, chain = x0.clone(), {}
    for t in range(schedule.num_timesteps):
        x = markov_step(x, schedule.betas[t], torch.randn(x.shape, generator=g, dtype=torch.float64))
        if t in checkpoints:
            chain[t] = x.clone()
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(checkpoints), figsize=(2.6 * len(checkpoints), 5.4))
    for j, t in enumerate(checkpoints):
        abar = float(schedule.alphas_cumprod[t])
        direct = q_sample(x0, abar, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        for i, (pts, name) in enumerate(((chain[t], "Markov chain"), (direct, "closed form"))):
            axes[i, j].scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
            axes[i, j].set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xticks=[], yticks=[])
            axes[i, j].set_title(f"{name}, t={t + 1}\nᾱ={abar:.3f}, std {float(pts.std()):.2f}", fontsize=8)
        print(
            f"t={t + 1:4d}  ᾱ={abar:.4f}  std chain {float(chain[t].std()):.3f}  closed form {float(direct.std()):.3f}"
        )
    paths = [_save(fig, out_dir / "forward_process_2d.png")]
    digit = reference_images("digits", "test")[0][seed]
    paths.append(plot_forward_process(digit, schedule, out_dir / "forward_process_digit.png", seed=seed))
    return paths


if __name__ == "__main__":
    print(*main(), sep="\n")
