"""The `noisecraft` command: a thin dispatcher over one small module per subcommand.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and imports nothing heavy at
module level, so ``noisecraft --help`` stays instant. Bad input raises NoisecraftError, printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a command by adding a line here and a module beside this file.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("noisecraft.cli.demo", "train a small model on a built-in dataset and draw what it learned"),
    "train": ("noisecraft.cli.train", "train a diffusion model from a run config; crash-proof, resumable"),
    "sample": ("noisecraft.cli.sample", "draw samples from a trained run: PNGs and a grid, one seed per image"),
    "upscale": ("noisecraft.cli.upscale", "super-resolve images with a cascade's upsampler (train --upsample-from)"),
    "export": ("noisecraft.cli.export", "export a run as a diffusers pipeline folder (optionally push to the Hub)"),
    "eval": ("noisecraft.cli.eval", "score a run or a folder of samples: FD, KID, precision/recall, NLL"),
    "show": ("noisecraft.cli.show", "draw the pictures of diffusion: schedules, forward process, trajectories, ..."),
    "train-vae": ("noisecraft.cli.train_vae", "train a KL autoencoder (AutoencoderKL) for latent diffusion"),
    "train-classifier": ("noisecraft.cli.train_classifier", "train a noisy classifier for classifier guidance"),
    "train-clip": ("noisecraft.cli.train_clip", "train a small CLIP (contrastive image–text model) on captioned data"),
    "train-unclip": ("noisecraft.cli.train_unclip", "train an unCLIP prior (text → CLIP image embedding) and decoder"),
    "sweep": ("noisecraft.cli.sweep", "image grid over guidance scales × classes for a class-conditional run"),
    "edit": ("noisecraft.cli.edit", "edit real images: img2img, inpaint/outpaint, invert, interpolate, class swap"),
    "samplers": ("noisecraft.cli.samplers", "list samplers and step schedules; fit an optimised schedule to a run"),
    "ui": ("noisecraft.cli.ui", "the web studio: sample, compare, edit and learn in the browser (local only)"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _UsageError(Exception):
    """A command line argparse rejected; main() prints it as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`noisecraft train: error: argument --steps: ...`), not usage."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="noisecraft",
        description="noisecraft: build diffusion models — train, sample, guide, edit and evaluate them.",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_line) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_line, description=mod.__doc__, formatter_class=_Formatter)
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(e, file=sys.stderr)
        return 2
    from noisecraft.errors import NoisecraftError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except NoisecraftError as e:
        print(f"noisecraft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"noisecraft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
