"""Parameterisation as data: one table of preconditioning scalings (Karras et al. 2022, Table 1).

A network F sees c_in(σ)·x and a noise input c_noise(σ); the denoiser is D(x; σ) = c_skip(σ)·x + c_out(σ)·F.
What F is trained to predict (ε, x0, v, the score, or EDM's mixed target) is fixed by (c_skip, c_out) alone,
so the training target F* = (x0 − c_skip·x)/c_out, the forward pass, and every conversion below all read
the same row of ``PARAMETERISATIONS``. Samplers only ever see D and never branch on the prediction type.

With σ_data = 1 the rows coincide with the VP conventions of DDPM (ε), Salimans & Ho 2022 (v) and
diffusers' ``prediction_type``; the input scaling c_in = 1/√(σ²+1) then turns the VE state into the VP
state √ᾱ·x0 + √(1−ᾱ)·ε that discrete-time networks were trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.process import expand
from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError, check_choice

Scalings = tuple[Tensor, Tensor, Tensor]  # (c_skip, c_out, c_in), each shaped like σ


def _eps(s: Tensor, sd: float) -> Scalings:  # F ≈ ε:   D = x − σ·F
    return torch.ones_like(s), -s, torch.rsqrt(s**2 + sd**2)


def _x0(s: Tensor, sd: float) -> Scalings:  # F ≈ x0:  D = F
    return torch.zeros_like(s), torch.ones_like(s), torch.rsqrt(s**2 + sd**2)


def _v(s: Tensor, sd: float) -> Scalings:  # F ≈ v = (σ_d·ε − σ·x0/σ_d)/√(σ²+σ_d²)
    return sd**2 / (s**2 + sd**2), -s * sd * torch.rsqrt(s**2 + sd**2), torch.rsqrt(s**2 + sd**2)


def _edm(s: Tensor, sd: float) -> Scalings:  # Karras et al. 2022, Table 1, "Ours"
    return sd**2 / (s**2 + sd**2), s * sd * torch.rsqrt(s**2 + sd**2), torch.rsqrt(s**2 + sd**2)


def _score(s: Tensor, sd: float) -> Scalings:  # F ≈ ∇ log p_σ(x) = (x0 − x)/σ²  (Song & Ermon 2019)
    return torch.ones_like(s), s**2, torch.rsqrt(s**2 + sd**2)


PARAMETERISATIONS: dict[str, Callable[[Tensor, float], Scalings]] = {
    "eps": _eps,
    "x0": _x0,
    "v": _v,
    "edm": _edm,
    "score": _score,
}
NOISE_INPUTS = ("log_sigma", "t")


@dataclass(frozen=True, eq=False)
class Preconditioner:
    """Scalings of one parameterisation.

    Args:
        kind: one of PARAMETERISATIONS ("eps", "x0", "v", "edm", "score").
        sigma_data: data standard deviation σ_data (1.0 reproduces the VP conventions; EDM uses 0.5).
        noise_input: what the network receives as its noise level: "log_sigma" gives c_noise = ¼·ln σ
            (EDM); "t" gives the schedule's own time t(σ), e.g. the DDPM timestep index in [0, T−1].
        schedule: the schedule whose t(σ) is used when noise_input == "t".
    """

    kind: str = "eps"
    sigma_data: float = 1.0
    noise_input: str = "log_sigma"
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        check_choice("parameterisation", self.kind, PARAMETERISATIONS)
        check_choice("noise_input", self.noise_input, NOISE_INPUTS)
        if self.noise_input == "t" and self.schedule is None:
            raise NoisecraftError("noise_input='t' needs the schedule whose t(σ) the network was trained on")
        if not self.sigma_data > 0:
            raise NoisecraftError(f"sigma_data must be positive, got {self.sigma_data}")

    def scalings(self, sigma: Tensor) -> Scalings:
        """(c_skip, c_out, c_in) at σ, in float64, shaped like σ."""
        return PARAMETERISATIONS[self.kind](torch.as_tensor(sigma, dtype=torch.float64), self.sigma_data)

    def c_noise(self, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        if self.noise_input == "t":
            assert self.schedule is not None
            return self.schedule.t(sigma)
        return 0.25 * sigma.log()

    def target(self, x: Tensor, x0: Tensor, sigma: Tensor) -> Tensor:
        """The network's training target F* = (x0 − c_skip·x)/c_out; x = x0 + σ·ε."""
        return output_from_x0(self.kind, x, sigma, x0, self.sigma_data)

    def denoise(self, x: Tensor, sigma: Tensor, output: Tensor) -> Tensor:
        """D = c_skip·x + c_out·F."""
        return x0_from_output(self.kind, x, sigma, output, self.sigma_data)


# ----------------------------------------------------------------------------------------------------------
# Conversions between x0 and any parameterisation's output, at a given (x, σ).
def x0_from_output(kind: str, x: Tensor, sigma: Tensor | float, output: Tensor, sigma_data: float = 1.0) -> Tensor:
    """x0 = c_skip·x + c_out·F for the parameterisation `kind`."""
    c_skip, c_out, _ = PARAMETERISATIONS[kind](torch.as_tensor(sigma, dtype=torch.float64), sigma_data)
    return expand(c_skip, x) * x + expand(c_out, x) * output


def output_from_x0(kind: str, x: Tensor, sigma: Tensor | float, x0: Tensor, sigma_data: float = 1.0) -> Tensor:
    """F = (x0 − c_skip·x)/c_out: what a network of parameterisation `kind` should output."""
    c_skip, c_out, _ = PARAMETERISATIONS[kind](torch.as_tensor(sigma, dtype=torch.float64), sigma_data)
    return (x0 - expand(c_skip, x) * x) / expand(c_out, x)


def convert(x: Tensor, sigma: Tensor | float, value: Tensor, src: str, dst: str, sigma_data: float = 1.0) -> Tensor:
    """Convert a prediction between parameterisations (e.g. src="eps", dst="v") at state x and level σ."""
    check_choice("parameterisation", src, PARAMETERISATIONS)
    check_choice("parameterisation", dst, PARAMETERISATIONS)
    return output_from_x0(dst, x, sigma, x0_from_output(src, x, sigma, value, sigma_data), sigma_data)


def eps_from_x0(x: Tensor, sigma: Tensor | float, x0: Tensor) -> Tensor:
    """ε̂ = (x − x̂0)/σ."""
    return output_from_x0("eps", x, sigma, x0)


def score_from_x0(x: Tensor, sigma: Tensor | float, x0: Tensor) -> Tensor:
    """Tweedie: ∇ log p_σ(x) = (x̂0 − x)/σ²."""
    return output_from_x0("score", x, sigma, x0)


def v_from_x0(x: Tensor, sigma: Tensor | float, x0: Tensor) -> Tensor:
    """v = √ᾱ·ε − √(1−ᾱ)·x0 (Salimans & Ho 2022), ᾱ = 1/(1+σ²)."""
    return output_from_x0("v", x, sigma, x0)


def to_d(x: Tensor, sigma: Tensor | float, x0: Tensor) -> Tensor:
    """Probability-flow ODE derivative dx/dσ = (x − D(x; σ))/σ (Karras et al. 2022, Eq. 3 with σ(t) = t)."""
    return (x - x0) / expand(sigma, x)
