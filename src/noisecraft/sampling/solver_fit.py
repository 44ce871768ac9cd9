"""Solver coefficients fitted to one model and one σ list ("fitted_ms"), judged on noise the fit never saw.

    steps = fit_steps(denoiser, schedule, (10,), shape=(16,), sampler="unipc", knobs={"order": 3})
    solver = fit_solver(denoiser, schedule, steps.sigmas[10], shape=(16,), base="unipc", knobs={"order": 3})
    x = solver.sample(denoiser, schedule.sigma_max * eps)     # or get_sampler("fitted_ms")(..., **solver.knobs())
    save_solvers("runs/my-model", {10: solver})               # runs/my-model/fitted_solver.json; load_solvers(...)

Every multistep sampler of noisecraft that is linear in its past denoised estimates (DDIM, DPM-Solver++ 2M/3M,
UniPC with its free corrector folded in) is, on a fixed σ list, one linear multistep map of the evaluated states

    x_{i+1} = a_i · x_i + Σ_{j<K} b_{i,j} · x̂0_{i−j},      x̂0_i = D(x_i; σ_i),

with a_i = σ_{i+1}/σ_i and weights b that depend only on the σ list (``base_coefficients`` reads them off the
sampler itself by running it on a probe model). Generic order conditions make these weights right for every
smooth model; the model at hand is one model. Following the "empirical model statistics" of DPM-Solver-v3
(Zheng et al. 2023) and the per-model solvers of Bespoke solvers (Shaul et al. 2024) and S4S (Frankel et al.
2025), ``fit_solver`` starts from a base sampler's weights on a given σ list (e.g. ``fit.fit_steps``'s choice)
and fits (a, b) to the model by a derivative-free coordinate search on calibration paths, minimising the
mean-square distance to the probability-flow ODE solution from the same start (the end-to-end objective of
``fit.fit_steps``). A few dozen numbers are fitted on thousands of paths.

The rule of ``fit.choose`` decides on a separate validation batch: the fitted coefficients replace the base
sampler only when their per-path errors are lower by more than z standard errors of the paired differences;
otherwise ``FittedSolver.chosen`` is "base" and the coefficients are the base sampler's own (same output).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import Schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.fit import Z_MARGIN, _Problem, _tile_cond, choose
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.noise import Generators
from noisecraft.sampling.registry import Model, Step, iterate, register

VERBOSE = False
LINE = 4  # moves along one coordinate per sweep while each lowers the error
WINDOW = 4  # past estimates per step (UniPC-3 with its corrector needs 4)


@register(
    "fitted_ms",
    "Linear multistep map with per-step weights fitted to the model (sampling/solver_fit.py; DPM-Solver-v3's "
    "empirical statistics, Bespoke/S4S-style): x' = a·x + Σ b_j x̂0_j; defaults: DDIM, deterministic",
    deterministic=True,
    order=1,
    multistep=True,
    spacing="powerlog",
)
def fitted_ms(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    a: Tensor | None = None,
    b: Tensor | None = None,
    fitted_for: Tensor | None = None,
) -> Iterator[Step]:
    """`a` (N,) state weights and `b` (N, K) weights of the last K denoised estimates (most recent first) for
    the N steps of `sigmas`, e.g. ``FittedSolver.knobs()``; None: DDIM's (a = σ'/σ, b = [1 − σ'/σ]).
    `fitted_for`: the σ list the weights were fitted on; another list is refused (the weights belong to it)."""
    if fitted_for is not None:
        want = torch.as_tensor(fitted_for, dtype=torch.float64).cpu()
        if want.shape != sigmas.shape or not torch.allclose(sigmas.double().cpu(), want, rtol=1e-6, atol=0):
            shown = " ".join(f"{v:.3g}" for v in want.tolist())
            raise NoisecraftError(f"these fitted_ms weights belong to the σ list {shown} ({len(want) - 1} steps); "
                                  "sample with that list (--steps N --schedule optimised:RUN)")  # fmt: skip
    sig = sigmas.tolist()
    n = len(sig) - 1
    if a is None or b is None:
        a = torch.tensor([s1 / s0 for s0, s1 in pairwise(sig)], dtype=torch.float64)
        b = (1 - a)[:, None]
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != (n,) or b.ndim != 2 or b.shape[0] != n:
        raise NoisecraftError(f"fitted_ms needs a ({n},) and b ({n}, K) for {n} steps, got {tuple(a.shape)}, "
                              f"{tuple(b.shape)}")  # fmt: skip
    hist: list[Tensor] = []
    for i in range(n):
        x0 = model(x, sig[i])
        hist = [x0, *hist][: b.shape[1]]
        x = float(a[i]) * x + sum(float(b[i, j]) * h for j, h in enumerate(hist))
        yield model.step(i, sig[i], sig[i + 1], x, x0)


class _Probe:
    """A model whose k-th call returns the unit vector e_k of R^n, whatever x and σ: running a linear sampler on
    it from x = 0 leaves the weights of each x̂0_k in the coordinates of the states."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        e = torch.zeros_like(x)
        if self.calls < self.n:
            e[:, self.calls] = 1.0
        self.calls += 1
        return e


def base_coefficients(sampler: str, sigmas: Tensor, knobs: dict | None = None) -> tuple[Tensor, Tensor]:
    """(a (N,), b (N, WINDOW)): `sampler` on `sigmas` written as ``fitted_ms`` weights (module doc).

    Raises NoisecraftError when the sampler is visibly not of that form (more than one network call per step,
    or more than WINDOW past estimates); ``fit_solver`` also checks that the weights reproduce the sampler."""
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    n = len(sig) - 1
    probe = _Probe(n)
    x = torch.zeros(1, n, dtype=torch.float64)
    states = [x]
    for step in iterate(sampler, probe, x, sig, **(knobs or {})):
        states.append(step.x)
    if probe.calls != n or len(states) != n + 1:
        raise NoisecraftError(f"sampler {sampler!r} makes {probe.calls} calls in {n} steps; fitted_ms needs one")
    a = torch.tensor([float(sig[i + 1] / sig[i]) for i in range(n)], dtype=torch.float64)
    b = torch.zeros(n, WINDOW, dtype=torch.float64)
    for i in range(n):
        w = (states[i + 1] - a[i] * states[i])[0]  # (n,) weights of x̂0_0 … x̂0_{n−1}
        late = w[i + 1 :].abs().sum() + (w[: i - WINDOW + 1].abs().sum() if i >= WINDOW else 0.0)
        if late > 1e-9:
            raise NoisecraftError(f"sampler {sampler!r} is not a linear multistep map of window {WINDOW}")
        for j in range(min(WINDOW, i + 1)):
            b[i, j] = w[i - j]
    return a, b


@dataclass
class FittedSolver:
    """The outcome of ``fit_solver``: a σ list and its ``fitted_ms`` weights, and how they were chosen."""

    base: str
    base_knobs: dict
    sigmas: Tensor  # (N+1,) float64 ending at 0; starts below sigma_max when the analytic start is used
    a: Tensor  # (N,)
    b: Tensor  # (N, WINDOW)
    sigma_max: float = math.inf
    chosen: str = "base"  # "fitted" or "base"
    calibration: dict[str, float] = field(default_factory=dict)  # {"base", "fitted"}: RMS on calibration
    validation: dict[str, float] = field(default_factory=dict)  # {"base", "fitted"}: RMS on validation
    z: float = 0.0  # paired z-score of fitted − base on validation (negative: fitted better)

    def skips(self) -> bool:
        return float(self.sigmas[0]) < self.sigma_max * (1 - 1e-9)

    def knobs(self) -> dict:
        return {"a": self.a, "b": self.b, "fitted_for": self.sigmas}

    def sample(self, denoiser: Denoiser, x: Tensor, start: GaussianStart | None = None, cond: dict | None = None):
        """The sample from x = σ_max·ε (the analytic start from σ_max to σ_0 first when the list skips)."""
        from noisecraft.sampling.registry import get_sampler

        if self.skips():
            if start is None:
                raise NoisecraftError("this fitted solver starts below σ_max; pass its GaussianStart")
            x = start.flow(x, self.sigma_max, float(self.sigmas[0]))
        return get_sampler("fitted_ms")(denoiser, x, self.sigmas, cond=cond, **self.knobs())

    def to_dict(self) -> dict:
        """JSON-ready form (``save_solvers``); ``from_dict`` restores the sampler (not the fit's diagnostics)."""
        return {
            "base": self.base,
            "base_knobs": self.base_knobs,
            "sigmas": self.sigmas.tolist(),
            "a": self.a.tolist(),
            "b": self.b.tolist(),
            "sigma_max": self.sigma_max,
            "chosen": self.chosen,
            "validation_rms": self.validation,
            "validation_z": self.z,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FittedSolver:
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return cls(d["base"], d["base_knobs"], t(d["sigmas"]), t(d["a"]), t(d["b"]), d["sigma_max"], d["chosen"])


SOLVER_FILE = "fitted_solver.json"  # beside optimised_steps.json (sampling/steps.py)
SOLVER_FORMAT = "noisecraft-fitted-solver-1"


def save_solvers(path: str | Path, solvers: dict[int, FittedSolver]) -> Path:
    """Write fitted solvers (one per step count) as JSON; a folder gets ``fitted_solver.json`` inside it."""
    path = Path(path)
    if path.is_dir():
        path = path / SOLVER_FILE
    payload = {"format": SOLVER_FORMAT, "solvers": {str(k): v.to_dict() for k, v in sorted(solvers.items())}}
    path.write_text(json.dumps(payload, indent=1))
    return path


def load_solvers(path: str | Path) -> dict[int, FittedSolver]:
    """The fitted solvers saved by ``save_solvers`` (a JSON file, or a folder holding ``fitted_solver.json``)."""
    from noisecraft.sampling.steps import read_fit_file

    how = "fit one with `noisecraft samplers --fit RUN --solver` (or fit_solver + save_solvers)"
    data = read_fit_file(path, SOLVER_FILE, SOLVER_FORMAT, "fitted solver", how)
    return {int(k): FittedSolver.from_dict(v) for k, v in data["solvers"].items()}


def _run(denoiser, x: Tensor, sigmas: list[float], a: Tensor, b: Tensor, cond: dict | None) -> Tensor:
    """``fitted_ms`` without the registry's bookkeeping (the inner loop of the search)."""
    hist: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        x0 = denoiser(x, sigmas[i], **(cond or {}))
        hist = [x0, *hist][: b.shape[1]]
        x = float(a[i]) * x + sum(float(b[i, j]) * h for j, h in enumerate(hist))
    return x


@torch.no_grad()
def fit_solver(
    denoiser: Denoiser,
    schedule: Schedule,
    sigmas: Tensor,
    *,
    shape: Sequence[int],
    base: str = "unipc",
    knobs: dict | None = None,
    start: GaussianStart | None = None,
    n: int = 4096,
    n_val: int = 4096,
    seed: int = 0,
    cond: dict | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    ref_steps: int = 256,
    sweeps: int = 6,
    step: float = 0.1,
    z: float = Z_MARGIN,
) -> FittedSolver:
    """Fit ``fitted_ms`` weights for the σ list `sigmas` (e.g. ``fit_steps``'s choice), starting from sampler
    `base` (with `knobs`) on it; with a list that starts below σ_max, `start` gives the analytic first step.

    Coordinate search (as ``fit._refine``, up to LINE moves of `step` per coordinate while they help, `step`
    halved after a sweep without gain, at most `sweeps` sweeps) on a_i and b_{i,j}, in units of the step's
    update size 1 − σ_{i+1}/σ_i, accepting only moves that lower the RMS error on the n calibration paths. Not
    gradient descent: where a few paths that end in another mode carry the error, the pathwise gradient does
    not see how many paths cross a mode boundary (measured on 16-D cosine, UniPC-3, 10 steps: Adam on 2048
    paths lowered the calibration error by 22 % and raised the validation error). The n_val validation paths
    (drawn after them from `seed`) decide by the paired test of ``fit.choose`` with margin `z`: the fitted
    weights replace the base sampler's only when they win there.
    `cond` applies to the n calibration paths (per-sample tensors of n rows are repeated over the validation
    rows, as in ``fit_steps``); states are made in `dtype` on `device`.
    Cost: about (2·#weights·sweeps + 2·n_val/n) runs of N steps on batches of n, after 2 reference solves."""
    sig = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
    if len(sig) < 2 or float(sig[-1]) != 0.0:
        raise NoisecraftError("fit_solver needs a σ list ending at 0 with at least one step")
    top = schedule.sigma_max
    skips = float(sig[0]) < top * (1 - 1e-9)
    if skips and start is None:
        raise NoisecraftError("the σ list starts below σ_max: pass the GaussianStart of the analytic start")
    if n < 2 or n_val < 2:
        raise NoisecraftError(f"n and n_val must be at least 2 paths, got {n} and {n_val}")
    knobs = dict(knobs or {})
    a0, b0 = base_coefficients(base, sig, knobs)
    N = len(sig) - 1
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n + n_val, *shape, generator=g, dtype=torch.float64)
    x = (top * eps).to(dtype=dtype, device=device)
    cal = _Problem(denoiser, schedule, x[:n], cond, base, knobs, ref_steps, start)
    val = _Problem(denoiser, schedule, x[n:], _tile_cond(cond, n, n_val), base, knobs, ref_steps, start)
    levels = sig.tolist()

    def per_path(prob: _Problem, a: Tensor, b: Tensor) -> Tensor:
        xs = start.flow(prob.x, top, levels[0]) if skips else prob.x
        out = _run(denoiser, xs, levels, a, b, prob.cond)
        e = (out - prob.ref).double().pow(2).reshape(len(out), -1).mean(1).cpu()
        return torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))  # (n,) per-path MSE

    ref_base = val.per_path(sig)
    # the same states up to rounding: per-path RMS errors differ by at most the distance of the two outputs
    tol = (1e-9 if dtype == torch.float64 else 1e-4) * (1 + float(val.ref.double().pow(2).mean().sqrt()))
    if not ((per_path(val, a0, b0).sqrt() - ref_base.sqrt()).abs() <= tol).all():
        raise NoisecraftError(f"sampler {base!r} with {knobs} is not a linear multistep map of its x̂0 (fitted_ms)")
    unit = (1 - a0).tolist()  # the update size of each step: moves are in these units
    coords = [(i, 0) for i in range(N) if float(sig[i + 1]) > 0]  # (i, 0): a_i (the step into 0 keeps a = 0)
    coords += [(i, 1 + j) for i in range(N) for j in range(min(WINDOW, i + 1))]  # (i, 1+j): b_{i,j}
    theta = torch.cat([a0[:, None], b0], 1)  # (N, 1 + WINDOW)
    best = float(per_path(cal, theta[:, 0], theta[:, 1:]).mean())
    h = step
    for sweep in range(sweeps):
        improved = False
        for i, k in coords:
            for sign in (-1.0, 1.0):
                moved = False
                for _ in range(LINE):  # keep moving while the error falls
                    cand = theta.clone()
                    cand[i, k] += sign * h * unit[i]
                    value = float(per_path(cal, cand[:, 0], cand[:, 1:]).mean())
                    if not value < best:
                        break
                    theta, best, improved, moved = cand, value, True, True
                if moved:
                    break
        if VERBOSE:
            print(f"  sweep {sweep + 1} (step {h:g}): calibration rms {math.sqrt(best):.5f}")
        if not improved:
            h /= 2
    a, b = theta[:, 0].clone(), theta[:, 1:].clone()
    per = {"named:base": ref_base, "fitted": per_path(val, a, b)}
    pick, scores = choose(per, z)
    out = FittedSolver(base, knobs, sig, a0, b0, top, "base")
    if pick == "fitted":
        out.a, out.b, out.chosen = a, b, "fitted"
    out.calibration = {"base": float(per_path(cal, a0, b0).mean().sqrt()), "fitted": math.sqrt(best)}
    out.validation = {k: float(v.mean().sqrt()) for k, v in zip(("base", "fitted"), per.values())}
    out.z = scores["fitted"]
    return out
