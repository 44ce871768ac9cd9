"""A small CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"),
optionally noise-aware as GLIDE's (Nichol et al. 2022, Sec. 2.3), and an adapter for a transformers CLIPModel.

Both towers end in an L2-normalised embedding of width ``embed_dim``; the similarity of an image and a text is
the cosine of their embeddings, and training scales it by a learned temperature exp(t) (``logit_scale``, capped at
100 as in CLIP) before the symmetric InfoNCE loss (``clip_loss``).

- image tower: the noise-conditioned residual conv encoder of the classifier (models/classifier.py) reading
  c_in·x with c_in = 1/√(σ² + σ_data²) and c_noise = ¼·ln σ; a clean image is σ = 0 (c_noise of σ = 10⁻³). A
  noise-aware CLIP is trained on x0 + σ·ε as well, so it can score (and guide) noisy states directly.
- text tower: a frozen sentence encoder's token states (models/text.py; MiniLM by default) → a trainable head:
  a linear map, one transformer encoder layer over the real tokens, the masked mean, a linear map to embed_dim.

Saved as ``clip.safetensors`` + ``clip.json`` (the config) in a folder. ``load_clip`` also loads a transformers
CLIP folder (CLIPModel + CLIPTokenizer): ``HFClip`` gives it the same interface.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from noisecraft.core.denoiser import batch_sigma
from noisecraft.errors import NoisecraftError
from noisecraft.models.classifier import _ResBlock
from noisecraft.models.mlp import FourierEmbedding
from noisecraft.models.text import TextConfig
from noisecraft.typed_config import config_from_dict

WEIGHTS_NAME = "clip.safetensors"
CONFIG_NAME = "clip.json"
MAX_LOGIT_SCALE = 100.0


@dataclass
class ClipConfig:
    """Sizes of the small CLIP and what it sees; saved as clip.json beside the weights.

    Args:
        resolution, channels: the images (side in pixels, 1 or 3 channels), values in [−1, 1].
        embed_dim: width of the joint embedding.
        width, mult: image tower channels (level i has width·mult[i]; each level after the first halves H, W).
        text: the frozen text encoder whose token states the text head reads.
        text_width: width of the text head.
        noise_aware: trained on noisy images x0 + σ·ε too (σ log-uniform in [sigma_min, sigma_max], half the
            batch clean), as GLIDE's noised CLIP.
        sigma_min, sigma_max: that σ range; sigma_data: σ_data of the input scaling.
    """

    resolution: int = 32
    channels: int = 3
    embed_dim: int = 64
    width: int = 32
    mult: tuple[int, ...] = (1, 2, 2)
    text: dict[str, Any] = field(default_factory=lambda: {"encoder": "minilm", "max_tokens": 24, "dropout": 0.0})
    text_width: int = 128
    noise_aware: bool = False
    sigma_min: float = 0.01
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        for name, lo in (("resolution", 4), ("channels", 1), ("embed_dim", 2), ("width", 4), ("text_width", 8)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise NoisecraftError(f"clip {name} must be an integer >= {lo}, got {v!r}")
        self.mult = tuple(int(m) for m in self.mult)
        if not self.mult or min(self.mult) < 1:
            raise NoisecraftError(f"clip mult must be positive channel multipliers, got {self.mult}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise NoisecraftError(f"clip needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        TextConfig(**self.text)  # validates the text entry

    @property
    def text_config(self) -> TextConfig:
        return TextConfig(**self.text)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipConfig:
        return config_from_dict(cls, d, "clip")


class TextHead(nn.Module):
    """Frozen token states (B, T, D) + mask (B, T) → (B, E): linear, one transformer layer, masked mean, linear."""

    def __init__(self, text_dim: int, width: int, embed_dim: int):
        super().__init__()
        self.inp = nn.Linear(text_dim, width)
        self.layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        h = self.layer(self.inp(states), src_key_padding_mask=~mask)  # (B, T, W)
        m = mask[..., None].to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))  # (B, E)


class SmallClip(nn.Module):
    """Image and text towers with a learned temperature; ``image_embeds``/``text_embeds`` are unit vectors."""

    def __init__(self, config: ClipConfig, text_dim: int):
        super().__init__()
        self.config = config
        c = config
        emb = 4 * c.width
        self.embed = nn.Sequential(FourierEmbedding(c.width, input_scale=8.0), nn.Linear(c.width, emb), nn.SiLU())
        self.stem = nn.Conv2d(c.channels, c.width, 3, padding=1)
        chans = [c.width * m for m in c.mult]
        self.blocks = nn.ModuleList(_ResBlock(a, b, emb) for a, b in zip([c.width, *chans[:-1]], chans))
        self.head = nn.Sequential(nn.GroupNorm(min(8, chans[-1]), chans[-1]), nn.SiLU())
        self.image_out = nn.Linear(chans[-1], c.embed_dim)
        self.text_head = TextHead(text_dim, c.text_width, c.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.text_encoder: Any = None  # a frozen models.text.TextEncoder (a plain attribute, not in the state dict)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def noise_aware(self) -> bool:
        return self.config.noise_aware

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a NoisecraftError unless per-sample `shape` is the (C, H, W) this CLIP was trained on."""
        if tuple(shape) != self.config.shape:
            c, r = self.config.channels, self.config.resolution
            raise NoisecraftError(
                f"the CLIP was trained on {c}x{r}x{r} images but got {'x'.join(map(str, shape))}; train a CLIP at "
                "the model's resolution and channels (noisecraft train-clip --resolution ...)"
            )

    def image_embeds(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """Unit embeddings (B, E) of images x (B, C, H, W) in [−1, 1], or of noisy states x0 + σ·ε at σ (B,)."""
        self.check_input_shape(tuple(x.shape[1:]))
        sigma = batch_sigma(0.0 if sigma is None else sigma, x)  # (B,) float64
        c_in = torch.rsqrt(sigma**2 + self.config.sigma_data**2).to(x.dtype)
        dtype = self.stem.weight.dtype
        e = self.embed(0.25 * sigma.clamp(min=1e-3).log())  # (B, emb)
        h = self.stem((c_in[:, None, None, None] * x).to(dtype))  # (B, width, H, W)
        for i, block in enumerate(self.blocks):
            if i > 0 and min(h.shape[-2:]) >= 2:
                h = F.avg_pool2d(h, 2)
            h = block(h, e)
        return F.normalize(self.image_out(self.head(h).mean((-2, -1))), dim=-1)  # (B, E)

    def text_features(self, states: Tensor, mask: Tensor) -> Tensor:
        """Unit embeddings (B, E) of frozen token states (B, T, D) with their mask (B, T)."""
        return F.normalize(self.text_head(states.to(self.device), mask.to(self.device)), dim=-1)

    def text_embeds(self, prompts: list[str] | str) -> Tensor:
        """Unit embeddings (B, E) of prompts, on this CLIP's device."""
        if self.text_encoder is None:
            raise NoisecraftError("this CLIP has no text encoder attached: load it with load_clip")
        t = self.text_encoder.encode(prompts, device=self.device)
        return self.text_features(t["text_states"], t["text_mask"])

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def save(self, folder: str | Path) -> Path:
        """Write clip.safetensors and clip.json into `folder` (created if needed)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        return folder


def clip_loss(image_emb: Tensor, text_emb: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE (CLIP, Radford et al. 2021, Fig. 3): pair i of (B, E) × (B, E) is the positive."""
    logits = scale * image_emb @ text_emb.T  # (B, B)
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def build_clip(config: ClipConfig, device: str | torch.device = "cpu", encoder=None) -> SmallClip:
    """A fresh SmallClip with its frozen text encoder attached (loaded unless `encoder` is given)."""
    from noisecraft.models.text import load_text_encoder

    encoder = encoder if encoder is not None else load_text_encoder(config.text_config, device)
    model = SmallClip(config, encoder.dim).to(device)
    model.text_encoder = encoder
    return model


class HFClip(nn.Module):
    """A transformers ``CLIPModel`` + ``CLIPTokenizer`` from a local folder, with SmallClip's interface.

    Images in [−1, 1] are resized to the vision tower's size and normalised with CLIP's mean and std. It is not
    noise-aware: guidance with it goes through x̂0.
    """

    MEAN = (0.48145466, 0.4578275, 0.40821073)
    STD = (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, model: nn.Module, tokenizer: Any):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.size = int(model.config.vision_config.image_size)
        self.channels = int(model.config.vision_config.num_channels)
        self.register_buffer("mean", torch.tensor(self.MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).reshape(1, 3, 1, 1), persistent=False)

    noise_aware = False

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise NoisecraftError(f"a CLIP scores 1- or 3-channel images, got samples of shape {tuple(shape)}")

    def scale(self) -> Tensor:
        return self.model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def image_embeds(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        self.check_input_shape(tuple(x.shape[1:]))
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std  # (B, 3, S, S)
        return F.normalize(_features(self.model.get_image_features(pixel_values=x)), dim=-1)

    def text_embeds(self, prompts: list[str] | str) -> Tensor:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        n = int(self.model.config.text_config.max_position_embeddings)
        enc = self.tokenizer(prompts, padding="max_length", max_length=n, truncation=True, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            return F.normalize(_features(self.model.get_text_features(**enc)), dim=-1)


def _features(out) -> Tensor:
    """The projected features of get_image/text_features: a tensor (transformers 4) or, from transformers 5 on,
    the pooler_output of the output it returns."""
    return out if isinstance(out, Tensor) else out.pooler_output


def load_clip(path: str | Path, device: str | torch.device = "cpu") -> SmallClip | HFClip:
    """A CLIP from `path`: a folder written by ``noisecraft train-clip`` (clip.json), or a transformers CLIP
    folder (config.json of a CLIPModel and the tokenizer files). Returned in eval mode, frozen, on `device`."""
    folder = Path(path).expanduser()
    if folder.is_file():
        folder = folder.parent
    if (folder / CONFIG_NAME).is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not (folder / WEIGHTS_NAME).is_file():
            raise NoisecraftError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}: the CLIP training did not finish")
        try:
            config = ClipConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise NoisecraftError(f"unreadable {folder / CONFIG_NAME}: {e}") from None
        model = build_clip(config, device)
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        except (RuntimeError, SafetensorError) as e:  # a truncated file, or weights of another shape
            raise NoisecraftError(f"cannot load {folder / WEIGHTS_NAME}: {str(e).splitlines()[0][:200]}") from None
        return model.to(device).eval().requires_grad_(False)
    conf = folder / "config.json"
    if conf.is_file() and json.loads(conf.read_text()).get("model_type") == "clip":
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:
            model, tok = CLIPModel.from_pretrained(folder), CLIPTokenizer.from_pretrained(folder)
        except (OSError, ValueError, TypeError) as e:
            raise NoisecraftError(f"cannot load the CLIP in {str(folder)!r}: {e}") from None
        return HFClip(model, tok).to(device)
    raise NoisecraftError(
        f"{str(folder)!r} holds no CLIP: give a folder written by `noisecraft train-clip` (clip.json) or a "
        "transformers CLIP folder (config.json with model_type 'clip' and the tokenizer files)"
    )


@torch.no_grad()
def clip_score(clip, images: Tensor, prompts: list[str], batch: int = 128) -> Tensor:
    """Per-image CLIP score: 100·max(cos(image, its prompt), 0) (Hessel et al. 2021 use w = 2.5; we report the
    plain cosine scaled by 100, as torchmetrics' CLIPScore does). images (N, C, H, W) in [−1, 1] → (N,)."""
    out = []
    for i in range(0, len(images), batch):
        im = clip.image_embeds(images[i : i + batch].to(clip.device))
        tx = clip.text_embeds(prompts[i : i + batch])
        out.append(100 * (im * tx).sum(-1).clamp(min=0).cpu())
    return torch.cat(out)


@torch.no_grad()
def retrieval_top1(clip, images: Tensor, prompts: list[str], group: int = 100) -> float:
    """Text → image top-1 accuracy: for each prompt, is its own image the most similar among the `group` images
    of its block (blocks of `group` consecutive pairs; chance = 1/group)."""
    if len(images) < group:
        raise NoisecraftError(f"retrieval among {group} needs at least {group} pairs, got {len(images)}")
    right = total = 0
    for lo in range(0, len(images) - group + 1, group):
        im = clip.image_embeds(images[lo : lo + group].to(clip.device))  # (G, E)
        tx = clip.text_embeds(prompts[lo : lo + group])  # (G, E)
        right += int((tx @ im.T).argmax(1).eq(torch.arange(group, device=im.device)).sum())
        total += group
    return right / total
