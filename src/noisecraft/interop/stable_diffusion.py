"""Stable-Diffusion-format folders in and out (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"): the layout diffusers' ``StableDiffusionPipeline`` saves and loads,

    model_index.json
    unet/          UNet2DConditionModel (cross-attention over the text encoder's token states)
    vae/           AutoencoderKL, its config carrying the latent scaling factor
    text_encoder/  transformers CLIPTextModel
    tokenizer/     CLIPTokenizer (model_max_length: every prompt is padded to it)
    scheduler/     a scheduler config: its β's and prediction_type (epsilon | v_prediction | sample)
    (safety_checker/, feature_extractor/: not used)

Loading (``load_stable_diffusion``) turns the folder into noisecraft's pieces, so every noisecraft sampler and
guidance method samples it: the U-Net behind the same preconditioner as any discrete-VP model (σ_t =
√((1−ᾱ_t)/ᾱ_t) from the scheduler's β's, c_noise = t(σ), the parameterisation from prediction_type), read in
the "sd" text layout (models/cond_unet.py: every token attended, padding included, no pooled vector); the CLIP
text encoder as a noisecraft TextEncoder padding to the tokenizer's length and keeping float32 embeddings; the
VAE as the latent codec (decoded at the end, x = decoder(z / scaling_factor)).

Exporting (``export_stable_diffusion``) writes a noisecraft text run in latent space back as such a folder. It
needs what the pipeline assumes: a CLIP text encoder, ``model.text_layout = "sd"``, an autoencoder without a
shift, and a discrete-VP schedule with noise input t and σ_data = 1. The scheduler written is a DDIMScheduler
with the run's β's, ``timestep_spacing="trailing"`` and ``clip_sample=False`` (noisecraft never clips).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from noisecraft.errors import NoisecraftError

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NoisecraftError(f"cannot read {path}: {e}") from None


def is_stable_diffusion_folder(path: str | Path) -> bool:
    """A folder whose unet/ is a UNet2DConditionModel (a text-to-image pipeline, not a DDPMPipeline)."""
    conf = Path(path) / "unet" / "config.json"
    if not conf.is_file():
        return False
    try:
        return json.loads(conf.read_text()).get("_class_name") == "UNet2DConditionModel"
    except (OSError, json.JSONDecodeError):
        return False


def check_stable_diffusion_folder(folder: Path) -> None:
    """One-line errors for a folder that lacks a part, or whose weights are pickle files (never unpickled)."""
    from noisecraft.training.run_folder import PICKLE_SUFFIXES, safetensors_problem

    missing = [p for p in PARTS if not (folder / p).is_dir()]
    if missing:
        raise NoisecraftError(
            f"{folder} has no {', '.join(m + '/' for m in missing)} folder: a Stable-Diffusion folder needs "
            f"{', '.join(p + '/' for p in PARTS)}"
        )
    for part, stem in WEIGHTS.items():
        sub = folder / part
        if not (sub / "config.json").is_file():
            raise NoisecraftError(f"{sub} has no config.json: copy the whole {part}/ folder of the pipeline")
        weights = sub / f"{stem}.safetensors"
        if weights.is_file():
            problem = safetensors_problem(weights)
            if problem:
                raise NoisecraftError(f"{weights} is damaged: {problem}")
            continue
        if (sub / f"{stem}.safetensors.index.json").is_file():  # sharded safetensors
            continue
        pickles = sorted(p.name for p in sub.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise NoisecraftError(
                f"{sub} holds pickle weights ({pickles[0]}), which noisecraft never loads (they can run code): "
                f"convert them to {stem}.safetensors"
            )
        raise NoisecraftError(f"{sub} has no {stem}.safetensors: not a complete Stable-Diffusion folder")


def load_stable_diffusion(folder: str | Path, device: str | torch.device = "cpu"):
    """Load a Stable-Diffusion folder → (denoiser on `device` taking text_states=/prompt=, schedule, latent shape
    (C, h, w), text encoder). The autoencoder is the folder's vae/ (``models.autoencoder.load_codec(folder)``)."""
    from diffusers import UNet2DConditionModel

    from noisecraft.core.denoiser import PreconditionedDenoiser
    from noisecraft.interop.diffusers import _scheduler_config, schedule_from_diffusers
    from noisecraft.models.cond_unet import CondUNetNet, attach_text_encoder
    from noisecraft.models.text import TextConfig, load_text_encoder

    folder = Path(folder)
    check_stable_diffusion_folder(folder)
    unet_conf = _read(folder / "unet" / "config.json")
    for key in ("class_embed_type", "addition_embed_type"):
        if unet_conf.get(key) is not None:
            raise NoisecraftError(
                f"{folder}/unet has {key}={unet_conf[key]!r} (an SDXL-style or class-conditional U-Net): only "
                "Stable Diffusion 1.x/2.x-style U-Nets (text states alone) are supported"
            )
    schedule, precond = schedule_from_diffusers(_scheduler_config(folder))
    tok_path = folder / "tokenizer" / "tokenizer_config.json"
    tok_conf = _read(tok_path) if tok_path.is_file() else {}
    enc_conf = _read(folder / "text_encoder" / "config.json")
    enc_conf = enc_conf.get("text_config", enc_conf)
    limit = int(enc_conf.get("max_position_embeddings", 77))
    length = tok_conf.get("model_max_length", limit)
    length = limit if not isinstance(length, int | float) or length > limit else int(length)
    encoder = load_text_encoder(
        TextConfig(encoder="clip", path=str(folder), max_tokens=length, dropout=0.0), device, torch.float32
    )
    if int(unet_conf.get("cross_attention_dim", -1)) != encoder.dim:
        raise NoisecraftError(
            f"{folder}: the U-Net's cross_attention_dim {unet_conf.get('cross_attention_dim')} does not match the "
            f"text encoder's width {encoder.dim}"
        )
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
    except (OSError, ValueError, TypeError) as e:
        raise NoisecraftError(f"cannot load {folder}/unet: {e}") from None
    denoiser = PreconditionedDenoiser(CondUNetNet(unet, encoder.dim, layout="sd"), precond)
    attach_text_encoder(denoiser, encoder)
    size = unet.config.sample_size
    side = size if isinstance(size, int) else size[0]
    shape = (int(unet.config.in_channels), int(side), int(side))
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    return denoiser, schedule, shape, encoder


