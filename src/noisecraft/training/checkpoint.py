"""Crash-proof checkpoints: safetensors for every tensor, JSON for the rest, atomic directory renames.

A checkpoint is a folder ``<out_dir>/checkpoints/step-00001200/`` holding

    model.safetensors      the raw (non-EMA) denoiser weights
    ema.safetensors        the EMA weights (what sampling and export use)
    optimizer.safetensors  optimiser state tensors ("state.<param index>.<name>")
    rng-rank<r>.safetensors  torch CPU/CUDA RNG states and the trainer's generator, one file per process
    state.json             step, EMA counters, optimiser param groups, numpy/python RNG states, counters
    config.json            the full TrainConfig of the run

It is written into a temporary sibling folder, every file is fsynced, the folder is renamed into place and
the parent directory fsynced (the rename is atomic on POSIX); old checkpoints are renamed to a trash name
before they are deleted. So a SIGKILL at any moment leaves either the previous checkpoint set or the new one,
never a half-written or half-deleted folder under a checkpoint name (see training.run_folder). Nothing is
ever unpickled: loading uses safetensors and json only, and a damaged file is named in a one-line error.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError

# Folder layout, listing, atomic renames and checks live in run_folder (no torch); re-exported here.
from noisecraft.training.run_folder import (  # noqa: F401
    CHECKPOINT_RE,
    RESUME_FIXED,
    check_resumable,
    checkpoint_dir,
    checkpoint_problem,
    fsync_dir,
    latest_checkpoint,
    list_checkpoints,
    prune,
    remove_dir_atomic,
    remove_leftovers,
    resumable_checkpoint,
    write_text_atomic,
)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    fsync_file(path)


def load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------------------------------------------------
# State (de)serialisation without pickle.
def optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (for safetensors) and JSON-able param groups/scalars."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})  # JSON turned the betas tuple into a list


def rng_state(generator: torch.Generator | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Every RNG the run can touch: torch (CPU and each CUDA device), numpy, python, and the trainer's own."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
    if generator is not None:
        tensors["generator"] = generator.get_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what we must restore)
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, pystate, gauss = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(pystate), gauss]}
    return tensors, meta


def set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda_")]
        if states:
            torch.cuda.set_rng_state_all(states)
    if generator is not None:
        generator.set_state(tensors["generator"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, pystate, gauss = meta["python"]
    random.setstate((version, tuple(pystate), gauss))


# ---------------------------------------------------------------------------------------------------------
# Checkpoint folders.
def prepare_checkpoint(out_dir: str | Path, step: int) -> Path:
    """Create (and return) the temporary folder that all processes write checkpoint `step` into."""
    tmp = checkpoint_dir(out_dir) / f".tmp-step-{step:08d}"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def write_rank_state(tmp: Path, rank: int, generator: torch.Generator | None) -> None:
    """Each process writes its own RNG states (data shards differ, so RNGs differ per rank)."""
    tensors, meta = rng_state(generator)
    save_tensors(tensors, tmp / f"rng-rank{rank}.safetensors")
    write_text_atomic(tmp / f"rng-rank{rank}.json", json.dumps(meta))


def write_main_state(
    tmp: Path,
    *,
    model: nn.Module,
    ema_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """The process-independent part (weights, optimiser, counters, config): written by the main process."""
    save_tensors(model.state_dict(), tmp / "model.safetensors")
    save_tensors(ema_model.state_dict(), tmp / "ema.safetensors")
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    write_text_atomic(tmp / "config.json", json.dumps(config, indent=2))
    write_text_atomic(tmp / "state.json", json.dumps({**state, "optimizer": opt_meta}, indent=2))


def commit_checkpoint(tmp: Path, keep_last: int) -> Path:
    """Rename the finished temporary folder into place atomically, then prune to the newest `keep_last`."""
    final = tmp.parent / tmp.name.removeprefix(".tmp-")
    fsync_dir(tmp)
    if final.exists():  # a re-run of the same step after a crash (or a damaged copy): replace the old one
        remove_dir_atomic(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    prune(final.parent.parent, keep_last)
    remove_leftovers(final.parent.parent)  # temporary folders of killed writes, trash of killed prunes
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "state.json").read_text())


def restore_rank_state(ckpt: Path, rank: int, generator: torch.Generator | None) -> None:
    path = Path(ckpt) / f"rng-rank{rank}.safetensors"
    if not path.is_file():
        raise NoisecraftError(
            f"checkpoint {ckpt} has no RNG state for process {rank}: resume with the same "
            "number of processes it was written with"
        )
    set_rng_state(load_tensors(path), json.loads((Path(ckpt) / f"rng-rank{rank}.json").read_text()), generator)


# ---------------------------------------------------------------------------------------------------------
# Loading a finished run for sampling, export and evaluation.
def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (→ its latest checkpoint) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "state.json").is_file() or CHECKPOINT_RE.match(path.name):
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise NoisecraftError(
            f"no checkpoint found in {str(path)!r}: pass a run folder written by "
            "`noisecraft train` (it has checkpoints/step-*/) or one checkpoint folder"
        )
    return ckpt


def check_loadable(ckpt: Path, weights: str) -> None:
    """Raise a NoisecraftError naming the file if `ckpt` lacks a whole config.json and `weights` file."""
    problem = checkpoint_problem(ckpt, ("config.json", weights))
    if problem is None:
        return
    older = [p for p in list_checkpoints(ckpt.parent.parent) if p != ckpt and not checkpoint_problem(p)]
    hint = f"use an older checkpoint, e.g. {older[-1]}" if older else "restore the file or train again"
    raise NoisecraftError(f"checkpoint {ckpt} is damaged: {problem}; {hint}")


def load_run(path: str | Path, ema: bool = True, device: str | torch.device | None = None):
    """Load a trained run → (denoiser in eval mode on `device`, schedule, TrainConfig).

    `path` is a run folder (its latest checkpoint is used) or one checkpoint folder. ``ema=False`` loads the
    raw training weights instead of the EMA average. `device` defaults to CUDA where present, else the CPU.
    """
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.setup import build_model

    ckpt = resolve_checkpoint(path)
    weights = "ema.safetensors" if ema else "model.safetensors"
    check_loadable(ckpt, weights)
    cfg = TrainConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    denoiser, schedule = build_model(cfg)
    try:
        denoiser.load_state_dict(load_tensors(ckpt / weights))
    except (RuntimeError, OSError) as e:  # SafetensorError is a RuntimeError; shapes that do not fit too
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise NoisecraftError(f"cannot load {ckpt / weights} into the model of its config.json ({msg})") from None
    device = resolve_device(device)
    if cfg.text.enabled:  # a text run takes prompt= (models/cond_unet.py)
        from noisecraft.models.cond_unet import attach_text_encoder
        from noisecraft.models.text import load_text_encoder

        attach_text_encoder(denoiser, load_text_encoder(cfg.text, device))
    return denoiser.to(device).eval().requires_grad_(False), schedule, cfg


def load_weights(run: str | Path, model: nn.Module, ema: bool = True) -> nn.Module:
    """Load the newest checkpoint of a training.core.fit run folder (or a checkpoint folder) into `model`: its
    EMA weights, or the raw ones with ema=False. A file that does not fit the model is a one-line error."""
    last = resolve_checkpoint(run)
    weights = "ema.safetensors" if ema else "model.safetensors"
    check_loadable(last, weights)
    try:
        model.load_state_dict(load_tensors(last / weights))
    except RuntimeError as e:
        raise NoisecraftError(f"cannot load {last / weights}: {str(e).splitlines()[0][:200]}") from None
    return model
