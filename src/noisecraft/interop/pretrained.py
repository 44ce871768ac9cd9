"""One entry point for every model noisecraft can sample: a noisecraft run, a diffusers pipeline folder (a
Stable-Diffusion folder included: interop/stable_diffusion.py), or a hub repository (``hub:user/name``, for
example the guide's ``hub:google/ddpm-cifar10-32``).

A diffusers model keeps its scheduler's ``clip_sample`` (x̂0 is clamped as the pipeline clamps it); its step
spacing is noisecraft's default (trailing: the first step starts at the top noise level), and
``--schedule leading`` walks the timesteps that diffusers' DDIM pipeline walks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError

HUB_PREFIX = "hub:"


@dataclass
class Pretrained:
    """A loaded model with what sampling needs to know about it.

    denoiser: D(x, σ, **cond) → x̂0 in eval mode; shape: one sample, (2,) or (C, H, W) (a latent run: the
    latent's); num_classes: 0 when unconditional; kind: "run", "diffusers" or "stable-diffusion"; latent: the
    autoencoder folder whose latents the model generates (None: pixels); text_encoder: the encoder of a text run
    (None: no text).
    """

    denoiser: torch.nn.Module
    schedule: Schedule
    shape: tuple[int, ...]
    num_classes: int
    kind: str
    latent: str | None = None
    text_encoder: object | None = None


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers pipeline folder: model_index.json, or a unet/ subfolder (noisecraft runs have neither)."""
    return (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file()


def load_pretrained(spec: str, ema: bool = True, device: str | torch.device | None = None) -> Pretrained:
    """Load `spec`: a run folder or checkpoint (EMA weights unless ema=False), a diffusers folder, or hub:ID,
    onto `device` (default: CUDA where present, else the CPU)."""
    from noisecraft.sampling.generate import resolve_device

    device = resolve_device(device)
    if spec.startswith(HUB_PREFIX):
        from noisecraft.interop.hub import download_from_hub

        repo_id = spec[len(HUB_PREFIX) :]
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise NoisecraftError(f"{spec!r}: a hub model is named hub:user/name")
        return _from_diffusers(download_from_hub(repo_id), device)
    path = Path(spec)
    if not path.exists():
        raise NoisecraftError(f"{spec!r} does not exist: give a run folder, a diffusers folder or hub:user/name")
    if is_diffusers_folder(path):
        return _from_diffusers(path, device)
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.setup import sample_shape

    denoiser, schedule, cfg = load_run(path, ema=ema, device=device)
    encoder = getattr(denoiser.net, "text_encoder", None)
    return Pretrained(denoiser, schedule, sample_shape(cfg), cfg.model.num_classes, "run", cfg.data.latent, encoder)


def check_diffusers_weights(folder: Path) -> None:
    """Refuse, before any loader opens a file, a diffusers folder whose U-Net weights are not one whole
    safetensors file: pickle weights (.bin, .pt, .ckpt) can run code when loaded, so they are never read."""
    from noisecraft.training.run_folder import PICKLE_SUFFIXES, safetensors_problem

    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    weights = unet / "diffusion_pytorch_model.safetensors"
    if weights.is_file():
        problem = safetensors_problem(weights)
        if problem:
            raise NoisecraftError(f"{weights} is damaged: {problem}")
        return
    if (unet / "diffusion_pytorch_model.safetensors.index.json").is_file():  # sharded safetensors
        return
    pickles = sorted(p.name for p in unet.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES) if unet.is_dir() else []
    if pickles:
        raise NoisecraftError(
            f"{unet} holds pickle weights ({pickles[0]}), which noisecraft never loads (they can run code): "
            "convert them to diffusion_pytorch_model.safetensors"
        )
    raise NoisecraftError(f"{unet} has no diffusion_pytorch_model.safetensors: not a complete diffusers folder")


def _from_diffusers(folder: Path, device: torch.device) -> Pretrained:
    from noisecraft.core.denoiser import ClippedDenoiser
    from noisecraft.interop.diffusers import load_diffusers
    from noisecraft.interop.stable_diffusion import is_stable_diffusion_folder, load_stable_diffusion

    if is_stable_diffusion_folder(folder):  # text-to-image in latent space: unet/ vae/ text_encoder/ tokenizer/
        denoiser, schedule, shape, encoder = load_stable_diffusion(folder, device)
        return Pretrained(denoiser, schedule, shape, 0, "stable-diffusion", str(folder), encoder)
    check_diffusers_weights(folder)
    denoiser, schedule = load_diffusers(folder)
    unet = denoiser.net.unet
    size = unet.config.sample_size
    side = size if isinstance(size, int) else size[0]
    shape = (int(unet.config.in_channels), int(side), int(side))
    num_classes = denoiser.net.num_classes
    if denoiser.clip_sample:
        denoiser = ClippedDenoiser(denoiser, denoiser.clip_sample_range).eval()
    return Pretrained(denoiser.requires_grad_(False).to(device), schedule, shape, num_classes, "diffusers")
