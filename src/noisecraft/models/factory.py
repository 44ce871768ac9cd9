"""The network choice as data: ``ModelConfig`` → ``build_denoiser(cfg)`` → (PreconditionedDenoiser, Schedule).

Defaults follow the convention of each schedule family (Karras et al. 2022, Table 1; diffusers):
discrete VP schedules (linear, scaled_linear, cosine, sigmoid) feed the network the timestep index
t ∈ [0, T−1] with σ_data = 1, so the weights are a valid diffusers DDPM U-Net;
continuous schedules (edm, ve, vp) feed
c_noise = ¼·ln σ with σ_data = 0.5.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.precond import NOISE_INPUTS, PARAMETERISATIONS, Preconditioner
from noisecraft.core.schedules import BETA_SCHEDULES, SCHEDULES, Schedule, make_schedule
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.typed_config import config_from_dict

ARCHS = ("mlp", "unet", "dit", "cond-unet")
TEXT_LAYOUTS = ("noisecraft", "sd")
PRESETS = ("nano", "tiny", "small", "guide-128", "auto")


def auto_preset(arch: str, resolution: int, num_images: int | None = None) -> str:
    """The network size for `preset="auto"`, for the U-Net: "nano" (~0.27M parameters) for fewer than 2000
    images of 32 px or less (a few hundred images do not fill more, and it takes a third of "tiny"'s time a
    step, so a time budget buys three times the steps); "small" (~6.5M) for 64 px or more and at least 2000
    images; "tiny" (~1.1M) between. Other networks: "tiny". "guide-128" is never chosen (a GPU job)."""
    if arch != "unet":
        return "tiny"
    many = num_images is None or num_images >= 2000
    if resolution >= 64 and many:
        return "small"
    if resolution <= 32 and not many:
        return "nano"
    return "tiny"


@dataclass
class ModelConfig:
    """What network to build and how it is wrapped into a denoiser.

    Args:
        arch: "unet" (diffusers UNet2DModel), "dit" (diffusers DiTTransformer2DModel), "mlp" (flat vectors) or
            "cond-unet" (diffusers UNet2DConditionModel, text-conditioned; see models/cond_unet.py).
        preset: "tiny", "small" or "guide-128" (the size of the network; see models/unet.py, models/dit.py), or
            "auto" (``auto_preset``; training resolves it from the data size and saves the choice).
        resolution: image side in pixels (unet/dit); for "mlp" the input is channels·resolution² values, so a
            2-D toy uses channels=2, resolution=1.
        channels: image channels (1 gray, 3 RGB); for "mlp" see resolution.
        num_classes: 0 for an unconditional model; otherwise labels 0..num_classes−1 plus a null label.
        parameterisation: what the network predicts: "eps", "x0", "v", "edm" or "score".
        schedule: a noise schedule name of noisecraft.core.schedules.SCHEDULES; schedule_kwargs go to it.
        sigma_data: data standard deviation for the preconditioning (None: 1.0 for discrete VP, else 0.5).
        noise_input: "t" or "log_sigma" (None: "t" for discrete VP schedules, else "log_sigma").
        net_kwargs: overrides of the preset's constructor keywords (e.g. {"layers_per_block": 1}).
        text_dim: width of the text encoder's token states (cond-unet only; 0: no text).
        text_layout: how cond-unet reads the text: "noisecraft" (padding masked out of cross-attention, the
            pooled vector added to the time embedding) or "sd" (as Stable Diffusion: cross-attention over every
            token, padding included, no pooled vector; what ``export --format sd`` needs).
        upsample_from: > 0 makes a super-resolution U-Net conditioned on the image at this lower resolution
            (models/upsampler.py, a cascade's second stage); aug_max: its training augmentation levels U(0, aug_max).
    """

    arch: str = "unet"
    preset: str = "tiny"
    resolution: int = 32
    channels: int = 1
    num_classes: int = 0
    parameterisation: str = "eps"
    schedule: str = "linear"
    schedule_kwargs: dict[str, Any] = field(default_factory=dict)
    sigma_data: float | None = None
    noise_input: str | None = None
    net_kwargs: dict[str, Any] = field(default_factory=dict)
    text_dim: int = 0
    text_layout: str = "noisecraft"
    upsample_from: int = 0
    aug_max: float = 0.5

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_choice("preset", self.preset, PRESETS)
        check_choice("parameterisation", self.parameterisation, PARAMETERISATIONS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("model.text_layout", self.text_layout, TEXT_LAYOUTS)
        if self.noise_input is not None:
            check_choice("noise_input", self.noise_input, NOISE_INPUTS)
        for name, lo in (("resolution", 1), ("channels", 1), ("num_classes", 0), ("text_dim", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise NoisecraftError(f"{name} must be an integer >= {lo}, got {v!r}")
        if (self.arch == "cond-unet") != (self.text_dim > 0):
            raise NoisecraftError("arch 'cond-unet' needs model.text_dim > 0 (set by --text), and only it takes text")
        if self.arch != "mlp" and self.channels not in (1, 3, 4):
            raise NoisecraftError(f"channels must be 1, 3 or 4 for arch {self.arch!r}, got {self.channels}")
        if self.sigma_data is not None and not (isinstance(self.sigma_data, int | float) and self.sigma_data > 0):
            raise NoisecraftError(f"sigma_data must be a positive number, got {self.sigma_data!r}")
        for name in ("schedule_kwargs", "net_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise NoisecraftError(f"{name} must be a mapping of keyword arguments")
            # tuples become lists, as JSON would make them, so a config equals its own round trip
            setattr(self, name, {k: list(v) if isinstance(v, tuple) else v for k, v in getattr(self, name).items()})
        if self.upsample_from:
            if self.arch != "unet" or self.num_classes or self.text_dim:
                raise NoisecraftError("a super-resolution model (upsample_from) is an unconditional unet (--arch unet)")
            if not 1 <= self.upsample_from < self.resolution or self.resolution % self.upsample_from:
                raise NoisecraftError(
                    f"upsample_from {self.upsample_from} must be a smaller divisor of the resolution {self.resolution}"
                )
            if not (isinstance(self.aug_max, int | float) and 0 <= self.aug_max < 100):
                raise NoisecraftError(f"aug_max must be a number in [0, 100), got {self.aug_max!r}")
        if self.resolved_noise_input == "t" and self.schedule == "edm":
            raise NoisecraftError("noise_input 't' with the edm schedule is σ itself; use noise_input 'log_sigma'")

    @property
    def discrete(self) -> bool:
        return self.schedule in BETA_SCHEDULES

    @property
    def resolved_sigma_data(self) -> float:
        if self.sigma_data is not None:
            return float(self.sigma_data)
        return 1.0 if self.discrete or self.schedule == "vp" else 0.5

    @property
    def resolved_noise_input(self) -> str:
        return self.noise_input or ("t" if self.discrete else "log_sigma")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W), or (channels·resolution²,) for the MLP."""
        if self.arch == "mlp":
            return (self.channels * self.resolution**2,)
        return (self.channels, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a dict (e.g. parsed JSON); unknown keys are an error naming the valid ones."""
        return config_from_dict(cls, d, "model")


class FlatMLP(nn.Module):
    """Lets the 2-D MLP serve any fixed shape by flattening (B, ...) → (B, D) and back."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        kw = {} if class_labels is None else {"class_labels": class_labels}
        return self.mlp(x.reshape(x.shape[0], -1), c_noise, **kw).reshape(x.shape)


MLP_PRESETS: dict[str, dict[str, int]] = {
    "nano": dict(hidden=64, depth=2, emb=32),
    "tiny": dict(hidden=128, depth=3, emb=64),
    "small": dict(hidden=256, depth=4, emb=128),
    "guide-128": dict(hidden=512, depth=6, emb=128),
}


def build_net(cfg: ModelConfig) -> nn.Module:
    """The bare network F(x_in, c_noise, class_labels=None) for `cfg`."""
    if cfg.preset == "auto":
        cfg = dataclasses.replace(cfg, preset=auto_preset(cfg.arch, cfg.resolution))
    if cfg.arch == "unet" and cfg.upsample_from:  # a cascade's super-resolution stage
        from noisecraft.models.upsampler import build_sr_unet

        return build_sr_unet(
            cfg.preset, cfg.resolution, cfg.channels, cfg.upsample_from, cfg.resolved_sigma_data, **cfg.net_kwargs
        )
    if cfg.arch == "unet":
        from noisecraft.models.unet import build_unet

        return build_unet(cfg.preset, cfg.resolution, cfg.channels, cfg.num_classes, **cfg.net_kwargs)
    if cfg.arch == "cond-unet":
        from noisecraft.models.cond_unet import build_cond_unet

        return build_cond_unet(
            cfg.preset, cfg.resolution, cfg.channels, cfg.text_dim, layout=cfg.text_layout, **cfg.net_kwargs
        )
    if cfg.arch == "dit":
        from noisecraft.models.dit import build_dit

        return build_dit(cfg.preset, cfg.resolution, cfg.channels, cfg.num_classes, **cfg.net_kwargs)
    from noisecraft.models.mlp import MLP

    try:
        mlp = MLP(dim=cfg.shape[0], num_classes=cfg.num_classes, **{**MLP_PRESETS[cfg.preset], **cfg.net_kwargs})
    except TypeError as e:
        raise NoisecraftError(f"bad mlp net_kwargs: {e}") from None
    return FlatMLP(mlp)


def build_schedule(cfg: ModelConfig) -> Schedule:
    return make_schedule(cfg.schedule, **cfg.schedule_kwargs)


def build_denoiser(cfg: ModelConfig) -> tuple[PreconditionedDenoiser, Schedule]:
    """Build the network of `cfg` and wrap it: D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise)."""
    schedule = build_schedule(cfg)
    precond = Preconditioner(cfg.parameterisation, cfg.resolved_sigma_data, cfg.resolved_noise_input, schedule)
    denoiser = PreconditionedDenoiser(build_net(cfg), precond)
    denoiser.config = cfg  # type: ignore[assignment]  # kept for export and checkpoints
    return denoiser, schedule
