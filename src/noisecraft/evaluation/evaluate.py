"""Score generated images against a reference set, with the protocol attached to every number.

A number like "FD 3.1" means nothing without how it was measured (NUMBERS.md A.11, C.6: FID on too few
samples, another Inception, another reference split). ``EvalResult`` therefore always carries an
``EvalProtocol`` (sample count, reference set and size, extractor name and weights checksum, sampler,
steps, spacing, seeds, source, how pixels were treated) and the noise floor: the same metrics between real
images that are not the reference (the training split, or the other half of a reference folder; subsampled
to the same count) and the reference — the best score a perfect model could get.

Samples are scored as the user gets them: clamped to [−1, 1] and rounded to 8 bits exactly as
``noisecraft sample`` writes its PNGs (``data.io.quantise``), never as raw sampler output.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noisecraft.data.io import quantise
from noisecraft.errors import NoisecraftError
from noisecraft.evaluation.metrics import QualityScores, quality_scores
from noisecraft.evaluation.reference import REFERENCE_DATASETS, reference_images

PIXELS = "8-bit: clamped to [-1, 1] and rounded to 256 levels, as the saved PNGs"


@dataclass
class EvalProtocol:
    """How a score was measured; two scores are comparable only when these fields agree (bar the source)."""

    dataset: str
    reference_split: str
    num_reference: int
    num_samples: int
    extractor: str
    extractor_checksum: str
    resolution: int | None = None  # samples and real images are compared at this side length
    source: str = ""  # run folder or samples folder
    sampler: str | None = None
    steps: int | None = None
    spacing: str | None = None
    seeds: str | None = None  # "first..last"
    label: str = "full"  # "full" or "periodic (small sample count; not comparable with full evaluations)"
    pixels: str = PIXELS  # how the samples were turned into pixels before scoring
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    protocol: EvalProtocol
    scores: QualityScores
    noise_floor: QualityScores | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": asdict(self.protocol),
            "scores": self.scores.to_dict(),
            "noise_floor": self.noise_floor.to_dict() if self.noise_floor else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def summary(self) -> str:
        p, s = self.protocol, self.scores
        ci = f" [{s.fd_low:.4g}, {s.fd_high:.4g}]" if s.fd_low is not None else ""
        lines = [
            f"FD {s.fd:.4g}{ci}   KID {s.kid_mean:.4g} ± {s.kid_std:.2g}   "
            f"precision {s.precision:.3f}   recall {s.recall:.3f}",
        ]
        if ci:
            lines.append("(FD's 95 % bootstrap interval over the samples in brackets: FDs whose intervals overlap")
            lines[-1] += " are not told apart)"
        if self.noise_floor is not None:
            n = self.noise_floor
            lines.append(
                f"noise floor ({p.extra.get('floor', 'real train vs ' + p.reference_split)}"
                + (f", only {p.extra['floor_samples']} images: inflated" if "floor_samples" in p.extra else "")
                + f"): FD {n.fd:.4g}   "
                f"KID {n.kid_mean:.4g}   "
                f"precision {n.precision:.3f}   recall {n.recall:.3f}"
            )
        how = f"sampler {p.sampler}, {p.steps} steps, seeds {p.seeds}" if p.sampler else f"samples from {p.source}"
        if "clip_x0" in p.extra:  # eval --clip-x0, as sample --clip-x0
            how += f", x̂0 clamped to ±{p.extra['clip_x0']:g}"
        lines.append(
            f"protocol: {p.num_samples} samples vs {p.num_reference} {p.dataset} {p.reference_split} images "
            f"at {p.resolution} px, "
            f"features {p.extractor} [{p.extractor_checksum}], {how}; pixels {p.pixels}; {p.label}"
        )
        return "\n".join(lines)


@dataclass
class ReferenceSet:
    """The real images samples are scored against, and other real images for the noise floor.

    name: a built-in dataset or a folder path; split: "test"/"train" for a dataset, "folder" for a folder;
    images (N, C, H, W) in [−1, 1]; others: real images that are not in `images` (the training split, or the
    other half of a folder), from which the noise floor draws as many images as there are samples.
    """

    name: str
    split: str
    images: Tensor
    others: Tensor | None
    floor_label: str

    @property
    def builtin(self) -> bool:
        return self.split != "folder"


def builtin_reference(dataset: str, split: str = "test") -> ReferenceSet:
    """A built-in dataset's fixed split as the reference; its training split (or test split, when the
    reference is the training split) gives the noise floor."""
    images, _ = reference_images(dataset, split)
    other = "test" if split == "train" else "train"
    return ReferenceSet(dataset, split, images, None, f"real {other} vs {split}")


def folder_reference(
    folder: str | Path, *, resolution: int | None = None, channels: int | None = None, seed: int = 0
) -> ReferenceSet:
    """Any folder of images as the reference: a seeded half of it is the reference, the other half gives the
    noise floor (so the floor never compares an image with itself). Images are read like training images
    (``data.io.load_images``: colour mode, resize on the short side, centre crop to `resolution`)."""
    from noisecraft.data.io import load_images

    imgs, notes = load_images(folder, resolution=resolution, channels=channels)
    for n in notes:
        print(f"reference: {n}")
    if len(imgs) < 8:
        raise NoisecraftError(
            f"the reference folder {str(folder)!r} holds {len(imgs)} readable images; give at least 8"
        )
    perm = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(seed))
    half = (len(imgs) + 1) // 2
    return ReferenceSet(
        str(folder), "folder", imgs[perm[:half]], imgs[perm[half:]], "the folder's other half vs its reference half"
    )


def as_reference(reference: str | ReferenceSet, split: str = "test") -> ReferenceSet:
    """A ReferenceSet from a built-in dataset name, a folder path or a ReferenceSet."""
    if isinstance(reference, ReferenceSet):
        return reference
    if reference in REFERENCE_DATASETS:
        return builtin_reference(reference, split)
    if Path(reference).is_dir():
        return folder_reference(reference)
    raise NoisecraftError(
        f"reference {reference!r} is neither a built-in dataset ({', '.join(REFERENCE_DATASETS)}) nor a folder"
    )


def default_features(reference: ReferenceSet, channels: int = 1) -> str:
    """The feature network a reference is scored with by default: the built-in dataset's own network, else the
    Fashion-MNIST network ("rgb": per colour channel for colour images; see docs/evaluation.md)."""
    if reference.builtin:
        return reference.name
    return "rgb" if max(channels, reference.images.shape[1]) == 3 else "fashion-mnist"


_FLOOR_CACHE: dict[tuple, QualityScores] = {}


def at_resolution(images: Tensor, resolution: int | None, resize_filter: str = "lanczos") -> Tensor:
    """Real images (N, C, H, W) in [−1, 1] brought to the samples' resolution exactly as the trainer brings
    training images there: 8-bit pixels resized with the Pillow filter of the run's data config (lanczos by
    default). A 16-px model is measured against 16-px real images made the way its training images were made;
    any other resize (a bilinear one makes upsampled digits blurrier than the training data) biases FD in
    favour of samples that are blurred the same way (docs/guide/evaluation.md, "FD at 10 vs 200 NFE")."""
    if resolution is None or images.shape[-1] == resolution:
        return images
    import numpy as np
    from PIL import Image

    from noisecraft.data.transforms import _FILTERS, from_pixels, to_pixels

    u8 = to_pixels(images.cpu()).numpy()  # (N, C, H, W)
    out = np.empty((*u8.shape[:2], resolution, resolution), np.uint8)
    for i, img in enumerate(u8):
        for c, plane in enumerate(img):
            out[i, c] = np.asarray(
                Image.fromarray(plane, "L").resize((resolution, resolution), _FILTERS[resize_filter])
            )
    return from_pixels(torch.from_numpy(out))


def noise_floor(
    extractor,
    reference: str | ReferenceSet,
    reference_features: Tensor,
    num: int,
    split: str = "test",
    seed: int = 0,
    resolution: int | None = None,
    resize_filter: str = "lanczos",
) -> QualityScores:
    """Metrics between `num` real images that are not the reference (fixed seeded subset, at `resolution`,
    8-bit like the samples) and the reference features (computed at the same resolution)."""
    ref = as_reference(reference, split)
    which = None if ref.others is None else (len(ref.others), float(ref.others.double().sum()))  # a folder's half
    key = (ref.name, ref.split, getattr(extractor, "checksum", "?"), num, resolution, resize_filter, which)
    if key not in _FLOOR_CACHE:
        others = ref.others
        if others is None:
            others, _ = reference_images(ref.name, "test" if ref.split == "train" else "train")
        idx = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:num]
        feats = extractor(quantise(at_resolution(others[idx], resolution, resize_filter)))
        _FLOOR_CACHE[key] = quality_scores(reference_features, feats, seed=seed, fd_boots=0)
    return _FLOOR_CACHE[key]


def evaluate_images(
    images: Tensor,
    dataset: str | ReferenceSet,
    extractor,
    *,
    split: str = "test",
    with_floor: bool = True,
    protocol: dict[str, Any] | None = None,
    fd_boots: int = 200,
    resize_filter: str = "lanczos",
) -> EvalResult:
    """Score images (N, C, H, W) in [−1, 1] against a reference: a built-in dataset's `split`, a folder, or a
    ReferenceSet. The images are first clamped and rounded to 8 bits, as a saved PNG holds them; real images of
    another size are resized with `resize_filter` (the run's data config's: how its training images were made)."""
    if images.ndim != 4 or len(images) < 4:
        raise NoisecraftError(f"need at least 4 images of shape (N, C, H, W), got {tuple(images.shape)}")
    ref_set = as_reference(dataset, split)
    images = quantise(images)
    res = images.shape[-1]
    ref = extractor(quantise(at_resolution(ref_set.images, res, resize_filter)))
    scores = quality_scores(ref, extractor(images), fd_boots=fd_boots)
    floor = None
    if with_floor:
        floor = noise_floor(extractor, ref_set, ref, len(images), split, resolution=res, resize_filter=resize_filter)
    proto = dict(protocol or {})
    extra = dict(proto.pop("extra", {}))
    if res != ref_set.images.shape[-1]:
        extra["reference_resize"] = f"{ref_set.images.shape[-1]} -> {res} px, Pillow {resize_filter} on 8-bit pixels"
    if floor is not None:
        extra["floor"] = ref_set.floor_label
        if ref_set.others is not None and len(ref_set.others) < len(images):
            extra["floor_samples"] = len(ref_set.others)  # fewer than the samples: the floor's FD is inflated
    result = EvalProtocol(
        dataset=ref_set.name,
        reference_split=ref_set.split,
        num_reference=len(ref_set.images),
        num_samples=len(images),
        extractor=extractor.name,
        extractor_checksum=extractor.checksum,
        resolution=res,
        extra=extra,
        **proto,
    )
    return EvalResult(result, scores, floor)


def evaluate_denoiser(
    denoiser,
    schedule,
    dataset: str | ReferenceSet,
    extractor,
    *,
    shape: tuple[int, ...],
    num: int = 1000,
    sampler: str = "euler",
    steps: int = 40,
    spacing: str | None = None,
    seed: int = 0,
    num_classes: int = 0,
    batch_size: int = 250,
    split: str = "test",
    with_floor: bool = True,
    label: str = "full",
    source: str = "",
    device: str | torch.device | None = None,
    fd_boots: int = 200,
    resize_filter: str = "lanczos",
    latent: str | None = None,
    cond: dict[str, Tensor] | None = None,
    knobs: dict | None = None,
) -> tuple[EvalResult, Tensor]:
    """Draw `num` samples (seeds seed..seed+num−1; class i % num_classes when conditional) on `device` (default:
    the denoiser's own) and score them as 8-bit images. Returns (result, the 8-bit samples on the CPU).

    A model in latent space (`latent`: its autoencoder folder) samples latents, never clipped, which are decoded
    before they are scored; `cond` is further per-sample conditioning (num, ...), e.g. a prompt's embedding.

    `shape` is one sample's shape; a flat model of images (an MLP on 8×8 digits) gives (C·H·W,), and its
    samples are scored as (C, H, W) images of the reference's channels and a square side."""
    from noisecraft.sampling.generate import generate

    seeds = list(range(seed, seed + num))
    labels = torch.arange(num) % num_classes if num_classes else None
    images = generate(
        denoiser,
        schedule,
        shape,
        seeds,
        sampler=sampler,
        steps=steps,
        spacing=spacing,
        class_labels=labels,
        batch_size=batch_size,
        device=device,
        cond=cond,
        knobs=knobs,
    )
    if latent is not None:  # latents → pixels; only the decoded images are clamped and rounded
        from noisecraft.sampling.generate import decode_latents

        images = decode_latents(latent, images, device).cpu()
    if images.ndim == 2:  # a flat model of images
        ref_ch = as_reference(dataset, split).images.shape[1]
        side = math.isqrt(images.shape[1] // ref_ch)
        if ref_ch * side * side != images.shape[1]:
            raise NoisecraftError(f"samples of {images.shape[1]} values are not square images; eval scores images")
        images = images.reshape(len(images), ref_ch, side, side)
    proto = {
        "source": source,
        "sampler": sampler,
        "steps": steps,
        "spacing": spacing or schedule.default_spacing,
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "label": label,
        "extra": {"class_conditional": bool(num_classes), **({"latent": latent} if latent else {})},
    }
    result = evaluate_images(
        images,
        dataset,
        extractor,
        split=split,
        with_floor=with_floor,
        protocol=proto,
        fd_boots=fd_boots,
        resize_filter=resize_filter,
    )
    return result, quantise(images)


def periodic_eval(
    denoiser, schedule, dataset: str | ReferenceSet, shape: tuple[int, ...], num: int = 256, **kw
) -> EvalResult:
    """A cheap evaluation for use during training: few samples, no noise floor, labelled as such; runs on the
    denoiser's device. `dataset` is a built-in dataset, a folder or a ReferenceSet (a held-out split)."""
    from noisecraft.evaluation.features import get_extractor
    from noisecraft.sampling.generate import model_device

    ref = as_reference(dataset, kw.get("split", "test"))
    features = kw.pop("features", None) or default_features(ref, shape[0] if len(shape) == 3 else 1)
    res, _ = evaluate_denoiser(
        denoiser,
        schedule,
        ref,
        get_extractor(features, device=model_device(denoiser)),
        shape=shape,
        num=num,
        with_floor=False,
        label="periodic (small sample count; not comparable with full evaluations)",
        fd_boots=kw.pop("fd_boots", 0),
        **kw,
    )
    return res
