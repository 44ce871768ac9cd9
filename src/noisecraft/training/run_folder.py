"""The layout of a run folder, with no torch import: find, check, prune and clean its checkpoints.

    RUN/config.json                    the run's config, written before anything slow (so an early kill resumes it)
    RUN/checkpoints/step-00001200/     complete checkpoints (see training.checkpoint)
    RUN/checkpoints/.tmp-step-*/       a checkpoint being written (never listed)
    RUN/checkpoints/.trash-step-*/     a checkpoint being deleted (never listed)

Every change of what the folder holds is a rename, atomic on POSIX: a checkpoint appears by renaming its
finished temporary folder into place, and disappears by renaming it to a trash name before it is deleted, so a
SIGKILL at any moment never leaves a half-written or half-deleted folder under a checkpoint name. Leftover
temporary and trash folders are removed on the next start (``remove_leftovers``).

``checkpoint_problem`` reads only headers (JSON, and the safetensors header against the file size), so it
tells a complete checkpoint from a truncated or tampered one cheaply and without unpickling anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from noisecraft.errors import NoisecraftError

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
TMP_PREFIX, TRASH_PREFIX = ".tmp-", ".trash-"
WEIGHT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


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


def remove_dir_atomic(path: Path) -> None:
    """Delete a folder so that a kill mid-way leaves nothing under its name: rename to a trash name, then delete."""
    trash = path.parent / f"{TRASH_PREFIX}{path.name}"
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Listing.
def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Checkpoints of a run (folders step-* with a state.json), oldest first; temporary/trash never listed."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted((p for p in found if (p / "state.json").is_file()), key=lambda p: p.name)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def remove_leftovers(out_dir: str | Path) -> list[Path]:
    """Delete the temporary and trash folders (and half-written `.name.XXXX.tmp` files of write_text_atomic)
    a killed run left behind; returns what was removed."""
    root = checkpoint_dir(out_dir)
    stale = [p for p in Path(out_dir).glob(".*.tmp") if p.is_file()]
    if root.is_dir():
        stale += [p for p in root.iterdir() if p.name.startswith((TMP_PREFIX, TRASH_PREFIX))]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return stale


def prune(out_dir: str | Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints; each older one is removed atomically (see remove_dir_atomic)."""
    for old in list_checkpoints(out_dir)[:-keep_last]:
        remove_dir_atomic(old)


# ---------------------------------------------------------------------------------------------------------
# Checking a checkpoint without loading it.
def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file `path` is unusable (missing, truncated, bad header), or None if it looks whole."""
    name = path.name
    if not path.is_file():
        pickles = sorted(p.name for p in path.parent.glob(f"{path.stem}.*") if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            return f"{name} is missing and {pickles[0]} is a pickle file, never loaded: safetensors only"
        return f"{name} is missing"
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{name} is truncated ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{name} is truncated ({size} bytes; its header alone needs {8 + n})"
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        return f"{name} is not a safetensors file (unreadable header)"
    if size < 8 + n + end:
        return f"{name} is truncated ({size} of {8 + n + end} bytes)"
    return None


def json_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"{path.name} is not valid JSON ({e})"
    return None


def checkpoint_problem(ckpt: Path, files: tuple[str, ...] | None = None) -> str | None:
    """Why checkpoint folder `ckpt` cannot be used (the first problem found), or None if it is complete.

    `files` limits the check to those files (sampling needs config.json and one weight file); by default
    everything a resume reads is checked: state, config, weights, optimiser and every process's RNG state.
    """
    ckpt = Path(ckpt)
    if files is None:
        ranks = sorted(p.name for p in ckpt.glob("rng-rank*.safetensors")) or ["rng-rank0.safetensors"]
        rank_json = [r.removesuffix(".safetensors") + ".json" for r in ranks]
        files = ("state.json", "config.json", *WEIGHT_FILES, *ranks, *rank_json)
    for name in files:
        problem = safetensors_problem(ckpt / name) if name.endswith(".safetensors") else json_problem(ckpt / name)
        if problem:
            return problem
    return None


def resumable_checkpoint(out_dir: str | Path, say: Callable[[str], Any] | None = None) -> Path | None:
    """The newest complete checkpoint of a run (None if it has none at all). A damaged newer one is skipped, and
    `say` is told which and why; if every checkpoint is damaged, a NoisecraftError names the newest's problem."""
    found = list_checkpoints(out_dir)
    if not found:
        return None
    skipped: list[str] = []
    for ckpt in reversed(found):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            if skipped and say is not None:
                say(f"warning: skipped damaged checkpoint(s) {'; '.join(skipped)}; resuming from {ckpt.name}")
            return ckpt
        skipped.append(f"{ckpt.name} ({problem})")
    raise NoisecraftError(
        f"no complete checkpoint to resume in {str(out_dir)!r}: {skipped[0]}; restore the files, or start a new --out"
    )


# what may not change between a run and its resumption (cadences, steps, lr and paths may)
RESUME_FIXED = ("data", "model", "seed", "batch_size", "label_dropout", "loss", "ema", "text")


def check_resumable(ckpt: Path, config: dict[str, Any]) -> None:
    """Refuse to resume with a config whose data, model, seed, batch or loss differ from the checkpoint's."""
    saved = json.loads((Path(ckpt) / "config.json").read_text())
    changed = [k for k in RESUME_FIXED if _differs(saved.get(k), config.get(k))]
    if changed:
        raise NoisecraftError(
            f"cannot resume {ckpt}: the config changed in {', '.join(changed)}; resume with the run's own config "
            "(omit --config) or start a new --out"
        )


def _differs(saved: Any, now: Any) -> bool:
    """Whether a saved config value and today's differ. A key only one side has is a field added (or removed)
    by another noisecraft version: a run saved before it existed was trained with its default, so it is not a
    change (an older run resumes)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return any(_differs(saved[k], now[k]) for k in saved.keys() & now.keys())
    return saved != now
