"""Noise schedules as small immutable values, all expressed in the noise level σ.

The canonical noisy state is the variance-exploding (VE) form x = x0 + σ·ε. A variance-preserving (VP)
process x_vp = √ᾱ·x0 + √(1−ᾱ)·ε is the same process scaled by √ᾱ, with σ² = (1−ᾱ)/ᾱ
(Kingma et al. 2021; Karras et al. 2022, Sec. 2). Every schedule therefore only has to say how its own
time variable t maps to σ and back; ᾱ, α and log-SNR follow from σ by the conversions below.

No hidden state. ``schedule.training_sigmas(batch, generator)`` draws training noise levels from the schedule's
density; the σ list a sampler walks comes from ``noisecraft.sampling.steps.step_sigmas(schedule, steps, spacing)``
(the one way to get one), which uses ``schedule._spaced_sigmas`` below for the spacings defined by t, σ or λ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError, check_choice

# ᾱ is clamped here when a schedule is rescaled to zero terminal SNR, so that σ_max stays finite
# (σ = 4096); the same constant diffusers uses for its zero-SNR schedulers.
ZERO_SNR_ALPHA_BAR = 2.0**-24

SPACINGS = ("linspace", "leading", "trailing", "karras", "logsnr")
DENSITIES = ("uniform", "lognormal", "loguniform")


# ----------------------------------------------------------------------------------------------------------
# Conversions between σ and the other ways of naming a noise level.
def alpha_bar_from_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1 / (1 + σ²): the VP signal fraction at noise level σ."""
    return 1.0 / (1.0 + sigma**2)


def sigma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """σ = √((1 − ᾱ) / ᾱ)."""
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def vp_scale(sigma: Tensor) -> Tensor:
    """α = √ᾱ = 1/√(1+σ²): multiply a VE state by it to get the VP state, x_vp = α·x."""
    return torch.rsqrt(1.0 + sigma**2)


def log_snr_from_sigma(sigma: Tensor) -> Tensor:
    """λ = log SNR = log(ᾱ / (1−ᾱ)) = −2 log σ."""
    return -2.0 * sigma.log()


def sigma_from_log_snr(log_snr: Tensor) -> Tensor:
    """σ = exp(−λ/2)."""
    return (-0.5 * log_snr).exp()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, Eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, descending, (steps,)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def check_sigmas(sigmas: Tensor, *, final_zero: bool = False, name: str = "sigmas") -> Tensor:
    """Validate a σ list: 1-D, finite, non-negative, strictly descending (and ending at 0 if asked)."""
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise NoisecraftError(f"{name} must be a 1-D list of at least 2 noise levels, got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise NoisecraftError(f"{name} must be finite and non-negative")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise NoisecraftError(f"{name} must be strictly descending (largest noise first), got {sigmas.tolist()[:6]}...")
    if final_zero and sigmas[-1] != 0:
        raise NoisecraftError(f"{name} must end at 0 for this sampler; append 0 to the list")
    return sigmas


def _steps_arg(steps: int) -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise NoisecraftError(f"steps must be a positive integer, got {steps!r}")
    return steps


# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Schedule:
    """Base of all schedules: a map between the schedule's time t and the noise level σ.

    Subclasses give ``sigma(t)``, ``t(sigma)``, ``sigma_min``, ``sigma_max`` and a default spacing/density.
    """

    density: str = "uniform"  # how training σ are drawn: "uniform" (in t), "lognormal", "loguniform"
    p_mean: float = -1.2  # log-normal density parameters (Karras et al. 2022, Table 1)
    p_std: float = 1.2

    default_spacing: ClassVar[str] = "linspace"
    discrete: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_choice("density", self.density, DENSITIES)

    # -- the map, given by subclasses ---------------------------------------------------------------------
    @property
    def sigma_min(self) -> float:
        raise NotImplementedError

    @property
    def sigma_max(self) -> float:
        raise NotImplementedError

    @property
    def t_range(self) -> tuple[float, float]:
        """(t at σ_max, t at σ_min): the sampling direction in t."""
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def t(self, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    # -- derived quantities ------------------------------------------------------------------------------
    def alpha_bar(self, t: Tensor) -> Tensor:
        return alpha_bar_from_sigma(self.sigma(t))

    def log_snr(self, t: Tensor) -> Tensor:
        return log_snr_from_sigma(self.sigma(t))

    # -- σ lists and training noise levels ----------------------------------------------------------------
    def _spaced_sigmas(self, steps: int, spacing: str | None = None, rho: float = 7.0) -> Tensor:
        """σ list for sampling, reached through ``step_sigmas``: (steps+1,) float64, descending, last element 0.

        spacing: "linspace" (uniform in t, both ends included), "leading"/"trailing" (DDIM-style strides of
        a discrete schedule; trailing starts at the top level), "karras" (ρ-spacing, Karras et al. 2022 Eq. 5),
        "logsnr" (uniform in log-SNR, as DPM-Solver's time-uniform-λ).
        """
        steps = _steps_arg(steps)
        spacing = check_choice("spacing", spacing or self.default_spacing, SPACINGS)
        if spacing == "karras":
            sig = karras_sigmas(steps, self.sigma_min, self.sigma_max, rho)
        elif spacing == "logsnr":
            sig = torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), steps, dtype=torch.float64).exp()
        else:
            sig = self.sigma(self._t_steps(steps, spacing))
        return torch.cat([sig.to(torch.float64), sig.new_zeros(1, dtype=torch.float64)])

    def _t_steps(self, steps: int, spacing: str) -> Tensor:
        if spacing != "linspace":
            raise NoisecraftError(f"spacing {spacing!r} needs a discrete schedule; use linspace, karras or logsnr")
        t_hi, t_lo = self.t_range
        return torch.linspace(t_hi, t_lo, steps, dtype=torch.float64)

    def training_sigmas(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw (batch,) training noise levels from the schedule's density."""
        if self.density == "lognormal":
            return (self.p_mean + self.p_std * torch.randn(batch, generator=generator, dtype=torch.float64)).exp()
        if self.density == "loguniform":
            lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
            return (lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)).exp()
        return self._uniform_t_sigmas(batch, generator)

    def _uniform_t_sigmas(self, batch: int, generator: torch.Generator | None) -> Tensor:
        t_hi, t_lo = self.t_range
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        return self.sigma(t_lo + (t_hi - t_lo) * u)


