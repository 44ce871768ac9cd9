"""The networks of unCLIP (Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP
Latents"): a diffusion prior over CLIP image embeddings and a decoder conditioned on them.

- ``PriorNet``: F(z_in, c_noise, clip_text) for a CLIP image embedding z (B, E) given the CLIP text embedding
  (B, E): a residual MLP (as models/mlp.py) whose hidden state gets the noise embedding and a projection of the
  text embedding added. The paper's prior is a decoder-only transformer; for one conditioning vector an MLP is
  the same function class at this scale. A zero text embedding is the unconditional (dropped) branch for CFG.
- ``DecoderNet``: the text-conditioned U-Net of models/cond_unet.py reading the CLIP embeddings as its "text":
  two tokens [image embedding, text embedding] for cross-attention and the image embedding as the pooled vector
  added to the time embedding (unCLIP projects the embedding into four extra tokens and adds it to the timestep
  embedding). Zero vectors are the dropped conditioning.

Embeddings are unit vectors; both networks see them multiplied by √E, so their coordinates have unit variance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError
from noisecraft.models.mlp import FourierEmbedding

PRIOR_KEYS = ("clip_text",)  # the prior's cond entries
DECODER_KEYS = ("clip_image", "clip_text")  # the decoder's cond entries


class PriorNet(nn.Module):
    """F(z_in (B, E), c_noise (B,), clip_text (B, E)) → (B, E): residual MLP with additive conditioning."""

    def __init__(self, embed_dim: int, hidden: int = 256, depth: int = 4, emb: int = 64):
        super().__init__()
        self.embed_dim = embed_dim
        self.embed = nn.Sequential(FourierEmbedding(emb), nn.Linear(emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.cond = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(embed_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, embed_dim))

    def forward(self, x: Tensor, c_noise: Tensor, clip_text: Tensor | None = None) -> Tensor:
        if clip_text is None:
            clip_text = torch.zeros_like(x)
        check_width("prior", clip_text, self.embed_dim)
        t = clip_text.to(x.dtype) * math.sqrt(self.embed_dim)
        h = self.inp(x) + self.embed(c_noise) + self.cond(t)  # (B, hidden)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class DecoderNet(nn.Module):
    """F(x_in, c_noise, clip_image (B, E), clip_text (B, E) or None) through a CondUNetNet with text_dim E."""

    def __init__(self, inner: nn.Module, embed_dim: int):
        super().__init__()
        if getattr(inner, "text_dim", None) != embed_dim:
            width = getattr(inner, "text_dim", None)
            raise NoisecraftError(f"the decoder U-Net reads {width}-d tokens, not {embed_dim}")
        self.inner = inner
        self.embed_dim = embed_dim

    def forward(self, x: Tensor, c_noise: Tensor, clip_image: Tensor | None = None, clip_text: Tensor | None = None):
        B = x.shape[0]
        zeros = torch.zeros(B, self.embed_dim, device=x.device, dtype=x.dtype)
        img = zeros if clip_image is None else check_width("decoder", clip_image, self.embed_dim).to(x.dtype)
        txt = zeros if clip_text is None else check_width("decoder", clip_text, self.embed_dim).to(x.dtype)
        s = math.sqrt(self.embed_dim)
        tokens = torch.stack([img, txt], 1) * s  # (B, 2, E)
        mask = torch.ones(B, 2, dtype=torch.bool, device=x.device)
        return self.inner(x, c_noise, text_states=tokens, text_mask=mask, text_pooled=img * s)


def check_width(what: str, emb: Tensor, embed_dim: int) -> Tensor:
    """Raise a one-line NoisecraftError unless `emb` is (B, embed_dim)."""
    if emb.ndim != 2 or emb.shape[-1] != embed_dim:
        raise NoisecraftError(
            f"the {what} was trained on CLIP embeddings of width {embed_dim} but got {tuple(emb.shape)}; use the "
            "CLIP the unCLIP run was trained with"
        )
    return emb
