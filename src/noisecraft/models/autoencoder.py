"""Latent space as a codec around the denoiser: the KL autoencoder of latent diffusion (Rombach et al. 2022).

A ``Codec`` maps data to the space the denoiser lives in and back: ``IdentityCodec`` for pixels, ``VAECodec``
for diffusers' ``AutoencoderKL``, with z = scaling_factor·(μ_enc(x) − shift) (the posterior mean: encoding is
deterministic) and x = decoder(z/scaling_factor + shift). The scaling factor makes the latents of the data
roughly unit-variance; it is computed from the data (1/std of the latents, as Stable Diffusion's 0.18215 was).
Latents are never clipped: samplers see whatever range the codec gives.

``train_vae`` trains an AutoencoderKL with a reconstruction term (L1 + MSE) and the KL term
KL(q(z|x) ‖ N(0, I)) weighted by ``kl_weight``, and writes a diffusers folder ``OUT/vae`` (loadable by
``AutoencoderKL.from_pretrained``) whose config carries the scaling factor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError, check_choice

# AutoencoderKL presets for a CPU: the factor is 2^(blocks − 1).
VAE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-f4": dict(  # 32×32×3 → 8×8×4, 0.68M parameters
        block_out_channels=(16, 32, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    ),
    "tiny-f8": dict(  # 32×32×3 → 4×4×4
        block_out_channels=(16, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    ),
}


class Codec(Protocol):
    """Data ↔ the denoiser's space. encode (B, C, H, W) → (B, c, h, w); decode inverts it (approximately)."""

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]: ...


class IdentityCodec:
    """Pixels: the denoiser works on the data itself."""

    fingerprint = "identity"

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)


