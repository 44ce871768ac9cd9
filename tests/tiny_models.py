"""Tiny randomly initialised models that tests build and save locally (nothing comes from a hub)."""

from __future__ import annotations

import string
from pathlib import Path


def make_tiny_clip(folder: Path, hidden: int = 32, max_positions: int = 16, seed: int = 0) -> Path:
    """A CLIP text encoder (transformers CLIPTextModel) with a character-level BPE tokenizer, saved to `folder`."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    merges = ["r e", "re d</w>", "b a", "ba g</w>"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    pairs = [tuple(m.split()) for m in merges]
    CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=max_positions).save_pretrained(folder)
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_positions,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(config).save_pretrained(folder)
    return folder


def make_tiny_sd(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A randomly initialised Stable-Diffusion folder (StableDiffusionPipeline.save_pretrained) with 16×16 images,
    8×8×4 latents, a 32-d CLIP text encoder padding prompts to 16 tokens, and SD 1.x's PNDM scheduler config."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    clip = make_tiny_clip(folder.parent / f"{folder.name}-clip", seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # diffusers zero-initialises some output layers: make every output depend on the text
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
        scaling_factor=0.5,
    )
    scheduler = PNDMScheduler(  # Stable Diffusion 1.x's scheduler config
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel.from_pretrained(clip),
        tokenizer=CLIPTokenizer.from_pretrained(clip),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_clip_model(folder: Path, projection: int = 16, seed: int = 0) -> Path:
    """A full transformers CLIPModel (text and vision towers, 8-px images) with the character tokenizer above."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    make_tiny_clip(folder)  # the tokenizer files (and a text model, replaced below)
    torch.manual_seed(seed)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    text |= dict(max_position_embeddings=16, vocab_size=200, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    vision |= dict(image_size=8, patch_size=4, num_channels=3)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)
    CLIPModel(config).save_pretrained(folder)
    return folder


def make_small_clip(folder: Path, text_folder: Path, embed_dim: int = 8, resolution: int = 32, seed: int = 0):
    """A randomly initialised noisecraft SmallClip (train-clip's format) whose text tower reads the tiny CLIP text
    encoder in `text_folder` (make_tiny_clip); saved to `folder`."""
    import torch

    from noisecraft.models.clip import ClipConfig, SmallClip

    torch.manual_seed(seed)
    text = {"encoder": "clip", "path": str(text_folder), "max_tokens": 16, "dropout": 0.0}
    cfg = ClipConfig(resolution=resolution, embed_dim=embed_dim, width=8, mult=(1, 2), text=text, text_width=16)
    SmallClip(cfg, 32).save(folder)
    return Path(folder)


def make_tiny_unclip(folder: Path, clip_folder: Path, embed_dim: int = 8, seed: int = 0) -> Path:
    """An unCLIP run folder (train-unclip's layout) with random prior and pixel decoder weights: one step each."""
    import dataclasses
    import json

    import torch

    from noisecraft.core.ema import EMA
    from noisecraft.models.factory import ModelConfig
    from noisecraft.training import unclip as U
    from noisecraft.training.core import LoopSettings, adamw, fit

    folder = Path(folder)
    dec = ModelConfig(arch="cond-unet", resolution=32, channels=3, text_dim=embed_dim,
                      net_kwargs={"block_out_channels": [32, 32]})  # fmt: skip
    loop = dataclasses.asdict(LoopSettings(steps=1, lr=1e-3, batch=2, seed=seed))
    cfg = U.UnclipConfig(embed_dim=embed_dim, decoder=dec.to_dict(), prior_loop=loop, decoder_loop=loop)
    folder.mkdir(parents=True, exist_ok=True)
    ref = U.copy_clip(clip_folder, folder)
    (folder / U.CONFIG_NAME).write_text(json.dumps({**cfg.to_dict(), "_clip": ref}))
    prior, _ = U.build_prior(cfg)
    decoder, _ = U.build_decoder(cfg)
    e = torch.nn.functional.normalize(torch.randn(2, embed_dim), dim=-1)

    def prior_loss(step, g):
        return (prior(torch.randn(2, embed_dim), 1.0, clip_text=e) ** 2).mean()[None], 2

    def decoder_loss(step, g):
        return (decoder(torch.randn(2, 3, 32, 32), 1.0, clip_image=e) ** 2).mean()[None], 2

    for part, model, loss in (("prior", prior, prior_loss), ("decoder", decoder, decoder_loss)):
        settings = LoopSettings(**loop)
        fit(folder / part, model, adamw(model, settings), loss, settings, {"part": part}, ema=EMA(model),
            progress=False, say=lambda *_: None)  # fmt: skip
    return folder


def write_fake_fashion_mnist(root, test_per_class: int = 4):
    """A small stand-in for the Fashion-MNIST IDX files in folder `root` (train: 8 items per class, test:
    `test_per_class`), each class a bar of its own width, so tests never need the real files."""
    import gzip

    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, per in (("train", 8), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(10), per).astype(np.uint8)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        for i, k in enumerate(labels):
            images[i, 4:24, 12 - k : 14 + k] = rng.integers(150, 256)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(root / f"{split}-{kind}.gz", "wb") as f:
                f.write(header + arr.tobytes())
    return root
