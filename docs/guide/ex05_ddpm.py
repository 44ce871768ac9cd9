"""DDPM sampling: run the reverse Markov chain from pure noise (Ho et al. 2020, Alg. 2).

Each step draws x_{t−1} from the Gaussian posterior q(x_{t−1} | x_t, x̂0) around the model's x̂0. With the exact
denoiser of an eight-Gaussian mixture the chain lands on the data distribution; we animate the point cloud,
measure MMD against exact samples, and show what too few steps do.

    python docs/guide/ex05_ddpm.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import eight_gaussians_mixture
from noisecraft.evaluation.animate import points_gif
from noisecraft.evaluation.distances import mmd_rbf
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

SMALLEST = {"samples": 200, "steps": 20}


def main(out_dir: str | Path = "pictures/guide", samples: int = 2000, steps: int = 1000) -> list[Path]:
    gm = eight_gaussians_mixture()
    schedule = make_schedule("linear")
    exact, _ = gm.sample(samples, torch.Generator().manual_seed(0))
    frames, titles = [], []

    def keep(st):
        if st.i % max(1, steps // 20) == 0 or st.sigma_next == 0:
            frames.append(st.x.clone() / (1 + st.sigma_next**2) ** 0.5)  # VP scale keeps the cloud in view
            titles.append(f"step {st.i + 1}/{steps}, σ={st.sigma_next:.2g}")

    ddpm = get_sampler("ddpm")
    for n in sorted({steps, max(2, steps // 50)}):
        g = torch.Generator().manual_seed(1)
        sig = step_sigmas(schedule, n)
        x = ddpm(
            gm,
            sig[0] * torch.randn(samples, 2, generator=g, dtype=torch.float64),
            sig,
            generator=g,
            callback=keep if n == steps else None,
        )
        print(f"DDPM, {n:4d} steps: MMD² to exact samples {mmd_rbf(x, exact):.5f}")
    return [points_gif(frames, Path(out_dir) / "ddpm_reverse.gif", titles=titles, lim=3.0)]


if __name__ == "__main__":
    print(*main(), sep="\n")
