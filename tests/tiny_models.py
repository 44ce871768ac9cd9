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
