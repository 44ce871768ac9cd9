"""A dataset of encoded items: the on-disk latent cache of latent diffusion (Rombach et al. 2022).

``LatentDataset(cfg)`` builds the pixel dataset of `cfg` (with ``latent`` unset), encodes every item once with
the codec at ``cfg.latent`` and keeps the latents in safetensors shards under

    $NOISECRAFT_CACHE (default ~/.cache/noisecraft)/latents/<key>/shard-00000.safetensors ...

The key is a sha256 of the data config (minus the latent field) and of the codec's weights and config, so a
change to either gives a new cache, and every later run on the same data and autoencoder reuses it. Each shard
is written to a temporary file and renamed into place, so a kill at any moment leaves only whole shards; the
next run keeps those and encodes the rest (resumable). ``done.json`` marks a finished cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError

CACHE_ENV = "NOISECRAFT_CACHE"
SHARD = 1024  # items per shard


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "noisecraft") / "latents"


def cache_key(pixel_cfg: DataConfig, codec_fingerprint: str) -> str:
    d = pixel_cfg.to_dict()
    d.pop("latent", None)
    d.pop("flip", None)  # flips are applied to batches, not stored
    blob = json.dumps({"data": d, "codec": codec_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:05d}.safetensors"


def build_latents(
    pixels: Any, codec: Any, folder: Path, shard: int = SHARD, batch: int = 128, say=print, progress: bool = False
) -> Tensor:
    """Encode every item of `pixels` into shards under `folder` (keeping whole shards already there): (N, c, h, w)."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from noisecraft.training.checkpoint import fsync_dir, fsync_file

    folder.mkdir(parents=True, exist_ok=True)
    n = len(pixels)
    parts: list[Tensor] = []
    kept = 0
    shards = range((n + shard - 1) // shard)
    for k in tqdm(shards, disable=not progress, desc="encode latents", leave=False):
        lo, hi = k * shard, min(n, (k + 1) * shard)
        path = _shard_path(folder, k)
        z = None
        if path.is_file():
            try:
                z = load_file(str(path))["z"]
                if len(z) != hi - lo:
                    z = None
                else:
                    kept += 1
            except Exception:  # a damaged shard is encoded again
                z = None
        if z is None:
            xs = [torch.stack([pixels[i]["x"] for i in range(a, min(hi, a + batch))]) for a in range(lo, hi, batch)]
            z = torch.cat([codec.encode(x) for x in xs]).float().cpu().contiguous()
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({"z": z}, str(tmp))
            fsync_file(tmp)
            os.replace(tmp, path)
            fsync_dir(folder)
        parts.append(z)
    if kept:
        say(f"latents: reused {kept} of {len(shards)} cached shard(s) in {folder}")
    (folder / "done.json").write_text(json.dumps({"items": n, "shape": list(parts[0].shape[1:]), "shard": shard}))
    return torch.cat(parts)


class LatentDataset(Dataset):
    """Items {"x": scaled latent (c, h, w), "label"?, "caption"?} of the pixel dataset of `cfg` (see module doc)."""

    def __init__(self, cfg: DataConfig, say=print, shard: int = SHARD):
        from noisecraft.data.datasets import make_dataset
        from noisecraft.models.autoencoder import load_codec

        if cfg.latent is None:
            raise NoisecraftError("LatentDataset needs data.latent: an autoencoder folder")
        self.cfg = cfg
        pixel_cfg = dataclasses.replace(cfg, latent=None, flip=False)
        self.pixels = make_dataset(pixel_cfg)
        self.codec = load_codec(cfg.latent)
        self.folder = cache_root() / cache_key(pixel_cfg, self.codec.fingerprint)
        self.latents = build_latents(self.pixels, self.codec, self.folder, shard, say=say)  # (N, c, h, w)
        self.num_classes = getattr(self.pixels, "num_classes", 0)
        self.class_names = getattr(self.pixels, "class_names", [])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.latents.shape[1:])

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.pixels, "set_epoch"):
            self.pixels.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"x": self.latents[index]}
        if self.cfg.labels:
            item["label"] = torch.tensor(self.pixels.label(index), dtype=torch.int64)
        if self.cfg.captions:
            item["caption"] = self.pixels.caption(index)
        return item

    def caption_choices(self, index: int) -> list[str]:
        return caption_choices(self.pixels, index)


def caption_choices(dataset: Any, index: int) -> list[str]:
    """The captions item `index` may be trained with (one is drawn per step): several for scenes, else one."""
    if hasattr(dataset, "caption_choices"):
        return dataset.caption_choices(index)
    if hasattr(dataset, "caption"):
        return [dataset.caption(index)]
    raise NoisecraftError("this dataset has no captions: text conditioning needs scenes, or captioned images")
