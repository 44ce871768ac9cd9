"""The first vertical slice: train an MLP denoiser on a 2-D toy set with a short, explicit loop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.ema import EMA
from noisecraft.core.losses import DenoisingLoss
from noisecraft.core.lr_schedule import warmup_cosine
from noisecraft.core.precond import Preconditioner
from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import toy_data
from noisecraft.errors import NoisecraftError
from noisecraft.models.mlp import MLP
from noisecraft.training.core import apply_update, set_lr


@dataclass
class ToyConfig:
    """Everything that defines a toy run; saved beside its outputs."""

    dataset: str = "swissroll"
    schedule: str = "linear"
    parameterisation: str = "eps"
    weighting: str = "native"
    iterations: int = 3000
    batch: int = 512
    lr: float = 2e-3  # peak learning rate of the warm-up + cosine schedule (core.lr_schedule)
    warmup_steps: int = 150  # linear warm-up, at most 5 % of the iterations
    hidden: int = 128
    depth: int = 3
    ema_decay: float = 0.995
    num_points: int = 20000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "batch", "hidden", "depth", "num_points"):
            if getattr(self, name) < 1:
                raise NoisecraftError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise NoisecraftError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not self.lr > 0:
            raise NoisecraftError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_toy_model(cfg: ToyConfig) -> tuple[PreconditionedDenoiser, DenoisingLoss]:
    schedule = make_schedule(cfg.schedule)
    noise_input = "t" if schedule.discrete else "log_sigma"
    precond = Preconditioner(cfg.parameterisation, sigma_data=1.0, noise_input=noise_input, schedule=schedule)
    model = PreconditionedDenoiser(MLP(dim=2, hidden=cfg.hidden, depth=cfg.depth), precond)
    return model, DenoisingLoss(schedule, cfg.weighting)


def train_toy(cfg: ToyConfig, progress: bool = True) -> tuple[PreconditionedDenoiser, list[float]]:
    """Train and return the EMA denoiser and the loss history (one float per iteration)."""
    torch.manual_seed(cfg.seed)
    data = toy_data(cfg.dataset, cfg.num_points, seed=cfg.seed)  # (N, 2)
    model, loss_fn = build_toy_model(cfg)
    ema = EMA(model, decay=cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    warmup = min(cfg.warmup_steps, cfg.iterations // 20)  # at most 5 % of a short run
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    bar = tqdm(range(cfg.iterations), desc=f"train {cfg.dataset}", disable=not progress)
    for i in bar:
        set_lr(opt, warmup_cosine(i, cfg.lr, cfg.iterations, warmup))
        x0 = data[torch.randint(0, len(data), (cfg.batch,), generator=g)]  # (B, 2)
        loss = loss_fn(model, x0, generator=g).mean()
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)  # the norm only; nothing clipped
        apply_update(opt, gnorm, ema, model, cfg.batch)  # the step every trainer shares (training.core)
        history.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return ema.model, history
