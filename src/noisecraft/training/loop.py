"""The training loop: one short function on Accelerate (one process, torchrun/accelerate multi-process).

Per optimiser step: set the learning rate (warm-up + cosine), run grad_accum micro-batches (each process
takes its own disjoint shard of the seeded data stream), clip, skip the step if the gradient is not finite
(abort after max_bad_steps in a row), step AdamW, update the EMA; then log, draw a sample grid and write an
atomic checkpoint at their cadences. The step's update, the checkpoints, the resume and the log are the
pieces of training.core, the loop core the classifier and autoencoder trainers run too. Everything a resumed
run needs is a function of the checkpoint, so a run killed at any moment and resumed ends at the same
weights, bit for bit.

Settings left "auto" are chosen first (noisecraft.training.defaults). With a time budget (cfg.minutes) the
first CALIBRATION_STEPS steps are timed (inside the warm-up, whose learning rate does not depend on the run's
length), the step count is planned from them and written into config.json before any checkpoint, so the
learning-rate schedule, EMA and cadences follow the plan and a resume continues it; the run also stops at the
first log step past the budget should the machine slow down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from noisecraft.core.ema import EMA
from noisecraft.core.losses import DenoisingLoss
from noisecraft.errors import NoisecraftError
from noisecraft.training import checkpoint as ckpt
from noisecraft.training.config import TrainConfig
from noisecraft.training.core import (
    append_log,
    apply_update,
    restore_checkpoint,
    save_checkpoint,
    set_lr,
    truncate_log,
)
from noisecraft.training.defaults import (
    WARMUP_MAX,
    adopt_saved,
    plan_steps,
    resolve_for_data,
    resolve_for_length,
)
from noisecraft.training.interrupt import StopRequest, TrainingInterrupted
from noisecraft.training.setup import (
    LossModule,
    build_model,
    check_compatible,
    drop_labels,
    lr_at,
    open_source,
    sample_shape,
)

clock = time.perf_counter  # the clock a time budget is planned and read on (tests put a fake one here)
CALIBRATION_STEPS = 10  # timed steps before a time budget is turned into a step count
PROVISIONAL_STEPS = 2**40  # cfg.steps while the plan is not made yet (warm-up does not read it)


@dataclass(frozen=True)
class TrainStep:
    """What train()'s `callback` sees after each optimiser step, in every process."""

    step: int  # optimiser steps done
    rank: int
    world_size: int
    indices: list[int]  # the data items this process trained on in this step (all micro-batches)
    loss: float  # this process's mean loss of the step
    model: nn.Module  # this process's denoiser (the weights being trained)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    dataset=None,
    progress: bool = True,
    callback: Callable[[TrainStep], None] | None = None,
) -> Path:
    """Train the run `cfg` (resume=True continues from its latest checkpoint); returns the last checkpoint.

    Ctrl-C or SIGTERM ends the current step, writes a checkpoint and raises TrainingInterrupted.
    `callback(TrainStep)` is called in every process after each optimiser step (e.g. to watch which data each
    process sees, or its weights); raising from it stops training.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from tqdm.auto import tqdm

    t_start = clock()
    check_compatible(cfg)
    out = Path(cfg.out_dir)
    last = ckpt.latest_checkpoint(out)
    if last is not None and not resume:
        raise NoisecraftError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new --out")
    if last is not None:
        last = ckpt.resumable_checkpoint(out, say=print)  # the newest complete one; a damaged newer one is named
        cfg = adopt_saved(cfg, json.loads((last / "config.json").read_text()))  # what the run chose stays chosen
    cfg, notes = resolve_for_data(cfg, len(dataset) if dataset is not None else None, resuming=last is not None)
    if last is not None:
        ckpt.check_resumable(last, cfg.to_dict())
    # Accelerate keeps one process-wide state: forget the last run's settings (mixed precision) so a second
    # train() in the same Python session takes its own; the distributed process group is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    # cpu=True on a machine without CUDA makes torchrun/accelerate-launched processes form a gloo group
    acc = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.trackers or None,
        project_dir=str(out),
        cpu=not torch.cuda.is_available(),
    )
    rank, world = acc.process_index, acc.num_processes
    for line in notes:
        acc.print(f"auto: {line}")
    budget = cfg.minutes * 60 if cfg.minutes is not None and last is None else None
    length_open = cfg  # the length-dependent settings as given (None: decided by the plan)
    if budget is None:
        cfg = resolve_for_length(cfg)
    else:  # provisional until the plan: warm-up as given (or its longest), no previews/evals/checkpoints yet
        w = cfg.optim.warmup_steps if cfg.optim.warmup_steps is not None else WARMUP_MAX
        cfg = resolve_for_length(
            dataclasses.replace(cfg, steps=PROVISIONAL_STEPS, optim=dataclasses.replace(cfg.optim, warmup_steps=w))
        )
        acc.print(f"time budget {cfg.minutes:g} min: timing the first {CALIBRATION_STEPS} steps to plan the run")
    torch.manual_seed(cfg.seed)  # identical initial weights in every process
    denoiser, schedule = build_model(cfg)
    ema = EMA(denoiser, 0.999 if cfg.ema.decay is None else cfg.ema.decay, cfg.ema.power, cfg.ema.half_life_images)
    source = open_source(cfg, dataset, rank, world, progress and acc.is_main_process, acc.print)
    text = None
    if cfg.text.enabled:  # captions → embeddings, one caption per item and step, dropped to "" for CFG
        from noisecraft.training.text_cond import CaptionSampler

        text = CaptionSampler(cfg.text, source.dataset, source.keep, acc.device)
    loss_mod = LossModule(denoiser, DenoisingLoss(schedule, cfg.loss.weighting, cfg.loss.min_snr_gamma))
    o = cfg.optim
    # fused AdamW: one kernel for all parameters (same update, ~4x cheaper step than the per-tensor loop on CPU)
    opt = torch.optim.AdamW(
        denoiser.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True
    )
    loss_mod, opt = acc.prepare(loss_mod, opt)
    ema.model.to(acc.device)
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + rank)  # σ, noise, flips, label drop: this process
    start, bad, bad_total = 0, 0, 0
    if last is not None:
        start, bad, bad_total, items = _restore(last, denoiser, ema, opt, g, rank)
        acc.print(f"resuming from {last} (step {start})")
        if items is not None and items != source.n:
            acc.print(
                f"warning: the data has changed since that checkpoint ({items} items then, {source.n} now): "
                "training goes on, but no longer exactly as an uninterrupted run would have"
            )

    def save(step: int) -> None:
        counters = {"bad_steps": bad, "bad_steps_total": bad_total, "data_items": source.n}
        save_checkpoint(out, step, denoiser, ema, opt, g, cfg.to_dict(), counters, cfg.keep_last,
                        rank=rank, barrier=acc.wait_for_everyone)  # fmt: skip

    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_leftovers(out)  # half-written or half-deleted checkpoint folders of a killed run
        ckpt.write_text_atomic(out / "config.json", cfg.to_json())
        truncate_log(out / "log.jsonl", start)
    acc.init_trackers("noisecraft")
    batches = source.batches(start)
    planned = budget is None
    bar = tqdm(
        total=cfg.steps if planned else None,
        initial=start,
        disable=not (progress and acc.is_main_process),
        desc="train" if planned else "train (timing)",
    )
    t_log, step_log = time.perf_counter(), start
    t_calib = None
    null = cfg.model.num_classes
    previews = not cfg.model.upsample_from  # an upsampler has no preview grid or periodic FD (it needs low images)
    if cfg.model.upsample_from:
        from noisecraft.models.upsampler import training_condition
    with StopRequest() as stop:
        for step in itertools.count(start):
            if step >= cfg.steps:
                break
            set_lr(opt, lr_at(step, o, cfg.steps))
            loss_sum = torch.zeros((), device=acc.device)
            seen: list[int] = []
            for m in range(o.grad_accum):
                idx, batch = next(batches)
                if callback is not None:
                    seen.extend(idx.tolist())
                x0 = source.augment(batch["x"].to(acc.device), g)
                cond = {}
                if null:
                    cond["class_labels"] = drop_labels(batch["label"].to(acc.device), cfg.label_dropout, null, g)
                if text is not None:
                    cond.update(text(idx, g))
                if cfg.model.upsample_from:  # a cascade's upsampler: its augmented low image (models/upsampler.py)
                    cond.update(training_condition(x0, cfg.model.upsample_from, cfg.model.aug_max, g))
                sync = contextlib.nullcontext() if m == o.grad_accum - 1 else acc.no_sync(loss_mod)
                with sync, acc.autocast():
                    loss = loss_mod(x0, g, **cond).float().mean()
                    acc.backward(loss / o.grad_accum)
                loss_sum += loss.detach() / o.grad_accum
            gnorm = acc.clip_grad_norm_(denoiser.parameters(), o.grad_clip or math.inf)
            if apply_update(opt, gnorm, ema, denoiser, cfg.batch_size):  # all-reduced gradients: every process agrees
                bad = 0
            else:
                bad, bad_total = bad + 1, bad_total + 1
            if bad >= cfg.max_bad_steps:
                keep = ckpt.latest_checkpoint(out)
                raise NoisecraftError(
                    f"{bad} steps in a row had a non-finite loss or gradient (last at step {step + 1}); stopped. "
                    f"Last good checkpoint: {keep or 'none yet'}. Lower optim.lr or check the data"
                )
            done = step + 1
            bar.update(1)
            if callback is not None:
                callback(TrainStep(done, rank, world, seen, loss_sum.item(), denoiser))
            if not planned and done == 1:
                t_calib = clock()  # the first step (allocations, warm caches) is not timed
            if not planned and done == CALIBRATION_STEPS:
                per_step = (clock() - t_calib) / (done - 1)
                left = budget - (clock() - t_start)
                total = _agree(acc, plan_steps(cfg, left, per_step, done, _eval_images(cfg, source.n)))
                cfg = resolve_for_length(dataclasses.replace(length_open, steps=total))
                o = cfg.optim
                ema.half_life_images = cfg.ema.half_life_images
                ema.decay = 0.999 if cfg.ema.decay is None else cfg.ema.decay
                planned = True
                if acc.is_main_process:
                    ckpt.write_text_atomic(out / "config.json", cfg.to_json())
                bar.total, bar.desc = total, "train"
                bar.refresh()
                acc.print(
                    f"plan: {total} steps in {cfg.minutes:g} min ({per_step:.3f} s a step over {done - 1} timed "
                    f"steps); saved in {out / 'config.json'}"
                )
            elapsed = clock() - t_start  # the clock the budget is read on, and logged
            over = (
                budget is not None
                and planned
                and done % cfg.log_every == 0
                and done < cfg.steps
                and _agree(acc, int(elapsed >= budget))
            )
            final = done == cfg.steps or bool(over)
            if done % cfg.log_every == 0 or final:
                loss_val = acc.reduce(loss_sum, "mean").item()
                rate = (done - step_log) * cfg.batch_size / max(time.perf_counter() - t_log, 1e-9)
                t_log, step_log = time.perf_counter(), done
                rec = {
                    "step": done,
                    "loss": loss_val,
                    "lr": opt.param_groups[0]["lr"],
                    "images_per_s": rate,
                    "grad_norm": float(gnorm),
                    "bad_steps": bad_total,
                    "cpu_s": time.process_time(),  # this process's CPU seconds: throughput that ignores other load
                    "elapsed_s": elapsed,
                }
                if over:
                    rec["budget_stop"] = True
                bar.set_postfix(loss=f"{loss_val:.4f}", img_s=f"{rate:.0f}", refresh=False)
                acc.log({k: v for k, v in rec.items() if k != "step"}, step=done)
                if acc.is_main_process:
                    append_log(out / "log.jsonl", rec)
            t_side = time.perf_counter()  # previews, evaluations and checkpoints do not count in images/s
            if (
                planned
                and previews
                and cfg.sample_every
                and (done % cfg.sample_every == 0 or final)
                and acc.is_main_process
            ):
                try:  # a failing preview must never cost a run its progress
                    _sample_grid(cfg, ema.model, schedule, out / "samples" / f"step-{done:08d}.png", text)
                except Exception as e:
                    acc.print(f"warning: sample grid at step {done} failed ({type(e).__name__}: {e}); training goes on")
            if (
                planned
                and previews
                and cfg.eval_every
                and (done % cfg.eval_every == 0 or final)
                and acc.is_main_process
            ):
                _periodic_eval(cfg, ema.model, schedule, done, out, acc, None if text is None else text.encoder)
            if planned and (done % cfg.checkpoint_every == 0 or final):
                save(done)
            t_log += time.perf_counter() - t_side
            if over:
                acc.print(
                    f"time budget of {cfg.minutes:g} min reached at step {done} of the {cfg.steps} planned; "
                    f"`noisecraft train --out {out} --resume` would finish the plan"
                )
                break
            if done < cfg.steps and stop.requested(acc, agree=done % cfg.log_every == 0):
                if not planned:  # nothing is saved before the plan exists
                    bar.close()
                    acc.end_training()
                    raise TrainingInterrupted(done, ckpt.latest_checkpoint(out), stop.signum)
                if done % cfg.checkpoint_every:  # not already saved at this step
                    save(done)
                bar.close()
                acc.end_training()
                raise TrainingInterrupted(done, ckpt.latest_checkpoint(out), stop.signum)
    bar.close()
    acc.end_training()
    return ckpt.latest_checkpoint(out)


def _eval_images(cfg: TrainConfig, num_train: int) -> int:
    """Samples a periodic evaluation will draw (a folder: about twice its held-out part)."""
    from noisecraft.training.defaults import eval_sample_count

    if cfg.data.kind != "folder" or not cfg.data.holdout:
        return cfg.eval_count
    held = round(num_train * cfg.data.holdout / (1 - cfg.data.holdout))
    return eval_sample_count(cfg, held)


def _agree(acc, value: int) -> int:
    """The main process's value, on every process (a decision from its clock must be the same everywhere)."""
    if acc.num_processes == 1:
        return int(value)
    from accelerate.utils import broadcast

    return int(broadcast(torch.tensor([int(value)], device=acc.device), from_process=0).item())