class VAECodec:
    """An AutoencoderKL with its scaling factor (and shift): z = s·(μ(x) − shift), x̂ = decoder(z/s + shift)."""

    def __init__(self, vae: nn.Module, folder: Path | None = None):
        self.vae = vae.eval().requires_grad_(False)
        conf = vae.config
        self.scaling_factor = float(conf.scaling_factor)
        self.shift = float(getattr(conf, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(conf.block_out_channels) - 1)
        self.channels = int(conf.latent_channels)
        self.folder = folder

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights and the config (the latent cache's key part for this codec)."""
        h = hashlib.sha256(json.dumps(dict(self.vae.config), sort_keys=True, default=str).encode())
        for k, v in self.vae.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def to(self, device: str | torch.device) -> VAECodec:
        self.vae.to(device)
        return self

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        mean = self.vae.encode(x.to(self.device)).latent_dist.mean  # (B, c, h, w)
        return ((mean - self.shift) * self.scaling_factor).to(x.device)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z.to(self.device) / self.scaling_factor + self.shift).sample.to(z.device)

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = shape
        if h % self.factor or w % self.factor:
            raise NoisecraftError(f"image side {h}×{w} must divide by the autoencoder's factor {self.factor}")
        return (self.channels, h // self.factor, w // self.factor)


def vae_folder(path: str | Path) -> Path:
    """The diffusers AutoencoderKL folder of `path`: a train-vae run (its vae/), an SD folder (its vae/), or itself."""
    root = Path(path).expanduser()
    for cand in (root / "vae", root):
        conf = cand / "config.json"
        if conf.is_file():
            try:
                name = json.loads(conf.read_text()).get("_class_name")
            except json.JSONDecodeError:
                name = None
            if name == "AutoencoderKL":
                return cand
    raise NoisecraftError(
        f"{str(root)!r} is not an autoencoder: give a `noisecraft train-vae` folder or a diffusers AutoencoderKL "
        "folder (config.json with _class_name AutoencoderKL, or a vae/ subfolder)"
    )


_CODECS: dict[tuple[str, float], VAECodec] = {}


def load_codec(path: str | Path | None, device: str | torch.device = "cpu") -> Codec:
    """The codec of `path` (None: pixels). Loaded once per process and weights file."""
    if path is None:
        return IdentityCodec()
    folder = vae_folder(path)
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    key = (str(folder.resolve()), max((p.stat().st_mtime for p in weights), default=0.0))
    if key not in _CODECS:
        from diffusers import AutoencoderKL

        try:
            vae = AutoencoderKL.from_pretrained(folder)
        except (OSError, ValueError, TypeError) as e:
            raise NoisecraftError(f"cannot load the autoencoder in {str(folder)!r}: {e}") from None
        _CODECS.clear()
        _CODECS[key] = VAECodec(vae, folder)
    return _CODECS[key].to(device)


def latent_shape(path: str | Path, resolution: int) -> tuple[int, int, int]:
    """The latent shape of a resolution×resolution image under the autoencoder at `path` (config only)."""
    conf = json.loads((vae_folder(path) / "config.json").read_text())
    factor = 2 ** (len(conf["block_out_channels"]) - 1)
    if resolution % factor:
        raise NoisecraftError(f"resolution {resolution} must divide by the autoencoder's factor {factor}")
    return (int(conf["latent_channels"]), resolution // factor, resolution // factor)


# ----------------------------------------------------------------------------------------------------------
@dataclass
class VAEConfig:
    """A `noisecraft train-vae` run: the data, the AutoencoderKL preset and the optimisation.

    kl_weight: weight of KL(q(z|x) ‖ N(0, I)) (summed over latent entries, per image) against the reconstruction
    term (L1 + MSE, averaged over pixels). scale_items: how many items the scaling factor is computed from.
    """

    data: DataConfig = field(default_factory=lambda: DataConfig(source="scenes", channels=3))
    preset: str = "tiny-f4"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6
    seed: int = 0
    scale_items: int = 1024
    log_every: int = 50
    warmup_steps: int = 100
    checkpoint_every: int = 500
    minutes: float | None = None  # a time budget instead of `steps` (planned from the first timed steps)
    out_dir: str = "runs/vae"

    def __post_init__(self) -> None:
        check_choice("vae preset", self.preset, VAE_PRESETS)
        for name in ("steps", "batch_size", "scale_items", "log_every", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise NoisecraftError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0 or not self.kl_weight >= 0:
            raise NoisecraftError("lr must be positive and kl_weight non-negative")
        if self.data.latent is not None:
            raise NoisecraftError("an autoencoder trains on pixels: data.latent must be unset")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "data": self.data.to_dict()}


def build_vae(preset: str, channels: int, resolution: int) -> nn.Module:
    from diffusers import AutoencoderKL

    check_choice("vae preset", preset, VAE_PRESETS)
    return AutoencoderKL(in_channels=channels, out_channels=channels, sample_size=resolution, **VAE_PRESETS[preset])


def vae_loss(vae: nn.Module, x: Tensor, kl_weight: float, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample loss (B,): L1 + MSE of the reconstruction from a posterior sample, + kl_weight·KL."""
    post = vae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=generator, device=x.device, dtype=x.dtype)
    z = post.mean + post.std * eps
    rec = vae.decode(z).sample
    dims = list(range(1, x.ndim))
    recon = (rec - x).abs().mean(dims) + (rec - x).square().mean(dims)
    kl = 0.5 * (post.mean.square() + post.var - 1.0 - post.logvar).sum(list(range(1, z.ndim)))
    return recon + kl_weight * kl


@torch.no_grad()
def scaling_factor(vae: nn.Module, x: Tensor, batch: int = 256) -> float:
    """1 / std of the posterior means of `x` (B, C, H, W): the factor that makes the latents unit-variance."""
    means = torch.cat([vae.encode(x[i : i + batch]).latent_dist.mean for i in range(0, len(x), batch)])
    return float(1.0 / means.float().std().clamp(min=1e-8))


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [−1, 1] (peak-to-peak 2), after clamping to that range."""
    mse = (x.clamp(-1, 1) - y.clamp(-1, 1)).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-12))


def train_vae(
    cfg: VAEConfig, progress: bool = True, say=print, resume: bool = False, record: dict | None = None, on_plan=None
) -> Path:
    """Train the autoencoder of `cfg` and write OUT/vae (diffusers folder, with the scaling factor), OUT/vae.json
    (this config), and the run folder of training.core.fit (OUT/config.json, log.jsonl, checkpoints/), which
    `resume` continues. Returns the vae folder. record / on_plan: what OUT/config.json holds (default: cfg)."""
    import shutil

    from noisecraft.data.datasets import make_dataset
    from noisecraft.training.checkpoint import write_text_atomic
    from noisecraft.training.core import LoopSettings, fit

    out = Path(cfg.out_dir)
    if (out / "vae" / "config.json").is_file():
        raise NoisecraftError(f"{out} already holds a trained autoencoder: choose a new --out")
    data = make_dataset(dataclasses.replace(cfg.data, labels=False, captions=False))
    n = len(data)
    say(f"data: {n} items of shape {tuple(data.shape)} from {cfg.data.source}")
    xs = torch.stack([data[i]["x"] for i in range(n)])  # (N, C, H, W) in [−1, 1]
    torch.manual_seed(cfg.seed)
    vae = build_vae(cfg.preset, xs.shape[1], xs.shape[-1])
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, fused=True)

    def loss_fn(step: int, g: torch.Generator) -> tuple[Tensor, int]:
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        return vae_loss(vae, xs[idx], cfg.kl_weight, g), cfg.batch_size  # (B,)

    settings = LoopSettings(
        steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, grad_clip=1.0, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, keep_last=2, minutes=cfg.minutes, seed=cfg.seed,
    )  # fmt: skip
    record = record or {"trainer": "vae", "config": cfg.to_dict()}
    fit(out, vae, opt, loss_fn, settings, record, resume=resume, progress=progress, desc="train-vae",
        on_plan=on_plan, say=say)  # fmt: skip
    vae.eval()
    g = torch.Generator().manual_seed(cfg.seed)
    sub = xs[torch.randperm(n, generator=g)[: cfg.scale_items]]
    vae.register_to_config(scaling_factor=scaling_factor(vae, sub))
    with torch.no_grad():
        rec = torch.cat([vae(sub[i : i + 256]).sample for i in range(0, len(sub), 256)])
    say(f"autoencoder: scaling factor {vae.config.scaling_factor:.4f}; train PSNR {psnr(rec, sub).mean():.2f} dB")
    tmp = out / ".vae-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp)
    tmp.rename(out / "vae")
    write_text_atomic(out / "vae.json", json.dumps(cfg.to_dict(), indent=2))
    return out / "vae"
