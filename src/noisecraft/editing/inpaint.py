"""Inpainting and outpainting with any unconditional or conditional denoiser, no retraining.

Two methods, both returning the unmasked pixels of the input exactly (a final composite):

- ``"replace"``: the known region is replaced by the noised original at every noise level (the "replacement"
  method of Song et al. 2021, "Score-Based Generative Modeling through SDEs", App. I.2). It is written as a
  denoiser wrapper, ``KnownRegionDenoiser``, so it runs with every sampler of the registry, multistep ones
  included: the network always sees x_known = x0 + σ·ε in the kept region, and x̂0 there is x0.
- ``"repaint"``: RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
  Models", Alg. 1 with the jump schedule of Sec. 4.2): after each reverse step the known region is re-noised
  from the original with fresh noise; every `jump_length` steps the state is pushed back up `jump_length`
  levels with forward noise (x_σ = x_σ' + √(σ² − σ'²)·ε) and denoised again, `resample` times in all, so the
  generated region harmonises with the known one. Each reverse step is one step of any single-step sampler.

Mask convention (as in most tools): mask = 1 where pixels are generated, 0 where the input is kept.
Outpainting is inpainting with the mask outside the kept picture (see editing.io.rect_mask(outside=True)).

In latent space (``codec=``, a run trained with ``--latent``) the image is encoded and the mask is brought to the
latent grid by ``latent_mask``: a latent cell is generated when any pixel of its f×f patch (f the autoencoder's
factor) is, so the kept latents lie wholly under kept pixels. Either method then runs on the latents, the result
is decoded, and the kept pixels are pasted back from the input: unmasked pixels are returned exactly, as in pixel
space (the decoder alone would only approximate them).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser, batch_sigma
from noisecraft.core.process import expand
from noisecraft.core.schedules import check_sigmas
from noisecraft.editing.io import check_mask
from noisecraft.editing.sdedit import resolve_sampler
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.noise import Generators, randn
from noisecraft.sampling.samplers import Callback, Sampler

METHODS = ("replace", "repaint")


class KnownRegionDenoiser:
    """D'(x, σ) = keep·x0 + (1 − keep)·D(keep·(x0 + σ·ε) + (1 − keep)·x, σ): a denoiser that knows part of x0.

    Args:
        denoiser: the model D.
        x0: the original images (B, ...).
        keep: 1 where x0 is known (B, ...) or broadcastable.
        noise: the ε used to noise the known region (B, ...), fixed for the whole run so that an ODE sampler's
            state in the kept region stays exactly on x0 + σ·ε.
    """

    def __init__(self, denoiser: Denoiser, x0: Tensor, keep: Tensor, noise: Tensor):
        self.denoiser, self.x0, self.keep, self.noise = denoiser, x0, keep, noise

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        s = expand(batch_sigma(sigma, x), x)  # (B, 1, ...)
        x_in = self.keep * (self.x0 + s * self.noise) + (1 - self.keep) * x
        return self.keep * self.x0 + (1 - self.keep) * self.denoiser(x_in, sigma, **cond)


def repaint_schedule(steps: int, jump_length: int = 10, resample: int = 10) -> list[int]:
    """Indices into the σ list (0 = σ_max, steps = 0) in the order RePaint visits them.

    Walking down, at every multiple of `jump_length` the walk goes back up `jump_length` levels, and does so
    `resample − 1` times at each such point, so each stretch of `jump_length` levels is denoised `resample`
    times. resample=1 is a plain walk 0, 1, ..., steps.
    """
    if not isinstance(jump_length, int) or jump_length < 1:
        raise NoisecraftError(f"jump_length must be a positive integer, got {jump_length!r}")
    if not isinstance(resample, int) or resample < 1:
        raise NoisecraftError(f"resample must be a positive integer (1 = no resampling), got {resample!r}")
    left = {j: resample - 1 for j in range(jump_length, steps + 1, jump_length)}
    path, i = [0], 0
    while i < steps:
        i += 1
        path.append(i)
        if left.get(i, 0) > 0:
            left[i] -= 1
            for _ in range(jump_length):
                i -= 1
                path.append(i)
    return path


def latent_mask(mask: Tensor, latent_hw: tuple[int, int]) -> Tensor:
    """A pixel mask (B, C, H, W) (1 = generate) on the latent grid (B, 1, h, w): 1 where any pixel of the cell's
    (H/h)×(W/w) patch, in any channel, is generated (max pooling), so kept latents never touch masked pixels."""
    H, W = mask.shape[-2:]
    h, w = latent_hw
    if H % h or W % w:
        raise NoisecraftError(f"image side {H}×{W} is not a multiple of the latent side {h}×{w}")
    m = mask.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    return torch.nn.functional.max_pool2d(m, kernel_size=(H // h, W // w))


def _check_single_steps(sampler: str | Sampler) -> None:
    """RePaint calls the sampler on single σ pairs that need not end at 0: refuse samplers that require it."""
    from noisecraft.sampling.samplers import SAMPLER_SPECS

    spec = SAMPLER_SPECS.get(sampler) if isinstance(sampler, str) else None
    if spec is not None and getattr(spec, "final_zero", False):
        raise NoisecraftError(
            f"sampler {sampler!r} needs its σ list to end at 0, so it cannot take RePaint's single steps; "
            "use ddim (eta=1 is the DDPM step), euler, heun or euler_ancestral"
        )


@torch.no_grad()
def inpaint(
    denoiser: Denoiser,
    x: Tensor,
    mask: Tensor,
    sigmas: Tensor,
    *,
    method: str = "replace",
    sampler: str | Sampler | None = None,
    jump_length: int = 10,
    resample: int = 10,
    cond: dict | None = None,
    generator: Generators = None,
    callback: Callback = None,
    codec=None,
    **knobs,
) -> Tensor:
    """Fill the masked region of x (B, ...) so it agrees with the rest; unmasked pixels are returned unchanged.

    Args:
        mask: 1 = generate, 0 = keep; any shape that broadcasts to x ((H, W), (1, H, W), (B, C, H, W), ...).
        sigmas: descending σ list ending at 0 (step_sigmas(schedule, steps)).
        method: "replace" or "repaint".
        sampler: a registry name or function; default "euler" for replace, and for repaint "ddim" with eta=1,
            i.e. the DDPM posterior step of the paper.
            RePaint calls it one step at a time, so multistep samplers run as their first-order start step.
        jump_length, resample: RePaint's jump length j and number of resamplings r (ignored by "replace").
        codec: the run's codec for a model in latent space (see the module docstring); None: pixels.
    """
    method = check_choice("inpainting method", method, METHODS)
    sigmas = check_sigmas(sigmas, final_zero=True)
    m = torch.as_tensor(mask)
    if ((m != 0) & (m != 1)).any():  # checked where the mask lives (usually the CPU: no device sync)
        raise NoisecraftError("mask values must be 0 (keep) or 1 (generate)")
    keep = 1 - check_mask(m, x)  # (B, ...) on x's device
    if codec is not None:  # latent space: inpaint the latents under the pooled mask, decode, paste kept pixels
        z = codec.encode(x)  # (B, c, h, w)
        zmask = latent_mask(torch.broadcast_to(m.to(x.dtype), x.shape), z.shape[-2:])  # (B, 1, h, w), m's device
        kw = dict(method=method, sampler=sampler, jump_length=jump_length, resample=resample, cond=cond)
        out = codec.decode(inpaint(denoiser, z, zmask, sigmas, generator=generator, callback=callback, **kw, **knobs))
        return keep * x + (1 - keep) * out.to(x.dtype)
    sampler = sampler or ("euler" if method == "replace" else "ddim")
    if method == "repaint":
        _check_single_steps(sampler)
        if sampler == "ddim":
            knobs.setdefault("eta", 1.0)  # DDIM with η = 1 is the DDPM posterior step RePaint uses
    run = resolve_sampler(sampler)
    s_max = sigmas[0].to(x.dtype)
    if method == "replace":
        eps = randn(x.shape, generator, x.dtype, x.device)
        wrapped = KnownRegionDenoiser(denoiser, x, keep, eps)
        start = keep * (x + s_max * eps) + (1 - keep) * s_max * eps
        out = run(wrapped, start, sigmas, cond=cond, generator=generator, callback=callback, **knobs)
        return keep * x + (1 - keep) * out

    path = repaint_schedule(len(sigmas) - 1, jump_length, resample)
    z = randn(x.shape, generator, x.dtype, x.device)
    state = keep * (x + s_max * z) + (1 - keep) * s_max * z
    for a, b in itertools.pairwise(path):
        if b > a:  # reverse step σ_a → σ_b, then put back the known region noised to σ_b
            state = run(denoiser, state, sigmas[a : b + 1], cond=cond, generator=generator, **knobs)
            known = x + sigmas[b].to(x.dtype) * randn(x.shape, generator, x.dtype, x.device)
            state = keep * known + (1 - keep) * state
        else:  # jump back up: forward diffusion σ_a → σ_b > σ_a
            up = (sigmas[b] ** 2 - sigmas[a] ** 2).sqrt().to(x.dtype)
            state = state + up * randn(x.shape, generator, x.dtype, x.device)
    return keep * x + (1 - keep) * state
