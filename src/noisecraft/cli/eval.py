"""Score a trained run (or a folder of images) against a reference, offline.

The reference is a built-in dataset's test split (default: the run's data source) or, with --ref, any folder
of images. Prints FD (with its 95 % bootstrap interval), KID, precision and recall with the protocol and the
noise floor, and writes them as JSON. Samples are scored as `noisecraft sample` saves them: clamped to
[-1, 1] and rounded to 8 bits (with --clip-x0 [R], each x̂0 clamped as `sample --clip-x0` does; --nll always
scores the model itself).

Examples:
  noisecraft eval runs/digits --num 1000 --sampler dpmpp_2m --steps 10
  noisecraft eval runs/icons --ref icons/held-out --num 500     # any folder of images as the reference
  noisecraft eval --samples-dir my_samples/ --dataset fashion-mnist
  noisecraft eval --samples-dir my_samples/ --ref my_photos/    # two folders
  noisecraft eval runs/digits --num 500 --nll 200        # also NLL in bits/dim on 200 test images
  noisecraft eval runs/digits --num 500 --clip-x0        # score what `sample --clip-x0` saves
  noisecraft eval runs/cifar --features inception --inception ~/weights/inception-2015-12-05.pt
  noisecraft eval runs/scenes-text --ref scenes-test/ --num 200 --prompt ""   # a text run in latent space
  noisecraft eval runs/scenes-text --clip runs/clip --prompts prompts.txt --cfg 3   # CLIP score + retrieval

A run in latent space samples latents (never clipped) and decodes them before scoring. A text run is sampled
with --prompt (default "": its unconditional model) for every sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noisecraft.cli.args import add_clip_argument, add_device_argument, non_negative_int, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="run folder written by `noisecraft train` (or one checkpoint folder)")
    p.add_argument("--samples-dir", help="score the images of this folder instead of sampling a run")
    p.add_argument("--dataset", help="reference dataset: digits or fashion-mnist (default: the run's data source)")
    p.add_argument("--ref", metavar="FOLDER", help="score against this folder of images instead of a dataset")
    p.add_argument("--split", default="test", choices=("test", "train"), help="reference split of --dataset")
    p.add_argument(
        "--features",
        help="feature network: digits, fashion-mnist, rgb or inception (default: the dataset's own; for --ref "
        "fashion-mnist, per colour channel (rgb) for colour images)",
    )
    p.add_argument("--inception", help="local TorchScript file inception-2015-12-05.pt (for --features inception)")
    p.add_argument("--num", type=positive_int, default=1000, help="number of generated samples")
    p.add_argument("--sampler", default="unipc", help="sampler name (see `noisecraft samplers`); default UniPC-2")
    p.add_argument("--steps", type=positive_int, default=40, help="sampling steps")
    p.add_argument("--spacing", help="σ spacing (default: the schedule's own)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="first seed; sample i uses seed+i")
    p.add_argument("--batch-size", type=positive_int, default=250)
    add_device_argument(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    add_clip_argument(p)
    p.add_argument("--no-floor", action="store_true", help="skip the noise floor")
    p.add_argument(
        "--nll",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="also estimate NLL (bits/dim) on N reference images",
    )
    p.add_argument("--prompt", default=None, help="text runs: the prompt of every sample (default '': unconditional)")
    p.add_argument("--nll-steps", type=positive_int, default=32, help="RK4 steps of the probability-flow ODE for --nll")
    p.add_argument("--out", help="JSON file to write (default: RUN_DIR/eval/<...>.json or SAMPLES_DIR/eval.json)")
    c = p.add_argument_group("CLIP score (see docs/unclip.md)")
    c.add_argument("--clip", default=None, help="CLIP folder: report CLIP score against the prompts and retrieval")
    c.add_argument("--prompts", default=None, metavar="FILE", help="prompts to generate from (--clip), one a line")
    c.add_argument("--cfg", dest="cfg_scale", type=float, default=None, help="CFG scale of the generation (--clip)")
    c.add_argument("--retrieval", type=non_negative_int, default=100, help="held-out scenes pairs for retrieval")


def run(args: argparse.Namespace) -> int:
    import torch

    from noisecraft.errors import NoisecraftError
    from noisecraft.evaluation.evaluate import (
        builtin_reference,
        default_features,
        evaluate_denoiser,
        evaluate_images,
        folder_reference,
    )
    from noisecraft.evaluation.features import get_extractor
    from noisecraft.evaluation.reference import REFERENCE_DATASETS
    from noisecraft.sampling.generate import resolve_device

    if not args.run_dir and not args.samples_dir:
        raise NoisecraftError("give a RUN_DIR to sample from, or --samples-dir with PNG samples")
    if args.clip is not None:
        from noisecraft.cli.unclip_cli import clip_eval

        return clip_eval(args)
    if args.num < 4:
        raise NoisecraftError(f"--num must be at least 4, got {args.num}")
    if args.ref and args.dataset:
        raise NoisecraftError("give --dataset or --ref (a folder of reference images), not both")
    if (args.clip_x0 is not None or args.no_clip_x0) and (args.samples_dir or not args.run_dir):
        raise NoisecraftError("--clip-x0 clamps the x̂0 of a run's sampler: give a RUN_DIR, not --samples-dir")
    device = resolve_device(args.device)
    from noisecraft.cli.args import output_dir, output_file, write_guard

    if args.out:  # checked before any sampling, so the scores are never computed only to be lost
        output_file(args.out, (".json",))
    else:
        output_dir(Path(args.samples_dir) if args.samples_dir else Path(args.run_dir) / "eval")
    cfg = denoiser = schedule = None
    if args.run_dir and not args.samples_dir:
        from noisecraft.training.checkpoint import load_run

        denoiser, schedule, cfg = load_run(args.run_dir, ema=not args.no_ema, device=device)
        if cfg.data.kind == "toy":
            raise NoisecraftError("this run models 2-D points; eval scores images (the toy metrics are in `show`)")
    dataset = args.dataset or (cfg.data.source if cfg is not None else None)
    if not args.ref and dataset not in REFERENCE_DATASETS:
        raise NoisecraftError(
            f"--dataset must be one of {', '.join(REFERENCE_DATASETS)} (or give --ref FOLDER of reference "
            f"images), got {dataset!r}"
        )
    images = None
    if args.samples_dir:
        from noisecraft.data.io import load_images

        images, notes = load_images(args.samples_dir, limit=args.num)
        print("samples: " + "; ".join(notes))
    shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution) if cfg is not None else images.shape[1:]
    if args.ref:
        ref = folder_reference(args.ref, resolution=shape[-1], channels=shape[0], seed=args.seed)
    else:
        ref = builtin_reference(dataset, args.split)
    extractor = get_extractor(args.features or default_features(ref, shape[0]), args.inception, device)
    print(f"features: {extractor.name} [{extractor.checksum}]")
    if images is not None:
        result = evaluate_images(
            images, ref, extractor, with_floor=not args.no_floor, protocol={"source": str(args.samples_dir)}
        )
        out = Path(args.out or Path(args.samples_dir) / "eval.json")
    else:
        from noisecraft.sampling.generate import clip_pixels
        from noisecraft.training.setup import sample_shape

        cond = None
        if cfg.text.enabled:  # every sample gets the same prompt ("" = the unconditional model)
            encoder = denoiser.net.text_encoder
            cond = encoder.encode([args.prompt or ""] * args.num)
        elif args.prompt is not None:
            raise NoisecraftError("--prompt needs a text-conditioned run (trained with --text)")
        from noisecraft.sampling.run_knobs import run_sampler_knobs

        torch.manual_seed(args.seed)
        from noisecraft.cli.args import resolve_clip

        clip_x0 = resolve_clip(args, denoiser, cfg.data.latent, sample_shape(cfg))  # as `sample` resolves it
        shown = clip_pixels(denoiser, clip_x0, cfg.data.latent, sample_shape(cfg))
        result, _ = evaluate_denoiser(
            shown,
            schedule,
            ref,
            extractor,
            shape=sample_shape(cfg),
            num=args.num,
            sampler=args.sampler,
            steps=args.steps,
            spacing=args.spacing,
            seed=args.seed,
            num_classes=cfg.model.num_classes,
            batch_size=args.batch_size,
            with_floor=not args.no_floor,
            source=str(args.run_dir),
            device=device,
            resize_filter=cfg.data.resize_filter,
            latent=cfg.data.latent,
            cond=cond,
            knobs=run_sampler_knobs(args.sampler, args.run_dir, args.steps, cfg),  # as `sample` draws them
        )
        if cond is not None:
            result.protocol.extra["prompt"] = args.prompt or ""
        if clip_x0 is not None:
            result.protocol.extra["clip_x0"] = clip_x0
        against = "ref-" + Path(args.ref).name if args.ref else args.split
        clip = f"-clip{clip_x0:g}" if clip_x0 is not None else ""
        name = f"eval-{args.sampler}-{args.steps}steps{clip}-n{args.num}-{against}.json"
        out = Path(args.out or Path(args.run_dir) / "eval" / name)
    if args.nll:
        if denoiser is None:
            raise NoisecraftError("--nll needs a RUN_DIR (the model's likelihood), not --samples-dir")
        if cfg.data.latent is not None or cfg.text.enabled:
            raise NoisecraftError("--nll measures pixel runs without text; this run models latents or takes a prompt")
        result.protocol.extra["nll"] = _nll(denoiser, schedule, cfg, ref, args)
    print(result.summary())
    if "nll" in result.protocol.extra:
        n = result.protocol.extra["nll"]
        print(
            f"NLL {n['bpd_mean']:.4f} ± {n['bpd_sem']:.4f} bits/dim on {n['images']} {ref.name} {ref.split} images "
            f"({n['method']})"
        )
    with write_guard(out):
        result.save(out)
    print(f"wrote {out}")
    return 0


def _nll(denoiser, schedule, cfg, ref, args) -> dict:
    from noisecraft.evaluation.likelihood import reference_nll
    from noisecraft.evaluation.reference import NATIVE_LEVELS

    return reference_nll(
        denoiser,
        schedule,
        ref.images[: args.nll],
        levels=NATIVE_LEVELS.get(ref.name, 256),
        resolution=cfg.data.resolution,
        steps=args.nll_steps,
        batch_size=args.batch_size,
        seed=args.seed,
    )
