"""The run's "auto" settings, chosen when training starts from the data and the run's length, then saved.

A TrainConfig may leave settings as None (or model.preset "auto"); ``resolve_for_data`` fills those that
depend on the data (held-out part, network size, batch, learning rate) and ``resolve_for_length`` those that
depend on the number of steps (warm-up, EMA half-life, preview and evaluation cadences). The resolved config
is what config.json holds, so a resume never re-decides anything. ``plan_steps`` turns a time budget and the
measured seconds per step into a step count.

The rules (small-data practice of Karras et al. 2022, "Elucidating the Design Space ...", EDM; Nichol &
Dhariwal 2021 for the EMA on short runs):
- batch: about a tenth of the images, a power of two in [8, 64], so a few hundred images still make ~10
  optimiser steps an epoch;
- learning rate: by network size (2e-3 for the nano and tiny U-Nets, 1e-3 for the MLP and the small U-Net), scaled by
  √(batch/64) (Adam's square-root rule);
- warm-up: a tenth of the run, between 10 and 100 steps;
- EMA: a half-life of EMA_FRACTION of the run's training images (the average follows the model closely
  enough on a short run, and smooths it on a long one);
- previews at every fifth of the run, the held-out evaluation at the middle and the end;
- latents (``data.latent``) under continuous-σ preconditioning: σ_data 1, since the autoencoder's scaling
  factor gives them unit variance (EDM's 0.5 is the spread of pixels in [−1, 1]), and the training density's
  log-normal mean moved by ln(1/0.5) so that it meets the same signal-to-noise ratios as on pixels.
"""

from __future__ import annotations

import dataclasses
import math

from noisecraft.training.config import TrainConfig

EMA_FRACTION = 0.08
BASE_LR = {("unet", "nano"): 2e-3, ("unet", "tiny"): 2e-3, ("unet", "small"): 1e-3, ("unet", "guide-128"): 1e-4}
DEFAULT_LR = 1e-3
HOLDOUT_FRACTION = 0.1
HOLDOUT_MIN_IMAGES = 100  # smaller folders train on everything (a held-out part of < 10 images says nothing)
PREVIEWS = 5
EVALS = 2
WARMUP_MAX = 100
WARMUP_MIN = 10


def auto_batch(num_items: int) -> int:
    """About num_items/10, rounded to a power of two in [8, 64]."""
    return int(min(64, max(8, 2 ** round(math.log2(max(num_items, 1) / 10)))))


def auto_lr(arch: str, preset: str, batch_size: int) -> float:
    return BASE_LR.get((arch, preset), DEFAULT_LR) * math.sqrt(batch_size / 64)


def count_items(cfg: TrainConfig) -> int:
    """Training items of the run's data (a folder: files in its training part, without decoding them)."""
    from noisecraft.data.datasets import make_dataset

    return len(make_dataset(cfg.data))


def folder_size(source: str) -> int:
    from pathlib import Path

    from noisecraft.data.folder import list_images

    root = Path(source).expanduser()
    return len(list_images(root)) if root.is_dir() else 0


LATENT_SIGMA_DATA = 1.0  # latents scaled by the autoencoder's scaling factor have unit variance
EDM_SIGMA_DATA = 0.5  # the pixel spread EDM's log-normal training density (P_mean = -1.2) was set for


