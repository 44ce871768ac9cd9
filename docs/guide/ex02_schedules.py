"""Noise schedules: how fast the signal fraction ᾱ falls, and why the terminal SNR matters.

Linear (Ho et al. 2020), scaled-linear (Rombach et al. 2022), cosine (Nichol & Dhariwal 2021), sigmoid, and the
linear schedule rescaled to zero terminal SNR (Lin et al. 2023). A schedule whose last ᾱ_T is not ~0 leaves
signal in the "pure noise" the sampler starts from, a train/test mismatch.

    python docs/guide/ex02_schedules.py
"""

from __future__ import annotations

from pathlib import Path

from noisecraft.core.schedules import DiscreteVP
from noisecraft.evaluation.plots import DEFAULT_SCHEDULES, plot_schedules

SMALLEST = {"steps": 100}


def main(out_dir: str | Path = "pictures/guide", steps: int = 1000) -> list[Path]:
    for name in DEFAULT_SCHEDULES:
        base = name.removesuffix("+zsnr")
        s = DiscreteVP.named(base, steps=steps, zero_terminal_snr=name.endswith("+zsnr"))
        print(
            f"{name:14s} ᾱ_1 = {float(s.alphas_cumprod[0]):.5f}   ᾱ_T = {float(s.alphas_cumprod[-1]):.3g}   "
            f"σ_max = {s.sigma_max:.4g}"
        )
    return [plot_schedules(Path(out_dir) / "schedules.png", steps=steps)]


if __name__ == "__main__":
    print(*main(), sep="\n")
