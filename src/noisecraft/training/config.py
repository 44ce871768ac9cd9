"""The typed run configuration: one dataclass tree, saved as JSON beside every checkpoint.

    cfg = TrainConfig.from_dict(json.load(open("cfg.json")))      # unknown keys / bad values -> NoisecraftError
    cfg = apply_overrides(cfg, ["optim.lr=3e-4", "data.source=toy:moons"])
    cfg.to_dict()                                                   # plain JSON-able dict, round-trips exactly

Data and model are data too (``DataConfig``, ``ModelConfig``), so a run is fully described by this file
(nanoGPT-style dataclasses, EDM's training_options.json; no string-to-class magic).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.models.factory import ModelConfig
from noisecraft.models.text import TextConfig

MIXED_PRECISION = ("no", "bf16", "fp16")
LR_DECAYS = ("cosine", "constant")
TRACKERS = ("tensorboard",)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio·lr``; gradient clipping and accumulation.

    lr and warmup_steps None: chosen when the run starts (noisecraft.training.defaults), from the network size,
    the batch and the number of steps; the chosen values are saved in the run's config.json.
    """

    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    decay: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.lr is not None:
            _positive("optim.lr", self.lr)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise NoisecraftError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _positive("optim.eps", self.eps)
        _at_least("optim.weight_decay", self.weight_decay, 0)
        if self.warmup_steps is not None:
            _at_least("optim.warmup_steps", self.warmup_steps, 0)
        check_choice("optim.decay", self.decay, LR_DECAYS)
        if not 0 <= self.min_lr_ratio <= 1:
            raise NoisecraftError(f"optim.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None:
            _positive("optim.grad_clip", self.grad_clip)
        _at_least("optim.grad_accum", self.grad_accum, 1)


@dataclass
class EMAConfig:
    """EMA of the weights: a fixed ``decay`` with warm-up, or an EDM half-life in images (takes precedence).

    Both None (the default): a half-life of ``defaults.EMA_FRACTION`` of the run's training images, chosen when
    the run's length is known and saved in its config.json.
    """

    decay: float | None = None
    half_life_images: float | None = None
    power: float = 2 / 3

    def __post_init__(self) -> None:
        if self.decay is not None and not 0 <= self.decay < 1:
            raise NoisecraftError(f"ema.decay must lie in [0, 1), got {self.decay}")
        if self.half_life_images is not None:
            _positive("ema.half_life_images", self.half_life_images)


@dataclass
class LossConfig:
    """Loss weighting λ(σ) (see noisecraft.core.losses) and γ of min-SNR-γ."""

    weighting: str = "native"
    min_snr_gamma: float = 5.0

    def __post_init__(self) -> None:
        from noisecraft.core.losses import WEIGHTINGS

        check_choice("loss.weighting", self.weighting, WEIGHTINGS)
        _positive("loss.min_snr_gamma", self.min_snr_gamma)


EVAL_DATASETS = ("digits", "fashion-mnist")
# What `noisecraft train` builds unless told otherwise: EDM preconditioning and noise distribution (Karras et al.
# 2022), robust on a user's own folder; the guide's ε-prediction on the linear schedule is
# --parameterisation eps --schedule linear. "auto": the network size is chosen from resolution and data size.
TRAIN_MODEL_DEFAULTS: dict[str, Any] = {"parameterisation": "edm", "schedule": "edm", "preset": "auto"}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    batch_size is the global batch per optimiser step (all processes and accumulation steps together), so a
    run means the same thing on 1 or N processes; it must divide by processes × grad_accum.
    label_dropout: probability of replacing a class label by the null label (classifier-free guidance).
    max_bad_steps: abort after this many non-finite losses/gradients in a row (the last checkpoint is kept).
    sample_every / checkpoint_every / log_every: cadences in optimiser steps (0 turns samples off).
    eval_every: every this many steps, a small labelled evaluation (FD/KID/precision/recall of eval_count
    samples in the built-in feature space) is appended to eval.jsonl; 0 turns it off. Built-in datasets are
    scored against their test split, a folder against its held-out part (data.holdout).
    minutes: a time budget instead of a step count: the run times its first steps, plans `steps` from them
    (saved in config.json, so a resume continues the same plan) and stops at the first log step past it.
    None values (batch_size, sample_every, eval_every, and optim/ema/model "auto" entries) are chosen when the
    run starts, from the data size, resolution and run length (noisecraft.training.defaults).
    cache_data: decode the dataset once and keep it in memory (images as uint8, exact) when all processes'
    copies fit in cache_max_gb; otherwise, or with a random crop, items are decoded per step (num_workers
    DataLoader processes). The choice depends on the config alone, so a resumed run makes the same one.
    """

    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    text: TextConfig = field(default_factory=TextConfig)  # text conditioning (models/text.py); off by default
    label_dropout: float = 0.0
    model: ModelConfig = field(default_factory=lambda: ModelConfig(**TRAIN_MODEL_DEFAULTS))
    steps: int = 1000
    minutes: float | None = None
    batch_size: int | None = None
    seed: int = 0
    mixed_precision: str = "no"
    checkpoint_every: int = 250
    keep_last: int = 3
    sample_every: int | None = None
    sample_count: int = 16
    sample_sampler: str = "dpmpp_2m"
    sample_steps: int = 20
    log_every: int = 10
    eval_every: int | None = None
    eval_count: int = 256
    max_bad_steps: int = 5
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    num_workers: int = 0
    cache_data: bool = True
    cache_max_gb: float = 8.0
    out_dir: str = "runs/train"

    def __post_init__(self) -> None:
        if not 0 <= self.label_dropout < 1:
            raise NoisecraftError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        for name in (
            "steps",
            "checkpoint_every",
            "keep_last",
            "sample_count",
            "sample_steps",
            "log_every",
            "eval_count",
            "max_bad_steps",
        ):
            _at_least(name, getattr(self, name), 1)
        if self.batch_size is not None:
            _at_least("batch_size", self.batch_size, 1)
        if self.minutes is not None:
            _positive("minutes", self.minutes)
        for name in ("seed", "sample_every", "eval_every", "num_workers"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 0)
        _positive("cache_max_gb", self.cache_max_gb)
        # scenes: its test split is the held-out part (training/heldout.py)
        heldout_eval = (self.data.kind == "folder" and self.data.holdout != 0) or self.data.source == "scenes"
        if self.eval_every and self.data.source not in EVAL_DATASETS and not heldout_eval:
            raise NoisecraftError(
                f"eval_every needs a built-in dataset with a feature network ({', '.join(EVAL_DATASETS)}), scenes "
                f"or a folder with a held-out part (data.holdout > 0), got data.source={self.data.source!r}; "
                "set eval_every=0"
            )
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        for t in self.trackers:
            check_choice("trackers entry", t, TRACKERS)
        if not self.out_dir:
            raise NoisecraftError("out_dir must be a folder path")
        if self.label_dropout > 0 and not self.model.num_classes:
            raise NoisecraftError("label_dropout > 0 needs a class-conditional model: set model.num_classes")

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return _build(cls, d, "")

    @classmethod
    def from_json_file(cls, path: str) -> TrainConfig:
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise NoisecraftError(f"config file {path!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise NoisecraftError(f"config file {path!r} is not valid JSON: {e}") from None
        return cls.from_dict(d)


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key.sub=value`` strings; value is parsed as JSON when it can be (3e-4, true, null, [..]), else text."""
    d = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise NoisecraftError(f"--set expects key.sub=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = d
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise NoisecraftError(f"--set {key}: {'.'.join(parts[: i + 1])!r} is not a config section")
            node = node[part]
        if parts[-1] not in node and not (len(parts) > 1 and parts[-2] == "extra"):
            raise NoisecraftError(f"--set {key}: unknown key; valid keys here: {', '.join(sorted(node))}")
        node[parts[-1]] = value
    return TrainConfig.from_dict(d)


# ---------------------------------------------------------------------------------------------------------
# A small typed (de)serialiser: checks every key and value against the dataclass field types.
def _build(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise NoisecraftError(f"config section {prefix or 'root'!r} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise NoisecraftError(f"unknown config key {prefix}{unknown[0]!r}; valid keys: {', '.join(names)}")
    d = {**d, **_section_defaults(cls, d)}
    kwargs = {k: _coerce(f"{prefix}{k}", v, hints[k]) for k, v in d.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise NoisecraftError(f"bad config section {prefix or 'root'!r}: {e}") from None


def _section_defaults(cls: type, d: dict) -> dict:
    """For a nested section given in part, the keys its field's own default holds (TrainConfig's model
    defaults differ from ModelConfig's), so that {"model": {"arch": "unet"}} keeps the training defaults."""
    out: dict = {}
    for f in dataclasses.fields(cls):
        if f.name in d and isinstance(d[f.name], dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                out[f.name] = {**dataclasses.asdict(default), **d[f.name]}
    return out


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if tp is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise NoisecraftError(f"config key {key!r} must be a list, got {value!r}")
        if origin is tuple:
            if len(value) != len(args):
                raise NoisecraftError(f"config key {key!r} must have {len(args)} entries, got {list(value)}")
            return tuple(_coerce(key, v, a) for v, a in zip(value, args))
        return [_coerce(key, v, args[0]) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise NoisecraftError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise NoisecraftError(f"config key {key!r} has an unsupported type {tp}")
    if not ok:
        raise NoisecraftError(f"config key {key!r} must be {tp.__name__}, got {value!r}")
    return float(value) if tp is float else value


def _to_jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _to_jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_to_jsonable(x) for x in v]
    return v


def _positive(name: str, v: float) -> None:
    if not v > 0:
        raise NoisecraftError(f"{name} must be positive, got {v}")


def _at_least(name: str, v: float, lo: float) -> None:
    if not v >= lo:
        raise NoisecraftError(f"{name} must be at least {lo}, got {v}")