# ----------------------------------------------------------------------------------------------------------
# Discrete VP schedules, built from β (Ho et al. 2020; Nichol & Dhariwal 2021; Rombach et al. 2022).
def linear_betas(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear β schedule (Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def scaled_linear_betas(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """Latent diffusion's quadratic ("scaled linear") schedule: linear in √β."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2


def cosine_betas(steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, Eq. 17: ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2), β clipped at max_beta."""

    def abar(u: Tensor) -> Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    u = torch.arange(steps + 1, dtype=torch.float64) / steps
    return (1 - abar(u[1:]) / abar(u[:-1])).clamp(max=max_beta)


def sigmoid_betas(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Sigmoid-shaped β ramp over [−6, 6] (as in GeoDiff / diffusers' "sigmoid")."""
    return torch.sigmoid(torch.linspace(-6, 6, steps, dtype=torch.float64)) * (beta_end - beta_start) + beta_start


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2023, Alg. 1: shift and scale √ᾱ so that ᾱ_T = 0 while ᾱ_1 is unchanged."""
    sqrt_abar = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * first / (first - last)
    abar = sqrt_abar**2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1 - alphas


BETA_SCHEDULES = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
}


@dataclass(frozen=True, eq=False)
class DiscreteVP(Schedule):
    """A discrete-time VP schedule given by its β_1..β_T; the time variable is the index t ∈ [0, T−1].

    σ between integer steps is interpolated linearly in log σ (as k-diffusion's DiscreteSchedule does), so
    a network trained on integer timesteps can be queried at any σ in [σ_min, σ_max].
    """

    betas: Tensor = field(default_factory=linear_betas)
    name: str = "custom"
    alphas_cumprod: Tensor = field(init=False, repr=False)
    sigmas: Tensor = field(init=False, repr=False)  # (T,) ascending in t

    default_spacing: ClassVar[str] = "trailing"
    discrete: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 2:
            raise NoisecraftError("betas must be a 1-D list of at least 2 values")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas[:-1] >= 1).any() or betas[-1] > 1:
            raise NoisecraftError(
                "betas must lie in (0, 1) (only the last may equal 1, for zero terminal SNR); "
                f"got min {betas.min().item():.3g}, max {betas.max().item():.3g}"
            )
        abar = torch.cumprod(1 - betas, 0)
        sig = sigma_from_alpha_bar(abar.clamp(min=ZERO_SNR_ALPHA_BAR))
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", abar)
        object.__setattr__(self, "sigmas", sig)

    @classmethod
    def named(
        cls,
        name: str,
        steps: int = 1000,
        zero_terminal_snr: bool = False,
        beta_start: float | None = None,
        beta_end: float | None = None,
        **kwargs,
    ) -> DiscreteVP:
        """Build "linear", "scaled_linear", "cosine" or "sigmoid" with T = steps, optionally zero-terminal-SNR."""
        check_choice("beta schedule", name, BETA_SCHEDULES)
        _steps_arg(steps)
        ends = {k: v for k, v in (("beta_start", beta_start), ("beta_end", beta_end)) if v is not None}
        if ends and name == "cosine":
            raise NoisecraftError("the cosine schedule takes no beta_start/beta_end")
        betas = BETA_SCHEDULES[name](steps, **ends)
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls(betas=betas, name=name + ("+zsnr" if zero_terminal_snr else ""), **kwargs)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def t_range(self) -> tuple[float, float]:
        return float(self.num_timesteps - 1), 0.0

    def sigma(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.num_timesteps - 1)
        lo = t.floor().long().clamp(max=self.num_timesteps - 2)
        w = t - lo
        log_sig = self.sigmas.to(t.device).log()
        return (log_sig[lo] * (1 - w) + log_sig[lo + 1] * w).exp()

    def t(self, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sig = self.sigmas.to(sigma.device).log()
        ls = sigma.clamp(min=self.sigma_min, max=self.sigma_max).log()
        hi = torch.searchsorted(log_sig, ls.reshape(-1).contiguous()).clamp(1, self.num_timesteps - 1)
        lo = hi - 1
        w = (ls.reshape(-1) - log_sig[lo]) / (log_sig[hi] - log_sig[lo])
        return (lo + w.clamp(0, 1)).reshape(sigma.shape)

    def _t_steps(self, steps: int, spacing: str) -> Tensor:
        # The three discrete spacings of Lin et al. 2023, Table 2 (diffusers' timestep_spacing).
        T = self.num_timesteps
        t_top = torch.tensor([T - 1.0], dtype=torch.float64)
        if steps > T:
            raise NoisecraftError(f"steps ({steps}) cannot exceed the schedule's {T} discrete timesteps")
        if spacing == "linspace":
            t = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().flip(0) if steps > 1 else t_top
        elif spacing == "leading":
            t = (torch.arange(steps, dtype=torch.float64) * (T // steps)).flip(0)
        else:  # trailing
            t = (torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1)[:steps]
        return t

    def _uniform_t_sigmas(self, batch: int, generator: torch.Generator | None) -> Tensor:
        # DDPM training: t ~ U{0, …, T−1}
        return self.sigmas[torch.randint(0, self.num_timesteps, (batch,), generator=generator)]


# ----------------------------------------------------------------------------------------------------------
# Continuous schedules.
@dataclass(frozen=True, eq=False)
class VPContinuous(Schedule):
    """Song et al. 2021 VP SDE: β(t) = β_min + t(β_max − β_min), ᾱ(t) = exp(−∫β), t ∈ [eps_t, 1]."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    eps_t: float = 1e-3

    def _a_b(self) -> tuple[float, float]:
        return 0.5 * (self.beta_max - self.beta_min), self.beta_min

    @property
    def sigma_min(self) -> float:
        return float(self.sigma(torch.tensor(self.eps_t)))

    @property
    def sigma_max(self) -> float:
        return float(self.sigma(torch.tensor(1.0)))

    @property
    def t_range(self) -> tuple[float, float]:
        return 1.0, self.eps_t

    def sigma(self, t: Tensor) -> Tensor:
        a, b = self._a_b()
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.expm1(a * t**2 + b * t).sqrt()

    def t(self, sigma: Tensor) -> Tensor:
        a, b = self._a_b()
        log1p = torch.log1p(torch.as_tensor(sigma, dtype=torch.float64) ** 2)
        return (-b + (b**2 + 4 * a * log1p).sqrt()) / (2 * a)


@dataclass(frozen=True, eq=False)
class _SigmaRange(Schedule):
    """A schedule defined directly on a σ interval [sigma_lo, sigma_hi]."""

    sigma_lo: float = 0.01
    sigma_hi: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.sigma_lo < self.sigma_hi:
            raise NoisecraftError(f"{type(self).__name__} schedule needs 0 < sigma_lo < sigma_hi")

    @property
    def sigma_min(self) -> float:
        return self.sigma_lo

    @property
    def sigma_max(self) -> float:
        return self.sigma_hi


@dataclass(frozen=True, eq=False)
class VE(_SigmaRange):
    """Song & Ermon 2019 (NCSN) geometric noise levels: σ(t) = σ_min·(σ_max/σ_min)^t, t ∈ [0, 1]."""

    density: str = "loguniform"

    @property
    def t_range(self) -> tuple[float, float]:
        return 1.0, 0.0

    def sigma(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_lo * (self.sigma_hi / self.sigma_lo) ** t

    def t(self, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        return (sigma / self.sigma_lo).log() / math.log(self.sigma_hi / self.sigma_lo)


@dataclass(frozen=True, eq=False)
class EDM(_SigmaRange):
    """Karras et al. 2022 ("EDM"): t = σ, ρ-spaced sampling steps, log-normal training density."""

    sigma_lo: float = 0.002
    sigma_hi: float = 80.0
    rho: float = 7.0
    density: str = "lognormal"

    default_spacing: ClassVar[str] = "karras"

    @property
    def t_range(self) -> tuple[float, float]:
        return self.sigma_hi, self.sigma_lo

    def sigma(self, t: Tensor) -> Tensor:
        return torch.as_tensor(t, dtype=torch.float64)

    def t(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64)

    def _spaced_sigmas(self, steps: int, spacing: str | None = None, rho: float | None = None) -> Tensor:
        return super()._spaced_sigmas(steps, spacing, self.rho if rho is None else rho)


# ----------------------------------------------------------------------------------------------------------
SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid", "vp", "ve", "edm")


def make_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name: one of SCHEDULES; keyword arguments go to its constructor."""
    check_choice("schedule", name, SCHEDULES)
    try:
        if name in BETA_SCHEDULES:
            return DiscreteVP.named(name, **kwargs)
        return {"vp": VPContinuous, "ve": VE, "edm": EDM}[name](**kwargs)
    except TypeError as e:
        raise NoisecraftError(f"bad argument for schedule {name!r}: {e}") from None
