"""Train a diffusion model from a run config (JSON) plus flags; checkpoints are crash-proof and resumable.

The config is resolved in this order: defaults < --config file < flags (--data, --steps, ...) < --set k=v.
With --resume and no --config, the run's own saved config.json is the base. Ctrl-C (or SIGTERM) finishes the
current step and writes a checkpoint before stopping; a second Ctrl-C quits at once.

Defaults that work on a folder of your own images: EDM preconditioning and noise levels; network size, batch,
learning rate, warm-up and EMA chosen from the data and the run's length (printed as "auto:" lines, saved in
config.json); previews every fifth of the run; FD/KID against a held-out tenth of a folder at mid-run and end.
The guide's setting (ε-prediction on the linear schedule) is --parameterisation eps --schedule linear.

Examples:
  noisecraft train --data my_images/ --minutes 15 --out runs/mine              # plan the steps from a time budget
  noisecraft train --data icons/ --resolution 32 --background black --out runs/icons   # transparency onto black
  noisecraft train --data digits --resolution 16 --steps 2000 --out runs/digits
  noisecraft train --data toy:swissroll --steps 3000 --out runs/roll          # 2-D toy: MLP chosen for you
  noisecraft train --data fashion-mnist --resolution 32 --upsample-from 16 --out runs/sr   # a cascade's upsampler
  noisecraft train --config cfg.json --set optim.lr=3e-4 --set ema.half_life_images=5000 --dry-run
  noisecraft train --out runs/digits --resume                                  # after Ctrl-C, a crash or kill -9
  noisecraft train --config configs/guide-butterflies.json                     # the guide's pipeline (hub, GPU)
  torchrun --standalone --nproc_per_node 2 -m noisecraft.cli.main train --config cfg.json   # 2 processes
"""

from __future__ import annotations

import argparse
import os
import sys

from noisecraft.cli.args import MAX_COUNT, non_negative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config JSON (as written beside every checkpoint)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. optim.lr=3e-4 or data.flip=true (repeatable)",
    )
    p.add_argument("--data", help="data source: digits, fashion-mnist, toy:<name>, hf:<name> or an image folder")
    p.add_argument("--arch", help="network: unet, dit or mlp")
    p.add_argument(
        "--model-preset",
        help="network size: auto (default: from resolution and number of images), nano, tiny, small or guide-128",
    )
    p.add_argument("--resolution", type=positive_int, help="image side in pixels (data and model)")
    p.add_argument("--channels", type=positive_int, help="image channels, 1 or 3 (data and model)")
    p.add_argument("--schedule", help="noise schedule: edm (default), linear, cosine, scaled_linear, sigmoid, vp or ve")
    p.add_argument(
        "--parameterisation",
        help="what the network predicts: edm (default), eps, x0, v or score; the guide's: eps with --schedule linear",
    )
    p.add_argument("--steps", type=positive_int, help="optimiser steps")
    p.add_argument(
        "--minutes",
        type=positive_float,
        help="time budget instead of --steps: the first steps are timed and the run planned to fit (ETA shown)",
    )
    p.add_argument(
        "--background",
        help="colour that transparent pixels are composited onto: white (default), black, a name, #rrggbb or R,G,B",
    )
    p.add_argument(
        "--upsample-from",
        type=positive_int,
        help="train a cascade's super-resolution stage from this lower resolution to --resolution (e.g. 16 → 32)",
    )
    p.add_argument("--batch-size", type=positive_int, help="global batch per optimiser step")
    p.add_argument("--lr", type=positive_float, help="peak learning rate")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--out", help="run folder (checkpoints, logs, samples)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from noisecraft.cli import text_options

    text_options.add_arguments(p)