def _restore(path: Path, denoiser, ema: EMA, opt, g, rank: int) -> tuple[int, int, int, int | None]:
    """Load a checkpoint into the run's objects: (step, bad steps in a row, bad steps in all, data items)."""
    state = restore_checkpoint(path, denoiser, ema, opt, g, rank)
    return state["step"], state["bad_steps"], state["bad_steps_total"], state.get("data_items")


_HELDOUT: dict[str, object] = {}  # the folder evaluation of the current run (reference features, floor)


def _periodic_eval(cfg: TrainConfig, model, schedule, step: int, out: Path, acc, encoder=None) -> None:
    """Append a small, labelled evaluation to eval.jsonl; never touches the training RNG or stops the run. A
    text run's samples show held-out captions, embedded by `encoder` (training/heldout.py)."""
    from noisecraft.evaluation.evaluate import periodic_eval
    from noisecraft.training.heldout import has_heldout

    try:
        if has_heldout(cfg):
            with torch.random.fork_rng(devices=[]):
                rec = {"step": step, **_heldout(cfg, model)(cfg, model, schedule, encoder)}
            with open(out / "eval.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            s, fl, p = rec["scores"], rec["noise_floor"], rec["protocol"]
            acc.print(
                f"step {step}: FD {s['fd']:.3g} KID {s['kid_mean']:.3g} against {p['num_reference']} held-out "
                f"images ({p['num_samples']} samples; floor FD {fl['fd']:.3g} KID {fl['kid_mean']:.3g})"
            )
            return
        with torch.random.fork_rng(devices=[]):
            res = periodic_eval(
                model,
                schedule,
                cfg.data.source,
                sample_shape(cfg),
                num=cfg.eval_count,
                sampler=cfg.sample_sampler,
                steps=cfg.sample_steps,
                num_classes=cfg.model.num_classes,
                latent=cfg.data.latent,  # a latent run's samples are decoded before they are scored
            )
        rec = {"step": step, **res.to_dict()}
        with open(out / "eval.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        acc.print(f"step {step}: periodic eval ({cfg.eval_count} samples) FD {res.scores.fd:.3f}")
    except (NoisecraftError, OSError, torch.linalg.LinAlgError) as e:
        # what can go wrong with the data or the disk (NaN samples, a missing reference, a full disk); a bug
        # (a tensor on the wrong device, a shape error) is not caught: it must surface, not become a warning
        acc.print(f"warning: periodic evaluation at step {step} failed ({type(e).__name__}: {e}); training goes on")


def _heldout(cfg: TrainConfig, model):
    from noisecraft.training.heldout import HeldoutEval

    key = json.dumps(cfg.data.to_dict(), sort_keys=True)
    if key not in _HELDOUT:
        _HELDOUT.clear()
        _HELDOUT[key] = HeldoutEval(cfg, device=next(model.parameters()).device)
    return _HELDOUT[key]


def _sample_grid(cfg: TrainConfig, model, schedule, path: Path, text=None) -> None:
    from noisecraft.data.io import save_grid
    from noisecraft.evaluation.plots import save_points
    from noisecraft.training.samples import draw_samples

    extra = None
    if text is not None:  # one training caption per preview image, written beside the grid
        captions = text.preview(cfg.sample_count)
        extra = text.encoder.encode(captions)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".txt").write_text("".join(c + "\n" for c in captions))
    x = draw_samples(cfg, model, schedule, cfg.sample_count, extra)
    save_points(x, path, f"EMA samples, {path.stem}") if x.ndim == 2 else save_grid(x, path)