def stable_diffusion_config(folder: str | Path, shape: tuple[int, ...], encoder):
    """The TrainConfig that describes a loaded Stable-Diffusion folder (latent `shape` (C, h, w), its CLIP text
    `encoder`) to the tools that read a run's config, e.g. ``noisecraft edit SD_FOLDER``: images of the VAE's
    channels at side h·factor, latents from the folder's vae/, text from its text_encoder/, no classes. It only
    describes the folder; nothing is trained from it."""
    from noisecraft.data.config import DataConfig
    from noisecraft.models.factory import ModelConfig
    from noisecraft.models.text import TextConfig
    from noisecraft.training.config import TrainConfig

    folder = Path(folder)
    vae = _read(folder / "vae" / "config.json")
    side = shape[-1] * 2 ** (len(vae.get("block_out_channels", [0])) - 1)  # pixels per latent side
    channels = int(vae.get("in_channels", 3))
    model = ModelConfig(
        arch="cond-unet", resolution=shape[-1], channels=shape[0], text_dim=encoder.dim, text_layout="sd"
    )
    return TrainConfig(
        data=DataConfig(source=str(folder), channels=channels, resolution=side, latent=str(folder)),
        text=TextConfig(encoder="clip", path=str(folder), max_tokens=encoder.max_tokens, dropout=0.0),
        model=model,
        eval_every=0,
        trackers=[],
    )


def export_stable_diffusion(denoiser, schedule, cfg, folder: str | Path, name: str = "this run") -> Path:
    """Write a loaded text run (``load_run(RUN)``: denoiser, schedule, TrainConfig) as a Stable-Diffusion folder
    that ``StableDiffusionPipeline.from_pretrained(folder)`` loads. Returns the folder."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from noisecraft.core.schedules import DiscreteVP
    from noisecraft.interop.diffusers import NOISECRAFT_JSON, PREDICTION_TYPES, beta_config
    from noisecraft.models.autoencoder import load_codec

    why = None
    if cfg.text.encoder != "clip":
        why = f"it needs a CLIP text encoder (--text clip:FOLDER); this run uses {cfg.text.encoder!r}"
    elif cfg.model.text_layout != "sd":
        why = (
            "it needs a run trained with --text-layout sd (= --set model.text_layout=sd: every token, no pooled vector)"
        )
    elif cfg.data.latent is None:
        why = "it needs a run in latent space (--latent VAE)"
    p = denoiser.precond
    if why is None and not (
        isinstance(schedule, DiscreteVP) and p.noise_input == "t" and p.sigma_data == 1.0 and p.kind in PREDICTION_TYPES
    ):
        why = (
            f"it needs a discrete VP schedule with noise input t, sigma_data 1 and eps, v or x0 (this run: {p.kind!r})"
        )
    if why is not None:
        raise NoisecraftError(f"cannot export {name} as a Stable-Diffusion folder: {why}")
    codec = load_codec(cfg.data.latent)
    if codec.shift:
        raise NoisecraftError(
            "cannot export: the autoencoder has a shift_factor, which StableDiffusionPipeline ignores"
        )
    encoder = denoiser.net.text_encoder
    tokenizer = encoder.tokenizer
    tokenizer.model_max_length = encoder.max_tokens  # the pipeline pads every prompt to this length, as we do
    scheduler = DDIMScheduler(
        **beta_config(schedule),
        prediction_type=PREDICTION_TYPES[p.kind],
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )
    pipe = StableDiffusionPipeline(
        vae=codec.vae,
        text_encoder=encoder.model,
        tokenizer=tokenizer,
        unet=denoiser.net.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    meta = {"format": "noisecraft-stable-diffusion-export/1", "model_config": cfg.model.to_dict()}
    meta["text"] = cfg.text.to_dict()
    (folder / NOISECRAFT_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return folder
