"""A folder of images, searched recursively, as a dataset (the layout of HF's "imagefolder").

- Images: files ending in .png, .jpg, .jpeg, .webp or .bmp anywhere below the root, in sorted path order.
- Labels (labels=True): the name of the first-level subfolder, root/<class>/.../image.png; classes sorted.
- Captions (captions=True): a sidecar text file beside the image (cat.png → cat.txt), or a metadata.jsonl in
  any folder with one JSON object per line {"file_name": "<path relative to that folder>", "text": "..."}
  (the caption key may also be "caption"); a sidecar wins over metadata.jsonl.
- Held-out part (cfg.holdout > 0): a file belongs to it when the hash of its relative path falls below the
  fraction (``is_held_out``); split="train" leaves those files out, split="holdout" keeps only them.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from PIL import Image

from noisecraft.data.config import DataConfig
from noisecraft.data.images import ImageDataset
from noisecraft.data.scan import check_bad_fraction, scan_images
from noisecraft.data.transforms import ALLOWED_FORMATS, IMAGE_EXTENSIONS, has_transparency, open_image
from noisecraft.errors import NoisecraftError

CAPTION_KEYS = ("text", "caption")


def list_images(root: Path) -> list[Path]:
    """All image files below root (recursive, hidden folders skipped), sorted by relative path."""
    files = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def looks_colour(root: Path, sample: int = 64) -> bool | None:
    """Whether the first `sample` images below root (headers only, no decoding) include any colour mode;
    None when none of them could be opened."""
    modes = []
    for path in list_images(root)[:sample]:
        try:
            with Image.open(path, formats=list(ALLOWED_FORMATS)) as img:
                modes.append(img.mode)
        except Exception:  # unreadable files are the scan's and the loader's business
            continue
    return any(m not in GRAY_MODES for m in modes) if modes else None


def is_held_out(relative: str, fraction: float) -> bool:
    """Whether the file at `relative` (posix path below the root) is in the held-out part: the first 8 bytes
    of its SHA-256, as a number in [0, 1), fall below `fraction`. Stable as other files come and go."""
    if fraction <= 0:
        return False
    return int.from_bytes(hashlib.sha256(relative.encode()).digest()[:8], "big") / 2**64 < fraction


def split_files(root: Path, files: list[Path], fraction: float, split: str) -> list[Path]:
    """The files of `split` ("train", "holdout" or "all")."""
    if split == "all" or fraction <= 0:
        return files if split != "holdout" else []
    held = [is_held_out(f.relative_to(root).as_posix(), fraction) for f in files]
    return [f for f, h in zip(files, held) if h == (split == "holdout")]


def describe_folder(files: list[Path], resolution: int, background: str, crop: str, resize_filter: str) -> str:
    """One line on how the folder's images are made into training items, from their headers (no decoding):
    how many carry transparency and onto what they are composited, and how many have another size and what
    is done to them. Reads at most 5000 headers (and says so)."""
    cap = 5000
    modes: Counter = Counter()
    sizes: Counter = Counter()
    transparent = 0
    for path in files[:cap]:
        try:
            with Image.open(path, formats=list(ALLOWED_FORMATS)) as img:
                modes[img.mode] += 1
                transparent += has_transparency(img)
                if img.size != (resolution, resolution):
                    sizes[f"{img.size[0]}x{img.size[1]}"] += 1
        except Exception:  # unreadable files are counted by the loader
            continue
    seen = sum(modes.values())
    of = f" (of the first {cap})" if len(files) > cap else ""
    parts = [f"modes {', '.join(f'{m} {n}' for m, n in modes.most_common())}{of}"]
    parts.append(f"{transparent} with transparency composited onto {background}" if transparent else "none transparent")
    if sizes:
        common = ", ".join(f"{k} ({n})" for k, n in sizes.most_common(3))
        parts.append(
            f"{sum(sizes.values())} of {seen} not {resolution}x{resolution} (e.g. {common}): short side resized "
            f"to {resolution} ({resize_filter}), then {crop} square crop"
        )
    else:
        parts.append(f"all {resolution}x{resolution}, used as they are")
    return "; ".join(parts)


def read_metadata_captions(root: Path) -> dict[Path, str]:
    """Captions from every metadata.jsonl below root: {absolute image path: caption}."""
    captions: dict[Path, str] = {}
    for meta in sorted(root.rglob("metadata.jsonl")):
        for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                name = row["file_name"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise NoisecraftError(f"{meta}:{n}: each line must be a JSON object with a 'file_name' key") from None
            text = next((row[k] for k in CAPTION_KEYS if k in row), None)
            if text is not None:
                captions[(meta.parent / name).resolve()] = str(text)
    return captions


class FolderDataset(ImageDataset):
    """Images below a folder; see the module docstring for labels and captions."""

    def __init__(self, cfg: DataConfig, root: str | Path | None = None, split: str = "train"):
        root = Path(root if root is not None else cfg.source).expanduser()
        if not root.is_dir():
            raise NoisecraftError(
                f"data source {str(root)!r} is not a folder; use digits, fashion-mnist, toy:<name>, hf:<name> "
                "or a folder of images"
            )
        super().__init__(cfg, str(root))
        files = list_images(root)
        if not files:
            raise NoisecraftError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found below {root}")
        if cfg.scan:
            report = scan_images(files, cfg.max_pixels)
            self.scan_report = report
            if report.bad:
                print(report.summary())
            first = f"{report.bad[0][0]}: {report.bad[0][1]}" if report.bad else ""
            check_bad_fraction(len(report.bad), report.total, cfg.max_bad_fraction, str(root), first)
            files = [Path(p) for p in report.good]
            if not files:
                raise NoisecraftError(f"no readable image below {root}")
        files = split_files(root, files, cfg.holdout or 0.0, split)
        if not files:
            raise NoisecraftError(
                f"the {split} part of {root} is empty (holdout={cfg.holdout}); lower data.holdout or add images"
            )
        if cfg.limit is not None:
            files = files[: cfg.limit]
        self.root = root
        self.split = split
        self.files = files
        if cfg.labels:
            tops = [f.relative_to(root).parts for f in files]
            loose = [str(f) for f, parts in zip(files, tops) if len(parts) < 2]
            if loose:
                raise NoisecraftError(
                    f"labels=True needs every image inside a class subfolder root/<class>/; {loose[0]} is not"
                )
            self.class_names = sorted({parts[0] for parts in tops})
            index = {name: i for i, name in enumerate(self.class_names)}
            self.labels = [index[parts[0]] for parts in tops]
            self.num_classes = len(self.class_names)
        if cfg.captions:
            meta = read_metadata_captions(root)
            self.captions = []
            for f in files:
                side = f.with_suffix(".txt")
                if side.is_file():
                    self.captions.append(side.read_text(encoding="utf-8").strip())
                elif f.resolve() in meta:
                    self.captions.append(meta[f.resolve()])
                else:
                    raise NoisecraftError(
                        f"captions=True but {f} has no caption: add {side.name} beside it or a metadata.jsonl line"
                    )

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Image.Image:
        return open_image(self.files[index], self.cfg.max_pixels, draft=self.cfg.resolution)

    def label(self, index: int) -> int:
        return self.labels[index]

    def caption(self, index: int) -> str:
        return self.captions[index]

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def summary(self) -> str:
        """How these images become training items (see describe_folder)."""
        c = self.cfg
        return describe_folder(self.files, c.resolution, c.background, c.crop, c.resize_filter)
