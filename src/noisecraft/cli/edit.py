"""Edit real images with a trained run: img2img (SDEdit), inpaint/outpaint (replace or RePaint), invert,
interpolate, swap (class swap by inversion). Inputs of any size and mode are converted to the model's
resolution and channels (a message says how); every run writes its outputs and a side-by-side comparison.png.

Examples:
  noisecraft edit img2img runs/digits photo.png --strength 0.5 --num 4
  noisecraft edit img2img runs/digits-cond three.png --strength 0.7 --class 8 --guidance 2
  noisecraft edit inpaint runs/digits seven.png --rect 0,0,8,4 --method repaint
  noisecraft edit inpaint runs/digits seven.png --rect 2,2,6,6 --outside      # outpainting
  noisecraft edit invert runs/digits seven.png --steps 50 --iters 3             # prints the round-trip PSNR
  noisecraft edit interpolate runs/digits one.png two.png --frames 7
  noisecraft edit swap runs/digits-cond three.png --source 3 --target 8 --guidance 2
  noisecraft edit img2img runs/scenes-text scene.png --prompt "a red bag on the left" --cfg 3 --strength 0.6
  noisecraft edit inpaint runs/scenes-text scene.png --rect 16,0,32,32 --prompt "a white coat on the right" --cfg 3
  noisecraft edit img2img sd-folder/ photo.png --prompt "a red bag" --cfg 3 --strength 0.6   # a Stable-Diffusion folder
  noisecraft edit imagic runs/scenes-text photo.png --prompt "a blue sneaker on the left" --etas 0,0.5,1
  noisecraft edit variations runs/unclip scene.png --num 4                     # unCLIP runs (docs/unclip.md)

Runs in latent space (trained with --latent) are edited as latents: the images are encoded with the run's
autoencoder and the results decoded; inpainting pastes the kept pixels back exactly (docs/text-to-image.md).
Text runs take --prompt (default "": the unconditional model), --negative-prompt and --cfg. A Stable-Diffusion
folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/) is edited like a text run in latent space; it is loaded
as `noisecraft sample SD_FOLDER` loads it (interop/stable_diffusion.py).
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_device_argument, non_negative_int, positive_int

MODES = ("img2img", "inpaint", "invert", "interpolate", "swap", "imagic", "variations")


def _common(p: argparse.ArgumentParser, default_sampler: str = "euler") -> None:
    p.add_argument(
        "run", help="run folder written by `noisecraft train` (or one checkpoint folder), or a Stable-Diffusion folder"
    )
    p.add_argument("--sampler", default=default_sampler, help="sampler name (see `noisecraft samplers`)")
    p.add_argument("--steps", type=positive_int, default=50, help="sampler steps of the full σ list")
    p.add_argument("--schedule", default=None, help="step spacing, e.g. linspace, trailing, karras, logsnr")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed; output i uses seed+i")
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/edits/MODE)")


def _guidance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class to steer towards")
    p.add_argument("--guidance", type=float, default=1.0, help="CFG scale (1 = the conditional model)")


def _text(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("text runs (GLIDE-style text-guided editing; see docs/text-to-image.md)")
    t.add_argument("--prompt", default=None, help="what the edited image should show (default '': unconditional)")
    t.add_argument("--negative-prompt", default="", help="the CFG branch to steer away from ('' = unconditional)")
    t.add_argument("--cfg", dest="cfg_scale", type=float, default=None, help="CFG scale of the prompt (none: w = 1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    p = sub.add_parser(
        "img2img",
        help="SDEdit: noise the image to a strength, then denoise",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument("images", nargs="+", help="input image(s), any size and mode")
    p.add_argument("--strength", type=float, default=0.6, help="0 = keep the input, 1 = ignore it")
    p.add_argument("--num", type=positive_int, default=1, help="variations per image")
    _guidance(p)
    _text(p)

    p = sub.add_parser(
        "inpaint",
        help="fill a masked region (or, with --outside, everything around it)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument("image", help="input image")
    p.add_argument("--mask", default=None, help="mask PNG: white = generate, black = keep")
    p.add_argument("--rect", default=None, help="rectangle to generate: x0,y0,x1,y1 in pixels or fractions")
    p.add_argument("--outside", action="store_true", help="flip the mask: keep the region, generate around it")
    p.add_argument("--method", default="replace", help="replace or repaint")
    p.add_argument("--jump", type=positive_int, default=10, help="RePaint jump length")
    p.add_argument("--resample", type=positive_int, default=10, help="RePaint resamplings per jump")
    p.add_argument("--num", type=positive_int, default=4, help="number of fills")
    _guidance(p)
    _text(p)

    p = sub.add_parser(
        "invert",
        help="invert the image to noise and regenerate it (prints the PSNR)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument("images", nargs="+", help="input image(s)")
    p.add_argument("--iters", type=int, default=3, help="fixed-point iterations per step (0 = plain DDIM inversion)")
    p.add_argument("--class", dest="class_label", type=int, default=None, help="class to invert under")

    p = sub.add_parser(
        "interpolate",
        help="frames between two images via inversion and slerp of their noises",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--frames", type=positive_int, default=7, help="number of frames, ends included")
    p.add_argument("--iters", type=int, default=3, help="fixed-point iterations per inversion step")
    p.add_argument("--class-a", type=int, default=None, help="class of image A (conditional models)")
    p.add_argument("--class-b", type=int, default=None, help="class of image B (conditional models)")

    p = sub.add_parser(
        "swap",
        help="class swap: invert under --source, regenerate under --target with CFG",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(p)
    p.add_argument("images", nargs="+", help="input image(s)")
    p.add_argument("--source", type=int, required=True, help="the class the image shows")
    p.add_argument("--target", type=int, required=True, help="the class to turn it into")
    p.add_argument("--guidance", type=float, default=2.0, help="CFG scale of the regeneration")
    p.add_argument("--strength", type=float, default=1.0, help="how far to invert (1 = to σ_max)")
    p.add_argument("--iters", type=int, default=3, help="fixed-point iterations per inversion step")

    from noisecraft.cli import imagic as imagic_cli

    imagic_cli.add_parser(sub)

    from noisecraft.cli.unclip_cli import add_variations_parser

    add_variations_parser(sub)


# ----------------------------------------------------------------------------------------------------------
def _check_label(name: str, value: int | None, k: int) -> None:
    from noisecraft.errors import NoisecraftError

    if value is None:
        return
    if not k:
        raise NoisecraftError(f"{name} needs a class-conditional model; this run has model.num_classes = 0")
    if not 0 <= value < k:
        raise NoisecraftError(f"{name} must lie in [0, {k - 1}], got {value}")


def _cond(label: int | None, n: int, device) -> dict:
    import torch

    return {} if label is None else {"class_labels": torch.full((n,), label, dtype=torch.long, device=device)}


def _maybe_cfg(denoiser, cfg, label: int | None, guidance: float):
    from noisecraft.errors import NoisecraftError

    if guidance == 1.0:
        return denoiser
    if label is None:
        raise NoisecraftError("--guidance other than 1 needs --class (the class to guide towards)")
    if cfg.label_dropout <= 0:
        print("warning: this run was trained without label dropout, so its unconditional model is untrained")
    from noisecraft.sampling.guidance import CFGDenoiser

    return CFGDenoiser(denoiser, guidance, null_label=cfg.model.num_classes)


def _codec(cfg, device):
    """The run's autoencoder (models/autoencoder.py) when it lives in latent space, else None (pixels)."""
    if cfg.data.latent is None:
        return None
    from noisecraft.models.autoencoder import load_codec

    return load_codec(cfg.data.latent, device)


