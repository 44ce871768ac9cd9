"""Draw samples from a trained run, a diffusers pipeline folder or a hub model: one PNG per seed plus a grid
(images), or a scatter plot and points (2-D).

Sample i uses seed (--seed + i) and its own generator, so it is the same whatever --batch-size is.

Examples:
  noisecraft sample runs/digits --num 64
  noisecraft sample runs/digits --sampler ddpm --steps 100 --schedule trailing --seed 7 --out my_samples
  noisecraft sample runs/digits-cond --class 3 --num 16      # class-conditional model
  noisecraft sample runs/digits-cond --class 3 --cfg 4 --cfg-interval 0.3,5 --cfg-rescale 0.7
  noisecraft sample runs/digits --class 3 --classifier runs/clf-digits --classifier-scale 2
  noisecraft sample runs/roll --num 4000                      # 2-D toy: samples.png + samples.npy
  noisecraft sample exported/digits --sampler dpmpp_2m --steps 20   # a diffusers pipeline folder
  noisecraft sample hub:google/ddpm-cifar10-32 --steps 50 --out cifar   # a diffusers model from the hub
  noisecraft sample runs/scenes --prompt "a red bag on the left" --negative-prompt "" --cfg 5 --num 8
  noisecraft sample runs/scenes --prompts prompts.txt --cfg 3       # one image per line (prompts.txt beside them)
  noisecraft sample runs/base16 --upscale runs/sr16to32 --aug 0.1   # a cascade: 16 px base, then 16 → 32
  noisecraft sample runs/scenes --prompt "a red bag on the left" --cfg 3 --clip-guide runs/clip --clip-scale 2
  noisecraft sample runs/unclip --prompt "a red bag on the left" --cfg 3 --prior-cfg 2   # unCLIP: prior → decoder
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_clip_argument, add_device_argument, non_negative_int, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run",
        help="run folder written by `noisecraft train` (or one checkpoint folder), a diffusers pipeline folder, "
        "or hub:user/name",
    )
    p.add_argument("--sampler", default="unipc", help="sampler name (see `noisecraft samplers`); default UniPC-2")
    p.add_argument("--steps", type=positive_int, default=40, help="sampling steps")
    p.add_argument("--schedule", default=None, help="step spacing, e.g. linspace, trailing, karras, logsnr")
    p.add_argument(
        "--num", type=positive_int, default=None, help="number of samples (default 16; one per --prompts line)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first sample; sample i uses seed+i")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class label (conditional models)")
    t = p.add_argument_group("text runs (see docs/text-to-image.md)")
    t.add_argument("--prompt", default=None, help="the text to draw (a run trained with --text)")
    t.add_argument(
        "--prompts", default=None, metavar="FILE", help="a text file, one prompt per line; sample i uses line i"
    )
    t.add_argument("--negative-prompt", default="", help="the CFG branch to steer away from ('' = unconditional)")
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
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="samples per forward pass (results do not depend on it)"
    )
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    add_clip_argument(p)
    c = p.add_argument_group("cascade (see docs/cascade.md)")
    c.add_argument(
        "--upscale",
        action="append",
        default=[],
        metavar="SR_RUN",
        help="then super-resolve the samples with this upsampler run (train --upsample-from); repeat for more stages",
    )
    from noisecraft.cli.upscale import add_cascade_arguments

    add_cascade_arguments(c)
    from noisecraft.cli.unclip_cli import add_clip_guidance_arguments

    add_clip_guidance_arguments(p)
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/generated; hub:user/name → generated/name)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from noisecraft.cli.args import check_memory, output_dir, write_guard
    from noisecraft.interop.pretrained import HUB_PREFIX

    hub = args.run.startswith(HUB_PREFIX)
    default = Path("generated") / args.run.rsplit("/", 1)[-1] if hub else Path(args.run) / "generated"
    out = output_dir(args.out or default)  # before any sampling: a result that cannot be saved is lost work
    import math

    prompts = _read_prompts(args)
    if args.num is None:
        args.num = len(prompts) if args.prompts else 16
    from noisecraft.training.unclip import is_unclip_run

    if is_unclip_run(args.run):  # prior → decoder (docs/unclip.md)
        from noisecraft.cli.unclip_cli import sample_unclip

        return sample_unclip(args, prompts, out)
    if args.prior_cfg is not None or args.prior_steps is not None:
        from noisecraft.errors import NoisecraftError

        raise NoisecraftError(
            f"--prior-cfg and --prior-steps are for unCLIP runs (train-unclip); {args.run} is not one"
        )
    import numpy as np
    import torch

    from noisecraft.data.io import save_grid, save_images
    from noisecraft.errors import check_choice
    from noisecraft.evaluation.plots import save_points
    from noisecraft.interop.pretrained import load_pretrained
    from noisecraft.sampling.generate import clip_pixels, decode_latents, generate, resolve_device
    from noisecraft.sampling.run_knobs import run_sampler_knobs
    from noisecraft.sampling.samplers import SAMPLERS

    check_choice("sampler", args.sampler, SAMPLERS)
    knobs = run_sampler_knobs(args.sampler, args.run, args.steps)  # gauss_pc: the training data's mean and covariance
    device = resolve_device(args.device)
    model = load_pretrained(args.run, ema=not args.raw, device=device)
    denoiser, schedule = model.denoiser, model.schedule
    # the samples are kept as float32 and copied once more into the grid
    check_memory(2 * 4 * args.num * math.prod(model.shape), f"--num {args.num} samples", "lower --num")
    labels, extra = None, None
    from noisecraft.sampling.prompt_guidance import run_prompt_denoiser

    text = run_prompt_denoiser(  # None: no prompt (and not a text run)
        model, prompts, args.num, args.negative_prompt, args.cfg_scale, args.cfg_interval, args.cfg_rescale,
        other_conditioning=args.class_label is not None or args.classifier is not None, name=args.run,
    )  # fmt: skip
    if text is not None:
        denoiser, extra = text
    elif args.class_label is not None or args.cfg_scale is not None or args.classifier is not None:
        from noisecraft.sampling.guidance import build_guided_denoiser

        classifier = None
        if args.classifier is not None:
            from noisecraft.models.classifier import load_classifier

            classifier = load_classifier(args.classifier, device=device)
        denoiser = build_guided_denoiser(  # checks the class, the scales and the classifier's image size
            denoiser,
            class_label=args.class_label,
            cfg_scale=args.cfg_scale,
            cfg_interval=args.cfg_interval,
            cfg_rescale=args.cfg_rescale,
            classifier=classifier,
            classifier_scale=args.classifier_scale,
            num_classes=model.num_classes,
            sample_shape=model.shape,
        )
        labels = torch.full((args.num,), args.class_label, dtype=torch.long)
    if args.clip_guide is not None and args.clip_scale > 0:  # CLIP guidance around CFG (docs/unclip.md)
        from noisecraft.cli.unclip_cli import clip_guided
        from noisecraft.models.clip import load_clip
        from noisecraft.sampling.clip_guidance import clip_text_cond

        if prompts is None:
            from noisecraft.errors import NoisecraftError

            raise NoisecraftError("--clip-guide steers towards a prompt: give --prompt or --prompts")
        gclip = load_clip(args.clip_guide, device)
        denoiser = clip_guided(denoiser, gclip, args.clip_scale, args.clip_interval, args.clip_through, model.latent,
                               model.shape, device)  # fmt: skip
        extra = {**(extra or {}), **clip_text_cond(gclip, [prompts[i % len(prompts)] for i in range(args.num)])}
    from noisecraft.cli.args import resolve_clip

    clip = resolve_clip(args, model.denoiser, model.latent, model.shape)  # --clip-x0 R, or an ε-model's default
    denoiser = clip_pixels(denoiser, clip, model.latent, model.shape)  # around the guided x̂0, as diffusers
    stages = _stages(args, model.shape, device)  # checked before the base samples are drawn
    seeds = list(range(args.seed, args.seed + args.num))
    x = generate(
        denoiser,
        schedule,
        model.shape,
        seeds,
        sampler=args.sampler,
        steps=args.steps,
        spacing=args.schedule,
        class_labels=labels,
        batch_size=args.batch_size,
        cond=extra,
        knobs=knobs,
    )
    x = decode_latents(model.latent, x, device)  # a latent run: decoded at the end (models/autoencoder.py)
    x = _cascade(x, stages, args, seeds)
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        if x.ndim == 2:
            np.save(out / "samples.npy", x.numpy())
            png = save_points(x, out / "samples.png", f"{args.num} samples, {args.sampler}, {args.steps} steps")
            print(f"wrote {png} and {out / 'samples.npy'} ({args.num} points)")
            return 0
        save_images(x, out, seeds)
        if prompts is not None:
            lines = [f"seed{s:06d}.png\t{prompts[i % len(prompts)]}\n" for i, s in enumerate(seeds)]
            (out / "prompts.txt").write_text("".join(lines))
        grid = save_grid(x, out / "grid.png")
    print(f"wrote {args.num} images seed{seeds[0]:06d}.png .. seed{seeds[-1]:06d}.png and {grid}")
    return 0


def _stages(args: argparse.Namespace, shape: tuple[int, ...], device) -> list:
    """The --upscale runs, loaded and checked to chain from the base's sample `shape` before any sampling."""
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.upsampler import SRNet
    from noisecraft.training.checkpoint import load_run

    stages = []
    if args.upscale and len(shape) != 3:
        raise NoisecraftError("--upscale needs an image model as the base; this run draws vectors")
    for stage in args.upscale:
        den, sched, cfg = load_run(stage, ema=not args.raw, device=device)
        if not isinstance(getattr(den, "net", None), SRNet):
            raise NoisecraftError(f"--upscale {stage} is not a super-resolution run (train --upsample-from N)")
        m = cfg.model
        if tuple(shape) != (m.channels, m.upsample_from, m.upsample_from):
            raise NoisecraftError(
                f"--upscale {stage} takes {m.channels}x{m.upsample_from}x{m.upsample_from} images, the stage before "
                f"makes {'x'.join(map(str, shape))}: chain stages whose resolutions meet"
            )
        stages.append((den, sched))
        shape = (m.channels, m.resolution, m.resolution)
    return stages


