"""``make_dataset(cfg)``: the one entry point from a DataConfig to a torch Dataset.

Every dataset yields dict items {"x": float32 (C, H, W) in [−1, 1] (or (2,) for toy sources),
"label": int64 scalar (when cfg.labels), "caption": str (when cfg.captions)} and has ``num_classes``,
``class_names``, ``shape`` and ``set_epoch(epoch)`` (which selects the deterministic random crops/flips).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from noisecraft.data.config import DataConfig


def make_dataset(cfg: DataConfig) -> Dataset:
    """Build the dataset described by `cfg` (see DataConfig for the sources)."""
    if cfg.latent is not None:
        from noisecraft.data.latent_cache import LatentDataset

        return LatentDataset(cfg)
    kind = cfg.kind
    if cfg.source == "scenes":
        from noisecraft.data.scenes import ScenesDataset

        return ScenesDataset(cfg)
    if kind == "toy":
        from noisecraft.data.builtin import ToyDataset

        return ToyDataset(cfg)
    if kind == "builtin":
        from noisecraft.data.builtin import digits_dataset, fashion_mnist_dataset

        return digits_dataset(cfg) if cfg.source == "digits" else fashion_mnist_dataset(cfg)
    if kind == "hf":
        from noisecraft.data.hf import HFDataset

        return HFDataset(cfg)
    from noisecraft.data.folder import FolderDataset

    return FolderDataset(cfg)
