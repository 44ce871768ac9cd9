"""A noise-conditioned image classifier p(y | x_σ, σ) for classifier guidance (Dhariwal & Nichol 2021, Sec. 4).

The network is a small half-U-Net encoder: residual conv blocks whose GroupNorm output is shifted by an
embedding of the noise level, average-pool downsampling, and a pooled linear head. It reads the VE state
x = x0 + σ·ε scaled by c_in = 1/√(σ² + σ_data²) (so its input has unit-ish variance at every σ, as in EDM's
preconditioning) and c_noise = ¼·ln σ.

It is trained with cross-entropy on noisy images whose σ is drawn from the diffusion model's own training
density (``schedule.training_sigmas``), and saved as ``classifier.safetensors`` + ``classifier.json``; the
JSON (resolution, channels, num_classes, schedule) is checked when the classifier is paired with a model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from noisecraft.core.denoiser import batch_sigma
from noisecraft.core.schedules import SCHEDULES, Schedule, make_schedule
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.models.mlp import FourierEmbedding
from noisecraft.typed_config import config_from_dict

WEIGHTS_NAME = "classifier.safetensors"
CONFIG_NAME = "classifier.json"


@dataclass
class ClassifierConfig:
    """What the classifier sees and how big it is; saved as classifier.json beside the weights.

    Args:
        resolution: image side in pixels.
        channels: image channels.
        num_classes: number of classes K (labels 0..K−1).
        schedule, schedule_kwargs: the diffusion model's noise schedule (its training σ density trains the
            classifier); recorded so a pairing can be checked.
        sigma_data: σ_data of the input scaling c_in = 1/√(σ² + σ_data²).
        width: channels of the first level; level i has width·mult[i].
        mult: channel multipliers, one per level (each level after the first halves the resolution).
        class_names: optional names of the classes, in label order.
    """

    resolution: int = 16
    channels: int = 1
    num_classes: int = 10
    schedule: str = "linear"
    schedule_kwargs: dict[str, Any] = field(default_factory=dict)
    sigma_data: float = 0.5
    width: int = 32
    mult: tuple[int, ...] = (1, 2, 2)
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        for name, lo in (("resolution", 4), ("channels", 1), ("num_classes", 2), ("width", 4)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise NoisecraftError(f"classifier {name} must be an integer >= {lo}, got {v!r}")
        check_choice("schedule", self.schedule, SCHEDULES)
        self.mult = tuple(int(m) for m in self.mult)
        if not self.mult or min(self.mult) < 1:
            raise NoisecraftError(f"classifier mult must be positive channel multipliers, got {self.mult}")
        if not self.sigma_data > 0:
            raise NoisecraftError(f"sigma_data must be positive, got {self.sigma_data}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise NoisecraftError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        return config_from_dict(cls, d, "classifier")

    def build_schedule(self) -> Schedule:
        return make_schedule(self.schedule, **self.schedule_kwargs)


class _ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, noise embedding added, GroupNorm → SiLU → conv, plus a 1x1 skip."""

    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        r = self.conv1(F.silu(self.norm1(h)))  # (B, c_out, H, W)
        r = r + self.emb(e)[:, :, None, None]
        r = self.conv2(F.silu(self.norm2(r)))
        return self.skip(h) + r


