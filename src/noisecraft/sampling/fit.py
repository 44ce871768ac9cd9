"""Step schedules fitted to one sampler on one model, judged on noise the fit never saw.

    fit = fit_steps(denoiser, schedule, (5, 10, 20), shape=(3, 32, 32), sampler="unipc")
    fit.sigmas[10]        # (11,) float64 σ list ending at 0: fitted, or the best named spacing (see fit.chosen[10])

The objective is the sampler's own end-to-end error: the RMS distance between what `sampler` makes from a start
x = σ_max·ε in N steps — including its final step to σ = 0 — and the probability-flow ODE solution from the same
start (`ref_steps` UniPC-3 steps, uniform in log σ, to σ_min, then one denoising call, as the sampler's last step
does: a fixed cost, where an adaptive solver's cost depends on how smooth the network is). This is the
"global error" view of the step-selection literature: GITS (Chen et al. 2024) and DMN (Xue et al. 2024,
"Accelerating diffusion sampling with optimized time steps") optimise the steps of a *given* solver, and Align
Your Steps (Sabour et al. 2024) refines a schedule by local coordinate moves from a good start. Unlike a
per-step local-error proxy (``steps.fit_schedule``'s dynamic programme on DDIM steps), it sees the higher-order
solver, its warm-up and lower-order final steps, and where the last level should stop.

Generalisation comes from three choices, each tested on held-out noise and on other problems:
1. a start from a small family (``steps.powerlog_sigmas``: log σ a power p of the step index from σ_max, or from
   20 after one step, down to σ_end), chosen on the calibration batch together with the named spacings;
2. a short coordinate search on the interior log σ levels (step halved after a sweep without gain) that only
   accepts moves lowering the calibration error;
3. a separate validation batch: among the refined list, the family start and every named spacing, the one with the
   least validation error is kept, so the fit is never worse than the best named spacing *on the validation noise*
   (``chosen[N]`` says "refined", "family" or "named:<spacing>", the fall-back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import Schedule, _steps_arg
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.steps import powerlog_sigmas, step_sigmas

NAMED = ("default", "trailing", "linspace", "karras", "logsnr", "quadratic", "powerlog")
POWERS = (0.4, 0.55, 0.7, 0.85, 1.0)
ENDS = (0.02, 0.05, 0.1, 0.2, 0.5)  # candidate σ_end (besides σ_min), for data of roughly unit scale
TOPS = (20.0, math.inf)  # σ_1 = min(σ_max, top): with and without the one-step crossing of the top levels


@dataclass
class FittedSteps:
    """The outcome of ``fit_steps``: one σ list per step count, and how it was chosen."""

    sampler: str
    knobs: dict
    sigmas: dict[int, Tensor] = field(default_factory=dict)  # N -> (N+1,) float64, ends at 0
    chosen: dict[int, str] = field(default_factory=dict)  # N -> "refined", "family" or "named:<spacing>"
    calibration: dict[int, float] = field(default_factory=dict)  # N -> RMS error of the refined list (calibration)
    validation: dict[int, dict[str, float]] = field(default_factory=dict)  # N -> {candidate: RMS error (validation)}

    def meta(self) -> dict:
        """JSON-ready description (saved beside the schedules by ``save_schedule``)."""
        return {
            "sampler": self.sampler,
            "knobs": self.knobs,
            "chosen": {str(k): v for k, v in self.chosen.items()},
            "validation_rms": {str(k): v for k, v in self.validation.items()},
        }


class _Problem:
    """Start states and exact PF-ODE end points of one batch: err(σ list) = RMS error of the sampler's output."""

    def __init__(self, denoiser, schedule, x, cond, sampler, knobs, ref_steps):
        self.denoiser, self.x, self.cond, self.knobs = denoiser, x, cond, knobs
        self.fn = get_sampler(sampler)
        top, bottom = math.log(schedule.sigma_max), math.log(schedule.sigma_min)
        fine = torch.linspace(top, bottom, ref_steps + 1, dtype=torch.float64).exp()
        sol = get_sampler("unipc")(denoiser, x, fine, cond=cond, order=3)
        self.ref = denoiser(sol, torch.tensor(schedule.sigma_min, dtype=torch.float64), **(cond or {}))

    def err(self, sigmas: Tensor) -> float:
        out = self.fn(self.denoiser, self.x, sigmas, cond=self.cond, **self.knobs)
        e = float((out - self.ref).double().pow(2).mean().sqrt())
        return e if math.isfinite(e) else math.inf


def _named(schedule: Schedule, steps: int, name: str) -> Tensor | None:
    try:
        s = step_sigmas(schedule, steps, name)
    except NoisecraftError:
        return None
    return s if abs(float(s[0]) - schedule.sigma_max) <= 1e-9 * schedule.sigma_max else None  # must start at σ_max


