"""diffusers' ``UNet2DModel`` (Ho et al. 2020's DDPM U-Net) adapted to noisecraft's net contract.

The adapter calls the U-Net as ``net(x_in, c_noise, class_labels=None) -> F``; ``PreconditionedDenoiser``
supplies c_in·x and c_noise (the DDPM timestep index for discrete VP schedules, ¼·ln σ for EDM), so the
same U-Net weights load unchanged into a diffusers pipeline. diffusers is imported only inside the builder.

Class conditioning uses UNet2DModel's ``num_class_embeds``: the table has num_classes + 1 rows and the last
row (index num_classes) is the null label that classifier-free guidance drops labels to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError, check_choice

# Presets: keyword arguments of UNet2DModel. "tiny" and "small" train on a laptop CPU; "guide-128" is the
# six-block 128-pixel configuration of the diffusers training guide.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(  # ~0.27M parameters, no attention: 3x faster a step than "tiny"; the auto choice for a few
        # hundred images of 32 px or less, where a CPU budget buys steps rather than width
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ),
    "tiny": dict(  # ~1.1M parameters, no attention
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=16,
    ),
    "small": dict(  # ~6.5M parameters, self-attention at the lowest resolution only
        block_out_channels=(64, 128, 128),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
        attention_head_dim=32,
    ),
    "guide-128": dict(  # ~114M parameters
        block_out_channels=(128, 128, 256, 256, 512, 512),
        layers_per_block=2,
        down_block_types=(
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
}


class UNetNet(nn.Module):
    """F(x_in, c_noise, class_labels) = UNet2DModel(x_in, c_noise, class_labels).sample.

    x_in (B, C, H, W), c_noise (B,), class_labels (B,) int64 or None (None → the null label when the U-Net
    is class-conditional). ``self.unet`` is the plain diffusers module, exported as is.
    """

    def __init__(self, unet: nn.Module, num_classes: int = 0):
        super().__init__()
        self.unet = unet
        self.num_classes = num_classes

    @property
    def null_label(self) -> int | None:
        """The class index that means "no label" (classifier-free guidance), or None if unconditional."""
        return self.num_classes if self.num_classes else None

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            class_labels = torch.as_tensor(class_labels, device=x.device).long().reshape(x.shape[0])
        elif class_labels is not None:
            raise NoisecraftError("class_labels given to an unconditional U-Net; build it with num_classes > 0")
        return self.unet(x, c_noise, class_labels=class_labels).sample


def min_resolution_multiple(preset_kwargs: dict[str, Any]) -> int:
    """The U-Net halves the resolution once per down block except the last: side must divide by 2^(n−1)."""
    return 2 ** (len(preset_kwargs["block_out_channels"]) - 1)


def build_unet(
    preset: str = "tiny", resolution: int = 32, channels: int = 3, num_classes: int = 0, **overrides: Any
) -> UNetNet:
    """Build a UNet2DModel from a preset (UNET_PRESETS) and wrap it; `overrides` replace preset keywords."""
    check_choice("unet preset", preset, UNET_PRESETS)
    kwargs = {**UNET_PRESETS[preset], **overrides}
    mult = min_resolution_multiple(kwargs)
    if resolution % mult:
        raise NoisecraftError(
            f"resolution {resolution} does not suit unet preset {preset!r}: it must be a multiple of {mult}"
        )
    from diffusers import UNet2DModel  # heavy: lazy

    try:
        unet = UNet2DModel(
            sample_size=resolution,
            in_channels=channels,
            out_channels=channels,
            num_class_embeds=num_classes + 1 if num_classes else None,
            **kwargs,
        )
    except (TypeError, ValueError) as e:
        raise NoisecraftError(f"bad unet configuration for preset {preset!r}: {e}") from None
    return UNetNet(unet, num_classes)
