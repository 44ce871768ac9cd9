"""Score-based samplers: annealed Langevin dynamics and predictor–corrector.

The score of the noisy marginal comes from the denoiser by Tweedie's formula, ∇log p_σ(x) = (D(x; σ) − x)/σ².
One Langevin step x ← x + δ·∇log p_σ(x) + √(2δ)·z is written once (``langevin_step``); the two samplers differ
in how they pick δ and what they do between noise levels. A σ list ending at 0 ends with a denoising call
x = D(x; σ_last) (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020, "denoising the last step").
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from noisecraft.core.process import expand
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.noise import Generators
from noisecraft.sampling.registry import Model, Step, register
from noisecraft.sampling.samplers import ancestral_split, exp_step, noise_like


def score(x: Tensor, x0: Tensor, sigma: float) -> Tensor:
    """∇_x log p_σ(x) = (x̂0 − x)/σ² (Tweedie)."""
    return (x0 - x) / sigma**2


def langevin_step(x: Tensor, x0: Tensor, sigma: float, delta: Tensor | float, z: Tensor) -> Tensor:
    """x + δ·∇log p_σ(x) + √(2δ)·z, with δ a scalar or per-sample (B,)."""
    delta = torch.as_tensor(delta, dtype=torch.float64)
    return x + expand(delta, x) * score(x, x0, sigma) + expand((2 * delta).sqrt(), x) * z


def _levels(sigmas: Tensor) -> list[float]:
    return [s for s in sigmas.tolist() if s > 0]


MAX_DELTA = 0.5  # δ/σ² cap: Euler–Maruyama's stationary variance on N(0, σ²) is σ²/(1 − δ/2σ²), 1.33σ² here


def level_delta(sigma: float, sigma_next: float, n_steps: int, step_size: float) -> float:
    """Langevin step δ at level σ: δ = σ²·max(step_size/2, 1 − (σ'/σ)^{1/n_steps}), capped at MAX_DELTA·σ².

    Noise left over from the level above decays by (1 − δ/σ²) per step where noise dominates, so n_steps steps
    shrink it by (1 − δ/σ²)^{n_steps}. Song & Ermon's fixed δ = ε·σ²/2σ_L² assumes ~hundreds of levels 4% apart;
    on a few widely spaced levels (a 20-step ρ=7 list has σ'/σ ≈ 0.3 at the bottom) the leftover noise then
    outgrows σ from level to level and ends in the image as salt-and-pepper noise, since D(x; σ) ≈ x at small σ.
    The floor 1 − (σ'/σ)^{1/n_steps} makes each level shrink the leftover at least as fast as σ falls; dense
    lists keep the step_size rule unchanged."""
    ratio = sigma_next / sigma if sigma_next > 0 else 1.0  # the last level is followed by the denoising call
    return sigma**2 * min(max(0.5 * step_size, 1.0 - ratio ** (1.0 / n_steps)), MAX_DELTA)


@register(
    "langevin",
    "Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): n_steps Langevin steps per level, step α ∝ σ²; stochastic",
    deterministic=False,
)
def annealed_langevin(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    n_steps: int = 10,
    step_size: float = 1.0,
) -> Iterator[Step]:
    """At each level σ_i: x ← x + (α_i/2)·∇log p_σ_i(x) + √α_i·z, n_steps times, with α_i = step_size·σ_i²
    (Song & Ermon's α_i = ε·σ_i²/σ_L², i.e. step_size = ε/σ_L²), raised where the levels are far apart so the
    chain keeps up with σ (``level_delta``). One network call per Langevin step."""
    if n_steps < 1 or step_size <= 0:
        raise NoisecraftError(f"langevin needs n_steps >= 1 and step_size > 0, got {n_steps}, {step_size}")
    levels = _levels(sigmas)
    x0 = x
    for i, s in enumerate(levels):
        s_next = levels[i + 1] if i + 1 < len(levels) else 0.0
        delta = level_delta(s, s_next, n_steps, step_size)
        for _ in range(n_steps):
            x0 = model(x, s)
            x = langevin_step(x, x0, s, delta, noise_like(x, generator))
        if s_next == 0 and sigmas[-1] == 0:
            x = x0 = model(x, s)
        yield model.step(i, s, s_next, x, x0)


PREDICTORS = ("reverse_diffusion", "ancestral", "euler")
STEP_RULES = ("snr", "sigma")


@register(
    "pc",
    "Predictor–corrector (Song et al. 2021, Alg. 2–3): Langevin corrector at signal-to-noise 'snr', then a "
    "reverse-diffusion predictor; stochastic",
    deterministic=False,
)
def predictor_corrector(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    snr: float = 0.16,
    n_corrector: int = 1,
    predictor: str = "reverse_diffusion",
    step_rule: str = "sigma",
) -> Iterator[Step]:
    """Per level: n_corrector Langevin steps, then the predictor σ → σ': "reverse_diffusion" (Euler–Maruyama on
    the reverse VE SDE: x + (σ²−σ'²)∇log p + √(σ²−σ'²)z), "ancestral" (the DDPM posterior) or "euler" (PF-ODE).

    Corrector step δ: step_rule="sigma" (default) uses the state-independent δ = 2·snr²·σ² (Song et al.'s
    rule with ‖z‖² ≈ d and ‖∇log p‖² ≈ d/σ², its value when noise dominates). step_rule="snr" is Song et al.'s
    δ = 2(snr·‖z‖/‖∇log p‖)² with the norms taken per sample (theirs average over the batch, which would make a
    sample depend on its batch); such a state-dependent δ biases the chain, visibly in low dimension
    (tests/test_samplers_exact.py measures it on a 2-D mixture)."""
    check_choice("predictor", predictor, PREDICTORS)
    check_choice("step_rule", step_rule, STEP_RULES)
    if n_corrector < 0 or snr <= 0:
        raise NoisecraftError(f"pc needs n_corrector >= 0 and snr > 0, got {n_corrector}, {snr}")
    sig = sigmas.tolist()
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        for _ in range(n_corrector):
            x0 = model(x, s)
            g, z = score(x, x0, s), noise_like(x, generator)
            if step_rule == "sigma":
                x = langevin_step(x, x0, s, 2 * snr**2 * s**2, z)
                continue
            g_norm = g.reshape(len(g), -1).double().norm(dim=1)
            z_norm = z.reshape(len(z), -1).double().norm(dim=1)
            # δ = 2(snr‖z‖/‖g‖)², per sample; capped at σ² (the step is then stable even where one sample's
            # score is nearly 0, which batch-averaged norms hide and per-sample norms expose in low dimension).
            delta = (2 * (snr * z_norm / g_norm.clamp(min=1e-30)) ** 2).clamp(max=s**2)
            x = langevin_step(x, x0, s, delta, z)
        x0 = model(x, s)
        if predictor == "reverse_diffusion":
            x = x + (s**2 - s_next**2) * score(x, x0, s)
            if s_next > 0:
                x = x + (s**2 - s_next**2) ** 0.5 * noise_like(x, generator)
        elif predictor == "ancestral":
            down, up = (float(v) for v in ancestral_split(s, s_next, 1.0))
            x = exp_step(x, x0, s, down)
            if up > 0:
                x = x + up * noise_like(x, generator)
        elif predictor == "euler":
            x = x + (s_next - s) * (x - x0) / s
        yield model.step(i, s, s_next, x, x0)
