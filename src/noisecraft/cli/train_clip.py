"""Train a small contrastive image–text model (CLIP, Radford et al. 2021) on captioned images.

Image tower: a small conv encoder; text tower: a trainable head on a frozen sentence encoder's token states
(MiniLM); learned temperature; symmetric InfoNCE. --noise-aware also trains it on noisy images x0 + σ·ε with σ
as an input (GLIDE's noised CLIP), which CLIP guidance can use at every noise level. Writes OUT/clip.safetensors
+ OUT/clip.json, resumable checkpoints, and OUT/metrics.json with the held-out text → image top-1 retrieval
among 100 (scenes: the test split, Fashion-MNIST test items). The loop is the trainers' shared one
(training.core.fit): OUT/config.json records the command line before anything slow, checkpoints are crash-safe,
--resume continues a killed run bit for bit, --minutes plans the steps from a time budget.

Examples:
  noisecraft train-clip --data scenes --out runs/clip-scenes --steps 1500
  noisecraft train-clip --data scenes --noise-aware --out runs/clip-noisy --minutes 10
  noisecraft train-clip --out runs/clip-scenes --resume        # after Ctrl-C, a crash or kill -9
  noisecraft eval runs/scenes-text --clip runs/clip-scenes --prompts prompts.txt
"""

from __future__ import annotations

import argparse

from noisecraft.cli import run_record
from noisecraft.cli.args import add_device_argument, non_negative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="captioned data: scenes, a folder with captions, hf:...")
    p.add_argument("--out", required=True, help="run folder (clip.safetensors, clip.json, checkpoints)")
    p.add_argument("--resolution", type=positive_int, default=32, help="image side in pixels")
    p.add_argument("--channels", type=positive_int, default=3, help="1 or 3")
    p.add_argument("--size", type=positive_int, default=10000, help="number of scenes (scenes only)")
    p.add_argument("--steps", type=positive_int, default=1500, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, default=128, help="pairs per step (the InfoNCE negatives)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--embed-dim", type=positive_int, default=64, help="width of the joint embedding")
    p.add_argument("--width", type=positive_int, default=32, help="image tower channels of the first level")
    p.add_argument("--text", default="minilm", help="frozen text encoder: minilm, or clip:FOLDER (a CLIP text model)")
    p.add_argument("--noise-aware", action="store_true", help="also train on noisy images, σ as an input (GLIDE)")
    p.add_argument("--holdout", type=non_negative_int, default=200, help="held-out pairs for retrieval (0: none)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    run_record.add_run_arguments(p, checkpoint_every=500)
    add_device_argument(p)


def heldout_pairs(data, num: int):
    """Held-out (images, first captions): scenes' test split, or the last `num` items of another source."""
    import dataclasses

    from noisecraft.training.clip_train import load_captioned

    if data.source == "scenes":
        x, caps = load_captioned(dataclasses.replace(data, split="test", scenes_size=num))
        return x, [c[0] for c in caps]
    return None


def run(args: argparse.Namespace) -> int:

    if not args.resume:
        _check(args)
    args = run_record.start(args, "clip")  # OUT/config.json before anything slow; --resume reads it back
    _check(args)
    from noisecraft.training.interrupt import TrainingInterrupted

    try:
        with run_record.removed_if_refused(args):
            return _train(args)
    except TrainingInterrupted as e:
        return run_record.stopped(e, args.out, "train-clip")


def _check(args: argparse.Namespace) -> None:
    from noisecraft.errors import NoisecraftError

    if args.data is None:
        raise NoisecraftError("pass --data SOURCE (captioned images, e.g. scenes)")
    if args.channels not in (1, 3):
        raise NoisecraftError(f"--channels must be 1 or 3, got {args.channels}")
    if args.text != "minilm" and not args.text.startswith("clip:"):
        raise NoisecraftError(f"--text must be minilm or clip:FOLDER, got {args.text!r}")


def _train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from noisecraft.data.config import DataConfig
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.clip import ClipConfig, retrieval_top1
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.training.clip_train import load_captioned, train_clip
    from noisecraft.training.core import LoopSettings

    out = Path(args.out)
    device = resolve_device(args.device)
    data = DataConfig(
        source=args.data, resolution=args.resolution, channels=args.channels, captions=True, scenes_size=args.size,
        seed=args.seed,
    )  # fmt: skip
    images, captions = load_captioned(data)
    extra: list = []
    held = None
    if args.holdout:
        held = heldout_pairs(data, args.holdout)
        if held is None:  # another source: hold out its last items
            if len(images) <= args.holdout + 1:
                raise NoisecraftError(f"--holdout {args.holdout} leaves no training pairs of {len(images)}")
            held = images[-args.holdout :], [c[0] for c in captions[-args.holdout :]]
            images, captions = images[: -args.holdout], captions[: -args.holdout]
            extra = [f"held out the last {args.holdout} items"]
    if args.text == "minilm":
        text = {"encoder": "minilm", "max_tokens": 24, "dropout": 0.0}  # scenes captions: <= 23 tokens
    else:
        text = {"encoder": "clip", "path": args.text[5:], "max_tokens": 77, "dropout": 0.0}
    config = ClipConfig(
        resolution=images.shape[-1], channels=images.shape[1], embed_dim=args.embed_dim, width=args.width,
        noise_aware=args.noise_aware, text=text,
    )  # fmt: skip
    settings = LoopSettings(
        steps=args.steps, batch=args.batch_size, lr=args.lr, warmup_steps=min(100, args.steps // 10),
        weight_decay=0.01, checkpoint_every=args.checkpoint_every, seed=args.seed, minutes=args.minutes,
    )  # fmt: skip
    print(f"training a CLIP on {len(images)} captioned {args.data} images" + "".join("; " + e for e in extra))
    clip = train_clip(
        images, captions, config, settings, out, args.resume, not args.no_progress, device,
        run_config=run_record.record_of(args, "clip"), on_plan=run_record.planned(args, "clip"),
    )  # fmt: skip
    metrics: dict = {"data": args.data, "train_pairs": len(images)}
    if held is not None and len(held[0]) >= 100:
        acc = retrieval_top1(clip, held[0], held[1], group=100)
        metrics["retrieval_top1_of_100"] = acc
        metrics["heldout_pairs"] = len(held[0]) // 100 * 100
        print(f"held-out retrieval text → image, top-1 among 100: {acc:.3f} (chance 0.010)")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote {out / 'clip.safetensors'} and clip.json")
    return 0
