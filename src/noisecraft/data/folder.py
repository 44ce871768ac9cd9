"""A folder of images, searched recursively, as a dataset (the layout of HF's "imagefolder").

- Images: files ending in .png, .jpg, .jpeg, .webp or .bmp anywhere below the root, in sorted path order.
- Labels (labels=True): the name of the first-level subfolder, root/<class>/.../image.png; classes sorted.
- Captions (captions=True): a sidecar text file beside the image (cat.png → cat.txt), or a metadata.jsonl in
  any folder with one JSON object per line {"file_name": "<path relative to that folder>", "text": "..."}
  (the caption key may also be "caption"); a sidecar wins over metadata.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from noisecraft.data.config import DataConfig
from noisecraft.data.images import ImageDataset
from noisecraft.data.scan import check_bad_fraction, scan_images
from noisecraft.data.transforms import ALLOWED_FORMATS, IMAGE_EXTENSIONS, open_image
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

    def __init__(self, cfg: DataConfig, root: str | Path | None = None):
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
        if cfg.limit is not None:
            files = files[: cfg.limit]
        self.root = root
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