def _conditioning(args, denoiser, cfg, n: int, device):
    """(the denoiser to run, its cond) for n outputs: a prompt with CFG (text runs) or a class label."""
    from noisecraft.errors import NoisecraftError

    prompt, negative, scale = args.prompt, args.negative_prompt, args.cfg_scale
    if cfg.text.enabled:
        if args.class_label is not None or args.guidance != 1.0:
            raise NoisecraftError(
                "this run is text-conditioned: steer it with --prompt and --cfg, not --class/--guidance"
            )
        from noisecraft.sampling.prompt_guidance import prompt_denoiser

        model, text = prompt_denoiser(denoiser, denoiser.net.text_encoder, [prompt or ""] * n, negative, scale)
        return model, {k: v.to(device) for k, v in text.items()}
    if prompt is not None or negative or scale is not None:
        raise NoisecraftError("--prompt, --negative-prompt and --cfg need a text-conditioned run (trained with --text)")
    _check_label("--class", args.class_label, cfg.model.num_classes)
    return _maybe_cfg(denoiser, cfg, args.class_label, args.guidance), _cond(args.class_label, n, device)


def _plain_cond(denoiser, cfg, label: int | None, n: int, device) -> dict:
    """cond of a class label, or for a text run the empty prompt's embedding (its unconditional model)."""
    if cfg.text.enabled:
        return denoiser.net.text_encoder.encode([""] * n, device=device)
    return _cond(label, n, device)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.errors import NoisecraftError

    if args.mode == "imagic":  # text runs, latent or not: its own module
        from noisecraft.cli import imagic as imagic_cli

        return imagic_cli.run(args)
    if not Path(args.run).exists():
        raise NoisecraftError(f"run folder {args.run!r} does not exist")
    if args.mode == "variations":
        from noisecraft.cli.unclip_cli import variations_cmd

        return variations_cmd(args)
    out = output_dir(args.out or Path(args.run) / "edits" / args.mode)  # before any work that could be lost
    import torch

    from noisecraft.errors import check_choice
    from noisecraft.sampling.samplers import SAMPLERS
    from noisecraft.sampling.steps import step_sigmas

    check_choice("sampler", args.sampler, SAMPLERS)
    from noisecraft.sampling.generate import resolve_device

    device = resolve_device(args.device)
    denoiser, schedule, cfg = load_model(args.run, not args.raw, device)
    if cfg.data.kind == "toy":
        raise NoisecraftError("edit works on image models; this run was trained on 2-D toy points")
    sigmas = step_sigmas(schedule, args.steps, args.schedule)
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
    ctx = dict(denoiser=denoiser, cfg=cfg, sigmas=sigmas, out=out, res=cfg.data.resolution, ch=cfg.data.channels)
    ctx["dev"] = device
    torch.manual_seed(args.seed)
    modes = {"img2img": _img2img, "inpaint": _inpaint, "invert": _invert, "interpolate": _interpolate, "swap": _swap}
    with write_guard(out):
        return modes[args.mode](args, **ctx)


