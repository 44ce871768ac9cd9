"""An unCLIP run (Ramesh et al. 2022): a CLIP, a diffusion prior (CLIP text embedding → CLIP image embedding) and
a decoder (CLIP image embedding, plus optionally the text embedding → image), each a noisecraft diffusion model.

    RUN/unclip.json     UnclipConfig: the CLIP, the autoencoder (latent decoder), both model configs, dropouts
    RUN/clip/           a copy of the CLIP (a train-clip folder), so the run stands alone
    RUN/prior/          a resumable run folder (training.core.fit) of the prior
    RUN/decoder/        a resumable run folder of the decoder

Both are PreconditionedDenoisers trained with core.losses.DenoisingLoss and sampled with the registry's samplers:
the prior is a diffusion model over vectors (E,) (the same code as images), targets the unit image embedding
times √E (unit variance per coordinate), and sees the text embedding dropped to zero with probability
prior_dropout; the decoder sees the image embedding dropped with probability image_dropout and the text with
text_dropout (unCLIP: 10 % and 50 %), which is what CFG over either needs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.losses import DenoisingLoss
from noisecraft.core.precond import Preconditioner
from noisecraft.core.schedules import Schedule, make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.models.factory import ModelConfig, build_denoiser
from noisecraft.models.unclip import DecoderNet, PriorNet
from noisecraft.training.checkpoint import load_weights
from noisecraft.training.clip_train import pick_one
from noisecraft.training.core import LoopSettings
from noisecraft.typed_config import config_from_dict

CONFIG_NAME = "unclip.json"


@dataclass
class UnclipConfig:
    """What an unCLIP run is made of; saved as RUN/unclip.json.

    Args:
        embed_dim: the CLIP's embedding width E (both models are built for it).
        latent: the autoencoder folder the decoder generates latents of (None: pixels).
        image_shape: (C, H, W) of the images (what the CLIP sees and the decoder makes after decoding).
        prior_hidden, prior_depth: size of the prior MLP.
        decoder: the decoder's ModelConfig (arch cond-unet, text_dim = E).
        prior_dropout: probability of a zero text embedding in prior training.
        image_dropout, text_dropout: probabilities of zero image / text embeddings in decoder training.
        prior_loop, decoder_loop: their training.core.LoopSettings (as dicts).
        data: the DataConfig (dict) the models were trained on.
    """

    embed_dim: int
    image_shape: tuple[int, ...] = (3, 32, 32)
    latent: str | None = None
    prior_hidden: int = 256
    prior_depth: int = 4
    decoder: dict[str, Any] = field(default_factory=dict)
    prior_dropout: float = 0.1
    image_dropout: float = 0.1
    text_dropout: float = 0.5
    prior_loop: dict[str, Any] = field(default_factory=dict)
    decoder_loop: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_shape = tuple(int(v) for v in self.image_shape)
        for name in ("prior_dropout", "image_dropout", "text_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise NoisecraftError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if self.decoder and ModelConfig.from_dict(self.decoder).text_dim != self.embed_dim:
            raise NoisecraftError("the decoder's text_dim must equal the CLIP embedding width")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnclipConfig:
        return config_from_dict(cls, d, "unclip")


def is_unclip_run(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def prior_schedule() -> Schedule:
    """The prior's noise schedule: EDM's σ ∈ [0.002, 80] (Karras et al. 2022), data of unit variance."""
    return make_schedule("edm")


def build_prior(cfg: UnclipConfig) -> tuple[PreconditionedDenoiser, Schedule]:
    """The prior D(z, σ, clip_text=) over √E-scaled embeddings: EDM preconditioning with σ_data = 1."""
    schedule = prior_schedule()
    net = PriorNet(cfg.embed_dim, cfg.prior_hidden, cfg.prior_depth)
    return PreconditionedDenoiser(net, Preconditioner("edm", 1.0, "log_sigma")), schedule


def build_decoder(cfg: UnclipConfig) -> tuple[PreconditionedDenoiser, Schedule]:
    """The decoder D(x, σ, clip_image=, clip_text=): the cond-unet of cfg.decoder around a DecoderNet."""
    mc = ModelConfig.from_dict(cfg.decoder)
    denoiser, schedule = build_denoiser(mc)
    denoiser.net = DecoderNet(denoiser.net, cfg.embed_dim)
    return denoiser, schedule


def _drop(v: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Rows of v (B, E) set to zero with probability p (the null conditioning of CFG)."""
    keep = (torch.rand(v.shape[0], generator=g) >= p).to(v)
    return v * keep[:, None]


def _fit(model, loss_fn, settings: LoopSettings, out: Path, config, resume: bool, progress: bool, desc: str,
         on_plan=None) -> torch.nn.Module:  # fmt: skip
    """Train `model` in `out` with training.core.fit (AdamW, EMA); returns the EMA weights' model."""
    from noisecraft.core.ema import EMA
    from noisecraft.training.core import adamw, fit

    ema = EMA(model, settings.ema_decay)
    fit(out, model, adamw(model, settings), loss_fn, settings, config, ema=ema, resume=resume, progress=progress,
        desc=desc, on_plan=on_plan)  # fmt: skip
    return ema.model


