"""Fast samplers and learned step sizes: error against NFE.

With an exact denoiser the probability-flow ODE has one true solution per noise, so a sampler's error is
‖x_N − x_ref‖ against a very fine reference solve. Higher-order solvers (Heun: Karras et al. 2022;
DPM-Solver++: Lu et al. 2022; UniPC: Zhao et al. 2023) reach a given error with far fewer network
evaluations than Euler/DDIM, and a step schedule fitted to the model ("learned step sizes":
noisecraft.sampling.steps.fit_schedule, DP on local errors in the spirit of Watson et al. 2021 and
Align Your Steps) helps further at the smallest budgets.

    python docs/guide/ex07_fast_samplers.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import gmm_mixture
from noisecraft.evaluation.plots import plot_metric_vs_nfe
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import fit_schedule, step_sigmas

SMALLEST = {"samples": 64, "budgets": (4, 8), "samplers": ("euler", "heun"), "ref_steps": 200, "grid": 32}
NFE_PER_STEP = {"euler": 1, "ddim": 1, "heun": 2, "dpmpp_2m": 1, "unipc": 1}


def main(
    out_dir: str | Path = "pictures/guide",
    samples: int = 512,
    budgets: tuple[int, ...] = (4, 6, 10, 16, 25, 40),
    samplers: tuple[str, ...] = ("euler", "heun", "dpmpp_2m", "unipc"),
    ref_steps: int = 1000,
    grid: int = 64,
) -> list[Path]:
    gm = gmm_mixture()
    schedule = make_schedule("edm")
    z = torch.randn(samples, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref_sig = step_sigmas(schedule, ref_steps, "karras")
    x_ref = get_sampler("heun")(gm, ref_sig[0] * z, ref_sig)
    table: dict[str, list[tuple[float, float]]] = {}
    for name in samplers:
        for nfe in budgets:
            steps = max(1, nfe // NFE_PER_STEP[name])
            sig = step_sigmas(schedule, steps, "karras")
            err = (get_sampler(name)(gm, sig[0] * z, sig) - x_ref).norm(dim=1).mean()
            table.setdefault(name, []).append((steps * NFE_PER_STEP[name], float(err)))
    fitted = fit_schedule(gm, schedule, steps=tuple(b for b in budgets if b <= 40), shape=(2,), n=64, grid=grid)
    for n, sig in sorted(fitted.items()):
        err = (get_sampler("dpmpp_2m")(gm, sig[0] * z, sig) - x_ref).norm(dim=1).mean()
        table.setdefault("dpmpp_2m + fitted steps", []).append((n, float(err)))
    for name, pts in table.items():
        print(f"{name:26s}", "  ".join(f"NFE {n:3.0f}: {e:.2e}" for n, e in pts))
    return [
        plot_metric_vs_nfe(
            table,
            Path(out_dir) / "error_vs_nfe.png",
            ylabel="mean ‖x − x_ref‖",
            title="exact GMM denoiser, EDM σ-schedule",
        )
    ]


if __name__ == "__main__":
    print(*main(), sep="\n")
