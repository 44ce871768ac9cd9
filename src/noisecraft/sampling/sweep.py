"""A guidance sweep: samples over classes × guidance scales with shared seeds, for a grid that shows what the
scale alone changes.

The method is classifier-free guidance (Ho & Salimans 2022; a class-conditional model trained with label
dropout) or, with a classifier, classifier guidance (Dhariwal & Nichol 2021). Every cell of a row (a class)
uses the same seeds, so two cells of a row differ only in the guidance scale.

    images, layout = guidance_sweep(denoiser, schedule, (1, 16, 16), classes=[0, 1], scales=[0, 2, 4])
    # images (len(classes)·len(scales)·per_cell, C, H, W): row-major, one row per class
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError


def guidance_sweep(
    denoiser,
    schedule: Schedule,
    shape: Sequence[int],
    classes: Sequence[int],
    scales: Sequence[float],
    *,
    num_classes: int | None = None,
    classifier=None,
    cfg_interval: tuple[float, float] | str | None = None,
    cfg_rescale: float = 0.0,
    per_cell: int = 1,
    seed: int = 0,
    sampler: str = "euler",
    steps: int = 40,
    on_row: Callable[[int], None] | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Sample every (class, scale) cell: (images (K·S·per_cell, C, H, W) on the CPU, layout).

    Row k (class ``classes[k]``) holds S blocks of `per_cell` samples, block j at scale ``scales[j]``, all with
    the seeds seed, …, seed + per_cell − 1. Without `classifier` the scales are CFG scales w (with
    `cfg_interval` and `cfg_rescale`); with one, classifier-guidance scales s. `on_row(k)` is called after each
    row. The layout records rows, columns (the scale of each column), seeds, method and sampler settings.
    """
    if len(shape) != 3:
        raise NoisecraftError("a guidance sweep draws image grids; this model is a 2-D/vector model")
    if per_cell < 1 or steps < 1 or seed < 0:
        raise NoisecraftError("per-cell samples and steps must be positive and the seed >= 0")
    if not classes or not scales:
        raise NoisecraftError("a sweep needs at least one class and one scale")
    from noisecraft.sampling.generate import generate
    from noisecraft.sampling.guidance import build_guided_denoiser

    seeds = list(range(seed, seed + per_cell))
    rows = []
    for k in classes:
        cells = []
        for s in scales:
            guided = build_guided_denoiser(
                denoiser,
                class_label=k,
                cfg_scale=None if classifier is not None else s,
                cfg_interval=cfg_interval if classifier is None else None,
                cfg_rescale=cfg_rescale if classifier is None else 0.0,
                classifier=classifier,
                classifier_scale=s,
                num_classes=num_classes,
                sample_shape=tuple(shape),
            )
            labels = torch.full((per_cell,), k, dtype=torch.long)
            cells.append(generate(guided, schedule, shape, seeds, sampler=sampler, steps=steps, class_labels=labels))
        rows.append(torch.cat(cells))  # (S·per_cell, C, H, W)
        if on_row is not None:
            on_row(k)
    layout = {
        "method": "classifier" if classifier is not None else "cfg",
        "rows": list(classes),
        "columns": [s for s in scales for _ in range(per_cell)],
        "seeds": seeds,
        "sampler": sampler,
        "steps": steps,
        "cfg_interval": cfg_interval,
        "cfg_rescale": cfg_rescale,
    }
    return torch.cat(rows), layout
