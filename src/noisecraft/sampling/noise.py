"""Randomness for samplers: per-sample generators, so sample i never depends on the batch size."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None


def per_sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded (EDM's StackedRandomGenerator idea)."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], generator: Generators = None, dtype=torch.float32, device=None) -> Tensor:
    """Standard normal noise of `shape` (B, ...); a list of generators draws row i from generator i."""
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=dtype) for g in generator]
        return torch.stack(rows).to(device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype).to(device)
