"""The `train` flags of text-to-image in latent space (--text, --text-layout, --latent), kept beside train.py so it
stays small."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--text",
        help="condition on captions with a text encoder: minilm (all-MiniLM-L6-v2) or clip:FOLDER (a local CLIP "
        "text encoder); the model becomes a cross-attention U-Net (arch cond-unet)",
    )
    p.add_argument(
        "--text-layout",
        choices=("noisecraft", "sd"),
        default=None,
        help="how the U-Net reads the text: noisecraft (default: padding masked, pooled vector added) or sd "
        "(Stable Diffusion's: every token attended, no pooled vector; `export --format sd` needs it)",
    )
    p.add_argument(
        "--latent",
        metavar="VAE",
        help="train on the latents of this autoencoder (a `noisecraft train-vae` folder or a diffusers "
        "AutoencoderKL folder); encoded once into an on-disk cache",
    )


def apply(d: dict, args: argparse.Namespace, user_channels: bool) -> None:
    """Fill the config dict `d` for --data scenes, --text, --text-layout and --latent (explicit flags and --set
    still win)."""
    from noisecraft.errors import NoisecraftError

    if d["data"]["source"] == "scenes" and not user_channels and d["data"]["channels"] == 1:
        d["data"]["channels"] = d["model"]["channels"] = 3  # scenes are colour
        print("data: scenes are colour images: training in RGB (--channels 1 for grayscale)", file=sys.stderr)
    if getattr(args, "text", None):
        from noisecraft.models.text import TextConfig, text_dim

        name, _, path = args.text.partition(":")
        if name not in ("minilm", "clip") or (name == "clip") != bool(path):
            raise NoisecraftError(f"--text must be minilm or clip:FOLDER, got {args.text!r}")
        d["text"].update(encoder=name, path=path or None)
        from noisecraft.data.config import source_kind

        if source_kind(d["data"]["source"]) in ("folder", "hf"):  # captions from .txt / metadata.jsonl / a column
            d["data"]["captions"] = True
        d["model"]["text_dim"] = text_dim(TextConfig(**d["text"]))
        if args.arch is None:
            d["model"]["arch"] = "cond-unet"
    layout = getattr(args, "text_layout", None)
    if layout is not None:
        if d["text"]["encoder"] == "none":
            raise NoisecraftError("--text-layout needs a text run: add --text clip:FOLDER (or --text minilm)")
        d["model"]["text_layout"] = layout
    if getattr(args, "latent", None):
        from noisecraft.models.autoencoder import latent_shape

        c, h, _ = latent_shape(args.latent, d["data"]["resolution"])
        d["data"]["latent"] = args.latent
        d["model"].update(channels=c, resolution=h)
