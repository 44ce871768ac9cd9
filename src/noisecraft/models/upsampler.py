"""A diffusion super-resolution model, the second stage of a cascade (Ho et al. 2021, "Cascaded Diffusion
Models for High Fidelity Image Generation"; Saharia et al. 2021, SR3).

The denoiser of the high-resolution image x (B, C, H, W) is conditioned on a low-resolution image
low (B, C, h, w) with H = f·h:

    D(x, σ, low=z, aug_sigma=s) → x̂0,    z = low + s·ε   (Gaussian conditioning augmentation, Ho et al. Sec. 3.2)

The network (``SRNet``) sees the channel concatenation [c_in·x, a(s)·up(z)] (up: bilinear to H×W; a(s) =
σ_d/√(σ_d² + s²) keeps the augmented image's scale), and the augmentation level s through the U-Net's class
embedding of "timestep" type (a sinusoidal embedding of 250·ln(1 + s/σ_d), 0 at s = 0). Training draws s ~ U(0,
aug_max) for each image (``training_condition``); at sampling s is an input (``noisecraft upscale --aug``):
a small s > 0 makes the upsampler forgive the base model's artefacts, s = 0 trusts the low image as it is
(``augment(low, 0)`` is the identity, bit for bit). The low image is made from x by area averaging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from noisecraft.errors import NoisecraftError


def downsample(x: Tensor, low_res: int) -> Tensor:
    """(B, C, H, W) → (B, C, low_res, low_res) by area averaging (H must be a multiple of low_res)."""
    side = x.shape[-1]
    if side % low_res:
        raise NoisecraftError(f"resolution {side} is not a multiple of the low resolution {low_res}")
    return F.avg_pool2d(x, side // low_res) if side != low_res else x


def upsample(low: Tensor, side: int) -> Tensor:
    """(B, C, h, w) → (B, C, side, side), bilinear."""
    if low.shape[-1] == side:
        return low
    return F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)


def augment(low: Tensor, aug_sigma: Tensor | float, generator=None) -> Tensor:
    """z = low + s·ε, one level s per image (scalar or (B,)) and ε from `generator` (one generator, or one per
    image as the samplers take them); s = 0 returns `low` itself."""
    s = torch.as_tensor(aug_sigma, dtype=low.dtype, device=low.device).reshape(-1)
    if not bool((s == 0).all()):
        if isinstance(generator, list | tuple):  # one generator per image: independent of the batch
            eps = torch.stack([torch.randn(low.shape[1:], generator=g, dtype=low.dtype) for g in generator])
        else:
            eps = torch.randn(low.shape, generator=generator, dtype=low.dtype)
        low = low + s.reshape(-1, *([1] * (low.ndim - 1))) * eps.to(low.device)
    return low


def training_condition(x0: Tensor, low_res: int, aug_max: float, generator: torch.Generator) -> dict[str, Tensor]:
    """The conditioning of a training batch x0 (B, C, H, W): its area-downsampled image, augmented with a level
    s ~ U(0, aug_max) per image. Returns {"low": z (B, C, low_res, low_res), "aug_sigma": s (B,)}."""
    low = downsample(x0, low_res)
    s = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64) * aug_max  # (B,)
    eps = torch.randn(low.shape, generator=generator, dtype=low.dtype).to(low.device)
    s_dev = s.to(device=low.device, dtype=low.dtype)
    return {"low": low + s_dev.reshape(-1, 1, 1, 1) * eps, "aug_sigma": s.to(low.device)}


class SRNet(nn.Module):
    """F(x_in, c_noise, low, aug_sigma): a UNet2DModel on [x_in, a(s)·up(low)] (2C channels in, C out), with the
    augmentation level s embedded as the U-Net's "timestep"-type class embedding."""

    def __init__(self, unet: nn.Module, low_res: int, sigma_data: float):
        super().__init__()
        self.unet = unet
        self.low_res = low_res
        self.sigma_data = sigma_data

    @property
    def high_res(self) -> int:
        return int(self.unet.config.sample_size)

    def forward(self, x: Tensor, c_noise: Tensor, low: Tensor | None = None, aug_sigma: Tensor | float = 0.0) -> Tensor:
        if low is None:
            raise NoisecraftError(
                "a super-resolution model needs its low-resolution image: use `noisecraft upscale RUN IMAGE`, or "
                "`noisecraft sample BASE_RUN --upscale RUN`"
            )
        b, c, side = x.shape[0], x.shape[1], x.shape[-1]
        if tuple(low.shape[1:]) != (c, self.low_res, self.low_res):
            raise NoisecraftError(
                f"the upsampler takes {c}x{self.low_res}x{self.low_res} images, got {'x'.join(map(str, low.shape[1:]))}"
            )
        s = torch.as_tensor(aug_sigma, dtype=torch.float64, device=x.device).reshape(-1).expand(b)  # (B,)
        scale = (self.sigma_data / torch.sqrt(self.sigma_data**2 + s**2)).to(x.dtype)
        cond = scale.reshape(-1, 1, 1, 1) * upsample(low.to(x.dtype), side)  # (B, C, H, W)
        c_aug = (250.0 * torch.log1p(s / self.sigma_data)).to(x.dtype)  # (B,), 0 at s = 0
        return self.unet(torch.cat([x, cond], 1), c_noise, class_labels=c_aug).sample


