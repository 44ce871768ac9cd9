"""The loop core every trainer shares: one optimiser step, the run folder, checkpoints, resume, the log.

    step: batch → per-sample loss (B,) → mean → backward → clip → AdamW step (skipped if the gradient is not
          finite) → EMA → log every log_every → crash-safe checkpoint every checkpoint_every (and at the end)

The diffusion trainer (training/loop.py, on Accelerate, several processes) calls the pieces: ``set_lr``,
``apply_update``, ``save_checkpoint``, ``restore_checkpoint``, ``truncate_log`` and ``append_log``. The
single-process trainers (the noisy classifier, models/classifier.py; the autoencoder, models/autoencoder.py)
run them through ``fit``, which adds what the diffusion loop does around them: resume from the newest complete
checkpoint, Ctrl-C/SIGTERM ending the step and saving, a time budget (``minutes``: the first CALIBRATION_STEPS
steps are timed and the step count planned from them before any checkpoint), a progress bar. So crash safety,
--minutes, --resume and progress are the same for all three, and a run killed at any moment and resumed ends
at the same weights, bit for bit (tests/test_crash_safety.py).

The toy 2-D trainer (training/toy.py) takes the same step, `set_lr` and `apply_update`, in its in-memory loop.
The learning rate of every trainer is core.lr_schedule.warmup_cosine (Goyal et al. 2017; Loshchilov & Hutter
2017), a pure function of the step, so a resumed run sets the same rates.
"""

from __future__ import annotations

import json
import math
import time
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

clock = time.perf_counter  # the clock a time budget is planned and read on (tests put a fake one here)
CALIBRATION_STEPS = 10  # timed steps before a time budget is turned into a step count


# ---------------------------------------------------------------------------------------------------------
# The pieces.
def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def apply_update(opt: torch.optim.Optimizer, gnorm: Tensor | float, ema: EMA | None, model: nn.Module, batch: int):
    """After backward and clipping (gradient norm `gnorm`): step the optimiser and the EMA if the gradient is
    finite, then clear the gradients. Returns whether the step was taken."""
    ok = bool(torch.isfinite(torch.as_tensor(gnorm)))
    if ok:
        opt.step()
        if ema is not None:
            ema.update(model, batch)
    opt.zero_grad(set_to_none=True)
    return ok


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
    config: dict[str, Any],
    counters: dict[str, Any],
    keep_last: int,
    rank: int = 0,
    barrier: Callable[[], None] = lambda: None,
) -> None:
    """Write checkpoint `step` atomically (training.checkpoint): every process its RNG states, the main
    process (rank 0) the weights, EMA (the weights themselves without one), optimiser, counters and config.
    `barrier` waits for every process (a no-op in one process)."""
    tmp = ckpt.prepare_checkpoint(out, step)
    barrier()
    ckpt.write_rank_state(tmp, rank, generator)
    if rank == 0:
        ema_model = model if ema is None else ema.model
        state = {"step": step, "ema_steps": getattr(ema, "steps", 0), "ema_images": getattr(ema, "images", 0)}
        ckpt.write_main_state(
            tmp, model=model, ema_model=ema_model, optimizer=opt, state={**state, **counters}, config=config
        )
    barrier()
    if rank == 0:
        ckpt.commit_checkpoint(tmp, keep_last)
    barrier()


def restore_checkpoint(
    path: Path, model: nn.Module, ema: EMA | None, opt: torch.optim.Optimizer, generator, rank: int = 0
) -> dict[str, Any]:
    """Load checkpoint `path` into the run's objects (weights, EMA, optimiser, RNGs); returns its state.json."""
    state = ckpt.read_state(path)
    model.load_state_dict(ckpt.load_tensors(path / "model.safetensors"))
    if ema is not None:
        ema.model.load_state_dict(ckpt.load_tensors(path / "ema.safetensors"))
        ema.steps, ema.images = state["ema_steps"], state["ema_images"]
    ckpt.optimizer_from_files(opt, ckpt.load_tensors(path / "optimizer.safetensors"), state["optimizer"])
    ckpt.restore_rank_state(path, rank, generator)
    return state