def resolve_config(args: argparse.Namespace):
    """The TrainConfig that args describe."""
    import json
    from pathlib import Path

    from noisecraft.errors import NoisecraftError
    from noisecraft.training.config import TrainConfig, apply_overrides

    base: dict = {}
    if args.config:
        base = TrainConfig.from_json_file(args.config).to_dict()
    elif getattr(args, "config_text", None):  # the --config file's text, as recorded at launch
        base = TrainConfig.from_dict(json.loads(args.config_text)).to_dict()
    if args.resume:
        from noisecraft.training.run_folder import resumable_checkpoint

        run_dir = args.out or base.get("out_dir")
        if not run_dir:
            raise NoisecraftError("--resume needs --out RUN, the run folder to continue")
        last = resumable_checkpoint(run_dir)  # the newest complete checkpoint (the loop names a damaged one)
        path = (last or Path(run_dir)) / "config.json"
        if not path.is_file():  # never silently start the default run in its place
            raise NoisecraftError(
                f"nothing to resume in {str(run_dir)!r} (no checkpoint and no config.json): start it without --resume"
            )
        if not args.config:  # the run's own config: its latest complete checkpoint's, else the run folder's
            try:
                base = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise NoisecraftError(f"{path} is not valid JSON ({e}); restore it or pass --config") from None
            if not isinstance(base, dict):
                raise NoisecraftError(f"{path} does not hold a run config (a JSON object); pass --config")
    d = TrainConfig.from_dict(base).to_dict()  # fill defaults, validate
    flags = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "out_dir": args.out}
    if args.minutes is not None:
        if args.steps is not None:
            raise NoisecraftError("give either --steps or --minutes, not both")
        flags["minutes"] = args.minutes
    elif args.steps is not None:
        d["minutes"] = None
    d.update({k: v for k, v in flags.items() if v is not None})
    if args.lr is not None:
        d["optim"]["lr"] = args.lr
    if args.data is not None:
        d["data"]["source"] = args.data
        if args.data.startswith("toy:") and args.arch is None:  # points, not images: the flat MLP
            d["model"].update(arch="mlp", channels=2, resolution=1)
    if args.background is not None:
        d["data"]["background"] = args.background
    for flag, key in (
        ("arch", "arch"),
        ("model_preset", "preset"),
        ("schedule", "schedule"),
        ("parameterisation", "parameterisation"),
    ):
        if getattr(args, flag) is not None:
            d["model"][key] = getattr(args, flag)
    if getattr(args, "upsample_from", None) is not None:
        d["model"]["upsample_from"] = args.upsample_from
    for flag in ("resolution", "channels"):
        if getattr(args, flag) is not None:
            d["data"][flag] = d["model"][flag] = getattr(args, flag)
    if args.data is not None and args.channels is None and not base and not _sets(args.set, "channels"):
        _colour_from_folder(d)
    from noisecraft.cli import text_options  # --data scenes, --text, --latent

    text_options.apply(d, args, args.channels is not None or bool(base) or _sets(args.set, "channels"))
    try:
        cfg = apply_overrides(TrainConfig.from_dict(d), args.set)
    except TypeError as e:  # pragma: no cover - a constructor complaint that escaped validation
        raise NoisecraftError(str(e)) from None
    if cfg.steps > MAX_COUNT:  # --steps is bounded by its type; --set and --config files here
        raise NoisecraftError(f"steps must be at most {MAX_COUNT:,}, got {cfg.steps}")
    return cfg


def _sets(overrides: list[str] | None, name: str) -> bool:
    """Whether some --set KEY=VALUE names the field `name` (data.channels, model.channels, ...)."""
    return any(o.split("=", 1)[0].rsplit(".", 1)[-1] == name for o in overrides or [])


def _colour_from_folder(d: dict) -> None:
    """A folder of colour images trains in RGB unless --channels says otherwise (the default is 1 channel)."""
    from pathlib import Path

    from noisecraft.data.folder import looks_colour

    root = Path(d["data"]["source"]).expanduser()
    if root.is_dir() and looks_colour(root):
        d["data"]["channels"] = d["model"]["channels"] = 3
        print(f"data: {root} holds colour images: training in RGB (--channels 1 for grayscale)", file=sys.stderr)


def _write_config_early(cfg, resume: bool) -> bool:
    """Check the run folder and write RUN/config.json before the trainer's imports and data loading (replacing
    launch.json), so a run killed in its first seconds is resumed as itself. Returns whether it is new.

    Refuses, with nothing touched, an --out that is a file or not writable, and a used folder without --resume.
    """
    from pathlib import Path

    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.errors import NoisecraftError
    from noisecraft.training.run_folder import check_resumable, resumable_checkpoint, write_text_atomic

    out = output_dir(cfg.out_dir)
    last = resumable_checkpoint(out) if resume else None
    if not resume and any(Path(out, "checkpoints").glob("step-*/state.json")):
        raise NoisecraftError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new --out")
    if last is not None:
        check_resumable(last, cfg.to_dict())  # before the run's config.json is replaced
    existed = (out / "config.json").is_file()
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", cfg.to_json())
        (out / LAUNCH).unlink(missing_ok=True)  # config.json is now the run's record
    return not existed


