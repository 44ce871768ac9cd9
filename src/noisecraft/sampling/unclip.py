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
    """CFG whose null branch sets the cond entries `keys` to zero: D_w = D(0) + w·(D(c) − D(0)).

    Entries of `keys` absent from a call count as zero in both branches. interval: as for CFGDenoiser.
    """

    def __init__(self, denoiser: Denoiser, scale: float, keys: Sequence[str], interval=None):
        super().__init__(denoiser, scale, 0, interval)
        self.keys = tuple(keys)

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:  # type: ignore[override]
        pos = {k: cond.pop(k) for k in self.keys if k in cond}
        if not pos:
            return self.denoiser(x, sigma, **cond)
        return self.guide(x, sigma, pos, {k: torch.zeros_like(v) for k, v in pos.items()}, cond)


def _maybe_cfg(denoiser: Denoiser, scale: float | None, keys: Sequence[str]) -> Denoiser:
    return denoiser if scale is None else ZeroCFGDenoiser(denoiser, scale, keys)


def sample_image_embeds(
    un, text: Tensor, seeds: Sequence[int], *, cfg_scale: float | None = None, sampler: str = "euler",
    steps: int = 30,
) -> Tensor:  # fmt: skip
    """Unit CLIP image embeddings (N, E) from the prior, for CLIP text embeddings text (N, E), one per seed."""
    from noisecraft.sampling.generate import generate

    prior = _maybe_cfg(un.prior, cfg_scale, ("clip_text",))
    device = next(un.prior.parameters()).device
    z = generate(prior, un.prior_schedule, (un.config.embed_dim,), seeds, sampler=sampler, steps=steps,
                 cond={"clip_text": text.to(device)}, device=device)  # fmt: skip
    return torch.nn.functional.normalize(z / math.sqrt(un.config.embed_dim), dim=-1)


def decode_embeds(
    un, image: Tensor, seeds: Sequence[int], *, text: Tensor | None = None, cfg_scale: float | None = None,
    sampler: str = "euler", steps: int = 30, guide=None, guide_cond: dict | None = None,
) -> Tensor:  # fmt: skip
    """Images (N, C, H, W) in [−1, 1] from CLIP image embeddings (N, E) (and text embeddings), one per seed.

    guide: an optional wrapper factory ``guide(denoiser) -> denoiser`` (e.g. CLIP guidance) applied outside CFG,
    with its per-sample cond entries in guide_cond.
    """
    from noisecraft.sampling.generate import decode_latents, generate

    if image.shape[-1] != un.config.embed_dim:
        raise NoisecraftError(
            f"the decoder was trained on {un.config.embed_dim}-d CLIP embeddings, got {image.shape[-1]}-d ones"
        )
    device = next(un.decoder.parameters()).device
    d = _maybe_cfg(un.decoder, cfg_scale, ("clip_image", "clip_text"))
    if guide is not None:
        d = guide(d)
    cond = {"clip_image": image.to(device)}
    if text is not None:
        cond["clip_text"] = text.to(device)
    cond.update(guide_cond or {})
    x = generate(d, un.decoder_schedule, un.decoder_shape, seeds, sampler=sampler, steps=steps, cond=cond,
                 device=device)  # fmt: skip
    return decode_latents(un.config.latent, x, device).cpu()


def sample_prompts(
    un, prompts: Sequence[str], seeds: Sequence[int], *, prior_cfg: float | None = None,
    decoder_cfg: float | None = None, sampler: str = "euler", steps: int = 30, prior_steps: int | None = None,
    use_text: bool = True, guide=None, guide_cond: dict | None = None,
) -> Tensor:  # fmt: skip
    """prompt i (one per seed) → prior → decoder → image (N, C, H, W); the decoder also sees the text embedding
    unless use_text=False."""
    if len(prompts) != len(seeds):
        raise NoisecraftError(f"give one prompt per seed ({len(seeds)}), got {len(prompts)}")
    with torch.no_grad():
        text = un.clip.text_embeds(list(prompts)).float()
    emb = sample_image_embeds(un, text, seeds, cfg_scale=prior_cfg, sampler=sampler, steps=prior_steps or steps)
    return decode_embeds(un, emb, seeds, text=text if use_text else None, cfg_scale=decoder_cfg, sampler=sampler,
                         steps=steps, guide=guide, guide_cond=guide_cond)  # fmt: skip


def variations(
    un, image: Tensor, seeds: Sequence[int], *, cfg_scale: float | None = None, sampler: str = "euler",
    steps: int = 30,
) -> Tensor:  # fmt: skip
    """Image variations (unCLIP Sec. 3.1): the CLIP image embedding of `image` (1, C, H, W), decoded once per seed."""
    with torch.no_grad():
        emb = un.clip.image_embeds(image.to(un.clip.device)).float()  # (1, E)
    return decode_embeds(un, emb.expand(len(seeds), -1), seeds, cfg_scale=cfg_scale, sampler=sampler, steps=steps)
