"""Score-based models (NCSN): follow the score with Langevin dynamics, annealing the noise level.

The score ∇log p_σ(x) = (D(x; σ) − x)/σ² (Tweedie) of the noised data points towards the data. Langevin
dynamics x ← x + (α/2)·∇log p_σ(x) + √α·z samples p_σ; annealing σ from large to small (Song & Ermon 2019)
lets the chains cross low-density regions first and then settle. We draw the exact score field of a
mixture with the annealed Langevin paths, and compare plain (single-σ) and annealed Langevin by MMD.

    python docs/guide/ex08_langevin.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.data.toys import eight_gaussians_mixture
from noisecraft.evaluation.distances import mmd_rbf
from noisecraft.evaluation.plots import plot_score_field
from noisecraft.sampling.samplers import get_sampler

SMALLEST = {"samples": 200, "levels": 4, "n_steps": 5}


def main(
    out_dir: str | Path = "pictures/guide", samples: int = 2000, levels: int = 10, n_steps: int = 30
) -> list[Path]:
    gm = eight_gaussians_mixture()
    exact, _ = gm.sample(samples, torch.Generator().manual_seed(0))
    langevin = get_sampler("langevin")
    start = torch.rand(samples, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 6 - 3
    annealed = torch.cat([torch.logspace(0.5, -1.5, levels, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    single = torch.tensor([0.0316, 0.0], dtype=torch.float64)  # one small σ only, as many steps in total
    path = [start[:24]]
    xa = langevin(
        gm,
        start,
        annealed,
        generator=torch.Generator().manual_seed(2),
        n_steps=n_steps,
        callback=lambda st: path.append(st.x[:24]),
    )
    xs = langevin(gm, start, single, generator=torch.Generator().manual_seed(2), n_steps=n_steps * levels)
    print(f"MMD² to exact samples: annealed {mmd_rbf(xa, exact):.5f}   single small σ {mmd_rbf(xs, exact):.5f}")
    return [
        plot_score_field(
            lambda p: gm.score(p, 0.3),
            Path(out_dir) / "langevin_score_field.png",
            trajectories=torch.stack(path),
            data=exact,
            title="score at σ=0.3, annealed Langevin",
        )
    ]


if __name__ == "__main__":
    print(*main(), sep="\n")