def _family(schedule: Schedule, steps: int) -> list[Tensor]:
    ends = sorted({schedule.sigma_min, *(e for e in ENDS if schedule.sigma_min < e < schedule.sigma_max)})
    out = []
    for top in TOPS:
        for p in POWERS:
            for e in ends:
                out.append(powerlog_sigmas(schedule, steps, p, e, top))
    return out


def _refine(prob: _Problem, sigmas: Tensor, lo: float, sweeps: int, step: float = 0.25) -> tuple[Tensor, float]:
    """Coordinate search on log σ_1..σ_{N−1} (σ_0 = σ_max and the final 0 fixed), levels kept descending and
    ≥ e^lo; returns the best list and its error."""
    logs = sigmas[1:-1].log()
    best = prob.err(sigmas)
    top = math.log(float(sigmas[0]))

    def make(ls: Tensor) -> Tensor:
        return torch.cat([sigmas[:1], ls.exp(), sigmas[-1:]])

    for _ in range(sweeps):
        improved = False
        for i in range(len(logs)):
            for sign in (-1.0, 1.0):
                cand = logs.clone()
                cand[i] += sign * step
                bounds = torch.cat([torch.tensor([top], dtype=torch.float64), cand])
                if not (bounds[1:] < bounds[:-1]).all() or float(cand[-1]) < lo - 1e-12:
                    continue
                value = prob.err(make(cand))
                if value < best:
                    logs, best, improved = cand, value, True
                    break
        if not improved:
            step /= 2
            if step < 0.01:
                break
    return make(logs), best


@torch.no_grad()
def fit_steps(
    denoiser: Denoiser,
    schedule: Schedule,
    steps: Sequence[int] = (5, 10, 20),
    *,
    shape: Sequence[int],
    sampler: str = "unipc",
    knobs: dict | None = None,
    n: int = 256,
    seed: int = 0,
    cond: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    ref_steps: int = 256,
    sweeps: int = 8,
    refine_max_steps: int = 20,
) -> FittedSteps:
    """Fit one σ list per entry of `steps` for `sampler` (with `knobs`) to `denoiser`.

    Args:
        shape: per-sample shape of x, e.g. (2,) or (3, 32, 32).
        n: paths in the calibration batch and, separately, in the validation batch (2n start noises in all,
            drawn from `seed`); `cond` (e.g. class labels of batch n) applies to both.
        ref_steps: steps of the reference solves (UniPC-3, uniform in log σ; its error is ~1e-6 of the data
            scale on the mixtures of the test suite at 256).
        sweeps: coordinate-search sweeps (each ≤ 2(N−1) sampler runs) for N ≤ refine_max_steps.
    Cost (network calls on batches of n): 2·ref_steps for the references, then per N about
    (|family| + |named| + 2(N−1)·sweeps + |named| + 2)·N.
    """
    if n < 2:
        raise NoisecraftError(f"n must be at least 2 calibration paths, got {n}")
    steps_list = sorted({_steps_arg(int(s)) for s in steps})
    knobs = dict(knobs or {})
    get_sampler(sampler)  # a clear error for an unknown name before any work
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(2 * n, *shape, generator=g, dtype=torch.float64)
    x = (schedule.sigma_max * eps).to(dtype=dtype, device=device)
    cal = _Problem(denoiser, schedule, x[:n], cond, sampler, knobs, ref_steps)
    val = _Problem(denoiser, schedule, x[n:], cond, sampler, knobs, ref_steps)
    out = FittedSteps(sampler, knobs)
    lo = math.log(schedule.sigma_min)
    for N in steps_list:
        named = {name: s for name in NAMED if (s := _named(schedule, N, name)) is not None}
        if N == 1:  # nothing to fit: the single step σ_max → 0
            out.sigmas[N], out.chosen[N] = next(iter(named.values())), f"named:{next(iter(named))}"
            continue
        starts = [*named.values(), *_family(schedule, N)]
        errs = [cal.err(s) for s in starts]
        start = starts[min(range(len(starts)), key=errs.__getitem__)]
        refined, cal_err = _refine(cal, start, lo, sweeps if N <= refine_max_steps else 0)
        # named first, so that a tie (the search kept a named start unchanged) is reported as that name
        candidates = {**{f"named:{k}": s for k, s in named.items()}, "family": start, "refined": refined}
        scores = {k: val.err(s) for k, s in candidates.items()}
        pick = min(scores, key=scores.get)
        out.sigmas[N], out.chosen[N] = candidates[pick], pick
        out.calibration[N] = cal_err
        out.validation[N] = scores
    return out
