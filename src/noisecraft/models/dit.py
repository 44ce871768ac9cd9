"""diffusers' ``DiTTransformer2DModel`` (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers")
adapted to noisecraft's net contract, working directly on pixels (patchified), as a second backbone.

DiT conditions every block through adaLN-Zero on (timestep embedding + label embedding). Its label table has
num_classes + 1 rows; the last row (index num_classes) is the null label, used for unconditional models and
for classifier-free guidance. diffusers' own random label dropout is switched off (it draws from the global
RNG, which would break resume exactness): the trainer drops labels itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError, check_choice

DIT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=4, num_attention_heads=4, attention_head_dim=32, patch_size=2),  # ~1.4M parameters
    "small": dict(num_layers=6, num_attention_heads=6, attention_head_dim=32, patch_size=2),  # ~4.6M
    "guide-128": dict(num_layers=12, num_attention_heads=12, attention_head_dim=64, patch_size=8),  # DiT-B/8, ~138M
}


class DiTNet(nn.Module):
    """F(x_in, c_noise, class_labels) = DiT(x_in, c_noise, class_labels).sample.

    x_in (B, C, H, W), c_noise (B,), class_labels (B,) or None (→ the null label).
    """

    def __init__(self, dit: nn.Module, num_classes: int = 0):
        super().__init__()
        self.dit = dit
        self.num_classes = num_classes
        self._null = max(num_classes, 1)  # the label table has max(num_classes, 1) + 1 rows

    @property
    def null_label(self) -> int | None:
        return self.num_classes if self.num_classes else None

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if class_labels is None:
            class_labels = torch.full((x.shape[0],), self._null, dtype=torch.long, device=x.device)
        elif not self.num_classes:
            raise NoisecraftError("class_labels given to an unconditional DiT; build it with num_classes > 0")
        class_labels = torch.as_tensor(class_labels, device=x.device).long().reshape(x.shape[0])
        return self.dit(x, timestep=c_noise, class_labels=class_labels).sample


def build_dit(
    preset: str = "tiny", resolution: int = 32, channels: int = 3, num_classes: int = 0, **overrides: Any
) -> DiTNet:
    """Build a pixel-space DiT from a preset (DIT_PRESETS); `overrides` replace preset keywords."""
    check_choice("dit preset", preset, DIT_PRESETS)
    kwargs = {**DIT_PRESETS[preset], **overrides}
    if resolution % kwargs["patch_size"]:
        raise NoisecraftError(
            f"resolution {resolution} must be a multiple of the DiT patch size {kwargs['patch_size']}"
        )
    from diffusers import DiTTransformer2DModel  # heavy: lazy

    try:
        dit = DiTTransformer2DModel(
            in_channels=channels,
            out_channels=channels,
            sample_size=resolution,
            num_embeds_ada_norm=max(num_classes, 1),
            **kwargs,
        )
    except (TypeError, ValueError) as e:
        raise NoisecraftError(f"bad dit configuration for preset {preset!r}: {e}") from None
    for module in dit.modules():  # label dropout belongs to the trainer, with its own seeded RNG
        if hasattr(module, "token_drop") and hasattr(module, "dropout_prob"):
            module.dropout_prob = 0.0
    return DiTNet(dit, num_classes)
