"""The samples a run draws while it trains: preview grids and the held-out evaluation draw them the same way."""

from __future__ import annotations

import torch
from torch import Tensor

from noisecraft.core.schedules import Schedule
from noisecraft.training.config import TrainConfig
from noisecraft.training.setup import sample_shape


def draw_samples(
    cfg: TrainConfig, model, schedule: Schedule, num: int, cond: dict[str, Tensor] | None = None
) -> Tensor:
    """Samples of seeds 0..num−1 with the run's preview sampler, on the model's device, in data space: (num, ...).

    Class runs cycle through the labels; `cond` holds per-sample conditioning (e.g. text embeddings); a latent
    run's samples are decoded by its autoencoder."""
    from noisecraft.sampling.generate import generate

    labels = torch.arange(num) % cfg.model.num_classes if cfg.model.num_classes else None
    x = generate(
        model,
        schedule,
        sample_shape(cfg),
        list(range(num)),
        sampler=cfg.sample_sampler,
        steps=cfg.sample_steps,
        class_labels=labels,
        device=next(model.parameters()).device,
        cond=cond,
    )
    if cfg.data.latent is not None:
        from noisecraft.models.autoencoder import load_codec

        x = load_codec(cfg.data.latent).decode(x)
    return x
