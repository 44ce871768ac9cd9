"""Draw samples from a trained run: one PNG per seed plus a grid (images), or a scatter plot and points (2-D).

Sample i uses seed (--seed + i) and its own generator, so it is the same whatever --batch-size is.

Examples:
  noisecraft sample runs/digits --num 64
  noisecraft sample runs/digits --sampler ddpm --steps 100 --schedule trailing --seed 7 --out my_samples
  noisecraft sample runs/digits-cond --class 3 --num 16      # class-conditional model
  noisecraft sample runs/roll --num 4000                      # 2-D toy: samples.png + samples.npy
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by `noisecraft train` (or one checkpoint folder)")
    p.add_argument("--sampler", default="euler", help="sampler name (see `noisecraft samplers` when available)")
    p.add_argument("--steps", type=int, default=40, help="sampling steps")
    p.add_argument("--schedule", default=None, help="step spacing, e.g. linspace, trailing, karras, logsnr")
    p.add_argument("--num", type=int, default=16, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed+i")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class label (conditional models)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per forward pass (results do not depend on it)")
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    p.add_argument("--out", default=None, help="output folder (default: RUN/generated)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from noisecraft.errors import NoisecraftError

    if args.num < 1 or args.steps < 1 or args.batch_size < 1:
        raise NoisecraftError("--num, --steps and --batch-size must be positive integers")
    if args.seed < 0:
        raise NoisecraftError(f"--seed must be >= 0, got {args.seed}")
    if not Path(args.run).exists():
        raise NoisecraftError(f"run folder {args.run!r} does not exist")
    import numpy as np
    import torch

    from noisecraft.errors import check_choice
    from noisecraft.sampling.samplers import SAMPLERS
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.samples import generate, save_grid, save_images, save_points
    from noisecraft.training.setup import sample_shape

    check_choice("sampler", args.sampler, SAMPLERS)
    denoiser, schedule, cfg = load_run(args.run, ema=not args.raw)
    labels = None
    if args.class_label is not None:
        k = cfg.model.num_classes
        if not k:
            raise NoisecraftError("--class needs a class-conditional model; this run has model.num_classes = 0")
        if not 0 <= args.class_label < k:
            raise NoisecraftError(f"--class must lie in [0, {k - 1}], got {args.class_label}")
        labels = torch.full((args.num,), args.class_label, dtype=torch.long)
    seeds = list(range(args.seed, args.seed + args.num))
    x = generate(
        denoiser,
        schedule,
        sample_shape(cfg),
        seeds,
        sampler=args.sampler,
        steps=args.steps,
        spacing=args.schedule,
        class_labels=labels,
        batch_size=args.batch_size,
    )
    out = Path(args.out or Path(args.run) / "generated")
    out.mkdir(parents=True, exist_ok=True)
    if x.ndim == 2:
        np.save(out / "samples.npy", x.numpy())
        png = save_points(x, out / "samples.png", f"{args.num} samples, {args.sampler}, {args.steps} steps")
        print(f"wrote {png} and {out / 'samples.npy'} ({args.num} points)")
        return 0
    save_images(x, out, seeds)
    grid = save_grid(x, out / "grid.png")
    print(f"wrote {args.num} images seed{seeds[0]:06d}.png .. seed{seeds[-1]:06d}.png and {grid}")
    return 0