def build_sr_unet(
    preset: str, resolution: int, channels: int, low_res: int, sigma_data: float, **overrides: Any
) -> SRNet:
    """The U-Net of UNET_PRESETS[preset] (with `overrides`) taking 2·channels inputs, wrapped as an SRNet."""
    from noisecraft.models.unet import UNET_PRESETS, min_resolution_multiple

    if not 1 <= low_res < resolution or resolution % low_res:
        raise NoisecraftError(
            f"upsample_from {low_res} must be a smaller divisor of the resolution {resolution} (e.g. 16 for 32)"
        )
    kwargs = {**UNET_PRESETS[preset], **overrides}
    if resolution % min_resolution_multiple(kwargs):
        raise NoisecraftError(f"resolution {resolution} does not suit unet preset {preset!r}")
    from diffusers import UNet2DModel

    try:
        unet = UNet2DModel(
            sample_size=resolution, in_channels=2 * channels, out_channels=channels, class_embed_type="timestep",
            **kwargs,
        )  # fmt: skip
    except (TypeError, ValueError) as e:
        raise NoisecraftError(f"bad unet configuration for preset {preset!r}: {e}") from None
    return SRNet(unet, low_res, sigma_data)


@torch.no_grad()
def upscale(
    denoiser,
    schedule,
    low: Tensor,
    seeds: Sequence[int],
    *,
    aug_sigma: float = 0.0,
    sampler: str = "heun",
    steps: int = 20,
    spacing: str | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> Tensor:
    """Super-resolve `low` (N, C, h, w) in [−1, 1] with an SR run's denoiser: sample i uses seed seeds[i] for
    both its augmentation noise and its sampler noise (so it is the same in any batch). Returns (N, C, H, W)."""
    from noisecraft.sampling.generate import generate

    net = getattr(denoiser, "net", denoiser)  # an SRNet inside a PreconditionedDenoiser, or an oracle (low_res,
    if not (hasattr(net, "low_res") and hasattr(net, "high_res")):  # high_res) taking low= and aug_sigma= itself
        raise NoisecraftError("this run is not a super-resolution model (train one with --upsample-from)")
    if low.ndim != 4 or low.shape[-1] != net.low_res or low.shape[-2] != net.low_res:
        shape = "x".join(map(str, low.shape[-2:]))
        raise NoisecraftError(f"the upsampler takes {net.low_res}x{net.low_res} images, got {shape}: resize it first")
    if not (math.isfinite(aug_sigma) and aug_sigma >= 0):
        raise NoisecraftError(f"the augmentation level must be a number >= 0, got {aug_sigma}")
    gens = [torch.Generator().manual_seed(int(s) * 2 + 1) for s in seeds]  # not the sampler's streams
    z = augment(low.float(), aug_sigma, gens)  # (N, C, h, w)
    side = net.high_res
    cond = {"low": z, "aug_sigma": torch.full((len(z),), float(aug_sigma), dtype=torch.float64)}
    return generate(denoiser, schedule, (low.shape[1], side, side), list(seeds), sampler=sampler, steps=steps,
                    spacing=spacing, batch_size=batch_size, cond=cond, device=device)  # fmt: skip
