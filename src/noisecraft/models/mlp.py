"""A small MLP denoiser network for low-dimensional data, with a Fourier noise-level embedding."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar noise input (B,) → (B, dim) (Vaswani et al. 2017 / Ho et al. 2020)."""

    def __init__(self, dim: int, max_period: float = 10000.0, input_scale: float = 100.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half) * input_scale
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise: Tensor) -> Tensor:
        arg = c_noise.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([arg.cos(), arg.sin()], -1)


class MLP(nn.Module):
    """F(x_in, c_noise): residual SiLU MLP over (B, dim) inputs, conditioned by adding the noise embedding."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb: int = 64, num_classes: int = 0):
        super().__init__()
        self.embed = nn.Sequential(FourierEmbedding(emb), nn.Linear(emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.class_embed = nn.Embedding(num_classes + 1, hidden) if num_classes else None  # last = null label
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden * 2), nn.SiLU(), nn.Linear(hidden * 2, hidden))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        h = self.inp(x) + self.embed(c_noise)  # (B, hidden)
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.class_embed.num_embeddings - 1, device=x.device)
            h = h + self.class_embed(class_labels)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
