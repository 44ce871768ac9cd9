"""Score generated images against a reference split, with the protocol attached to every number.

A number like "FD 3.1" means nothing without how it was measured (NUMBERS.md A.11, C.6: FID on too few
samples, another Inception, another reference split). ``EvalResult`` therefore always carries an
``EvalProtocol`` (sample count, reference split and size, extractor name and weights checksum, sampler,
steps, spacing, seeds, source) and the noise floor: the same metrics between the real training split
(subsampled to the same count) and the reference split — the best score a perfect model could get.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError
from noisecraft.evaluation.metrics import QualityScores, quality_scores
from noisecraft.evaluation.reference import reference_images


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
        lines = [
            f"FD {s.fd:.4g}   KID {s.kid_mean:.4g} ± {s.kid_std:.2g}   "
            f"precision {s.precision:.3f}   recall {s.recall:.3f}",
        ]
        if self.noise_floor is not None:
            n = self.noise_floor
            lines.append(
                f"noise floor (real train vs {p.reference_split}): FD {n.fd:.4g}   KID {n.kid_mean:.4g}   "
                f"precision {n.precision:.3f}   recall {n.recall:.3f}"
            )
        how = f"sampler {p.sampler}, {p.steps} steps, seeds {p.seeds}" if p.sampler else f"samples from {p.source}"
        lines.append(
            f"protocol: {p.num_samples} samples vs {p.num_reference} {p.dataset} {p.reference_split} images "
            f"at {p.resolution} px, "
            f"features {p.extractor} [{p.extractor_checksum}], {how}; {p.label}"
        )
        return "\n".join(lines)


_FLOOR_CACHE: dict[tuple[str, str, str, int, int | None], QualityScores] = {}


def at_resolution(images: Tensor, resolution: int | None) -> Tensor:
    """Real images brought to the samples' resolution (area-averaged down, bilinear up), so that the metric
    compares like with like: a 16-px model is measured against 16-px real images, not native 28-px ones."""
    if resolution is None or images.shape[-1] == resolution:
        return images
    mode = "area" if images.shape[-1] > resolution else "bilinear"
    return torch.nn.functional.interpolate(images, size=(resolution, resolution), mode=mode)


def noise_floor(
    extractor,
    dataset: str,
    reference: Tensor,
    num: int,
    split: str = "test",
    seed: int = 0,
    resolution: int | None = None,
) -> QualityScores:
    """Metrics between `num` real training images (fixed seeded subset, at `resolution`) and the reference
    features (which must have been computed at the same resolution)."""
    key = (dataset, split, getattr(extractor, "checksum", "?"), num, resolution)
    if key not in _FLOOR_CACHE:
        train, _ = reference_images(dataset, "train")
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:num]
        _FLOOR_CACHE[key] = quality_scores(reference, extractor(at_resolution(train[idx], resolution)), seed=seed)
    return _FLOOR_CACHE[key]


def evaluate_images(
    images: Tensor,
    dataset: str,
    extractor,
    *,
    split: str = "test",
    with_floor: bool = True,
    protocol: dict[str, Any] | None = None,
) -> EvalResult:
    """Score images (N, C, H, W) in [−1, 1] against the `split` of a built-in dataset."""
    if images.ndim != 4 or len(images) < 4:
        raise NoisecraftError(f"need at least 4 images of shape (N, C, H, W), got {tuple(images.shape)}")
    ref_imgs, _ = reference_images(dataset, split)
    res = images.shape[-1]
    ref = extractor(at_resolution(ref_imgs, res))
    scores = quality_scores(ref, extractor(images))
    floor = noise_floor(extractor, dataset, ref, len(images), split, resolution=res) if with_floor else None
    proto = EvalProtocol(
        dataset=dataset,
        reference_split=split,
        num_reference=len(ref_imgs),
        num_samples=len(images),
        extractor=extractor.name,
        extractor_checksum=extractor.checksum,
        resolution=res,
        **(protocol or {}),
    )
    return EvalResult(proto, scores, floor)


def evaluate_denoiser(
    denoiser,
    schedule,
    dataset: str,
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
) -> tuple[EvalResult, Tensor]:
    """Draw `num` samples (seeds seed..seed+num−1; class i % num_classes when conditional) and score them."""
    from noisecraft.training.samples import generate

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
    )
    proto = {
        "source": source,
        "sampler": sampler,
        "steps": steps,
        "spacing": spacing or schedule.default_spacing,
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "label": label,
        "extra": {"class_conditional": bool(num_classes)},
    }
    return evaluate_images(images, dataset, extractor, split=split, with_floor=with_floor, protocol=proto), images


def periodic_eval(denoiser, schedule, dataset: str, shape: tuple[int, ...], num: int = 256, **kw) -> EvalResult:
    """A cheap evaluation for use during training: few samples, no noise floor, labelled as such."""
    from noisecraft.evaluation.features import BuiltinFeatures

    res, _ = evaluate_denoiser(
        denoiser,
        schedule,
        dataset,
        BuiltinFeatures(dataset),
        shape=shape,
        num=num,
        with_floor=False,
        label="periodic (small sample count; not comparable with full evaluations)",
        **kw,
    )
    return res
