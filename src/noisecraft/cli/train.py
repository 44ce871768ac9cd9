"""Train a diffusion model from a run config (JSON) plus flags; checkpoints are crash-proof and resumable.

The config is resolved in this order: defaults < --config file < flags (--data, --steps, ...) < --set k=v.
With --resume and no --config, the run's own saved config.json is the base. Ctrl-C (or SIGTERM) finishes the
current step and writes a checkpoint before stopping; a second Ctrl-C quits at once.

Examples:
  noisecraft train --data digits --resolution 16 --steps 2000 --out runs/digits
  noisecraft train --data toy:swissroll --steps 3000 --out runs/roll          # 2-D toy: MLP chosen for you
  noisecraft train --config cfg.json --set optim.lr=3e-4 --set ema.half_life_images=5000 --dry-run
  noisecraft train --out runs/digits --resume                                  # after Ctrl-C, a crash or kill -9
  noisecraft train --config configs/guide-butterflies.json                     # the guide's pipeline (hub, GPU)
  torchrun --standalone --nproc_per_node 2 -m noisecraft.cli.main train --config cfg.json   # 2 processes
"""

from __future__ import annotations

import argparse
import os
import sys


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
    p.add_argument("--model-preset", help="network size: tiny, small or guide-128")
    p.add_argument("--resolution", type=int, help="image side in pixels (data and model)")
    p.add_argument("--channels", type=int, help="image channels, 1 or 3 (data and model)")
    p.add_argument("--schedule", help="noise schedule: linear, cosine, scaled_linear, sigmoid, vp, ve or edm")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--batch-size", type=int, help="global batch per optimiser step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (checkpoints, logs, samples)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_config(args: argparse.Namespace):
    """The TrainConfig that args describe."""
    import json
    from pathlib import Path

    from noisecraft.errors import NoisecraftError
    from noisecraft.training.config import TrainConfig, apply_overrides

    base: dict = {}
    if args.config:
        base = TrainConfig.from_json_file(args.config).to_dict()
    elif args.resume and args.out:  # the run's own config: its latest checkpoint's, else the run folder's
        from noisecraft.training.checkpoint import latest_checkpoint

        last = latest_checkpoint(args.out)
        path = (last or Path(args.out)) / "config.json"
        if path.is_file():
            try:
                base = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise NoisecraftError(f"{path} is not valid JSON ({e}); pass --config") from None
    d = TrainConfig.from_dict(base).to_dict()  # fill defaults, validate
    flags = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "out_dir": args.out}
    d.update({k: v for k, v in flags.items() if v is not None})
    if args.lr is not None:
        d["optim"]["lr"] = args.lr
    if args.data is not None:
        d["data"]["source"] = args.data
        if args.data.startswith("toy:") and args.arch is None:  # points, not images: the flat MLP
            d["model"].update(arch="mlp", channels=2, resolution=1)
    for flag, key in (("arch", "arch"), ("model_preset", "preset"), ("schedule", "schedule")):
        if getattr(args, flag) is not None:
            d["model"][key] = getattr(args, flag)
    for flag in ("resolution", "channels"):
        if getattr(args, flag) is not None:
            d["data"][flag] = d["model"][flag] = getattr(args, flag)
    if args.data is not None and args.channels is None and not base and not _sets(args.set, "channels"):
        _colour_from_folder(d)
    try:
        return apply_overrides(TrainConfig.from_dict(d), args.set)
    except TypeError as e:  # pragma: no cover - a constructor complaint that escaped validation
        raise NoisecraftError(str(e)) from None


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


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    from noisecraft.training.interrupt import TrainingInterrupted
    from noisecraft.training.loop import train
    from noisecraft.training.setup import check_compatible

    check_compatible(cfg)
    try:
        last = train(cfg, resume=args.resume, progress=not args.no_progress)
    except TrainingInterrupted as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"noisecraft train: {e}", file=sys.stderr)
            print(f"continue it: noisecraft train --out {cfg.out_dir} --resume  (same config)", file=sys.stderr)
        return 128 + e.signum  # the shell's convention for "ended by signal N": 130 Ctrl-C, 143 SIGTERM
    if os.environ.get("RANK", "0") == "0":  # one report per run, not per process
        print(f"done: {cfg.steps} steps; checkpoint {last}")
        print(f"sample it: noisecraft sample {cfg.out_dir} --num 16")
    return 0
