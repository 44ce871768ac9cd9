"""img2img by SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations"): perturb an input image with noise up to a level σ_s, then run any sampler from σ_s
down to 0. Small strength keeps the layout and detail; large strength keeps only the coarse layout; strength 1
forgets the input.

Strength s ∈ [0, 1] picks where to join the sampler's σ list (the convention of diffusers' img2img):
with N steps the edit runs the last round(s·N) of them, starting at σ_{N − round(s·N)}.
- s = 0 runs no step and returns the input exactly;
- s = 1 starts from pure noise σ_max·ε, exactly as generation does, so the output ignores the input.

Guidance towards a class or a prompt is not special here: pass ``cond={"class_labels": ...}`` or a prompt's
text embedding (GLIDE-style text-guided editing, Nichol et al. 2022) and/or a guided denoiser (a wrapper from
noisecraft.sampling.guidance or sampling.prompt_guidance) as `denoiser`.

In latent space (a run trained with ``--latent``) pass the run's ``codec``: the image is encoded, edited as a
latent and decoded; latents are never clipped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import check_sigmas
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.noise import Generators, randn
from noisecraft.sampling.samplers import Callback, Sampler, get_sampler


def check_strength(strength: float) -> float:
    s = float(strength)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise NoisecraftError(f"strength must be in [0, 1] (0 = keep the input, 1 = ignore it), got {strength!r}")
    return s


def strength_sigmas(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of a descending σ list that an edit of this strength runs: the last round(s·N) steps (+1 level)."""
    sigmas = check_sigmas(sigmas, final_zero=True)
    steps = len(sigmas) - 1
    n = round(check_strength(strength) * steps)
    return sigmas[steps - n :]


def resolve_sampler(sampler: str | Sampler) -> Sampler:
    """A registry name or a sampler function."""
    return get_sampler(sampler) if isinstance(sampler, str) else sampler


@torch.no_grad()
def img2img(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    strength: float,
    *,
    sampler: str | Sampler = "euler",
    cond: dict | None = None,
    generator: Generators = None,
    noise: Tensor | None = None,
    callback: Callback = None,
    codec=None,
    **knobs,
) -> Tensor:
    """SDEdit: x (B, ...) → noised to σ_s = the strength's σ → denoised by `sampler` along the rest of `sigmas`.

    Args:
        denoiser: any D(x, σ, **cond) → x̂0 (a guided denoiser for guided edits).
        x: the input images (B, ...), in the model's data space (e.g. [-1, 1] pixels).
        sigmas: the full descending σ list of the sampler, ending at 0 (step_sigmas(schedule, steps)).
        strength: in [0, 1]; see the module docstring.
        sampler: a registry name ("euler", "ddpm", ...) or a sampler function.
        noise: the ε used to perturb x (B, ...); drawn from `generator` (one per sample allowed) when omitted.
        codec: the run's codec (models/autoencoder.py) for a model in latent space: x is encoded, edited and
            decoded (`noise` then has the latent's shape); None: the model works on x itself.
        knobs: passed on to the sampler (e.g. eta).
    """
    run = strength_sigmas(sigmas, strength)
    if len(run) == 1:  # strength 0 (or too few steps for this strength): nothing to do
        return x.clone()
    if codec is not None:  # latent space: encode, edit, decode
        z = codec.encode(x)  # (B, c, h, w)
        kw = dict(sampler=sampler, cond=cond, generator=generator, noise=noise, callback=callback)
        return codec.decode(img2img(denoiser, z, sigmas, strength, **kw, **knobs))
    eps = randn(x.shape, generator, x.dtype, x.device) if noise is None else noise.to(x)
    if eps.shape != x.shape:
        raise NoisecraftError(f"noise must have the shape of x {tuple(x.shape)}, got {tuple(eps.shape)}")
    s0 = run[0].to(x.dtype)
    # at full strength start where generation starts, σ_max·ε, so the output cannot depend on x
    x_start = s0 * eps if len(run) == len(sigmas) else x + s0 * eps
    return resolve_sampler(sampler)(denoiser, x_start, run, cond=cond, generator=generator, callback=callback, **knobs)
