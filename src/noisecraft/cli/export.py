"""Export a trained run as a diffusers pipeline folder, and optionally push it to the Hugging Face Hub.

Discrete-VP runs (linear/cosine/... schedules, eps/v/x0) become a DDPMPipeline folder; EDM runs become the
UNet plus an EDMEulerScheduler config. Only U-Net runs export (diffusers has no pixel-space DiT pipeline).
Text runs in latent space (--text clip:FOLDER --latent VAE --set model.text_layout=sd) become a
Stable-Diffusion folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/) that StableDiffusionPipeline loads.

examples:
  noisecraft export runs/digits exported/digits
  noisecraft export runs/digits exported/digits --raw            # training weights instead of EMA
  noisecraft export runs/digits exported/digits --push me/digits-ddpm --private
  python -c "from diffusers import DDPMPipeline as P; P.from_pretrained('exported/digits')().images[0].save('x.png')"
  noisecraft export runs/scenes-sd exported/scenes-sd --format sd     # a text run → StableDiffusionPipeline
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `noisecraft train` (latest checkpoint) or a checkpoint")
    parser.add_argument("out", help="output folder for the diffusers pipeline")
    parser.add_argument("--raw", action="store_true", help="export the raw training weights instead of the EMA")
    parser.add_argument(
        "--format",
        choices=("auto", "diffusers", "sd"),
        default="auto",
        help="diffusers: DDPMPipeline/EDM folder; sd: Stable-Diffusion folder of a text run; auto: sd for text runs",
    )
    parser.add_argument("--push", metavar="REPO_ID", help="also upload the folder to this Hub model repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private (with --push)")
    parser.add_argument("--token", help="Hub token (default: the one saved by `huggingface-cli login`)")


def run(args: argparse.Namespace) -> int:
    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.errors import NoisecraftError
    from noisecraft.interop.diffusers import NOISECRAFT_JSON, export_diffusers
    from noisecraft.training.checkpoint import load_run

    out = output_dir(args.out, flag="OUT")
    if out.is_dir() and any(out.iterdir()) and not (out / NOISECRAFT_JSON).is_file():  # an earlier export may go
        raise NoisecraftError(f"OUT {args.out!r} already holds other files: export into a new or empty folder")
    denoiser, schedule, cfg = load_run(args.run, ema=not args.raw, device="cpu")
    text = getattr(getattr(cfg, "text", None), "enabled", False)
    fmt = ("sd" if text else "diffusers") if args.format == "auto" else args.format
    if fmt == "sd":
        from noisecraft.interop.stable_diffusion import export_stable_diffusion

        with write_guard(out):
            folder = export_stable_diffusion(denoiser, schedule, cfg, out, name=args.run)
        kind = "Stable-Diffusion (StableDiffusionPipeline)"
    else:
        if text:
            raise NoisecraftError("a text run exports with --format sd (a Stable-Diffusion folder)")
        denoiser.config = cfg.model
        with write_guard(out):
            folder = export_diffusers(denoiser, schedule, out)
        kind = "DDPMPipeline" if (folder / "model_index.json").is_file() else "UNet2DModel + EDMEulerScheduler"
    print(f"exported {args.run} as a diffusers {kind} folder: {folder}")
    if args.push:
        from noisecraft.interop.hub import push_to_hub

        url = push_to_hub(folder, args.push, token=args.token, private=args.private)
        print(f"pushed to {url}")
    return 0
