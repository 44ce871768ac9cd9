"""Hugging Face ``datasets`` as a source: a hub name (e.g. the guide's huggan/smithsonian_butterflies_subset)
or a local dataset (a folder written by ``Dataset.save_to_disk``, or any folder ``load_dataset`` reads).

Images are read undecoded from the Arrow table and opened by noisecraft's own guarded loader (allow-listed
formats, pixel limit), so a bad row is skipped and counted like a bad file in a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from noisecraft.data.config import DataConfig
from noisecraft.data.images import ImageDataset
from noisecraft.data.transforms import BadImage, open_image
from noisecraft.errors import NoisecraftError

IMAGE_COLUMNS = ("image", "img", "images", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "class", "fine_label")
CAPTION_COLUMNS = ("text", "caption", "captions", "prompt")


def _datasets():
    """The ``datasets`` package (heavy: imported lazily), or a one-line error saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise NoisecraftError(
            "the hf: data source needs the datasets package: pip install 'noisecraft[hub]' (or pip install datasets)"
        ) from None
    return datasets


def load_hf(spec: str, split: str = "train"):
    """A ``datasets.Dataset`` for `spec` (hub name or local path) and `split`; one-line errors on failure."""
    datasets = _datasets()

    path = Path(spec).expanduser()
    try:
        if path.exists():
            try:
                ds = datasets.load_from_disk(str(path))
            except FileNotFoundError:  # not written by save_to_disk: let load_dataset read the folder
                ds = datasets.load_dataset(str(path), split=split)
        else:
            ds = datasets.load_dataset(spec, split=split)
    except NoisecraftError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        where = (
            ""
            if path.exists()
            else (
                "; if the hub is unreachable (offline, HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set), save it on a "
                f"connected machine with datasets.load_dataset({spec!r}).save_to_disk(DIR) and use hf:DIR"
            )
        )
        raise NoisecraftError(f"cannot load hf dataset {spec!r} split {split!r}: {first}{where}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise NoisecraftError(f"hf dataset {spec!r} has no split {split!r}; splits: {', '.join(ds)}")
        ds = ds[split]
    return ds


def _pick(ds, given: str | None, feature_type: str, names: tuple[str, ...], what: str, required: bool) -> str | None:
    cols = list(ds.column_names)
    if given is not None:
        if given not in cols:
            raise NoisecraftError(f"{what} column {given!r} not in the dataset; columns: {', '.join(cols)}")
        return given
    typed = [c for c in cols if type(ds.features[c]).__name__ == feature_type]
    found = typed[:1] or [c for c in names if c in cols][:1]
    if not found and required:
        raise NoisecraftError(f"no {what} column found (tried {', '.join(names)}); columns: {', '.join(cols)}")
    return found[0] if found else None


class HFDataset(ImageDataset):
    """Rows of a Hugging Face dataset as noisecraft items."""

    def __init__(self, cfg: DataConfig, ds: Any | None = None):
        datasets = _datasets()

        spec = cfg.source[3:]
        ds = load_hf(spec, cfg.split) if ds is None else ds
        super().__init__(cfg, f"hf:{spec}")
        if cfg.limit is not None:
            ds = ds.select(range(min(cfg.limit, len(ds))))
        if len(ds) == 0:
            raise NoisecraftError(f"hf dataset {spec!r} split {cfg.split!r} is empty")
        self.image_column = _pick(ds, cfg.image_column, "Image", IMAGE_COLUMNS, "image", True)
        if isinstance(ds.features[self.image_column], datasets.Image):
            ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        self.label_column = self.caption_column = None
        if cfg.labels:
            self.label_column = _pick(ds, cfg.label_column, "ClassLabel", LABEL_COLUMNS, "label", True)
            feature = ds.features[self.label_column]
            if isinstance(feature, datasets.ClassLabel):
                self.class_names = list(feature.names)
                self._label_map = None
            else:
                values = sorted(set(ds[self.label_column]))
                self.class_names = [str(v) for v in values]
                self._label_map = {v: i for i, v in enumerate(values)}
            self.num_classes = len(self.class_names)
        if cfg.captions:
            self.caption_column = _pick(ds, cfg.caption_column, "", CAPTION_COLUMNS, "caption", True)
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def load(self, index: int) -> Image.Image:
        value = self.ds[index][self.image_column]
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, str):  # a column of file paths
            return open_image(value, self.cfg.max_pixels, draft=self.cfg.resolution)
        if isinstance(value, dict):
            if value.get("bytes"):
                return open_image(value["bytes"], self.cfg.max_pixels, draft=self.cfg.resolution)
            if value.get("path"):
                return open_image(value["path"], self.cfg.max_pixels, draft=self.cfg.resolution)
        raise BadImage(f"row {index} has no image data ({type(value).__name__})")

    def label(self, index: int) -> int:
        value = self.ds[index][self.label_column]
        return int(value) if self._label_map is None else self._label_map[value]

    def caption(self, index: int) -> str:
        value = self.ds[index][self.caption_column]
        return value[0] if isinstance(value, list) and value else str(value)

    def describe(self, index: int) -> str:
        return f"{self.where} row {index}"