class NoisyClassifier(nn.Module):
    """Logits (B, K) of p(y | x_σ, σ) for a VE state x (B, C, H, W) and noise level σ (scalar or (B,))."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        emb = 4 * config.width
        self.embed = nn.Sequential(
            FourierEmbedding(config.width, input_scale=8.0), nn.Linear(config.width, emb), nn.SiLU()
        )
        self.stem = nn.Conv2d(config.channels, config.width, 3, padding=1)
        chans = [config.width * m for m in config.mult]
        self.blocks = nn.ModuleList(_ResBlock(c_prev, c, emb) for c_prev, c in zip([config.width, *chans[:-1]], chans))
        self.head = nn.Sequential(nn.GroupNorm(min(8, chans[-1]), chans[-1]), nn.SiLU())
        self.out = nn.Linear(chans[-1], config.num_classes)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a NoisecraftError unless per-sample `shape` is (C, H, W) of training, or those values flat."""
        if tuple(shape) not in (self.config.shape, (math.prod(self.config.shape),)):
            c, r = self.config.channels, self.config.resolution
            raise NoisecraftError(
                f"the classifier was trained on {c}x{r}x{r} images but the model makes "
                f"{'x'.join(map(str, shape))}; train a classifier at the model's resolution and channels "
                "(noisecraft train-classifier --resolution ... --channels ...)"
            )

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """x (B, C, H, W), or (B, C·H·W) from a flat (MLP) model, viewed as images."""
        self.check_input_shape(tuple(x.shape[1:]))
        x = x.reshape(x.shape[0], *self.config.shape)
        sigma = batch_sigma(sigma, x)  # (B,) float64
        c_in = torch.rsqrt(sigma**2 + self.config.sigma_data**2).to(x.dtype)
        dtype = self.stem.weight.dtype
        e = self.embed(0.25 * sigma.clamp(min=1e-20).log())  # (B, emb)
        h = self.stem((c_in[:, None, None, None] * x).to(dtype))  # (B, width, H, W)
        for i, block in enumerate(self.blocks):
            if i > 0 and min(h.shape[-2:]) >= 2:
                h = F.avg_pool2d(h, 2)
            h = block(h, e)
        return self.out(self.head(h).mean((-2, -1)))  # (B, K)

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write classifier.safetensors and classifier.json into `folder` (created if needed)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        return folder


def load_classifier(folder: str | Path, device: str | torch.device = "cpu") -> NoisyClassifier:
    """Load a classifier saved by ``NoisyClassifier.save`` (a folder, or the path of its classifier.json)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise NoisecraftError(
            f"no classifier in {folder}: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
            "(write them with noisecraft train-classifier)"
        )
    try:
        config = ClassifierConfig.from_dict(json.loads(cfg_path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise NoisecraftError(f"unreadable {cfg_path}: {e}") from None
    model = NoisyClassifier(config)
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, SafetensorError) as e:  # a truncated file, or weights of another shape
        raise NoisecraftError(f"cannot load {weights}: {str(e).splitlines()[0][:200]}") from None
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------
@dataclass
class ClassifierTraining:
    """Optimisation settings of ``train_classifier`` (the loop is training.core.fit's)."""

    steps: int = 2000
    batch: int = 128
    lr: float = 2e-3  # peak learning rate of the warm-up + cosine schedule (core.lr_schedule)
    warmup_steps: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    minutes: float | None = None  # a time budget instead of `steps` (planned from the first timed steps)
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise NoisecraftError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise NoisecraftError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.lr > 0:
            raise NoisecraftError(f"lr must be positive, got {self.lr}")


def noisy_batch(x0: Tensor, schedule: Schedule, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(x_σ = x0 + σ·ε, σ) with σ (B,) drawn from the schedule's training density."""
    sigma = schedule.training_sigmas(x0.shape[0], generator)  # (B,) float64
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return x0 + sigma.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1))) * eps, sigma