def _cascade(x, stages: list, args: argparse.Namespace, seeds: list[int]):
    """The base samples x (N, C, h, w) through each --upscale stage in turn (sampler, steps and seeds as for the
    base; quantised to 8 bits between stages, as `upscale` reads saved PNGs)."""
    from noisecraft.data.io import quantise
    from noisecraft.models.upsampler import upscale

    for den, sched in stages:
        x = upscale(den, sched, quantise(x), seeds, aug_sigma=args.aug, sampler=args.sampler, steps=args.steps,
                    batch_size=args.batch_size)  # fmt: skip
    return x


def _read_prompts(args: argparse.Namespace) -> list[str] | None:
    """The prompts of --prompt or --prompts FILE (one per non-empty line), or None."""
    from pathlib import Path

    from noisecraft.errors import NoisecraftError

    if args.prompt is not None and args.prompts is not None:
        raise NoisecraftError("give --prompt or --prompts, not both")
    if args.prompts is not None:
        path = Path(args.prompts)
        if not path.is_file():
            raise NoisecraftError(f"--prompts file {args.prompts!r} does not exist")
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if not lines:
            raise NoisecraftError(f"--prompts file {args.prompts!r} holds no prompt (one per line)")
        return lines
    return None if args.prompt is None else [args.prompt]
