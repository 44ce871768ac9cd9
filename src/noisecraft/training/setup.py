"""Small, composable pieces the training loop is built from.

- ``build_model``: TrainConfig → (denoiser, schedule), the same call for training and for loading a run;
- ``lr_at``: the learning rate at a step (linear warm-up, then cosine decay), a pure function of the step;
- ``batch_indices``: the deterministic, seeded data order, so the data position of a run is its step count;
- ``BatchSource``: turns those indices into batches (an in-memory tensor cache, or a DataLoader);
- ``LossModule``: denoiser + loss as one nn.Module, so DDP/Accelerate see the loss computation as forward().
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.losses import DenoisingLoss
from noisecraft.core.lr_schedule import warmup_cosine
from noisecraft.core.schedules import Schedule
from noisecraft.data.transforms import from_pixels, to_pixels
from noisecraft.errors import NoisecraftError
from noisecraft.training.config import OptimConfig, TrainConfig


def build_model(cfg: TrainConfig) -> tuple[PreconditionedDenoiser, Schedule]:
    from noisecraft.models.factory import build_denoiser

    return build_denoiser(cfg.model)


def sample_shape(cfg: TrainConfig) -> tuple[int, ...]:
    """Shape of one training item: (2,) for 2-D toys, (C, H, W) for images."""
    if cfg.data.kind == "toy":
        return (2,)
    if cfg.data.latent is not None:  # the autoencoder's latents (models/autoencoder.py)
        from noisecraft.models.autoencoder import latent_shape

        return latent_shape(cfg.data.latent, cfg.data.resolution)
    return (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)


def check_compatible(cfg: TrainConfig) -> None:
    """Fail before training when data and model cannot meet (shape, labels)."""
    shape = sample_shape(cfg)
    m = cfg.model
    if m.arch == "mlp":
        if math.prod(shape) != math.prod(m.shape):
            raise NoisecraftError(
                f"model takes {math.prod(m.shape)} values per item but the data has shape "
                f"{shape}: set model.channels/model.resolution to match (2-D toys: 2 and 1)"
            )
    elif shape != m.shape:
        raise NoisecraftError(
            f"model shape {m.shape} does not match data shape {shape}: set model.resolution "
            "and model.channels to data.resolution and data.channels"
        )
    if m.num_classes and not cfg.data.labels:
        raise NoisecraftError("model.num_classes > 0 needs labelled data: set data.labels=true")
    if cfg.text.enabled or m.text_dim:
        from noisecraft.models.text import text_dim

        want = text_dim(cfg.text)
        if m.arch != "cond-unet" or m.text_dim != want:
            raise NoisecraftError(
                f"text encoder {cfg.text.encoder!r} gives {want}-d states: set model.arch=cond-unet and "
                f"model.text_dim={want} (the --text flag does)"
            )
        if cfg.data.source != "scenes" and not cfg.data.captions:
            raise NoisecraftError("text conditioning needs captions: --data scenes, or data.captions=true")
    if cfg.data.source == "scenes" and cfg.data.flip:
        raise NoisecraftError("scenes cannot be flipped (left and right would no longer match the captions)")


def lr_at(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to min_lr_ratio·lr at the last step (or constant)."""
    return warmup_cosine(step, optim.lr, total_steps, optim.warmup_steps, optim.min_lr_ratio, optim.decay)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of epoch `epoch`: a permutation of range(n) drawn from (seed, epoch) alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(n: int, seed: int, start: int, size: int, _cache: dict | None = None) -> Tensor:
    """Dataset indices at global positions start .. start+size−1 of the endless epoch-by-epoch stream."""
    pos = torch.arange(start, start + size)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(size, dtype=torch.long)
    for e in epochs.unique().tolist():
        if _cache is not None and _cache.get("epoch") == e:
            perm = _cache["perm"]
        else:
            perm = epoch_permutation(n, seed, e)
            if _cache is not None:
                _cache.update(epoch=e, perm=perm)
        mask = epochs == e
        out[mask] = perm[offsets[mask]]
    return out


def micro_batch_plan(cfg: TrainConfig, world: int) -> int:
    """Per-process micro-batch size: batch_size = micro × processes × grad_accum."""
    div = world * cfg.optim.grad_accum
    if cfg.batch_size % div:
        raise NoisecraftError(f"batch_size {cfg.batch_size} must divide by processes × grad_accum = {div}")
    return cfg.batch_size // div