def truncate_log(path: Path, step: int) -> None:
    """After a crash the log may run past the checkpoint we resume from (or end in a half-written line): keep
    only the complete records up to `step`."""
    if path.exists():
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        ckpt.write_text_atomic(path, "".join(ln + "\n" for ln in keep))


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------------------
# The single-process loop.
@dataclass
class LoopSettings:
    """How `fit` runs: length (steps, or minutes to plan them from), the learning rate, clipping, cadences."""

    steps: int
    lr: float
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_last: int = 2
    minutes: float | None = None  # a time budget: the steps are planned from the first timed steps
    seed: int = 0
    batch: int = 1  # samples a step draws (read by the trainer's loss_fn; fit counts what loss_fn returns)
    weight_decay: float = 0.0  # AdamW's (adamw)
    ema_decay: float = 0.999  # of the trainer's EMA, if it keeps one

    def __post_init__(self) -> None:
        for name in ("steps", "log_every", "checkpoint_every", "keep_last", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise NoisecraftError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0 or self.warmup_steps < 0:
            raise NoisecraftError(f"lr must be positive and warmup_steps >= 0, got {self.lr}, {self.warmup_steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise NoisecraftError(f"minutes must be positive, got {self.minutes}")
        if not 0 <= self.ema_decay < 1 or self.weight_decay < 0:
            raise NoisecraftError(f"ema_decay must lie in [0, 1) and weight_decay be >= 0, got {self.ema_decay}, "
                                  f"{self.weight_decay}")  # fmt: skip


def adamw(model: nn.Module, settings: LoopSettings) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over the trainable parameters at the settings' lr and weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)


def fit(
    out: str | Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[int, torch.Generator], tuple[Tensor, int]],
    settings: LoopSettings,
    config: dict[str, Any],
    *,
    ema: EMA | None = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    on_plan: Callable[[int], dict[str, Any]] | None = None,
    say: Callable[[str], Any] = print,
) -> Path:
    """Train `model` in the run folder `out` with the shared step; returns the last checkpoint.

    `loss_fn(step, g)` draws its batch with the run's generator `g` and returns (per-sample losses (B,), B).
    `config` (JSON-able) is written to out/config.json and beside every checkpoint; `on_plan(steps)` returns
    it as it must read once a time budget has been planned into `steps` (the resume continues that plan).
    resume=True continues from the newest complete checkpoint (a damaged newer one is named and skipped).
    Ctrl-C or SIGTERM ends the current step, writes a checkpoint and raises TrainingInterrupted.
    """
    from tqdm.auto import tqdm

    from noisecraft.training.interrupt import StopRequest, TrainingInterrupted

    t_start = clock()
    out = Path(out)
    if ckpt.latest_checkpoint(out) is not None and not resume:
        raise NoisecraftError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new --out")
    last = ckpt.resumable_checkpoint(out, say=say) if resume else None
    g = torch.Generator().manual_seed(settings.seed)
    start, bad_total = 0, 0
    steps = settings.steps
    if last is not None:
        saved = json.loads((last / "config.json").read_text())
        config = saved  # the run as it was planned and started
        state = restore_checkpoint(last, model, ema, opt, g)
        start, bad_total, steps = state["step"], state.get("bad_steps_total", 0), state.get("steps", steps)
        say(f"resuming from {last} (step {start} of {steps})")
    out.mkdir(parents=True, exist_ok=True)
    ckpt.remove_leftovers(out)
    ckpt.write_text_atomic(out / "config.json", json.dumps(config, indent=2))
    truncate_log(out / "log.jsonl", start)
    budget = settings.minutes * 60 if settings.minutes is not None and last is None else None
    planned = budget is None
    if not planned:
        steps = 2**40  # provisional: the warm-up (all the calibration sees) does not depend on the length
        say(f"time budget {settings.minutes:g} min: timing the first {CALIBRATION_STEPS} steps to plan the run")
    bar = tqdm(total=steps if planned else None, initial=start, disable=not progress, desc=desc)
    t_calib = 0.0
    with StopRequest() as stop:
        step = start
        while step < steps:
            lr = warmup_cosine(step, settings.lr, steps, settings.warmup_steps)
            set_lr(opt, lr)
            losses, batch = loss_fn(step, g)  # (B,)
            loss = losses.float().mean()
            loss.backward()
            clip = settings.grad_clip or math.inf
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if not apply_update(opt, gnorm, ema, model, batch):
                bad_total += 1
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if not planned and step == 1:
                t_calib = clock()  # the first step (allocations, warm caches) is not timed
            if not planned and step == CALIBRATION_STEPS:
                per_step = (clock() - t_calib) / (step - 1)
                steps = max(step, step + int((budget - (clock() - t_start)) / max(per_step, 1e-9)))
                planned = True
                if on_plan is not None:
                    config = on_plan(steps)
                    ckpt.write_text_atomic(out / "config.json", json.dumps(config, indent=2))
                bar.total = steps
                say(f"plan: {steps} steps in {settings.minutes:g} min ({per_step:.3f} s a step)")
            final = step == steps
            if step % settings.log_every == 0 or final:
                rec = {"step": step, "loss": loss.item(), "lr": lr, "grad_norm": float(gnorm), "bad_steps": bad_total,
                       "elapsed_s": clock() - t_start}  # fmt: skip
                append_log(out / "log.jsonl", rec)
            counters = {"bad_steps_total": bad_total, "steps": steps}
            if planned and (step % settings.checkpoint_every == 0 or final):
                save_checkpoint(out, step, model, ema, opt, g, config, counters, settings.keep_last)
            if not final and stop.signum is not None:
                if planned and step % settings.checkpoint_every:
                    save_checkpoint(out, step, model, ema, opt, g, config, counters, settings.keep_last)
                bar.close()
                raise TrainingInterrupted(step, ckpt.latest_checkpoint(out), stop.signum)
    bar.close()
    return ckpt.latest_checkpoint(out)
