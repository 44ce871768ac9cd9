"""The reparameterisation trick, and one network that can predict ε, x0, v or the score.

1. x_t = √ᾱ·x0 + √(1−ᾱ)·ε with ε ~ N(0, I) is a sample of q(x_t | x0) that is a differentiable function of x0:
   gradients flow through the noise draw (Kingma & Welling 2014). We check that the pathwise gradient
   ∂E[‖x_t‖²]/∂x0 = 2ᾱ·x0 matches the closed form.
2. Given (x_t, σ), predicting ε, x0, v or the score are equivalent: each is an affine function of the
   others (Salimans & Ho 2022; Karras et al. 2022, Table 1). We convert the exact denoiser's x̂0 into each
   target and back, and draw the targets against σ.

    python docs/guide/ex03_reparameterisation.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisecraft.core.oracles import GaussianData
from noisecraft.core.precond import PARAMETERISATIONS, convert
from noisecraft.evaluation.plots import _pyplot, _save

SMALLEST = {"draws": 2000}


def main(out_dir: str | Path = "pictures/guide", draws: int = 20000, seed: int = 0) -> list[Path]:
    g = torch.Generator().manual_seed(seed)
    # 1. pathwise gradient through the noise draw
    abar = 0.3
    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(draws, 2, generator=g, dtype=torch.float64)
    xt = abar**0.5 * x0 + (1 - abar) ** 0.5 * eps
    (grad,) = torch.autograd.grad(xt.pow(2).sum(1).mean(), x0)
    print(f"pathwise gradient {grad.tolist()}  closed form {(2 * abar * x0).tolist()}")
    # 2. the parameterisations of one exact denoiser
    oracle = GaussianData(torch.zeros(1), torch.tensor(0.25))
    x0_true, e = torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([[0.6]], dtype=torch.float64)
    sigmas = torch.logspace(-2, 2, 60, dtype=torch.float64)
    curves: dict[str, list[float]] = {k: [] for k in PARAMETERISATIONS}
    for s in sigmas:
        x = x0_true + s * e  # VE state
        x0_hat = oracle(x, s)
        for kind in PARAMETERISATIONS:
            out = convert(x, s, x0_hat, "x0", kind)
            back = convert(x, s, out, kind, "x0")
            assert torch.allclose(back, x0_hat, atol=1e-9), kind
            curves[kind].append(float(out))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, vals in curves.items():
        ax.plot(sigmas, vals, label=f"{kind} target")
    ax.set(
        xscale="log",
        xlabel="σ",
        ylabel="network output",
        ylim=(-3, 3),
        title="one exact denoiser seen as ε, x0, v, EDM or score prediction",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [_save(fig, Path(out_dir) / "parameterisations.png")]


if __name__ == "__main__":
    print(*main(), sep="\n")
