"""Crash-proof checkpoints: safetensors for every tensor, JSON for the rest, atomic directory renames.

A checkpoint is a folder ``<out_dir>/checkpoints/step-00001200/`` holding

    model.safetensors      the raw (non-EMA) denoiser weights
    ema.safetensors        the EMA weights (what sampling and export use)
    optimizer.safetensors  optimiser state tensors ("state.<param index>.<name>")
    rng-rank<r>.safetensors  torch CPU/CUDA RNG states and the trainer's generator, one file per process
    state.json             step, EMA counters, optimiser param groups, numpy/python RNG states, counters
    config.json            the full TrainConfig of the run

It is written into a temporary sibling folder, every file is fsynced, the folder is renamed into place and
the parent directory fsynced (the rename is atomic on POSIX), so a SIGKILL at any moment leaves either the
previous checkpoint set or the new one, never a half-written folder under a checkpoint name. Nothing is
ever unpickled: loading uses safetensors and json only.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")


# ---------------------------------------------------------------------------------------------------------
# Atomic file-system helpers.
def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives power loss (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a fsynced temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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
def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are never listed)."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted((p for p in found if (p / "state.json").is_file()), key=lambda p: p.name)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


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
    if final.exists():  # a re-run of the same step after a crash: replace the old copy
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    for old in list_checkpoints(final.parent.parent)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(".tmp-step-*"):  # leftovers of a killed write
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "state.json").read_text())


# what may not change between a run and its resumption (cadences, steps, lr and paths may)
RESUME_FIXED = ("data", "model", "seed", "batch_size", "label_dropout", "loss", "ema")


def check_resumable(ckpt: Path, config: dict[str, Any]) -> None:
    """Refuse to resume with a config whose data, model, seed, batch or loss differ from the checkpoint's."""
    saved = json.loads((Path(ckpt) / "config.json").read_text())
    changed = [k for k in RESUME_FIXED if saved.get(k) != config.get(k)]
    if changed:
        raise NoisecraftError(
            f"cannot resume {ckpt}: the config changed in {', '.join(changed)}; resume with the run's own config "
            "(omit --config) or start a new --out"
        )


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
    if (path / "state.json").is_file() and (path / "ema.safetensors").is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise NoisecraftError(
            f"no checkpoint found in {str(path)!r}: pass a run folder written by "
            "`noisecraft train` (it has checkpoints/step-*/) or one checkpoint folder"
        )
    return ckpt


def load_run(path: str | Path, ema: bool = True, device: str | torch.device | None = None):
    """Load a trained run → (denoiser in eval mode on `device`, schedule, TrainConfig).

    `path` is a run folder (its latest checkpoint is used) or one checkpoint folder. ``ema=False`` loads the
    raw training weights instead of the EMA average. `device` defaults to CUDA where present, else the CPU.
    """
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.setup import build_model

    ckpt = resolve_checkpoint(path)
    cfg = TrainConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    denoiser, schedule = build_model(cfg)
    denoiser.load_state_dict(load_tensors(ckpt / ("ema.safetensors" if ema else "model.safetensors")))
    return denoiser.to(resolve_device(device)).eval().requires_grad_(False), schedule, cfg