def latent_preconditioning(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """σ_data and the training density for a latent run under continuous-σ preconditioning (see above).

    A run's σ_data scales its σ: the density's log-normal mean moves by ln(σ_data / 0.5), so that the model
    trains on the same signal-to-noise ratios EDM chose for pixels (Karras et al. 2022, Table 1; a fixed
    P_mean on unit-variance latents spends most updates at low noise, where layout is already decided).
    """
    if not cfg.data.latent:
        return cfg, None
    model = latent_model(cfg.model)
    if model is cfg.model:
        return cfg, None
    p_mean = model.schedule_kwargs.get("p_mean")
    shift = f", training σ log-normal mean {p_mean:g}" if p_mean != cfg.model.schedule_kwargs.get("p_mean") else ""
    note = f"sigma_data {LATENT_SIGMA_DATA:g} for unit-variance latents{shift} (--set model.sigma_data=... to override)"
    return dataclasses.replace(cfg, model=model), note


def latent_model(model):
    """The ModelConfig of a model of latents under the rule above (also train-unclip's latent decoder); `model`
    itself where the rule does not apply (σ_data given, a discrete or VP schedule)."""
    if model.sigma_data is not None or model.discrete or model.schedule == "vp":
        return model
    kwargs = dict(model.schedule_kwargs)
    if model.schedule == "edm" and "p_mean" not in kwargs:
        from noisecraft.core.schedules import EDM

        kwargs["p_mean"] = round(EDM.p_mean + math.log(LATENT_SIGMA_DATA / EDM_SIGMA_DATA), 4)
    return dataclasses.replace(model, sigma_data=LATENT_SIGMA_DATA, schedule_kwargs=kwargs)


def resolve_for_data(
    cfg: TrainConfig, num_items: int | None = None, resuming: bool = False
) -> tuple[TrainConfig, list[str]]:
    """Fill the data-dependent auto settings; returns (config, one line per choice made) for the summary.

    num_items: the number of training items when already known (a dataset passed to train()).
    resuming: the config is a saved run's; a rule added since it was saved must not change its model.
    """
    notes: list[str] = []
    if not resuming:
        cfg, note = latent_preconditioning(cfg)
        notes += [note] if note else []
    data, model, optim = cfg.data, cfg.model, cfg.optim
    if data.holdout is None:
        frac = 0.0
        if data.kind == "folder" and folder_size(data.source) >= HOLDOUT_MIN_IMAGES:
            frac = HOLDOUT_FRACTION
        data = dataclasses.replace(data, holdout=frac)
        if frac:
            notes.append(f"held out {frac:g} of the folder for FD/KID (data.holdout; 0 trains on everything)")
        cfg = dataclasses.replace(cfg, data=data)
    auto = model.preset == "auto" or cfg.batch_size is None or optim.lr is None
    n = num_items if num_items is not None else (count_items(cfg) if auto else 0)
    if model.preset == "auto":
        from noisecraft.models.factory import auto_preset

        model = dataclasses.replace(model, preset=auto_preset(model.arch, model.resolution, n))
        notes.append(
            f"model: {model.arch} preset {model.preset!r}, chosen for {n} images at {model.resolution} px "
            "(--model-preset to override)"
        )
    batch = cfg.batch_size
    if batch is None:
        batch = auto_batch(n)
        notes.append(f"batch size {batch} for {n} images (--batch-size to override)")
    if optim.lr is None:
        optim = dataclasses.replace(optim, lr=auto_lr(model.arch, model.preset, batch))
        notes.append(f"learning rate {optim.lr:.3g} for this network and batch (--lr to override)")
    return dataclasses.replace(cfg, model=model, batch_size=batch, optim=optim), notes


def resolve_for_length(cfg: TrainConfig) -> TrainConfig:
    """Fill the settings that follow from cfg.steps (warm-up, EMA, cadences) where they are still None."""
    steps, optim, ema = cfg.steps, cfg.optim, cfg.ema
    if optim.warmup_steps is None:
        optim = dataclasses.replace(optim, warmup_steps=min(WARMUP_MAX, max(WARMUP_MIN, steps // 10)))
    if ema.decay is None and ema.half_life_images is None:
        ema = dataclasses.replace(
            ema, half_life_images=float(max(1, round(EMA_FRACTION * steps * (cfg.batch_size or 1))))
        )
    sample_every = cfg.sample_every if cfg.sample_every is not None else math.ceil(steps / PREVIEWS)
    eval_every = cfg.eval_every
    if eval_every is None:
        # held-out FD/KID of a folder; a text run's (held-out captions, decoded latents) only with eval_every
        folder_eval = cfg.data.kind == "folder" and bool(cfg.data.holdout) and cfg.text.encoder == "none"
        eval_every = math.ceil(steps / EVALS) if folder_eval else 0
    return dataclasses.replace(cfg, optim=optim, ema=ema, sample_every=sample_every, eval_every=eval_every)


def eval_sample_count(cfg: TrainConfig, num_reference: int | None = None) -> int:
    """Samples per periodic evaluation: eval_count, or for a folder at most twice its held-out part (and at
    least 64): more samples than that refine only the generated side of the comparison."""
    if num_reference is None:
        return cfg.eval_count
    return min(cfg.eval_count, max(64, 2 * num_reference))


def plan_steps(
    cfg: TrainConfig, seconds_left: float, seconds_per_step: float, done: int, eval_images: int | None = None
) -> int:
    """Steps that fit in `seconds_left` after `done` measured ones, leaving room for the previews and
    evaluations of eval_images samples each (default cfg.eval_count); a sampling step of one image costs about
    a third of a training step's work per image."""
    nfe = cfg.sample_steps * (2 if cfg.sample_sampler == "heun" else 1)
    per_eval = cfg.eval_count if eval_images is None else eval_images
    side_images = PREVIEWS * cfg.sample_count + (EVALS * per_eval if cfg.eval_every != 0 else 0)
    side_steps = side_images * nfe / (3 * max(cfg.batch_size or 1, 1))
    more = int(seconds_left / max(seconds_per_step, 1e-9) - side_steps)
    return max(done + 1, done + more)


def adopt_saved(cfg: TrainConfig, saved: dict) -> TrainConfig:
    """A config whose auto entries (None, preset "auto") take the values a run already chose (its saved
    config.json): a resume never re-decides, even when another step count is asked for."""

    def merge(mine: dict, theirs: dict) -> dict:
        out = dict(mine)
        for k, v in mine.items():
            if k not in theirs:
                continue
            if isinstance(v, dict) and isinstance(theirs[k], dict):
                out[k] = merge(v, theirs[k])
            elif v is None or (k == "preset" and v == "auto"):
                out[k] = theirs[k]
        return out

    return TrainConfig.from_dict(merge(cfg.to_dict(), saved))