class BatchSource:
    """Deterministic batches for one process: at optimiser step s, accumulation step m, process r the
    indices are positions s·B + (m·world + r)·micro … of the seeded stream (the shards of a step are disjoint).

    With ``cache`` the whole dataset is decoded once into a tensor (fast for small sets: no per-step
    transforms); random flips are then applied per batch from the trainer's generator.
    """

    def __init__(
        self, dataset: Any, cfg: TrainConfig, rank: int, world: int, cache: bool, flip: bool, progress: bool = False
    ):
        self.dataset, self.cfg, self.rank, self.world = dataset, cfg, rank, world
        self.n = len(dataset)
        if self.n == 0:
            raise NoisecraftError(f"data source {cfg.data.source!r} has no items")
        self.micro = micro_batch_plan(cfg, world)
        self.flip = flip
        self._perm_cache: dict = {}
        self.cache: dict[str, Tensor] | None = None
        self.skipped: list[str] = []  # "where: why" of each unreadable item left out of the cache
        self.keep: Tensor | None = None  # row of the cache → dataset index, when unreadable items were left out
        self._u8 = False  # the cache holds images as uint8 pixels
        if cache:
            self._fill_cache(progress)

    def _fill_cache(self, progress: bool) -> None:
        """Decode every item once. Images are kept as uint8 (N, C, H, W): exact, since an item is u8/127.5 − 1,
        and 4x smaller than float32. Bad items are left out (a bad item came back as its next good neighbour)."""
        from tqdm.auto import tqdm

        from noisecraft.data.images import ImageDataset

        ds = self.dataset
        items = (ds[i] for i in range(self.n))
        first = ds[0]
        as_u8 = isinstance(ds, ImageDataset) and torch.equal(from_pixels(to_pixels(first["x"])), first["x"])
        xs = torch.empty((self.n, *first["x"].shape), dtype=torch.uint8 if as_u8 else first["x"].dtype)
        labels = torch.empty(self.n, dtype=torch.long) if "label" in first else None
        for i, item in enumerate(tqdm(items, total=self.n, desc="decode data", disable=not progress, leave=False)):
            xs[i] = to_pixels(item["x"]) if as_u8 else item["x"]
            if labels is not None:
                labels[i] = int(item["label"])
        bad = getattr(ds, "bad", {})
        describe = getattr(ds, "describe", str)
        self.skipped = [f"{describe(i)}: {why}" for i, why in sorted(bad.items())]
        keep = torch.tensor([i for i in range(self.n) if i not in bad], dtype=torch.long)
        self.n = len(keep)
        self.keep = keep if bad else None
        self.cache = {"x": xs[keep].contiguous() if bad else xs}
        if labels is not None:
            self.cache["label"] = labels[keep] if bad else labels
        self._u8 = as_u8

    def indices(self, step: int, micro_step: int) -> Tensor:
        start = step * self.cfg.batch_size + (micro_step * self.world + self.rank) * self.micro
        return batch_indices(self.n, self.cfg.seed, start, self.micro, self._perm_cache)

    def batches(self, start_step: int) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        """Endless (indices, batch) pairs from optimiser step `start_step` on."""
        accum = self.cfg.optim.grad_accum
        plan = ((s, m) for s in range(start_step, 2**62) for m in range(accum))
        if self.cache is not None:
            for s, m in plan:
                idx = self.indices(s, m)
                batch = {k: v[idx] for k, v in self.cache.items()}
                if self._u8:
                    batch["x"] = from_pixels(batch["x"])
                yield idx, batch
            return
        from torch.utils.data import DataLoader

        plan_idx = (self.positions(s, m) for s, m in plan)  # the sampler yields stream positions ...
        loader = DataLoader(
            _PositionDataset(self.dataset, self.cfg.seed),  # ... which the dataset maps to (epoch, index)
            batch_sampler=plan_idx,
            num_workers=self.cfg.num_workers,
            generator=torch.Generator().manual_seed(self.cfg.seed),
            persistent_workers=self.cfg.num_workers > 0,
        )
        for s_m, batch in zip(((s, m) for s in range(start_step, 2**62) for m in range(accum)), loader):
            yield self.indices(*s_m), {k: v for k, v in batch.items() if isinstance(v, Tensor)}

    def positions(self, step: int, micro_step: int) -> list[int]:
        start = step * self.cfg.batch_size + (micro_step * self.world + self.rank) * self.micro
        return list(range(start, start + self.micro))

    def augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random horizontal flip of image batches (B, C, H, W), drawn from `generator`."""
        if not self.flip or x.ndim != 4:
            return x
        mask = torch.rand(x.shape[0], generator=generator) < 0.5
        return torch.where(mask[:, None, None, None].to(x.device), x.flip(-1), x)


def cache_fits(cfg: TrainConfig, n: int, world: int = 1) -> tuple[bool, float]:
    """Whether uint8 copies of n items of the run's shape, one per process, fit in cfg.cache_max_gb:
    (fits, needed GB). It depends on the config alone, so a resumed run decides as the original did."""
    need = n * math.prod(sample_shape(cfg)) * world / 1e9  # uint8 images (toys: float, but tiny)
    return need <= cfg.cache_max_gb, need


def open_source(cfg: TrainConfig, dataset: Any, rank: int, world: int, progress: bool, say=print) -> BatchSource:
    """This process's batches: the run's data (or `dataset`), decoded into memory once when cache_data allows
    and it fits, else decoded per step; `say` reports a fallback and any unreadable items left out."""
    cache = cfg.cache_data and dataset is None and cfg.data.crop != "random"
    data = dataset if dataset is not None else make_dataset(cfg, cache)
    if cache:
        fits, need = cache_fits(cfg, len(data), world)
        if not fits:
            say(
                f"data: decoded copies would take {need:.1f} GB (cache_max_gb is {cfg.cache_max_gb:g}): "
                f"decoding per step instead; raise num_workers (now {cfg.num_workers}) to keep up"
            )
            cache, data = False, make_dataset(cfg, False)
    source = BatchSource(data, cfg, rank, world, cache, cache and cfg.data.flip, progress)
    if source.skipped:
        say(
            f"data: left out {len(source.skipped)} unreadable item(s) of {source.n + len(source.skipped)}; "
            f"first: {source.skipped[0]}"
        )
    if source.cache is not None:
        mb = sum(v.numel() * v.element_size() for v in source.cache.values()) / 2**20
        how = f"held in memory, {mb:.1f} MB"
    else:
        how = f"read per step by {cfg.num_workers} worker processes" if cfg.num_workers else "read per step"
    more = f"; {data.summary()}" if hasattr(data, "summary") else ""  # a folder: transparency, sizes, what is done
    say(f"data: {source.n} items of shape {tuple(sample_shape(cfg))} from {cfg.data.source} ({how}){more}")
    return source


class _PositionDataset(torch.utils.data.Dataset):
    """Item at stream position p = item perm_e[p mod n] of epoch e = p div n, with the dataset's random
    transforms set to epoch e (``set_epoch``): crops and flips are a function of (seed, epoch, index), in the
    main process and in every DataLoader worker alike, so resume stays exact with workers too."""

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)
        self._cache: dict = {}

    def __getitem__(self, pos: int) -> Any:
        epoch = pos // self.n
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[int(batch_indices(self.n, self.seed, pos, 1, self._cache)[0])]


def make_dataset(cfg: TrainConfig, cache: bool) -> Any:
    """The dataset of cfg.data; for a cached set the random flip moves into the trainer (per batch)."""
    from noisecraft.data.datasets import make_dataset as _make

    return _make(dataclasses.replace(cfg.data, flip=False) if cache else cfg.data)


class LossModule(nn.Module):
    """Per-sample denoising loss (B,) as a module: forward(x0, generator, **cond) = loss_fn(denoiser, x0, ...)."""

    def __init__(self, denoiser: PreconditionedDenoiser, loss_fn: DenoisingLoss):
        super().__init__()
        self.denoiser = denoiser
        self.loss_fn = loss_fn

    def forward(self, x0: Tensor, generator: torch.Generator | None = None, **cond) -> Tensor:
        return self.loss_fn(self.denoiser, x0, generator=generator, **cond)


def drop_labels(labels: Tensor, p: float, null_label: int, generator: torch.Generator) -> Tensor:
    """Replace each label by the null label with probability p (classifier-free guidance training)."""
    if p <= 0:
        return labels
    mask = torch.rand(labels.shape[0], generator=generator) < p
    return torch.where(mask.to(labels.device), torch.full_like(labels, null_label), labels)


def param_digest(model: nn.Module) -> str:
    """sha256 of all parameters and buffers in state-dict order: equal digests ⇔ bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
