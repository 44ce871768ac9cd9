"""Train the small CLIP of models/clip.py on captioned images (scenes, or a captioned folder / hf dataset).

Each step draws a batch of items and one of each item's captions, and (noise-aware CLIP) a noise level per image:
σ = 0 for half the batch, log-uniform in [sigma_min, sigma_max] for the rest, the image becoming x0 + σ·ε. The
loss is CLIP's symmetric InfoNCE. The run folder holds resumable checkpoints (training.core.fit) and, at the
end, OUT/clip.safetensors + OUT/clip.json, what ``load_clip`` reads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError
from noisecraft.models.clip import ClipConfig, SmallClip, build_clip, clip_loss
from noisecraft.training.core import LoopSettings


def load_captioned(data: DataConfig) -> tuple[Tensor, list[list[str]]]:
    """(images (N, C, H, W) float32 in [−1, 1], the captions of each item) of a captioned DataConfig."""
    from noisecraft.data.datasets import make_dataset
    from noisecraft.data.latent_cache import caption_choices

    dataset = make_dataset(dataclasses.replace(data, captions=False, labels=False, flip=False))
    if len(dataset) == 0:
        raise NoisecraftError(f"data source {data.source!r} has no images")
    x = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))["x"].float()
    if x.ndim != 4:
        raise NoisecraftError(f"a CLIP needs images; {data.source!r} gives items of shape {tuple(x.shape)}")
    return x, [caption_choices(dataset, i) for i in range(len(dataset))]


def pick_one(choices, u: float):
    """The element of `choices` (a list, or a (K, ...) tensor) that a uniform draw u ∈ [0, 1) selects."""
    return choices[min(int(u * len(choices)), len(choices) - 1)]


def noisy_sigmas(n: int, cfg: ClipConfig, generator: torch.Generator) -> Tensor:
    """(n,) float64 noise levels: 0 (a clean image) with probability ½, else log-uniform in [σ_min, σ_max]."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    lo, hi = torch.tensor([cfg.sigma_min, cfg.sigma_max], dtype=torch.float64).log()
    sigma = (lo + u * (hi - lo)).exp()
    clean = torch.rand(n, generator=generator) < 0.5
    return torch.where(clean, torch.zeros_like(sigma), sigma)


def train_clip(
    images: Tensor,
    captions: list[list[str]],
    config: ClipConfig,
    settings: LoopSettings,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
    log: list[float] | None = None,
    run_config: dict | None = None,
    on_plan=None,
) -> SmallClip:
    """Train a SmallClip on (images, captions) into run folder `out` (training.core.fit: crash-safe checkpoints,
    resume, --minutes, Ctrl-C/SIGTERM); writes OUT/clip.safetensors + clip.json (the EMA weights).

    `run_config` is what OUT/config.json holds (default: the CLIP config and the settings); on_plan(steps) that
    record once a time budget is planned into `steps`. `log`, if given, gets the per-step losses.
    """
    from noisecraft.core.ema import EMA
    from noisecraft.training.core import adamw, fit

    if images.ndim != 4 or tuple(images.shape[1:]) != config.shape:
        raise NoisecraftError(f"images must be (N, {', '.join(map(str, config.shape))}), got {tuple(images.shape)}")
    if len(captions) != len(images) or not all(captions):
        raise NoisecraftError("every image needs at least one caption")
    if len(images) < 2:
        raise NoisecraftError("a contrastive model needs at least 2 captioned images")
    torch.manual_seed(settings.seed)
    model = build_clip(config, device)
    enc, model.text_encoder = model.text_encoder, None  # the EMA copy need not hold the frozen encoder
    flat = sorted({c for cs in captions for c in cs})
    print(f"encoding {len(flat)} distinct captions with the frozen {config.text['encoder']} encoder")
    for lo in range(0, len(flat), 512):  # fill the encoder's cache once
        enc.encode(flat[lo : lo + 512])
    images = images.to(device)
    batch = min(settings.batch, len(images))

    ema = EMA(model, settings.ema_decay)
    opt = adamw(model, settings)

    def loss_fn(_step: int, g: torch.Generator) -> tuple[Tensor, int]:
        idx = torch.randperm(len(images), generator=g)[:batch]  # distinct items: one positive per row
        pick = torch.rand(batch, generator=g)
        prompts = [pick_one(captions[i], u) for i, u in zip(idx.tolist(), pick.tolist())]
        x0 = images[idx.to(device)]
        sigma = torch.zeros(batch, dtype=torch.float64)
        if config.noise_aware:
            sigma = noisy_sigmas(batch, config, g)
            x0 = x0 + sigma.to(x0.dtype)[:, None, None, None].to(device) * torch.randn(x0.shape, generator=g).to(device)
        t = enc.encode(prompts, device=device)
        img = model.image_embeds(x0, sigma.to(device))
        txt = model.text_features(t["text_states"], t["text_mask"])
        loss = clip_loss(img, txt, model.scale())[None]  # (1,): the batch's InfoNCE
        if log is not None:
            log.append(loss.item())
        return loss, batch

    record = run_config or {"clip": config.to_dict(), "loop": dataclasses.asdict(settings)}
    fit(out, model, opt, loss_fn, settings, record, ema=ema, resume=resume, progress=progress, desc="train clip",
        on_plan=on_plan)  # fmt: skip
    final: SmallClip = ema.model
    final.text_encoder = enc
    final.save(out)
    return final.eval()
