"""Likelihood of data under a diffusion model, in nats and bits per dimension.

Two estimators, both on the denoiser contract D(x; σ) → x̂0, so they work for any parameterisation:

1. ``ode_log_likelihood``: the instantaneous change of variables along the probability-flow ODE
   (Song et al. 2021, Sec. 4.3 and App. D.2; Chen et al. 2018; Grathwohl et al. 2019, "FFJORD").
   In s = log σ the ODE reads dx/ds = f(x, s) = x − D(x; e^s), and along its solution
   d log p_s(x(s))/ds = −∇·f, so  log p_{σ_min}(x) = log N(x(σ_max); 0, σ_max² I) + ∫ ∇·f ds.
   The divergence is exact (d backward passes; low dimension) or Hutchinson's estimate εᵀ(∂f/∂x)ε with
   Rademacher or Gaussian ε fixed along the path. Integration: classical RK4 with fixed steps in log σ.
2. ``ddpm_vlb``: the variational bound of a discrete-time DDPM (Ho et al. 2020, Eq. 5; Nichol & Dhariwal
   2021, Sec. 2): L = L_T + Σ_{t≥2} KL(q(x_{t−1}|x_t, x0) ‖ p(x_{t−1}|x_t)) + L_0, with p's mean the posterior
   mean at x̂0, its variance β̃_t ("posterior") or β_t ("beta"), and a discretised Gaussian decoder L_0.

For images quantised to `levels` values in [−1, 1], ``dequantize`` adds uniform noise inside each bin
(Theis et al. 2016; Ho et al. 2019) so the continuous density bounds the discrete one, and
``bits_per_dim`` adds the log2(levels/2) bin-width term.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import DiscreteVP
from noisecraft.errors import NoisecraftError, check_choice

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def dequantize(x: Tensor, levels: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation of data quantised to `levels` values in [−1, 1]: k → 2(k + u)/levels − 1."""
    k = ((x.double() + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
    return (2 * (k + u) / levels - 1).to(x.dtype)


def bits_per_dim(log_prob: Tensor, dim: int, levels: int | None = 256) -> Tensor:
    """Convert a continuous log-density (nats) of data in [−1, 1] to bits/dim of the discrete data.

    With uniform dequantisation into bins of width 2/levels: −log2 P(k) ≤ −log2 p(x)/d + log2(levels/2).
    levels=None gives plain −log p/(d ln 2) (continuous data).
    """
    bpd = -log_prob / (dim * math.log(2))
    return bpd + math.log2(levels / 2) if levels else bpd


# ----------------------------------------------------------------------------------------------------------
@dataclass
class LikelihoodResult:
    """Per-sample log p (nats), split into prior term and the integrated divergence, and bits/dim."""

    log_prob: Tensor  # (B,)
    prior_log_prob: Tensor  # (B,) log N(x(σ_max); 0, σ_max² I)
    delta_log_prob: Tensor  # (B,) ∫ ∇·f ds
    bpd: Tensor  # (B,)
    nfe: int


def _divergence_fn(
    denoiser: Denoiser, method: str, probe: Tensor | None, cond: dict
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Returns g(x, σ) → (f (B, ...), ∇·f (B,)) with f = x − D(x; σ)."""

    def g(x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            f = x - denoiser(x, sigma, **cond)
            if method == "hutchinson":
                assert probe is not None
                (vjp,) = torch.autograd.grad(f, x, probe)
                div = (vjp * probe).flatten(1).sum(1)
            else:
                ff, d = f.flatten(1), f[0].numel()
                div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
                for i in range(d):
                    (gi,) = torch.autograd.grad(ff[:, i].sum(), x, retain_graph=i < d - 1)
                    div = div + gi.flatten(1)[:, i]
        return f.detach(), div.detach()

    return g


def ode_log_likelihood(
    denoiser: Denoiser,
    x: Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    steps: int = 64,
    divergence: str = "exact",
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    levels: int | None = None,
    cond: dict | None = None,
) -> LikelihoodResult:
    """log p_{σ_min}(x) under the model's probability-flow ODE (see the module docstring).

    Args:
        x: (B, ...) data points (dequantise first for discrete data); run in the dtype of x (float64 for oracles).
        sigma_min / sigma_max: integration range; the prior at σ_max is N(0, σ_max² I).
        steps: RK4 steps, uniform in log σ (4 denoiser calls each).
        divergence: "exact" (one backward pass per dimension) or "hutchinson" (one per call).
        levels: quantisation levels for the bits/dim conversion (None: continuous data).
    Returns per-sample log p (nats) and bits/dim.
    """
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("probe", probe, PROBES)
    if not 0 < sigma_min < sigma_max:
        raise NoisecraftError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if steps < 1:
        raise NoisecraftError(f"steps must be ≥ 1, got {steps}")
    eps = None
    if divergence == "hutchinson":
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x)
        if probe == "rademacher":
            eps = eps.sign()
    g = _divergence_fn(denoiser, divergence, eps, cond or {})
    s_grid = torch.linspace(math.log(sigma_min), math.log(sigma_max), steps + 1, dtype=torch.float64)
    delta = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i in range(steps):
        s, h = s_grid[i], s_grid[i + 1] - s_grid[i]
        k1, d1 = g(x, s.exp())
        k2, d2 = g(x + (h / 2).to(x.dtype) * k1, (s + h / 2).exp())
        k3, d3 = g(x + (h / 2).to(x.dtype) * k2, (s + h / 2).exp())
        k4, d4 = g(x + h.to(x.dtype) * k3, (s + h).exp())
        x = x + (h / 6).to(x.dtype) * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4).double()
    dim = x[0].numel()
    xf = x.flatten(1).double()
    prior = -0.5 * (xf**2).sum(1) / sigma_max**2 - 0.5 * dim * math.log(2 * math.pi * sigma_max**2)
    logp = prior + delta
    return LikelihoodResult(logp, prior, delta, bits_per_dim(logp, dim, levels), nfe=4 * steps)


# ----------------------------------------------------------------------------------------------------------
def _normal_kl(m1: Tensor, v1: Tensor | float, m2: Tensor, v2: Tensor | float) -> Tensor:
    """Elementwise KL(N(m1, v1) ‖ N(m2, v2))."""
    v1, v2 = torch.as_tensor(v1, dtype=torch.float64), torch.as_tensor(v2, dtype=torch.float64)
    return 0.5 * (torch.log(v2 / v1) + v1 / v2 + (m1 - m2) ** 2 / v2 - 1)


def _std_normal_cdf(z: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, var: Tensor | float, levels: int = 256) -> Tensor:
    """log P(x) elementwise for x on the `levels`-point grid of [−1, 1] under N(mean, var) integrated over
    x's bin [x − 1/(L−1), x + 1/(L−1)], the outermost bins extended to ±∞ (Ho et al. 2020, Eq. 13)."""
    std = torch.as_tensor(var, dtype=torch.float64).sqrt()
    half = 1.0 / (levels - 1)
    upper = torch.where(x > 1 - 1e-6, torch.ones_like(x), _std_normal_cdf((x - mean + half) / std))
    lower = torch.where(x < -1 + 1e-6, torch.zeros_like(x), _std_normal_cdf((x - mean - half) / std))
    return torch.log((upper - lower).clamp(min=1e-12))


@dataclass
class VLBResult:
    """Per-sample terms of the DDPM bound, in nats: L_T (B,), Σ L_{t−1} (B,), L_0 (B,), total and bits/dim."""

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor
    total: Tensor
    bpd: Tensor
    terms: Tensor  # (B, K−1): the KL term of each step t = 2..K, in nats


@torch.no_grad()
def ddpm_vlb(
    denoiser: Denoiser,
    x0: Tensor,
    schedule: DiscreteVP,
    *,
    timesteps: Tensor | None = None,
    variance: str = "posterior",
    decoder: str = "discretized",
    levels: int = 256,
    generator: torch.Generator | None = None,
    cond: dict | None = None,
) -> VLBResult:
    """Variational bound −log p(x0) ≤ L of the DDPM reverse chain built on the denoiser.

    Args:
        x0: (B, ...) data in [−1, 1] (on the `levels` grid for the discretised decoder).
        schedule: the discrete VP schedule; ``timesteps`` (ascending indices into it) restricts the chain to a
            sub-sequence, itself a valid DDPM whose bound is computed exactly (Nichol & Dhariwal 2021, Sec. 4).
        variance: reverse-step variance β̃_t ("posterior") or β_t ("beta") (Ho et al. 2020, Sec. 3.2).
        decoder: "discretized" (bits/dim of 8-bit data) or "gaussian" (a density for continuous data).
    Each KL term uses one fresh noise draw per sample (an unbiased Monte Carlo estimate of the bound).
    """
    check_choice("variance", variance, ("posterior", "beta"))
    check_choice("decoder", decoder, ("discretized", "gaussian"))
    if not isinstance(schedule, DiscreteVP):
        raise NoisecraftError("ddpm_vlb needs a discrete VP schedule (linear, scaled_linear, cosine, sigmoid)")
    idx = torch.arange(schedule.num_timesteps) if timesteps is None else torch.as_tensor(timesteps).long()
    abar = schedule.alphas_cumprod[idx].clamp(min=1e-12)  # (K,) decreasing
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    beta = 1 - abar / abar_prev  # (K,) betas of the (possibly respaced) chain
    x0d = x0.double()
    B, dim = x0.shape[0], x0[0].numel()
    cond = cond or {}

    def noisy(k: int) -> tuple[Tensor, Tensor]:
        """VP state x_t and the denoiser's x̂0 at step index k."""
        eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0.device)
        xt = abar[k].sqrt() * x0d + (1 - abar[k]).sqrt() * eps
        sigma = ((1 - abar[k]) / abar[k]).sqrt()
        x0_hat = denoiser((xt / abar[k].sqrt()).to(x0.dtype), sigma.to(x0.dtype).expand(B), **cond)
        return xt, x0_hat.double()

    # L_T: KL(q(x_T | x0) ‖ N(0, I))
    prior = _normal_kl(abar[-1].sqrt() * x0d, 1 - abar[-1], torch.zeros_like(x0d), 1.0).flatten(1).sum(1)
    terms = []
    for k in range(1, len(idx)):
        xt, x0_hat = noisy(k)
        c1 = abar_prev[k].sqrt() * beta[k] / (1 - abar[k])
        c2 = (1 - beta[k]).sqrt() * (1 - abar_prev[k]) / (1 - abar[k])
        post_var = beta[k] * (1 - abar_prev[k]) / (1 - abar[k])
        model_var = post_var if variance == "posterior" else beta[k]
        kl = _normal_kl(c1 * x0d + c2 * xt, post_var, c1 * x0_hat + c2 * xt, model_var)
        terms.append(kl.flatten(1).sum(1))
    # L_0: −log p(x0 | x_1), mean x̂0(x_1), variance β_1
    _, x0_hat = noisy(0)
    if decoder == "discretized":
        ll = discretized_gaussian_log_likelihood(x0d, x0_hat, beta[0], levels)
    else:
        ll = -0.5 * ((x0d - x0_hat) ** 2 / beta[0] + torch.log(2 * math.pi * beta[0]))
    dec = -ll.flatten(1).sum(1)
    kl_terms = torch.stack(terms, 1) if terms else x0d.new_zeros(B, 0)
    total = prior + kl_terms.sum(1) + dec
    bpd = total / (dim * math.log(2))
    return VLBResult(prior, kl_terms.sum(1), dec, total, bpd, kl_terms)


# ----------------------------------------------------------------------------------------------------------
def reference_nll(
    denoiser: Denoiser,
    schedule,
    images: Tensor,
    *,
    levels: int = 256,
    resolution: int | None = None,
    steps: int = 32,
    batch_size: int = 250,
    seed: int = 0,
) -> dict:
    """Probability-flow NLL in bits/dim of real `images` (N, C, H, W) in [−1, 1] held on a grid of `levels`
    values (Hutchinson divergence, uniform dequantisation), on the denoiser's device.

    Images of another size are resized to `resolution` (bilinear) and then treated as 8-bit data, since they
    are no longer on their original grid. Returns {"bpd_mean", "bpd_sem", "images", "levels", "method"}.
    """
    from noisecraft.sampling.generate import model_device

    if resolution is not None and images.shape[-1] != resolution:
        images = torch.nn.functional.interpolate(
            images, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
        levels = 256
    device = model_device(denoiser)
    x = dequantize(images, levels, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed)
    bpd = []
    for chunk in x.split(batch_size):
        r = ode_log_likelihood(
            denoiser,
            chunk.to(device),
            sigma_min=max(schedule.sigma_min, 1e-3),
            sigma_max=schedule.sigma_max,
            steps=steps,
            divergence="hutchinson",
            generator=g,
            levels=levels,
        )
        bpd.append(r.bpd.cpu())
    b = torch.cat(bpd)
    return {
        "bpd_mean": float(b.mean()),
        "bpd_sem": float(b.std() / len(b) ** 0.5) if len(b) > 1 else float("nan"),
        "images": len(b),
        "levels": levels,
        "method": f"probability-flow ODE, RK4 {steps} steps, Hutchinson, uniform dequantisation",
    }
