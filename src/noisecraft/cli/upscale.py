"""Super-resolve images with a cascade's upsampler (a run trained with --upsample-from; models/upsampler.py,
Ho et al. 2021): each low-resolution image is augmented with Gaussian noise of level --aug and the upsampler
draws a high-resolution image conditioned on it. Image i uses seed --seed + i.

The images must have the upsampler's low resolution exactly (e.g. 16x16 for `--upsample-from 16`): the
samples of the cascade's base model, as `noisecraft sample BASE` writes them. `noisecraft sample BASE
--upscale RUN` does both stages in one command.

Examples:
  noisecraft upscale runs/sr runs/base/generated/seed000000.png --aug 0.1
  noisecraft upscale runs/sr runs/base/generated/seed00000*.png --sampler heun --steps 20 --out big
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_device_argument, non_negative_int, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run trained with `noisecraft train --upsample-from N`")
    p.add_argument("images", nargs="+", help="low-resolution PNG/JPEG images (N x N pixels)")
    add_cascade_arguments(p)
    p.add_argument("--sampler", default="heun", help="sampler name (see `noisecraft samplers`)")
    p.add_argument("--steps", type=positive_int, default=20, help="sampling steps")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first image; image i uses seed+i")
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/upscaled)")


def add_cascade_arguments(p: argparse.ArgumentParser) -> None:
    """--aug, shared with `sample --upscale`."""
    p.add_argument(
        "--aug",
        type=float,
        default=0.1,
        metavar="S",
        help="Gaussian noise level added to the low-resolution image (0: used as it is; the model trained on "
        "levels in [0, model.aug_max])",
    )


def read_low(paths: list[str], side: int, channels: int):
    """(N, C, side, side) in [−1, 1] from image files that must be side x side; one-line errors otherwise."""
    import torch

    from noisecraft.editing.io import _open, _to_mode, image_to_tensor
    from noisecraft.errors import NoisecraftError

    out = []
    for path in paths:
        img, _ = _to_mode(_open(path, "image"), channels)
        if img.size != (side, side):
            raise NoisecraftError(
                f"{path} is {img.size[0]}x{img.size[1]}, but the upsampler takes {side}x{side} images "
                f"(the base model's samples): resize it to {side}x{side} first"
            )
        out.append(image_to_tensor(img))
    return torch.stack(out)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from noisecraft.cli.args import output_dir, write_guard

    out = output_dir(args.out or Path(args.run) / "upscaled")  # before any sampling
    from noisecraft.data.io import save_grid, save_images
    from noisecraft.errors import check_choice
    from noisecraft.models.upsampler import SRNet, upscale
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.sampling.samplers import SAMPLERS
    from noisecraft.training.checkpoint import load_run

    check_choice("sampler", args.sampler, SAMPLERS)
    device = resolve_device(args.device)
    denoiser, schedule, cfg = load_run(args.run, ema=not args.raw, device=device)
    if not isinstance(getattr(denoiser, "net", None), SRNet):
        from noisecraft.errors import NoisecraftError

        raise NoisecraftError(f"{args.run} is not a super-resolution run (train one with --upsample-from N)")
    low = read_low(args.images, cfg.model.upsample_from, cfg.model.channels)
    seeds = list(range(args.seed, args.seed + len(low)))
    x = upscale(denoiser, schedule, low, seeds, aug_sigma=args.aug, sampler=args.sampler, steps=args.steps)
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        save_images(x, out, seeds)
        grid = save_grid(x, out / "grid.png")
    r = cfg.model.resolution
    print(f"wrote {len(x)} {r}x{r} images seed{seeds[0]:06d}.png .. seed{seeds[-1]:06d}.png and {grid}")
    return 0
