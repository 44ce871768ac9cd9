"""Sampling an unCLIP run (Ramesh et al. 2022): prompt → CLIP text embedding → prior → image embedding →
decoder → image; and image variations: image → CLIP image embedding → decoder.

Both stages are plain diffusion models sampled by ``generate`` with any registered sampler. Classifier-free
guidance of either stage is ``ZeroCFGDenoiser``: its unconditional branch is the zero embedding that conditioning
dropout trained. The prior's output is renormalised to a unit vector (CLIP embeddings are unit vectors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.guidance import CFGDenoiser


class ZeroCFGDenoiser(CFGDenoiser):
    """CFG whose null branch sets the cond entries `keys` to zero, the null conditioning dropout trained, or to
    `negative[key]` ((1 or B, ...): a negative prompt's embedding) where given: D_w = D(neg) + w·(D(c) − D(neg)).

    Entries of `keys` absent from a call count as zero in both branches. interval, rescale: as for CFGDenoiser.
    """

    def __init__(self, denoiser: Denoiser, scale: float, keys: Sequence[str], interval=None,
                 negative: dict[str, Tensor] | None = None, rescale: float = 0.0):  # fmt: skip
        super().__init__(denoiser, scale, 0, interval, rescale)
        self.keys = tuple(keys)
        self.negative = dict(negative or {})
        unknown = sorted(set(self.negative) - set(self.keys))
        if unknown:
            raise NoisecraftError(f"a negative entry {unknown[0]!r} is not one of the guided keys {self.keys}")

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:  # type: ignore[override]
        pos = {k: cond.pop(k) for k in self.keys if k in cond}
        if not pos:
            return self.denoiser(x, sigma, **cond)
        neg = {k: self._null(k, v) for k, v in pos.items()}
        return self.guide(x, sigma, pos, neg, cond)

    def _null(self, key: str, v: Tensor) -> Tensor:
        """The null branch's entry for the positive entry v (B, ...): zeros, or the negative broadcast to v."""
        if key not in self.negative:
            return torch.zeros_like(v)
        return self.negative[key].to(device=v.device, dtype=v.dtype).expand_as(v)


def _maybe_cfg(denoiser: Denoiser, scale: float | None, keys: Sequence[str], negative: dict | None = None,
               interval=None, rescale: float = 0.0) -> Denoiser:  # fmt: skip
    if scale is None:
        if interval is not None or rescale:
            raise NoisecraftError("a cfg interval or cfg rescale needs a cfg scale (--cfg W)")
        return denoiser
    return ZeroCFGDenoiser(denoiser, scale, keys, interval, negative, rescale)


def sample_image_embeds(
    un, text: Tensor, seeds: Sequence[int], *, cfg_scale: float | None = None, sampler: str = "euler",
    steps: int = 30, negative: Tensor | None = None, spacing: str | None = None, batch_size: int = 64,
) -> Tensor:  # fmt: skip
    """Unit CLIP image embeddings (N, E) from the prior, for CLIP text embeddings text (N, E), one per seed.

    negative: a negative prompt's CLIP text embedding (1, E) for the null branch of CFG (default: zero, the
    unconditional prior). spacing: the step spacing (None: the sampler's default)."""
    from noisecraft.sampling.generate import generate

    neg = None if negative is None else {"clip_text": negative}
    prior = _maybe_cfg(un.prior, cfg_scale, ("clip_text",), neg)
    device = next(un.prior.parameters()).device
    cond = {"clip_text": text.to(device)}
    z = generate(prior, un.prior_schedule, (un.config.embed_dim,), seeds, sampler=sampler, steps=steps,
                 spacing=spacing, batch_size=batch_size, cond=cond, device=device)  # fmt: skip
    return torch.nn.functional.normalize(z / math.sqrt(un.config.embed_dim), dim=-1)


def decode_embeds(
    un, image: Tensor, seeds: Sequence[int], *, text: Tensor | None = None, cfg_scale: float | None = None,
    sampler: str = "euler", steps: int = 30, guide=None, guide_cond: dict | None = None,
    negative: Tensor | None = None, cfg_interval=None, cfg_rescale: float = 0.0, spacing: str | None = None,
    batch_size: int = 64,
) -> Tensor:  # fmt: skip
    """Images (N, C, H, W) in [−1, 1] from CLIP image embeddings (N, E) (and text embeddings), one per seed.

    guide: an optional wrapper factory ``guide(denoiser) -> denoiser`` (e.g. CLIP guidance) applied outside CFG,
    with its per-sample cond entries in guide_cond. negative: a negative prompt's CLIP text embedding (1, E): CFG's
    null branch then has a zero image embedding and this text (default: both zero, the unconditional decoder).
    cfg_interval, cfg_rescale: as for CFGDenoiser.
    """
    from noisecraft.sampling.generate import decode_latents, generate

    if image.shape[-1] != un.config.embed_dim:
        raise NoisecraftError(
            f"the decoder was trained on {un.config.embed_dim}-d CLIP embeddings, got {image.shape[-1]}-d ones"
        )
    device = next(un.decoder.parameters()).device
    neg = None if negative is None else {"clip_text": negative}
    d = _maybe_cfg(un.decoder, cfg_scale, ("clip_image", "clip_text"), neg, cfg_interval, cfg_rescale)
    if guide is not None:
        d = guide(d)
    cond = {"clip_image": image.to(device)}
    if text is not None:
        cond["clip_text"] = text.to(device)
    cond.update(guide_cond or {})
    x = generate(d, un.decoder_schedule, un.decoder_shape, seeds, sampler=sampler, steps=steps, spacing=spacing,
                 batch_size=batch_size, cond=cond, device=device)  # fmt: skip
    return decode_latents(un.config.latent, x, device).cpu()


def sample_prompts(
    un, prompts: Sequence[str], seeds: Sequence[int], *, prior_cfg: float | None = None,
    decoder_cfg: float | None = None, sampler: str = "euler", steps: int = 30, prior_steps: int | None = None,
    use_text: bool = True, guide=None, guide_cond: dict | None = None, negative_prompt: str = "",
    cfg_interval=None, cfg_rescale: float = 0.0, spacing: str | None = None, batch_size: int = 64,
) -> Tensor:  # fmt: skip
    """prompt i (one per seed) → prior → decoder → image (N, C, H, W); the decoder also sees the text embedding
    unless use_text=False.

    negative_prompt: "" (the default) keeps the trained null branches (zero embeddings: the unconditional prior
    and decoder); another text's CLIP embedding takes the text's place in the null branch of both CFGs
    (--prior-cfg and --cfg), which then steer away from it. cfg_interval, cfg_rescale: of the decoder's CFG.
    spacing, batch_size: of both stages' sampling."""
    if len(prompts) != len(seeds):
        raise NoisecraftError(f"give one prompt per seed ({len(seeds)}), got {len(prompts)}")
    if negative_prompt and prior_cfg is None and decoder_cfg is None:
        raise NoisecraftError("--negative-prompt acts through guidance: give --cfg (decoder) and/or --prior-cfg too")
    with torch.no_grad():
        text = un.clip.text_embeds(list(prompts)).float()
        negative = un.clip.text_embeds([negative_prompt]).float() if negative_prompt else None  # (1, E)
    emb = sample_image_embeds(un, text, seeds, cfg_scale=prior_cfg, sampler=sampler, steps=prior_steps or steps,
                              negative=negative, spacing=spacing, batch_size=batch_size)  # fmt: skip
    return decode_embeds(un, emb, seeds, text=text if use_text else None, cfg_scale=decoder_cfg, sampler=sampler,
                         steps=steps, guide=guide, guide_cond=guide_cond, negative=negative,
                         cfg_interval=cfg_interval, cfg_rescale=cfg_rescale, spacing=spacing,
                         batch_size=batch_size)  # fmt: skip


def variations(
    un, image: Tensor, seeds: Sequence[int], *, cfg_scale: float | None = None, sampler: str = "euler",
    steps: int = 30,
) -> Tensor:  # fmt: skip
    """Image variations (unCLIP Sec. 3.1): the CLIP image embedding of `image` (1, C, H, W), decoded once per seed."""
    with torch.no_grad():
        emb = un.clip.image_embeds(image.to(un.clip.device)).float()  # (1, E)
    return decode_embeds(un, emb.expand(len(seeds), -1), seeds, cfg_scale=cfg_scale, sampler=sampler, steps=steps)
