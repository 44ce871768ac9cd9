"""Captions → text conditioning for training: one caption drawn per item and step, dropped to "" for CFG.

The draw uses the trainer's generator, whose state every checkpoint saves, so a resumed run draws the same
captions as an uninterrupted one. Embeddings come from the text encoder's per-caption cache (models/text.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from noisecraft.data.latent_cache import caption_choices
from noisecraft.models.text import TextEncoder, load_text_encoder


class CaptionSampler:
    """``sampler(idx, generator) -> {text_states, text_mask, text_pooled}`` for the batch of dataset rows `idx`.

    Args:
        text_cfg: the run's TextConfig (encoder and caption dropout).
        dataset: the training dataset (captions via ``caption_choices``, or ``caption``).
        keep: row → dataset index when the in-memory cache left unreadable items out (None: identity).
        device: where the embeddings go.
    """

    def __init__(self, text_cfg, dataset: Any, keep: Tensor | None, device, encoder: TextEncoder | None = None):
        self.encoder = encoder if encoder is not None else load_text_encoder(text_cfg)
        self.dataset, self.keep, self.device = dataset, keep, device
        self.dropout = float(text_cfg.dropout)
        self._choices: dict[int, list[str]] = {}

    def choices(self, index: int) -> list[str]:
        if index not in self._choices:
            self._choices[index] = caption_choices(self.dataset, index)
        return self._choices[index]

    def captions(self, idx: Tensor, generator: torch.Generator) -> list[str]:
        rows = idx if self.keep is None else self.keep[idx]
        drop = torch.rand(len(rows), generator=generator) < self.dropout  # (B,)
        pick = torch.rand(len(rows), generator=generator)  # (B,) which caption of the item
        out = []
        for i, d, u in zip(rows.tolist(), drop.tolist(), pick.tolist()):
            ch = self.choices(i)
            out.append("" if d else ch[min(int(u * len(ch)), len(ch) - 1)])
        return out

    def __call__(self, idx: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        return self.encoder.encode(self.captions(idx, generator), device=self.device)

    def preview(self, n: int) -> list[str]:
        """Captions for a preview grid: the first caption of items 0, 1, ..., n−1."""
        rows = torch.arange(n) % len(self.dataset)
        rows = rows if self.keep is None else self.keep[rows % len(self.keep)]
        return [self.choices(int(i))[0] for i in rows]
