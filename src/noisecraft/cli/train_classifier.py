"""Train a noise-conditioned classifier p(y | x_σ, σ) for classifier guidance (Dhariwal & Nichol 2021).

The classifier sees noisy images x0 + σ·ε with σ drawn from the diffusion model's training density, and is
saved as OUT/classifier.safetensors + OUT/classifier.json. With --run, the data source, resolution, channels
and schedule are taken from that run, so the classifier pairs with its model. A held-out split is scored
at several noise levels and written to OUT/metrics.json. The loop is the trainers' shared one
(training.core.fit): OUT/config.json records the command line before anything slow, checkpoints are
crash-safe, --resume continues a killed run bit for bit, --minutes plans the steps from a time budget.

Examples:
  noisecraft train-classifier --data digits --resolution 8 --schedule edm --out runs/clf-digits
  noisecraft train-classifier --run runs/digits-cond --steps 3000 --out runs/clf-digits
  noisecraft train-classifier --out runs/clf-digits --resume        # after Ctrl-C, a crash or kill -9
  noisecraft sample runs/digits --class 3 --classifier runs/clf-digits --classifier-scale 2
"""

from __future__ import annotations

import argparse

from noisecraft.cli import run_record
from noisecraft.cli.args import non_negative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder for classifier.safetensors/.json")
    p.add_argument("--run", default=None, help="a training run whose data, resolution and schedule to match")
    p.add_argument("--data", default=None, help="data source with labels: digits, fashion-mnist, a folder, hf:...")
    p.add_argument(
        "--resolution", type=positive_int, default=None, help="image side in pixels (default 16, or the run's)"
    )
    p.add_argument("--channels", type=positive_int, default=None, help="1 or 3 (default 1, or the run's)")
    p.add_argument("--schedule", default=None, help="noise schedule whose σ density to train on (default linear)")
    p.add_argument("--steps", type=positive_int, default=2000, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per step")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--width", type=positive_int, default=32, help="channels of the first level")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of images held out for accuracy")
    p.add_argument("--seed", type=non_negative_int, default=0)
    run_record.add_run_arguments(p, checkpoint_every=500)


def run(args: argparse.Namespace) -> int:

    if not args.resume:
        _check(args)
    args = run_record.start(args, "classifier")  # OUT/config.json before anything slow; --resume reads it back
    _check(args)
    from noisecraft.training.interrupt import TrainingInterrupted

    try:
        with run_record.removed_if_refused(args):
            model, images, labels, test, data = _train(args)
    except TrainingInterrupted as e:
        return run_record.stopped(e, args.out, "train-classifier")
    out = model.save(args.out)
    import json
    from pathlib import Path

    from noisecraft.models.classifier import holdout_accuracy

    n_test = len(test)
    metrics: dict = {"data": data.source, "train_images": len(images) - n_test, "test_images": n_test}
    if n_test:
        acc = holdout_accuracy(model, images[test], labels[test], seed=args.seed)
        metrics["accuracy_by_sigma"] = {str(k): v for k, v in acc.items()}
        print("held-out accuracy by noise level: " + ", ".join(f"σ={k:g}: {v:.3f}" for k, v in acc.items()))
    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out / 'classifier.safetensors'} and classifier.json")
    return 0


def _check(args: argparse.Namespace) -> None:
    from noisecraft.errors import NoisecraftError

    if args.width < 4:
        raise NoisecraftError(f"--width must be at least 4, got {args.width}")
    if not 0 <= args.holdout < 1:
        raise NoisecraftError(f"--holdout must lie in [0, 1), got {args.holdout}")
    if args.run is None and args.data is None:
        raise NoisecraftError("pass --data SOURCE (e.g. digits) or --run RUN_DIR")


def _train(args: argparse.Namespace):
    """(classifier, all images, labels, held-out indices, data config) of the run `args` describe."""
    import dataclasses
    import json

    from noisecraft.data.config import DataConfig
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.classifier import (
        ClassifierConfig,
        ClassifierTraining,
        holdout_split,
        load_labelled,
        train_classifier,
    )

    schedule, schedule_kwargs, sigma_data = args.schedule or "linear", {}, 0.5
    if args.run is not None:
        from noisecraft.training.checkpoint import resolve_checkpoint
        from noisecraft.training.config import TrainConfig

        ckpt = resolve_checkpoint(args.run)
        run_cfg = TrainConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
        if run_cfg.model.arch == "mlp" and run_cfg.model.resolution == 1:
            raise NoisecraftError("the run is a 2-D toy model; a classifier needs an image model")
        data = dataclasses.replace(
            run_cfg.data, labels=True, flip=False, **({"source": args.data} if args.data else {})
        )
        schedule, schedule_kwargs = run_cfg.model.schedule, dict(run_cfg.model.schedule_kwargs)
        sigma_data = run_cfg.model.resolved_sigma_data
        if args.resolution is not None and args.resolution != data.resolution:
            raise NoisecraftError(f"--resolution {args.resolution} differs from the run's {data.resolution}")
    else:
        data = DataConfig(source=args.data, resolution=args.resolution or 16, channels=args.channels or 1, labels=True)
    images, labels, names = load_labelled(data)
    num_classes = int(labels.max()) + 1 if names is None else len(names)
    train, test = holdout_split(len(images), args.holdout, args.seed)
    config = ClassifierConfig(
        resolution=images.shape[-1],
        channels=images.shape[1],
        num_classes=num_classes,
        schedule=schedule,
        schedule_kwargs=schedule_kwargs,
        sigma_data=sigma_data,
        width=args.width,
        class_names=names,
    )
    training = ClassifierTraining(
        steps=args.steps, batch=args.batch_size, lr=args.lr, seed=args.seed, minutes=args.minutes,
        checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    print(f"training a {num_classes}-class noisy classifier on {len(train)} {data.source} images "
          f"({config.channels}x{config.resolution}x{config.resolution}, schedule {schedule})")  # fmt: skip
    model = train_classifier(
        images[train], labels[train], config, training, progress=not args.no_progress, out=args.out,
        resume=args.resume, record=run_record.record_of(args, "classifier"),
        on_plan=run_record.planned(args, "classifier"),
    )  # fmt: skip
    return model, images, labels, test, data