LAUNCH = "launch.json"  # the command line of a run that has no config.json yet
_NOT_RECORDED = ("resume", "dry_run", "no_progress", "command", "_module", "config_text")


def _record_launch(args: argparse.Namespace):
    """Write RUN/launch.json (this command line, and the text of its --config file) before anything slow:
    resolving the config imports torch, seconds on a busy machine, so a run killed in that time would leave
    nothing to resume. Only ever done for a folder without checkpoints; the loop's config.json replaces it."""
    import json
    from pathlib import Path

    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.errors import NoisecraftError
    from noisecraft.training.run_folder import write_text_atomic

    text = getattr(args, "config_text", None)  # set when a launch record is being restarted
    if args.config and Path(args.config).is_file():
        try:
            text = Path(args.config).read_text()
            out = args.out or json.loads(text).get("out_dir")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return None  # resolve_config reports the bad file
    else:
        out = args.out or (json.loads(text).get("out_dir") if text else None)
    if not out:
        return None
    out = output_dir(out)
    if any(Path(out, "checkpoints").glob("step-*/state.json")):
        raise NoisecraftError(f"{out} already holds checkpoints: pass --resume to continue, or choose a new --out")
    record = {"args": {k: v for k, v in vars(args).items() if k not in _NOT_RECORDED}, "config_text": text}
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / LAUNCH, json.dumps(record, indent=2))
    return out / LAUNCH


def _launch_args(args: argparse.Namespace) -> argparse.Namespace:
    """For --resume of a run killed before its config.json existed: its recorded command line (flags given
    now are applied on top), started afresh (it has no checkpoint). Otherwise `args` unchanged."""
    import json
    from pathlib import Path

    from noisecraft.errors import NoisecraftError
    from noisecraft.training.run_folder import list_checkpoints

    if not args.out or list_checkpoints(args.out) or Path(args.out, "config.json").is_file():
        return args
    path = Path(args.out, LAUNCH)
    if not path.is_file():
        return args  # resolve_config refuses: nothing to resume
    try:
        record = json.loads(path.read_text())
        recorded, text = dict(record["args"]), record["config_text"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise NoisecraftError(f"{path} is damaged; start the run again without --resume") from None
    merged = {**vars(args), **recorded, "set": [*recorded.get("set", []), *args.set]}
    for k, v in vars(args).items():
        if k in recorded and k != "set" and v not in (None, False, []):
            merged[k] = v  # a flag given with --resume wins
    merged.update(resume=False, config=None, config_text=text)
    print(
        f"{args.out} has no config.json yet: starting it again from its recorded command line ({path})", file=sys.stderr
    )
    return argparse.Namespace(**merged)


def run(args: argparse.Namespace) -> int:
    launch = None
    if not args.dry_run:
        args = _launch_args(args) if args.resume else args
        if not args.resume:
            launch = _record_launch(args)
    try:
        cfg = resolve_config(args)
    except Exception:
        if launch is not None:  # a command line that does not resolve is not worth resuming
            launch.unlink(missing_ok=True)
        raise
    if args.dry_run:
        print(cfg.to_json())
        return 0
    wrote = _write_config_early(cfg, args.resume)
    try:
        from noisecraft.training.setup import check_compatible

        check_compatible(cfg)
    except Exception:
        if wrote:  # a run that cannot start leaves no config behind to be "resumed"
            from pathlib import Path

            Path(cfg.out_dir, "config.json").unlink(missing_ok=True)
        raise
    from noisecraft.training.interrupt import TrainingInterrupted
    from noisecraft.training.loop import train

    try:
        last = train(cfg, resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"noisecraft train: {e}", file=sys.stderr)
            print(f"continue it: noisecraft train --out {cfg.out_dir} --resume  (same config)", file=sys.stderr)
        return 128 + e.signum  # the shell's convention for "ended by signal N": 130 Ctrl-C, 143 SIGTERM
    if os.environ.get("RANK", "0") == "0":  # one report per run, not per process
        from noisecraft.training.checkpoint import read_state

        print(f"done: {read_state(last)['step']} steps; checkpoint {last}")
        if cfg.model.upsample_from:  # a cascade's upsampler samples from low-resolution images
            print(
                f"use it: noisecraft upscale {cfg.out_dir} IMAGE.png, or noisecraft sample BASE --upscale {cfg.out_dir}"
            )
        else:
            print(f"sample it: noisecraft sample {cfg.out_dir} --num 16")
    return 0
