"""The typed data configuration: where the images come from and how they are prepared.

A ``DataConfig`` is plain data (it round-trips through JSON beside every checkpoint); ``make_dataset(cfg)``
in ``noisecraft.data.datasets`` turns it into a torch Dataset. Validation happens at construction, so a bad
value fails at once with a one-line NoisecraftError instead of hours into a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.typed_config import config_from_dict

BUILTINS = ("digits", "fashion-mnist", "scenes")
CROPS = ("center", "random")
RESIZE_FILTERS = ("lanczos", "bicubic", "bilinear", "box", "nearest")


def source_kind(source: str) -> str:
    """Classify a source string: "builtin", "toy", "hf" or "folder"."""
    if source in BUILTINS:
        return "builtin"
    if source.startswith("toy:"):
        return "toy"
    if source.startswith("hf:"):
        return "hf"
    return "folder"


@dataclass
class DataConfig:
    """Where the training images come from and how each one is turned into a tensor.

    Args:
        source: "digits" (scikit-learn 8x8 digits), "fashion-mnist" (IDX files), "scenes" (captioned two-item
            scenes built from Fashion-MNIST, see noisecraft.data.scenes), "toy:<name>" (2-D toys of
            noisecraft.data.toys), "hf:<dataset name or saved-to-disk path>", or a folder of images.
        resolution: output side length in pixels (images are resized so the short side matches, then
            cropped square). Ignored for toy sources.
        channels: 1 (grayscale) or 3 (RGB); palettes are expanded.
        background: what transparent pixels (RGBA, LA, palette with a transparent index) are composited onto:
            "white", "black", any colour name or "#rrggbb" Pillow knows, or "R,G,B" (0..255).
        holdout: a folder's fraction of images kept out of training, for the periodic FD/KID against the
            user's own images: a file is held out when a hash of its path relative to the folder falls below
            it (stable as files come and go). None: 0.1 for a folder of at least 100 images when training
            starts, else 0.
        labels: return an int64 "label" per item (folder: subfolder names; hf: the `label_column`).
        captions: return a str "caption" per item (folder: sidecar .txt or metadata.jsonl;
            hf: `caption_column`).
        flip: random horizontal flip (deterministic given seed, epoch and index).
        crop: "center" or "random" square crop after resizing the short side.
        resize_filter: Pillow resampling filter used for resizing.
        max_bad_fraction: the largest fraction of unreadable files skipped before a NoisecraftError.
        scan: decode every file once before training and report bad files by path.
        max_pixels: decompression-bomb guard: images with more pixels than this are refused.
        seed: seed of the random transforms (random crop, flip).
        split: split of an hf dataset; image_column/label_column/caption_column name its columns
            (None: guess "image"/"img", "label"/"labels", "text"/"caption").
        path: where the fashion-mnist IDX files live (None: $NOISECRAFT_FASHION_MNIST or the Debian path).
        toy_size: number of points of a toy source.
        limit: use only the first `limit` items (None: all).
        scenes_size: number of images of the "scenes" source.
        latent: an autoencoder (a `noisecraft train-vae` folder or a diffusers AutoencoderKL folder): items are
            its scaled latents instead of pixels, encoded once into an on-disk cache (data/latent_cache.py).
    """

    source: str = "digits"
    resolution: int = 32
    channels: int = 1
    background: str = "white"
    holdout: float | None = None
    labels: bool = False
    captions: bool = False
    flip: bool = False
    crop: str = "center"
    resize_filter: str = "lanczos"
    max_bad_fraction: float = 0.01
    scan: bool = False
    max_pixels: int = 64_000_000
    seed: int = 0
    split: str = "train"
    image_column: str | None = None
    label_column: str | None = None
    caption_column: str | None = None
    path: str | None = None
    toy_size: int = 10_000
    limit: int | None = None
    scenes_size: int = 10_000
    latent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise NoisecraftError(
                "data source must be a non-empty string: digits, fashion-mnist, toy:<name>, hf:<name> or a folder path"
            )
        if source_kind(self.source) == "toy":
            from noisecraft.data.toys import TOYS

            check_choice("toy dataset", self.source[4:], TOYS)
        if source_kind(self.source) == "hf" and len(self.source) <= 3:
            raise NoisecraftError(
                "data source 'hf:' needs a dataset name or path, e.g. hf:huggan/smithsonian_butterflies_subset"
            )
        _int("resolution", self.resolution, 1, 4096)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise NoisecraftError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        parse_colour(self.background)
        if self.holdout is not None and (
            not isinstance(self.holdout, int | float) or isinstance(self.holdout, bool) or not 0 <= self.holdout < 1
        ):
            raise NoisecraftError(f"holdout must be a fraction in [0, 1), got {self.holdout!r}")
        for name in ("labels", "captions", "flip", "scan"):
            if not isinstance(getattr(self, name), bool):
                raise NoisecraftError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_choice("crop", self.crop, CROPS)
        check_choice("resize_filter", self.resize_filter, RESIZE_FILTERS)
        if not isinstance(self.max_bad_fraction, int | float) or not 0 <= self.max_bad_fraction <= 1:
            raise NoisecraftError(f"max_bad_fraction must be a number in [0, 1], got {self.max_bad_fraction!r}")
        _int("max_pixels", self.max_pixels, 1, None)
        _int("seed", self.seed, 0, None)
        _int("toy_size", self.toy_size, 1, None)
        if self.limit is not None:
            _int("limit", self.limit, 1, None)
        _int("scenes_size", self.scenes_size, 1, None)
        if self.latent is not None and (not isinstance(self.latent, str) or not self.latent):
            raise NoisecraftError(f"latent must be an autoencoder folder path or null, got {self.latent!r}")
        if self.captions and source_kind(self.source) in ("builtin", "toy") and self.source != "scenes":
            raise NoisecraftError(
                f"captions=True needs a folder or hf source (or scenes); {self.source!r} has no captions"
            )
        if self.labels and source_kind(self.source) == "toy" and self.source[4:] not in ("8gaussians", "gmm"):
            raise NoisecraftError(
                "labels=True on a toy source needs toy:8gaussians or toy:gmm (mixtures with components)"
            )

    @property
    def kind(self) -> str:
        return source_kind(self.source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Build from a dict (e.g. parsed JSON); unknown keys are an error naming the valid ones."""
        return config_from_dict(cls, d, "data")


def parse_colour(text: str) -> tuple[int, int, int]:
    """A background colour as (R, G, B): "white", "black", a colour name or "#rrggbb" Pillow knows, or "R,G,B"."""
    if not isinstance(text, str) or not text:
        raise NoisecraftError(f"background must be a colour such as white, black, #336699 or 40,40,40; got {text!r}")
    if "," in text:
        parts = text.split(",")
        try:
            rgb = tuple(int(p) for p in parts)
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise NoisecraftError(f"background {text!r}: give three integers 0..255 as R,G,B, e.g. 40,40,40")
        return rgb  # type: ignore[return-value]
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise NoisecraftError(
            f"background {text!r} is not a colour: use white, black, a colour name, #rrggbb or R,G,B"
        ) from None
    return rgb[:3]  # type: ignore[return-value]


def _int(name: str, value: Any, lo: int, hi: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise NoisecraftError(f"{name} must be an integer {rng}, got {value!r}")
