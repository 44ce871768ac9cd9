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
