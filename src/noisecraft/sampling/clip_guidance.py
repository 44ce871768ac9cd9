"""CLIP guidance as a denoiser transform (GLIDE, Nichol et al. 2022, Sec. 2.3; Crowson's CLIP-guided diffusion).

The guided score adds s·∇_x log p(text | x), with log p(text | x) = τ·cos(CLIP_img(·), CLIP_txt(text)) + const
(τ the CLIP's learned temperature: the logit of CLIP's own softmax over texts). By Tweedie, D = x + σ²·score, so

    D_s(x; σ) = D(x; σ) + s·σ²·∇_x τ·cos(CLIP_img(image(x, σ)), t),

where the image CLIP sees is either
- ``through="x0"``: the denoised estimate x̂0 = D(x; σ) (decoded to pixels for a latent model), the gradient
  taken through the denoiser (and the decoder); works with any CLIP, or
- ``through="noisy"``: the noisy state x itself with σ as an input, for a noise-aware CLIP (GLIDE's noised CLIP);
  one CLIP call per step and no backward pass through the denoiser.

Guidance acts only for σ in the interval (σ_lo, σ_hi]; elsewhere, and at s = 0, D_s is D exactly. It composes
with CFG: wrap a (Prompt)CFGDenoiser; the text embedding arrives per sample in ``cond["guide_text"]`` (B, E), or
is bound at construction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser, batch_sigma
from noisecraft.core.process import expand
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.guidance import _check_scale, parse_interval

THROUGH = ("x0", "noisy")
CLIP_KEY = "guide_text"  # the cond entry holding each sample's CLIP text embedding (B, E)


class ClipGuidedDenoiser:
    """D_s = D + s·σ²·∇_x τ·cos(CLIP(image), t); see the module docstring.

    Args:
        denoiser: the model D(x, σ, **cond) (any guidance wrapper: CFG composes).
        clip: a CLIP with ``image_embeds(x, sigma=None)`` → unit (B, E), ``scale()`` → τ, ``embed_dim``
            (models/clip.py: SmallClip or HFClip).
        scale: s >= 0.
        text: a bound text embedding (E,) or (B, E) used when the call has no ``guide_text``.
        interval: (σ_lo, σ_hi) or "lo,hi": guide only there; None: at every σ.
        through: "x0" or "noisy" (needs a noise-aware CLIP).
        decode: maps x̂0 to the CLIP's pixels (a latent model's decoder); None: x̂0 are pixels.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        clip,
        scale: float,
        text: Tensor | None = None,
        interval: tuple[float, float] | str | None = None,
        through: str = "x0",
        decode: Callable[[Tensor], Tensor] | None = None,
    ):
        self.denoiser = denoiser
        self.clip = clip
        self.scale = _check_scale("clip guidance scale", scale)
        self.interval = parse_interval(interval)
        self.through = check_choice("clip guidance through", through, THROUGH)
        if through == "noisy" and not getattr(clip, "noise_aware", False):
            raise NoisecraftError(
                "CLIP guidance through the noisy state needs a noise-aware CLIP (train-clip --noise-aware); "
                "guide through x̂0 instead"
            )
        if through == "noisy" and decode is not None:
            raise NoisecraftError("a noise-aware CLIP sees pixels: guide a latent model through x̂0")
        self.decode = decode
        self.text = None if text is None else self._check_text(text)

    def _check_text(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        if t.shape[-1] != self.clip.embed_dim:
            raise NoisecraftError(
                f"the text embedding has width {t.shape[-1]} but the CLIP's embedding is {self.clip.embed_dim}"
            )
        return t

    def active(self, sigma: Tensor) -> Tensor:
        """(B,) bool: where guidance applies."""
        if self.interval is None:
            return torch.ones_like(sigma, dtype=torch.bool)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def similarity(self, image: Tensor, text: Tensor, sigma: Tensor | None = None) -> Tensor:
        """τ·cos(CLIP_img(image), t), (B,): the log-likelihood (up to a constant) guidance climbs."""
        emb = self.clip.image_embeds(image, sigma)  # (B, E)
        return self.clip.scale() * (emb * text.to(emb)).sum(-1)

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        text = cond.pop(CLIP_KEY, None)
        text = self.text if text is None else self._check_text(text)
        s_in = torch.as_tensor(sigma)
        # whether to guide at all is decided on the σ the sampler passed (a CPU scalar: no device sync per step)
        skip = self.scale == 0 or not bool(self.active(s_in if s_in.device.type == "cpu" else s_in.cpu()).any())
        sigma = batch_sigma(sigma, x)  # (B,)
        if skip:
            return self.denoiser(x, sigma, **cond)
        on = self.active(sigma)  # (B,)
        if text is None:
            raise NoisecraftError("CLIP guidance needs the text's CLIP embedding (cond 'guide_text' or text=)")
        text = text.to(x.device).expand(x.shape[0], -1)  # (B, E)
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            if self.through == "noisy":
                with torch.no_grad():
                    x0 = self.denoiser(x, sigma, **cond)
                sim = self.similarity(xg, text, sigma.clone())
            else:
                x0 = self.denoiser(xg, sigma.clone(), **cond)
                image = x0 if self.decode is None else self.decode(x0)
                sim = self.similarity(image, text)
            # samples are independent: the gradient of the sum is each sample's gradient
            (grad,) = torch.autograd.grad(sim.sum(), xg)
        x0 = x0.detach()
        s2 = expand(sigma**2 * on.to(sigma.dtype), x).to(x.dtype)
        return x0 + self.scale * s2 * grad.to(x.dtype)


def clip_text_cond(clip, prompts: list[str], device: str | torch.device | None = None) -> dict[str, Tensor]:
    """{"guide_text": (N, E)}: the per-sample cond entry ClipGuidedDenoiser reads, for one prompt per sample."""
    with torch.no_grad():
        t = clip.text_embeds(list(prompts))
    return {CLIP_KEY: t.to(device) if device is not None else t}