def train_prior(
    cfg: UnclipConfig, image_emb: Tensor, text_emb: list[Tensor], out: Path, resume: bool, progress: bool = True,
    on_plan=None,
) -> PreconditionedDenoiser:  # fmt: skip
    """Train the prior on (image_emb (N, E), text_emb[i] (K_i, E): the CLIP embeddings of item i's captions).
    `on_plan(steps)`: the config to keep once a time budget (prior_loop minutes) is planned into `steps`."""
    settings = LoopSettings(**cfg.prior_loop)
    torch.manual_seed(settings.seed)
    prior, schedule = build_prior(cfg)
    loss = DenoisingLoss(schedule, "edm")
    scale = math.sqrt(cfg.embed_dim)
    B = settings.batch

    def loss_fn(_step: int, g: torch.Generator) -> tuple[Tensor, int]:
        idx = torch.randint(0, len(image_emb), (B,), generator=g)
        pick = torch.rand(B, generator=g)
        t = torch.stack([pick_one(text_emb[i], u) for i, u in zip(idx.tolist(), pick.tolist())])  # (B, E)
        return loss(prior, image_emb[idx] * scale, generator=g, clip_text=_drop(t, cfg.prior_dropout, g)), B

    config = {"unclip": cfg.to_dict(), "part": "prior"}
    return _fit(prior, loss_fn, settings, out, config, resume, progress, "prior", on_plan)


def train_decoder(
    cfg: UnclipConfig, x: Tensor, image_emb: Tensor, text_emb: list[Tensor], out: Path, resume: bool,
    progress: bool = True, on_plan=None,
) -> PreconditionedDenoiser:  # fmt: skip
    """Train the decoder on x (N, ...) (latents or pixels) with their CLIP image and caption embeddings."""
    settings = LoopSettings(**cfg.decoder_loop)
    torch.manual_seed(settings.seed)
    decoder, schedule = build_decoder(cfg)
    mc = ModelConfig.from_dict(cfg.decoder)
    loss = DenoisingLoss(schedule, "native")
    if tuple(x.shape[1:]) != mc.shape:
        raise NoisecraftError(f"decoder data of shape {tuple(x.shape[1:])} does not match its config {mc.shape}")
    B = settings.batch

    def loss_fn(_step: int, g: torch.Generator) -> tuple[Tensor, int]:
        idx = torch.randint(0, len(x), (B,), generator=g)
        pick = torch.rand(B, generator=g)
        t = torch.stack([pick_one(text_emb[i], u) for i, u in zip(idx.tolist(), pick.tolist())])  # (B, E)
        img = _drop(image_emb[idx], cfg.image_dropout, g)
        return loss(decoder, x[idx], generator=g, clip_image=img, clip_text=_drop(t, cfg.text_dropout, g)), B

    config = {"unclip": cfg.to_dict(), "part": "decoder"}
    return _fit(decoder, loss_fn, settings, out, config, resume, progress, "decoder", on_plan)


def copy_clip(src: str | Path, run: Path) -> str:
    """Copy a train-clip folder into RUN/clip (the run then stands alone); a transformers folder is referenced."""
    from noisecraft.models.clip import CONFIG_NAME as CLIP_JSON
    from noisecraft.models.clip import WEIGHTS_NAME

    src = Path(src)
    if (src / CLIP_JSON).is_file():
        dst = run / "clip"
        dst.mkdir(parents=True, exist_ok=True)
        for name in (CLIP_JSON, WEIGHTS_NAME):
            shutil.copyfile(src / name, dst / name)
        return "clip"
    return str(src.resolve())


@dataclass
class Unclip:
    """A loaded unCLIP run: the CLIP, the prior and the decoder (EMA weights, eval mode) and their schedules."""

    config: UnclipConfig
    clip: Any
    prior: PreconditionedDenoiser
    prior_schedule: Schedule
    decoder: PreconditionedDenoiser
    decoder_schedule: Schedule
    folder: Path

    @property
    def decoder_shape(self) -> tuple[int, ...]:
        return ModelConfig.from_dict(self.config.decoder).shape


def read_config(run: str | Path) -> UnclipConfig:
    path = Path(run) / CONFIG_NAME
    try:
        d = json.loads(path.read_text())
        d.pop("_clip", None)  # where the CLIP lies (clip_of)
        return UnclipConfig.from_dict(d)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise NoisecraftError(f"unreadable {path}: {e}") from None


def clip_of(run: str | Path) -> str:
    """The CLIP folder an unCLIP run was trained with."""
    ref = json.loads((Path(run) / CONFIG_NAME).read_text()).get("_clip", "clip")
    return str(Path(run) / ref) if not Path(ref).is_absolute() else ref


def load_unclip(run: str | Path, device: str | torch.device = "cpu", clip: str | None = None, ema: bool = True):
    """Load an unCLIP run; `clip` overrides its CLIP (it must give embeddings of the run's width)."""
    from noisecraft.models.clip import load_clip

    run = Path(run)
    cfg = read_config(run)
    clip_model = load_clip(clip or clip_of(run), device)
    check_clip_width(clip_model, cfg.embed_dim, clip or clip_of(run))
    prior, ps = build_prior(cfg)
    decoder, ds = build_decoder(cfg)
    load_weights(run / "prior", prior, ema)
    load_weights(run / "decoder", decoder, ema)
    prior, decoder = (m.to(device).eval().requires_grad_(False) for m in (prior, decoder))
    return Unclip(cfg, clip_model, prior, ps, decoder, ds, run)


def check_clip_width(clip, embed_dim: int, name: str) -> None:
    """One-line error when a CLIP's embedding width differs from what the prior and decoder were trained on."""
    if int(clip.embed_dim) != embed_dim:
        raise NoisecraftError(
            f"the CLIP {name} gives {clip.embed_dim}-d embeddings but the unCLIP decoder was trained on {embed_dim}-d "
            "ones; use the CLIP the run was trained with (omit --clip)"
        )
