"""Argument types and output-path checks shared by every command, so each rule is written once.

``positive_int`` / ``positive_float`` / ``non_negative_int`` are argparse ``type=`` callables: a bad value
fails while the command line is parsed, with one line saying what is allowed. Counts (steps, samples, batch
sizes) are bounded by MAX_COUNT, so a typo such as ``--steps 99999999999999999999`` is refused instead of
starting a run that would never end. ``output_dir`` / ``output_file`` check an output path before any slow
work: it must not name an existing file of the wrong kind and must be writable (tried with an empty file that
is removed at once: permission bits do not stop root), so nothing computed is lost at the end and nothing
already saved is overwritten by surprise.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_COUNT = 1_000_000_000  # steps, samples, images: far above any real run, far below a typo's 10^20


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    return value


def positive_int(text: str) -> int:
    """An integer in 1 .. MAX_COUNT (steps, counts, batch sizes)."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT:,}, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer in 0 .. 2^63 − 1 (seeds: a torch generator takes 64-bit seeds)."""
    value = int(_number(text, int))
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2^63), got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, scales)."""
    value = float(_number(text, float))
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Check that `path` can be (or is) a folder we may write into, without creating anything."""
    from noisecraft.errors import NoisecraftError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NoisecraftError(f"{flag} {str(path)!r} is an existing file, not a folder: choose a folder name")
    _check_can_create(path, flag)
    return path


def _check_can_create(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a folder we may write into."""
    from noisecraft.errors import NoisecraftError

    base = _first_existing(path)
    if not base.is_dir():
        raise NoisecraftError(f"{flag} {str(path)!r} cannot be created: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise NoisecraftError(f"{flag} {str(path)!r} is not writable ({str(base)!r} is read-only): choose another")
    why = _write_probe(base)
    if why is not None:
        raise NoisecraftError(f"{flag} {str(path)!r} is not writable ({str(base)!r}: {why}): choose another")


def _write_probe(folder: Path) -> str | None:
    """Why a file cannot be created in `folder` (by trying: an empty hidden file, removed at once), or None.

    Permission bits do not tell: root writes into a chmod 555 folder, and os.access says yes to root for a
    read-only mount's pseudo-folders (/proc) or an immutable folder, where the write itself fails."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".noisecraft-probe-")
    except OSError as e:
        return e.strerror or type(e).__name__
    os.close(fd)
    os.unlink(name)
    return None


def output_file(path: str | os.PathLike, suffixes: tuple[str, ...], flag: str = "--out") -> Path:
    """Check an output file name: a known suffix, not an existing folder, in a folder we may write to."""
    from noisecraft.errors import NoisecraftError

    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise NoisecraftError(
            f"{flag} {str(path)!r}: unsupported file type {path.suffix or '(none)'!r}; use {' or '.join(suffixes)}"
        )
    if path.is_dir():
        raise NoisecraftError(f"{flag} {str(path)!r} is an existing folder: give a file name")
    _check_can_create(path, flag)
    return path


@contextlib.contextmanager
def write_guard(where: str | os.PathLike) -> Iterator[None]:
    """Turn an OS error while writing results under `where` (disk full, read-only, ...) into a one-line error."""
    from noisecraft.errors import NoisecraftError

    try:
        yield
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise NoisecraftError(f"cannot write to {str(where)!r} ({why}: {e.filename or where})") from None


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else free pages), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, what: str, fix: str) -> None:
    """Refuse up front, in one line, work whose results would not fit in memory (instead of failing after it)."""
    from noisecraft.errors import NoisecraftError

    have = available_memory()
    if have is not None and need > have:
        raise NoisecraftError(f"{what} need about {need / 1e9:,.1f} GB of memory, {have / 1e9:,.1f} GB is free: {fix}")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """--device, the same on every command that runs a model (resolved by sampling.generate.resolve_device)."""
    parser.add_argument("--device", help="where to run: cpu, cuda, cuda:1, mps (default: cuda if present, else cpu)")


def add_clip_argument(parser: argparse.ArgumentParser) -> None:
    """--clip-x0 [R], the same on `sample` and `eval` (sampling.generate.clip_pixels), so eval scores what sample
    saves with it."""
    parser.add_argument(
        "--clip-x0",
        nargs="?",
        const=1.0,
        default=None,
        type=positive_float,
        metavar="R",
        help="clamp each x̂0 to [-R, R] (R=1: the pixel range). Default: on (R=1) for an ε-prediction pixel model, "
        "whose x̂0 overshoots at high noise, off otherwise",
    )
    parser.add_argument("--no-clip-x0", action="store_true", help="never clamp x̂0 (not even an ε-model's)")


def resolve_clip(args: argparse.Namespace, denoiser, latent: str | None, shape: tuple[int, ...]) -> float | None:
    """The clamp range `sample`, `eval` and the studio use: --clip-x0 R, none with --no-clip-x0, else the model's
    default (sampling.generate.auto_clip_range), said once on stderr when it applies."""
    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.generate import auto_clip_range

    if args.no_clip_x0:
        if args.clip_x0 is not None:
            raise NoisecraftError("give --clip-x0 R or --no-clip-x0, not both")
        return None
    if args.clip_x0 is not None:
        return args.clip_x0
    r = auto_clip_range(denoiser, latent, shape)
    if r is not None:
        print(f"auto: each x̂0 clamped to [-{r:g}, {r:g}], the pixel range (an ε-prediction model overshoots it at "
              "high noise; --no-clip-x0 to turn off)", file=sys.stderr)  # fmt: skip
    return r
