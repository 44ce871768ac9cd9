"""The sampler registry: one signature for every sampler, the ``Step`` record, and the step-by-step iterator.

    sampler(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, **knobs) -> x

Every algorithm is written once as a *stepper*, a generator ``stepper(model, x, sigmas, generator, **knobs)``
yielding ``Step`` records, where ``model(x, σ)`` is the denoiser with `cond` bound that counts network calls.
``@register(name, ...)`` records a stepper (and returns it unchanged, so the ``def`` keeps its own signature);
``get_sampler(name)`` builds the plain sampler function of the signature above, ``iterate(name, ...)`` yields the
steps. The sampler families register themselves when ``noisecraft.sampling`` is imported (its ``__init__``
imports them all), so the registry is complete whichever sampling module is imported first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import check_sigmas
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.noise import Generators


@dataclass(frozen=True)
class Step:
    """One sampler step: index i, σ_i → σ_{i+1}, the state after the step, the denoised estimate used, and
    the number of network calls so far (``nfe``)."""

    i: int
    sigma: float
    sigma_next: float
    x: Tensor
    x0_hat: Tensor
    nfe: int = 0


Stepper = Callable[..., Iterator[Step]]


@dataclass(frozen=True)
class SamplerSpec:
    """What the registry knows about a sampler: its one-line description and its properties."""

    name: str
    info: str  # paper; order; deterministic or stochastic
    deterministic: bool
    order: int  # convergence order of the deterministic ODE solvers (0: not an ODE solver)
    final_zero: bool  # the σ list must end at 0
    stepper: Stepper
    multistep: bool = False  # uses estimates of earlier steps (one step at a time it is first order)
    spacing: str = "default"  # the step spacing it uses when none is given (sampling.steps.step_sigmas)


Callback = Callable[[Step], None] | None
Sampler = Callable[..., Tensor]
SAMPLERS: dict[str, Sampler] = {}
SAMPLER_INFO: dict[str, str] = {}
SAMPLER_SPECS: dict[str, SamplerSpec] = {}


class Model:
    """The denoiser as a sampler sees it: D(x, σ) with `cond` bound; counts network calls in ``nfe``.

    ``model(x, σ, rows=idx)`` evaluates a subset of the batch (B = `batch`): per-sample conditioning (tensors
    whose first dimension is B) is sliced to the same rows.
    """

    def __init__(self, denoiser: Denoiser, cond: dict | None = None, batch: int | None = None):
        self.denoiser, self.cond, self.batch, self.nfe = denoiser, cond or {}, batch, 0

    def __call__(self, x: Tensor, sigma: float | Tensor, rows: Tensor | None = None) -> Tensor:
        self.nfe += 1
        if not torch.is_tensor(sigma):
            sigma = torch.tensor(sigma, dtype=torch.float64)
        cond = self.cond
        if rows is not None:
            cond = {k: v[rows] if _per_sample(v, self.batch) else v for k, v in cond.items()}
        return self.denoiser(x, sigma, **cond)

    def step(self, i: int, sigma: float, sigma_next: float, x: Tensor, x0: Tensor) -> Step:
        return Step(i, float(sigma), float(sigma_next), x, x0, self.nfe)


def _per_sample(v: object, batch: int | None) -> bool:
    return torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == batch


def register(
    name: str,
    info: str,
    *,
    deterministic: bool,
    order: int = 0,
    final_zero: bool = False,
    multistep: bool = False,
    spacing: str = "default",
) -> Callable[[Stepper], Stepper]:
    """Record a stepper under `name` with a one-line description; the stepper itself is returned unchanged."""

    def record(stepper: Stepper) -> Stepper:
        SAMPLERS[name] = _sampler(name, info, stepper)
        SAMPLER_INFO[name] = info
        spec = SamplerSpec(name, info, deterministic, order, final_zero, stepper, multistep, spacing)
        SAMPLER_SPECS[name] = spec
        return stepper

    return record


def _sampler(name: str, info: str, stepper: Stepper) -> Sampler:
    """The plain sampler function of registry entry `name`: runs ``iterate`` to the end."""

    def sampler(
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        cond: dict | None = None,
        generator: Generators = None,
        callback: Callback = None,
        **knobs,
    ) -> Tensor:
        for step in iterate(name, denoiser, x, sigmas, cond=cond, generator=generator, **knobs):
            if callback is not None:
                callback(step)
            x = step.x
        return x

    sampler.__name__ = sampler.__qualname__ = f"sample_{name}"
    sampler.__doc__ = f"{info}.\n\n{inspect.getdoc(stepper) or ''}"
    return sampler


def get_sampler(name: str) -> Sampler:
    """The sampler function registered under `name` (NoisecraftError listing the valid names otherwise)."""
    return SAMPLERS[check_choice("sampler", name, SAMPLERS)]


def sampler_knobs(name: str) -> dict[str, object]:
    """The knobs of a sampler and their defaults, e.g. {"eta": 0.0} for ddim."""
    spec = SAMPLER_SPECS[check_choice("sampler", name, SAMPLERS)]
    params = inspect.signature(spec.stepper).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


@torch.no_grad()
def iterate(
    name: str,
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    generator: Generators = None,
    **knobs,
) -> Iterator[Step]:
    """Run sampler `name` step by step, yielding a ``Step`` after each step; the last record's x is the sample."""
    spec = SAMPLER_SPECS[check_choice("sampler", name, SAMPLERS)]
    sigmas = check_sigmas(torch.as_tensor(sigmas, dtype=torch.float64).cpu(), final_zero=spec.final_zero)
    if not torch.is_tensor(x) or x.ndim < 1:
        raise NoisecraftError("x must be a batched tensor (B, ...)")
    if isinstance(generator, list | tuple) and len(generator) != x.shape[0]:
        raise NoisecraftError(f"got {len(generator)} generators for a batch of {x.shape[0]}; pass one per sample")
    valid = sampler_knobs(name)
    bad = sorted(set(knobs) - set(valid))
    if bad:
        choices = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
        raise NoisecraftError(f"unknown knob(s) {', '.join(bad)} for sampler {name!r}; its knobs: {choices}")
    yield from spec.stepper(Model(denoiser, cond, x.shape[0]), x, sigmas, generator, **knobs)
