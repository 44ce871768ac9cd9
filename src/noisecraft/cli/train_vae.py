"""Train a KL autoencoder (diffusers AutoencoderKL) for latent diffusion; the scaling factor is computed from
the data. The result, OUT/vae, is a diffusers folder that `noisecraft train --latent OUT` encodes data with.

Examples:
  noisecraft train-vae --data scenes --preset tiny-f4 --steps 2000 --out runs/vae-scenes
  noisecraft train-vae --data scenes --preset tiny-f8 --set kl_weight=1e-5 --out runs/vae-f8
  noisecraft train-vae --out runs/vae-scenes --resume          # after Ctrl-C, a crash or kill -9

The loop is the trainers' shared one (training.core.fit): OUT/config.json records the command line before
anything slow, checkpoints are crash-safe, --resume continues a killed run bit for bit, --minutes plans the steps.
"""

from __future__ import annotations

import argparse

from noisecraft.cli import run_record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="scenes", help="data source (as for train): scenes, a folder, hf:<name>, ...")
    p.add_argument("--resolution", type=int, default=32, help="image side in pixels")
    p.add_argument("--channels", type=int, default=3, help="image channels, 1 or 3")
    p.add_argument("--preset", default="tiny-f4", help="autoencoder size: tiny-f4 (factor 4) or tiny-f8 (factor 8)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="other config keys, e.g. kl_weight=1e-5 or data.scenes_size=4000",
    )
    p.add_argument("--out", default="runs/vae", help="output folder (OUT/vae is the diffusers AutoencoderKL)")
    run_record.add_run_arguments(p, checkpoint_every=None)


def resolve(args: argparse.Namespace):
    import json

    from noisecraft.data.config import DataConfig
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.autoencoder import VAEConfig

    data = DataConfig(source=args.data, resolution=args.resolution, channels=args.channels)
    d: dict = dict(
        data=data, preset=args.preset, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        out_dir=args.out, minutes=args.minutes,
    )  # fmt: skip
    for item in args.set:
        key, sep, raw = item.partition("=")
        if sep and key.startswith("data."):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            d["data"] = DataConfig.from_dict({**d["data"].to_dict(), key[5:]: value})
            continue
        if not sep or key not in VAEConfig.__dataclass_fields__ or key == "data":
            names = ", ".join(k for k in VAEConfig.__dataclass_fields__ if k != "data")
            raise NoisecraftError(f"--set expects KEY=VALUE with KEY one of {names}; got {item!r}")
        try:
            d[key] = json.loads(raw)
        except json.JSONDecodeError:
            d[key] = raw
    return VAEConfig(**d)


def run(args: argparse.Namespace) -> int:

    args = run_record.start(args, "vae")  # OUT/config.json before anything slow; --resume reads it back
    from noisecraft.training.interrupt import TrainingInterrupted

    try:
        with run_record.removed_if_refused(args):  # a bad --set or preset leaves no record behind
            from noisecraft.models.autoencoder import train_vae

            cfg = resolve(args)
            folder = train_vae(
                cfg, progress=not args.no_progress, resume=args.resume, record=run_record.record_of(args, "vae"),
                on_plan=run_record.planned(args, "vae"),
            )  # fmt: skip
    except TrainingInterrupted as e:
        return run_record.stopped(e, args.out, "train-vae")
    print(f"done: autoencoder in {folder}")
    print(f"train on its latents: noisecraft train --data {cfg.data.source} --latent {cfg.out_dir} ...")
    return 0