def load_model(spec: str, ema: bool, device):
    """(denoiser, schedule, TrainConfig) of a run folder, or of a Stable-Diffusion folder (the loader of
    ``sample SD_FOLDER``; its config describes the folder: text, latents, image size; `ema` does not apply), on
    `device`. Every edit mode loads through here, imagic included."""
    from noisecraft.interop.stable_diffusion import is_stable_diffusion_folder

    if is_stable_diffusion_folder(spec):
        from noisecraft.interop.stable_diffusion import load_stable_diffusion, stable_diffusion_config

        denoiser, schedule, shape, encoder = load_stable_diffusion(spec, device)
        return denoiser, schedule, stable_diffusion_config(spec, shape, encoder)
    from noisecraft.training.checkpoint import load_run

    return load_run(spec, ema=ema, device=device)


def _load(paths, res: int, ch: int, device):
    import torch

    from noisecraft.editing.io import load_image

    xs = []
    for p in paths:
        x, msg = load_image(p, res, ch)
        print(msg)
        xs.append(x)
    return torch.stack(xs).to(device)  # (B, C, H, W) on the model's device


def _gens(seed: int, n: int):
    from noisecraft.sampling.noise import per_sample_generators

    return per_sample_generators(range(seed, seed + n))


def _img2img(args, denoiser, cfg, sigmas, out, res, ch, dev) -> int:
    from noisecraft.editing.io import save_comparison, save_image
    from noisecraft.editing.sdedit import check_strength, img2img

    check_strength(args.strength)
    x = _load(args.images, res, ch, dev)
    B = x.shape[0]
    xs = x.repeat_interleave(args.num, 0)  # (B·num, C, H, W)
    model, cond = _conditioning(args, denoiser, cfg, len(xs), dev)
    y = img2img(
        model,
        xs,
        sigmas,
        args.strength,
        sampler=args.sampler,
        cond=cond,
        generator=_gens(args.seed, len(xs)),
        codec=_codec(cfg, dev),
    )
    for i in range(len(y)):
        save_image(y[i], out / f"img2img_{i // args.num:03d}_{i % args.num:02d}.png")
    cols = [x] + [y[j :: args.num] for j in range(args.num)]
    save_comparison(cols, out / "comparison.png", ["input"] + [f"s={args.strength:g}"] * args.num)
    print(f"wrote {len(y)} edits of {B} image(s) and {out / 'comparison.png'}")
    return 0