def train_classifier(
    images: Tensor,
    labels: Tensor,
    config: ClassifierConfig,
    training: ClassifierTraining | None = None,
    progress: bool = True,
    log: list[float] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    record: dict[str, Any] | None = None,
    on_plan=None,
) -> NoisyClassifier:
    """Train a NoisyClassifier with cross-entropy on noisy images (Dhariwal & Nichol 2021, Sec. 4).

    Args:
        images: (N, C, H, W) clean training images in [−1, 1].
        labels: (N,) int labels in 0..num_classes−1.
        config: the classifier's config (its schedule gives the σ density).
        training: steps (or minutes), batch, lr, weight decay, seed, checkpoint cadence.
        log: if given, the per-step losses are appended to it.
        out: the run folder of training.core.fit (checkpoints, log.jsonl, config.json), which `resume`
            continues; None: a temporary one. record: what its config.json holds (default: both configs);
            on_plan(steps): that record once a time budget is planned into `steps`.
    """
    import tempfile

    from noisecraft.training.core import LoopSettings, fit

    training = training or ClassifierTraining()
    images, labels = torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(labels).long()
    if images.ndim != 4 or tuple(images.shape[1:]) != config.shape:
        raise NoisecraftError(f"images must be (N, {', '.join(map(str, config.shape))}), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],) or labels.min() < 0 or labels.max() >= config.num_classes:
        raise NoisecraftError(f"labels must be (N,) integers in 0..{config.num_classes - 1}")
    torch.manual_seed(training.seed)
    schedule = config.build_schedule()
    model = NoisyClassifier(config)
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)

    def loss_fn(step: int, g: torch.Generator) -> tuple[Tensor, int]:
        idx = torch.randint(0, images.shape[0], (training.batch,), generator=g)
        x, sigma = noisy_batch(images[idx], schedule, g)  # (B, C, H, W), (B,)
        losses = F.cross_entropy(model(x, sigma), labels[idx], reduction="none")  # (B,)
        if log is not None:
            log.append(losses.mean().item())
        return losses, training.batch

    t = training
    settings = LoopSettings(
        steps=t.steps, lr=t.lr, warmup_steps=t.warmup_steps, grad_clip=None, log_every=t.log_every,
        checkpoint_every=t.checkpoint_every, keep_last=2, minutes=t.minutes, seed=t.seed,
    )  # fmt: skip
    record = record or {"trainer": "classifier", "config": config.to_dict(), "training": dataclasses.asdict(t)}
    with tempfile.TemporaryDirectory(prefix="noisecraft-clf-") as tmp:
        fit(out or tmp, model, opt, loss_fn, settings, record, resume=resume, progress=progress,
            desc="train classifier", on_plan=on_plan, say=print if progress or out else lambda *_: None)  # fmt: skip
    return model.eval()


@torch.no_grad()
def accuracy_by_sigma(
    model: NoisyClassifier, images: Tensor, labels: Tensor, sigmas: list[float], seed: int = 0, batch: int = 512
) -> dict[float, float]:
    """Accuracy of the noisy classifier on held-out images noised to each σ in `sigmas`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in sigmas:
        right = 0
        for i in range(0, len(images), batch):
            x0, y = images[i : i + batch], labels[i : i + batch]
            x = x0 + s * torch.randn(x0.shape, generator=g)
            right += (model(x, s).argmax(-1) == y).sum().item()
        out[float(s)] = right / len(images)
    return out


# The noise levels at which a classifier's held-out accuracy is reported (those inside its schedule's range).
HOLDOUT_SIGMAS = (0.02, 0.1, 0.3, 1.0, 3.0, 10.0)


def holdout_split(n: int, holdout: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train indices, test indices) of a seeded random split of n items; round(holdout·n) are held out."""
    if not 0 <= holdout < 1:
        raise NoisecraftError(f"the held-out fraction must lie in [0, 1), got {holdout}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(holdout * n)
    return perm[n_test:], perm[:n_test]


def holdout_accuracy(model: NoisyClassifier, images: Tensor, labels: Tensor, seed: int = 0) -> dict[float, float]:
    """Held-out accuracy at each σ of HOLDOUT_SIGMAS that lies in the classifier's schedule range."""
    sched = model.config.build_schedule()
    grid = [s for s in HOLDOUT_SIGMAS if sched.sigma_min <= s <= sched.sigma_max]
    return accuracy_by_sigma(model, images, labels, grid, seed=seed)


def load_labelled(data_cfg) -> tuple[Tensor, Tensor, list[str] | None]:
    """(images (N, C, H, W) float32 in [−1, 1], labels (N,) int64, class names) of a labelled DataConfig."""
    from noisecraft.data.datasets import make_dataset

    dataset = make_dataset(data_cfg)
    if len(dataset) == 0:
        raise NoisecraftError(f"data source {data_cfg.source!r} has no images")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=len(dataset))))
    if batch["x"].ndim != 4:
        raise NoisecraftError(f"a classifier needs images; {data_cfg.source!r} gives items of shape {batch['x'].shape}")
    names = getattr(dataset, "class_names", None)
    return batch["x"].float(), batch["label"].long(), (list(names) if names else None)
