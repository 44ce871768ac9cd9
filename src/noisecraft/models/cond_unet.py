"""diffusers' ``UNet2DConditionModel`` (the cross-attention U-Net of Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models") adapted to noisecraft's net contract for text conditioning.

The adapter is called as ``net(x_in, c_noise, text_states=, text_mask=, text_pooled=)``: the token states feed
cross-attention (``encoder_hidden_states``, padding masked out by ``encoder_attention_mask``) and the pooled
vector is projected and added to the time embedding (``class_embed_type="projection"``, as unCLIP/SDXL add a
pooled text vector). A text encoder attached as ``net.text_encoder`` lets callers pass ``prompt=`` (a string or
one per sample) instead: ``nc.load_run`` attaches the run's encoder. diffusers is imported inside the builder.

Layout "sd" (``model.text_layout``) reads text as Stable Diffusion's U-Net does: cross-attention over every token
state, padding included (no mask), and no pooled vector (no class embedding). A Stable-Diffusion folder's U-Net
loads into this layout unchanged, and a run trained in it exports to one (interop/stable_diffusion.py).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from noisecraft.errors import NoisecraftError, check_choice

# Presets: keyword arguments of UNet2DConditionModel, sized for a laptop CPU (latents of 8×8 or images of 32×32).
COND_UNET_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(  # ~2.5M parameters with a 384-d text encoder; cross-attention at both levels
        block_out_channels=(64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32,
        attention_head_dim=4,  # diffusers' legacy name: the number of heads
    ),
    "small": dict(  # three levels, two layers per block
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32,
        attention_head_dim=8,
    ),
}


class CondUNetNet(nn.Module):
    """F(x_in, c_noise, text) = UNet2DConditionModel(x_in, c_noise, text_states, text_mask, text_pooled).sample.

    x_in (B, C, H, W), c_noise (B,), text_states (B, T, D), text_mask (B, T) bool, text_pooled (B, D).
    ``self.unet`` is the plain diffusers module.
    """

    text_encoder: Any = None  # a noisecraft.models.text.TextEncoder, attached by load_run (not a submodule)

    def __init__(self, unet: nn.Module, text_dim: int, layout: str = "noisecraft"):
        super().__init__()
        self.unet = unet
        self.text_dim = text_dim
        self.layout = layout  # "noisecraft": masked cross-attention + pooled vector; "sd": neither

    def forward(
        self,
        x: Tensor,
        c_noise: Tensor,
        text_states: Tensor | None = None,
        text_mask: Tensor | None = None,
        text_pooled: Tensor | None = None,
        prompt: str | list[str] | None = None,
    ) -> Tensor:
        if prompt is not None:
            if self.text_encoder is None:
                raise NoisecraftError("prompt= needs a text encoder: load the model with nc.load_run")
            prompts = [prompt] * x.shape[0] if isinstance(prompt, str) else list(prompt)
            if len(prompts) != x.shape[0]:
                raise NoisecraftError(f"give one prompt or one per sample ({x.shape[0]}), got {len(prompts)}")
            t = self.text_encoder.encode(prompts, device=x.device)
            text_states, text_mask, text_pooled = t["text_states"], t["text_mask"], t["text_pooled"]
        sd = self.layout == "sd"
        if text_states is None or (text_pooled is None and not sd):
            raise NoisecraftError(
                "this model is text-conditioned: pass prompt='...' or text_states/text_mask/text_pooled"
            )
        dtype = x.dtype
        if sd:  # Stable Diffusion: every token state attended, no pooled vector
            return self.unet(x, c_noise, encoder_hidden_states=text_states.to(dtype)).sample
        return self.unet(
            x,
            c_noise,
            encoder_hidden_states=text_states.to(dtype),
            encoder_attention_mask=text_mask,
            class_labels=text_pooled.to(dtype),
        ).sample


def build_cond_unet(
    preset: str = "tiny",
    resolution: int = 8,
    channels: int = 4,
    text_dim: int = 384,
    layout: str = "noisecraft",
    **overrides: Any,
) -> CondUNetNet:
    """Build a UNet2DConditionModel from a preset (COND_UNET_PRESETS); `overrides` replace preset keywords.

    layout "sd" leaves out the pooled-vector projection (Stable Diffusion's U-Net has none)."""
    check_choice("cond-unet preset", preset, COND_UNET_PRESETS)
    if not isinstance(text_dim, int) or text_dim < 1:
        raise NoisecraftError(f"arch 'cond-unet' needs model.text_dim >= 1 (the text encoder's width), got {text_dim}")
    kwargs = {**COND_UNET_PRESETS[preset], **overrides}
    mult = 2 ** (len(kwargs["block_out_channels"]) - 1)
    if resolution % mult:
        raise NoisecraftError(
            f"resolution {resolution} does not suit cond-unet preset {preset!r}: it must be a multiple of {mult}"
        )
    from diffusers import UNet2DConditionModel  # heavy: lazy

    pooled = (
        {} if layout == "sd" else dict(class_embed_type="projection", projection_class_embeddings_input_dim=text_dim)
    )
    try:
        unet = UNet2DConditionModel(
            sample_size=resolution,
            in_channels=channels,
            out_channels=channels,
            cross_attention_dim=text_dim,
            **pooled,
            **kwargs,
        )
    except (TypeError, ValueError) as e:
        raise NoisecraftError(f"bad cond-unet configuration for preset {preset!r}: {e}") from None
    return CondUNetNet(unet, text_dim, layout)


def attach_text_encoder(denoiser: nn.Module, encoder: Any) -> nn.Module:
    """Let `denoiser` (a PreconditionedDenoiser around a CondUNetNet) take ``prompt=``; returns it."""
    net = getattr(denoiser, "net", None)
    if not isinstance(net, CondUNetNet):
        raise NoisecraftError("only a text-conditioned model (arch cond-unet) takes a text encoder")
    object.__setattr__(net, "text_encoder", encoder)  # a plain attribute: not in the state dict
    return denoiser