def _inpaint(args, denoiser, cfg, sigmas, out, res, ch, dev) -> int:
    from PIL import Image

    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.io import load_mask, rect_mask, save_comparison, save_image
    from noisecraft.errors import NoisecraftError

    if (args.mask is None) == (args.rect is None):
        raise NoisecraftError("give exactly one of --mask PNG or --rect x0,y0,x1,y1")
    model, cond = _conditioning(args, denoiser, cfg, args.num, dev)
    x = _load([args.image], res, ch, dev)
    if args.mask is not None:
        try:
            size = Image.open(args.image).size
        except OSError:
            size = None
        mask = load_mask(args.mask, res, image_size=size, outside=args.outside)
    else:
        mask = rect_mask(args.rect, res, outside=args.outside)
    mask = mask.to(dev)
    xs = x.expand(args.num, -1, -1, -1)
    y = inpaint(
        model,
        xs,
        mask,
        sigmas,
        method=args.method,
        sampler=args.sampler,
        jump_length=args.jump,
        resample=args.resample,
        cond=cond,
        generator=_gens(args.seed, args.num),
        codec=_codec(cfg, dev),
    )
    for i in range(len(y)):
        save_image(y[i], out / f"inpaint_{i:02d}.png")
    shown = x * (1 - mask) + mask * -0.0  # the kept part, with the region to fill greyed out
    save_comparison(
        [x, shown] + [y[i] for i in range(len(y))],
        out / "comparison.png",
        ["input", "kept"] + [f"fill {i}" for i in range(len(y))],
    )
    print(f"wrote {len(y)} fills and {out / 'comparison.png'} (unmasked pixels kept exactly)")
    return 0


