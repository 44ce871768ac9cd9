"""A short resumable loop for the auxiliary models (CLIP, the unCLIP prior and decoder): one process, AdamW with
warm-up + cosine, EMA, atomic checkpoints in the run-folder layout of training.run_folder, log.jsonl.

The caller gives ``step_fn(generator) -> per-sample loss (B,)``; every random draw must come from that generator,
whose state each checkpoint saves, so a run killed and resumed ends at the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from noisecraft.core.ema import EMA
from noisecraft.core.lr_schedule import warmup_cosine
from noisecraft.errors import NoisecraftError
from noisecraft.training import checkpoint as ckpt


@dataclass
class LoopSettings:
    """Optimisation settings shared by the small trainers (saved in each run's config)."""

    steps: int = 2000
    batch: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise NoisecraftError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise NoisecraftError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise NoisecraftError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")


def run_loop(
    out: str | Path,
    model: nn.Module,
    step_fn: Callable[[nn.Module, torch.Generator], Tensor],
    settings: LoopSettings,
    config: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    log: list[float] | None = None,
) -> EMA:
    """Train `model` for settings.steps steps of ``step_fn(model, g).mean()``; returns the EMA (its .model).

    `config` is written as OUT/config.json and into each checkpoint; resuming refuses a changed config (except
    steps and cadences). Checkpoints go to OUT/checkpoints/step-*/ (model, ema, optimizer, rng, state).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    last = ckpt.latest_checkpoint(out)
    if last is not None and not resume:
        raise NoisecraftError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new --out")
    torch.manual_seed(settings.seed)
    g = torch.Generator().manual_seed(settings.seed * 7919 + 1)
    ema = EMA(model, settings.ema_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    start = 0
    if last is not None:
        last = ckpt.resumable_checkpoint(out, say=print)
        saved = json.loads((last / "config.json").read_text())
        now = json.loads(json.dumps(config))  # as JSON stores it (tuples become lists)
        if {k: v for k, v in saved.items() if k != "loop"} != {k: v for k, v in now.items() if k != "loop"}:
            raise NoisecraftError(f"cannot resume {last}: the config changed; use the same options or a new --out")
        state = ckpt.read_state(last)
        model.load_state_dict(ckpt.load_tensors(last / "model.safetensors"))
        ema.model.load_state_dict(ckpt.load_tensors(last / "ema.safetensors"))
        ema.steps = state["ema_steps"]
        ckpt.optimizer_from_files(opt, ckpt.load_tensors(last / "optimizer.safetensors"), state["optimizer"])
        ckpt.restore_rank_state(last, 0, g)
        start = state["step"]
        print(f"resuming from {last} (step {start})")
    out.mkdir(parents=True, exist_ok=True)
    ckpt.remove_leftovers(out)
    ckpt.write_text_atomic(out / "config.json", json.dumps(config, indent=2))
    s = settings
    bar = tqdm(total=s.steps, initial=start, desc=desc, disable=not progress)
    model.train()
    for step in range(start, s.steps):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, s.lr, s.steps, s.warmup_steps)
        loss = step_fn(model, g).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip or math.inf)
        if torch.isfinite(gnorm):
            opt.step()
            ema.update(model, s.batch)
        done = step + 1
        bar.update(1)
        if log is not None:
            log.append(loss.item())
        if done % s.log_every == 0 or done in (1, s.steps):
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": done, "loss": loss.item(), "lr": opt.param_groups[0]["lr"]}) + "\n")
        if done % s.checkpoint_every == 0 or done == s.steps:
            tmp = ckpt.prepare_checkpoint(out, done)
            ckpt.write_rank_state(tmp, 0, g)
            state = {"step": done, "ema_steps": ema.steps, "ema_images": ema.images}
            ckpt.write_main_state(tmp, model=model, ema_model=ema.model, optimizer=opt, state=state, config=config)
            ckpt.commit_checkpoint(tmp, keep_last=2)
    bar.close()
    model.eval()
    if start >= s.steps and last is not None:  # nothing to do: the finished run's EMA
        ema.model.load_state_dict(ckpt.load_tensors(last / "ema.safetensors"))
    return ema


def load_weights(out: str | Path, model: nn.Module, ema: bool = True) -> nn.Module:
    """Load the latest checkpoint of a small-loop run folder into `model` (EMA weights unless ema=False)."""
    last = ckpt.resolve_checkpoint(out)
    weights = "ema.safetensors" if ema else "model.safetensors"
    ckpt.check_loadable(last, weights)
    try:
        model.load_state_dict(ckpt.load_tensors(last / weights))
    except RuntimeError as e:
        raise NoisecraftError(f"cannot load {last / weights}: {str(e).splitlines()[0][:200]}") from None
    return model
