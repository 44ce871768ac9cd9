"""The run record of the small trainers (train-classifier, train-vae, train-clip, train-unclip): OUT/config.json
holds the command line, written before anything slow (no torch import here), so a run killed in its first
seconds is resumed as itself.

    {"trainer": "classifier", "args": {"data": "digits", "steps": 2000, ...}}

``start(args, trainer)`` checks --out up front (a file in the way, a folder that cannot be written: one line),
then either writes the record (a new run; refused if the folder already holds checkpoints) or, with --resume,
reads it back and returns the recorded arguments (flags that only steer this process, --no-progress and
--device, are today's). training.core.fit keeps the record beside every checkpoint, with the planned steps of a
--minutes run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

NOT_RECORDED = ("resume", "no_progress", "device", "command", "_module", "created")
MINUTES_HELP = "time budget instead of --steps (planned from timed steps)"


def add_run_arguments(p: argparse.ArgumentParser, checkpoint_every: int | None, minutes_help: str = MINUTES_HELP):
    """The flags every small trainer shares: --minutes, --checkpoint-every (when given a default), --resume and
    --no-progress."""
    from noisecraft.cli.args import positive_float, positive_int

    p.add_argument("--minutes", type=positive_float, default=None, help=minutes_help)
    if checkpoint_every is not None:
        p.add_argument(
            "--checkpoint-every", type=positive_int, default=checkpoint_every, help="steps between checkpoints"
        )
    p.add_argument("--resume", action="store_true", help="continue the run in --out (after Ctrl-C, a crash or kill -9)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def start(args: argparse.Namespace, trainer: str) -> argparse.Namespace:
    """The arguments to run: `args` for a new run (whose record is now written), the recorded ones to resume."""
    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.errors import NoisecraftError
    from noisecraft.training.run_folder import list_checkpoints, write_text_atomic

    out = output_dir(args.out)
    path = out / "config.json"
    if args.resume:
        try:
            record = json.loads(path.read_text())
            recorded = dict(record["args"])
            assert record["trainer"] == trainer
        except FileNotFoundError:
            raise NoisecraftError(
                f"nothing to resume in {str(out)!r} (no config.json): start it without --resume"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
            raise NoisecraftError(
                f"{path} is not a `noisecraft train-{trainer}` record; choose its own --out"
            ) from None
        return argparse.Namespace(**{**vars(args), **recorded, "out": args.out})
    if list_checkpoints(out) or path.is_file():
        raise NoisecraftError(f"{out} already holds a run: pass --resume to continue it, or choose a new --out")
    record = record_of(args, trainer)
    args.created = not out.exists()  # removed again if the run is refused before it starts
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=2))
    return args


def planned(args: argparse.Namespace, trainer: str):
    """on_plan for training.core.fit: the record once a --minutes run is planned into `steps` steps."""

    def record(steps: int) -> dict:
        kept = {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}
        return {"trainer": trainer, "args": {**kept, "steps": steps, "minutes": None}}

    return record


def record_of(args: argparse.Namespace, trainer: str) -> dict:
    return {"trainer": trainer, "args": {k: v for k, v in vars(args).items() if k not in NOT_RECORDED}}


@contextlib.contextmanager
def removed_if_refused(args: argparse.Namespace) -> Iterator[None]:
    """A new run refused before its first checkpoint (bad data, a config that cannot start) leaves no record
    behind to be "resumed"; a resumed run, or one killed or interrupted, keeps it."""
    from noisecraft.errors import NoisecraftError
    from noisecraft.training.run_folder import list_checkpoints

    try:
        yield
    except NoisecraftError:
        if not args.resume and not list_checkpoints(args.out):
            Path(args.out, "config.json").unlink(missing_ok=True)
            if getattr(args, "created", False):
                with contextlib.suppress(OSError):
                    Path(args.out).rmdir()  # only if empty
        raise


def stopped(e, out: str, verb: str) -> int:
    """Ctrl-C or SIGTERM ended the run after a checkpoint: say how to continue; the shell's 128 + N."""
    import sys

    print(f"noisecraft {verb}: {e}", file=sys.stderr)
    print(f"continue it: noisecraft {verb} --out {out} --resume", file=sys.stderr)
    return 128 + e.signum