def _invert(args, denoiser, cfg, sigmas, out, res, ch, dev) -> int:
    import torch

    from noisecraft.editing.edits import psnr
    from noisecraft.editing.io import save_comparison, save_image
    from noisecraft.sampling.inversion import invert, regenerate

    _check_label("--class", args.class_label, cfg.model.num_classes)
    x = _load(args.images, res, ch, dev)
    cond = _plain_cond(denoiser, cfg, args.class_label, len(x), dev)
    codec = _codec(cfg, dev)
    data = x if codec is None else codec.encode(x)  # a latent run inverts the latents
    z = invert(denoiser, data, sigmas, sampler=args.sampler, iters=args.iters, cond=cond)
    rec = regenerate(denoiser, z, sigmas, sampler=args.sampler, cond=cond)
    rec = rec if codec is None else codec.decode(rec)
    torch.save(z.cpu(), out / "noise.pt")
    for i in range(len(x)):
        save_image(rec[i], out / f"reconstruction_{i:03d}.png")
    if codec is None:
        noise_view = (z / float(sigmas[0])).clamp(-2, 2) / 2
        save_comparison([x, noise_view, rec], out / "comparison.png", ["input", "noise/σmax", "regenerated"])
    else:
        auto = codec.decode(data)  # the autoencoder's own round trip bounds the inversion's
        save_comparison([x, auto, rec], out / "comparison.png", ["input", "autoencoder", "regenerated"])
        print(f"the autoencoder alone: PSNR {psnr(auto, x).mean():.2f} dB (a latent round trip cannot beat it)")
    p = psnr(rec, x)
    print(
        f"round trip ({args.sampler}, {args.steps} steps, {args.iters} fixed-point iters): "
        f"PSNR {p.mean():.2f} dB (min {p.min():.2f})"
    )
    print(f"wrote {out / 'noise.pt'}, {len(x)} reconstruction(s) and {out / 'comparison.png'}")
    return 0


def _interpolate(args, denoiser, cfg, sigmas, out, res, ch, dev) -> int:
    import torch

    from noisecraft.editing.edits import interpolate
    from noisecraft.editing.io import save_comparison, save_image
    from noisecraft.errors import NoisecraftError

    if args.frames < 2:
        raise NoisecraftError(f"--frames must be at least 2 (the two ends), got {args.frames}")
    k = cfg.model.num_classes
    _check_label("--class-a", args.class_a, k)
    _check_label("--class-b", args.class_b, k)
    x = _load([args.image_a, args.image_b], res, ch, dev)
    codec = _codec(cfg, dev)
    data = x if codec is None else codec.encode(x)  # a latent run interpolates the latents
    ts = torch.linspace(0, 1, args.frames).tolist()
    frames = interpolate(
        denoiser,
        data[:1],
        data[1:],
        sigmas,
        ts,
        sampler=args.sampler,
        iters=args.iters,
        cond0=_plain_cond(denoiser, cfg, args.class_a, 1, dev),
        cond1=_plain_cond(denoiser, cfg, args.class_b, 1, dev),
    )[:, 0]  # (T, C, H, W)
    frames = frames if codec is None else codec.decode(frames)
    for i, f in enumerate(frames):
        save_image(f, out / f"frame_{i:03d}.png")
    save_comparison([x[0], *list(frames), x[1]], out / "comparison.png", ["A"] + [f"t={t:.2f}" for t in ts] + ["B"])
    print(f"wrote {len(frames)} frames and {out / 'comparison.png'}")
    return 0


def _swap(args, denoiser, cfg, sigmas, out, res, ch, dev) -> int:
    from noisecraft.editing.edits import swap_class
    from noisecraft.editing.io import save_comparison, save_image
    from noisecraft.editing.sdedit import check_strength

    check_strength(args.strength)
    k = cfg.model.num_classes
    _check_label("--source", args.source, k)
    _check_label("--target", args.target, k)
    if args.guidance != 1.0 and cfg.label_dropout <= 0:
        print("warning: this run was trained without label dropout, so its unconditional model is untrained")
    x = _load(args.images, res, ch, dev)
    codec = _codec(cfg, dev)
    y = swap_class(
        denoiser,
        x if codec is None else codec.encode(x),
        sigmas,
        args.source,
        args.target,
        guidance=args.guidance,
        null_label=k,
        strength=args.strength,
        sampler=args.sampler,
        iters=args.iters,
    )
    y = y if codec is None else codec.decode(y)
    for i in range(len(y)):
        save_image(y[i], out / f"swap_{i:03d}.png")
    save_comparison([x, y], out / "comparison.png", [f"class {args.source}", f"-> {args.target}"])
    print(f"wrote {len(y)} swapped image(s) and {out / 'comparison.png'}")
    return 0
