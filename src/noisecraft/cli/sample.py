"""Draw samples from a trained run: one PNG per seed plus a grid (images), or a scatter plot and points (2-D).

Sample i uses seed (--seed + i) and its own generator, so it is the same whatever --batch-size is.

Examples:
  noisecraft sample runs/digits --num 64
  noisecraft sample runs/digits --sampler ddpm --steps 100 --schedule trailing --seed 7 --out my_samples
  noisecraft sample runs/digits-cond --class 3 --num 16      # class-conditional model
  noisecraft sample runs/digits-cond --class 3 --cfg 4 --cfg-interval 0.3,5 --cfg-rescale 0.7
  noisecraft sample runs/digits --class 3 --classifier runs/clf-digits --classifier-scale 2
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
    g = p.add_argument_group("guidance (see docs/guidance.md)")
    g.add_argument(
        "--cfg",
        dest="cfg_scale",
        type=float,
        default=None,
        help="classifier-free guidance scale w: 0 unconditional, 1 conditional, >1 stronger",
    )
    g.add_argument("--cfg-interval", default=None, help="apply CFG only for σ in (lo, hi], e.g. 0.3,5")
    g.add_argument("--cfg-rescale", type=float, default=0.0, help="CFG rescale φ in [0, 1] (Lin et al. 2023)")
    g.add_argument("--classifier", default=None, help="noisy classifier folder (noisecraft train-classifier)")
    g.add_argument("--classifier-scale", type=float, default=1.0, help="classifier guidance scale s")
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
    if args.class_label is not None or args.cfg_scale is not None or args.classifier is not None:
        from noisecraft.sampling.guidance import build_guided_denoiser

        classifier = None
        if args.classifier is not None:
            from noisecraft.models.classifier import load_classifier

            classifier = load_classifier(args.classifier)
        denoiser = build_guided_denoiser(  # checks the class, the scales and the classifier's image size
            denoiser,
            class_label=args.class_label,
            cfg_scale=args.cfg_scale,
            cfg_interval=args.cfg_interval,
            cfg_rescale=args.cfg_rescale,
            classifier=classifier,
            classifier_scale=args.classifier_scale,
            num_classes=cfg.model.num_classes,
            sample_shape=sample_shape(cfg),
        )
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
