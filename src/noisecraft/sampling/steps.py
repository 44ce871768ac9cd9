"""Step schedules: the σ lists samplers walk, by name, including schedules optimised for one model.

    sigmas = step_sigmas(schedule, steps, "karras")            # (steps+1,) float64, descending, ends at 0
    sigmas = step_sigmas(schedule, steps, "optimised:runs/my-model")   # fitted to that model (see below)

Named spacings (all start at the schedule's top noise level unless their name says otherwise):
- linspace / leading / trailing: uniform in the schedule's time t (Lin et al. 2023, Table 2); "leading" does NOT
  start at the top level of a discrete schedule (the classic trap with cosine schedules), so it is never a default;
- karras: ρ-spacing (Karras et al. 2022, Eq. 5); logsnr: uniform in log-SNR (Lu et al. 2022);
- quadratic: t quadratic in the step index, dense near the data (Song et al. 2021, DDIM's CIFAR-10 choice,
  here reaching the top level rather than 0.8·T);
- powerlog: one step from σ_max to min(σ_max, 20), then log σ moving as a power (0.85) of the step index down to
  σ_end = max(σ_min, 1/N), then the step to 0 — a big first step where the probability-flow ODE is nearly linear,
  and a last level that stops short of the data (the final step is one denoising call). Chosen on exact Gaussian
  mixtures (2–64-D; DDPM linear, cosine, scaled-linear and EDM schedules; benchmarks/samplers.py) as the default
  of the multistep ODE samplers; it assumes data of roughly unit scale (images in [−1, 1]);
- optimised:<path>: a schedule fitted by ``fit_schedule`` to a given denoiser and saved as JSON beside the model.

``fit_schedule`` picks the N steps on a fine log-σ grid that minimise the summed local error of a first-order
(DDIM) step along reference probability-flow trajectories of a calibration batch, by dynamic programming
(in the spirit of Watson et al. 2021's DP step selection and Sabour et al. 2024, "Align Your Steps"). Each
local error is measured in VP scale, σ_data/√(σ_data² + σ²)·‖·‖, which is how an error at σ shrinks on its
way to the data for data of scale σ_data. The fitted schedules (one per requested N) go to a JSON file; a
request for an N that was not fitted interpolates the nearest fitted schedule in log σ (as AYS does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.core.schedules import SPACINGS, Schedule, _steps_arg
from noisecraft.errors import NoisecraftError

OPTIMISED_FILE = "optimised_steps.json"
FORMAT = "noisecraft.steps/1"

STEP_SCHEDULES: dict[str, str] = {
    "default": "the schedule's own default (trailing for discrete VP, karras for edm, linspace otherwise)",
    "linspace": "uniform in t, both ends included (diffusers 'linspace')",
    "leading": "DDIM/SD strides from t=0 upwards; does not start at the top level (Lin et al. 2023)",
    "trailing": "strides from the top level downwards (Lin et al. 2023); default for discrete schedules",
    "karras": "ρ = 7 spacing, dense at low σ (Karras et al. 2022, Eq. 5)",
    "logsnr": "uniform in log-SNR λ = −2 log σ (DPM-Solver's time-uniform-λ)",
    "quadratic": "t quadratic in the step index, dense near the data (DDIM's CIFAR-10 schedule)",
    "powerlog": "σ_max, then log σ as a power of i from min(σ_max, 20) to max(σ_min, 1/N), then 0 (multistep default)",
    "optimised:<path>": "fitted to a model by fit_schedule (DP on local error); <path> = JSON file or model folder",
}


def step_sigmas(
    schedule: Schedule,
    steps: int,
    spacing: str | None = None,
    rho: float | None = None,
    sampler: str | None = None,
) -> Tensor:
    """The σ list for `steps` sampler steps: (steps+1,) float64 on the CPU, descending, last element 0.

    The one way to get a sampler's σ list (samplers read it as Python floats, so it stays on the CPU whatever
    the model's device). With no spacing (or "default") and a `sampler` name, that sampler's own default spacing
    is used (``default_spacing``); without a sampler, the schedule's default."""
    steps = _steps_arg(steps)
    name = spacing or "default"
    if name == "default" and sampler is not None:
        name = default_spacing(sampler)
    if name == "default":
        return schedule._spaced_sigmas(steps)
    if name == "powerlog":
        return powerlog_sigmas(schedule, steps)
    if name in SPACINGS:
        return schedule._spaced_sigmas(steps, name) if rho is None else schedule._spaced_sigmas(steps, name, rho)
    if name == "quadratic":
        t_hi, t_lo = schedule.t_range
        u = torch.linspace(1, 0, steps, dtype=torch.float64)
        sig = schedule.sigma(t_lo + (t_hi - t_lo) * u**2) if steps > 1 else schedule.sigma(torch.tensor([t_hi]))
        return torch.cat([sig, sig.new_zeros(1)])
    for prefix in ("optimised:", "optimized:"):
        if name.startswith(prefix):
            return load_schedule(name[len(prefix) :], steps)
    valid = ", ".join(sorted(STEP_SCHEDULES))
    raise NoisecraftError(f"unknown step schedule {name!r}; valid choices: {valid}")


def default_spacing(sampler: str) -> str:
    """The named spacing a sampler uses when none is given (its registry entry's ``spacing``)."""
    from noisecraft.errors import check_choice
    from noisecraft.sampling.registry import SAMPLER_SPECS, SAMPLERS

    return SAMPLER_SPECS[check_choice("sampler", sampler, SAMPLERS)].spacing


def powerlog_sigmas(
    schedule: Schedule,
    steps: int,
    power: float = 0.85,
    sigma_end: float | None = None,
    sigma_top: float = 20.0,
) -> Tensor:
    """The ``powerlog`` spacing: (N+1,) float64, σ_0 = σ_max, then log σ moving as a power of the step index from
    σ_top down to σ_end, then 0.

    σ_1 = min(σ_max, σ_top): above σ_top ≈ 20 (data of unit scale) the probability-flow ODE is nearly linear and
    one step crosses it (DDPM schedules reach σ_max = 157 (linear) or 4096 (cosine)); with σ_max ≤ σ_top, or
    fewer than 3 steps, the power spacing starts at σ_max itself. σ_end defaults to max(σ_min, 1/N): the last
    level stops short of the data and the final step is one denoising call. power < 1 makes the first of these
    steps large in log σ and the last ones small. power = 1, σ_end = σ_min, σ_top ≥ σ_max is ``logsnr``."""
    steps = _steps_arg(steps)
    end = max(schedule.sigma_min, 1.0 / steps) if sigma_end is None else sigma_end
    end = min(max(end, schedule.sigma_min), schedule.sigma_max)
    top = min(schedule.sigma_max, sigma_top)
    jump = top < schedule.sigma_max * (1 - 1e-9) and steps >= 3 and end < top
    m = steps - 1 if jump else steps  # levels spaced by the power law
    hi, lo = math.log(top if jump else schedule.sigma_max), math.log(end)
    u = torch.linspace(0, 1, m, dtype=torch.float64) if m > 1 else torch.zeros(1, dtype=torch.float64)
    sig = (hi + (lo - hi) * u**power).exp()
    if jump:
        sig = torch.cat([sig.new_tensor([schedule.sigma_max]), sig])
    if steps > 1 and not (sig[1:] < sig[:-1]).all():  # σ_end at σ_max: nothing to space
        raise NoisecraftError(f"powerlog needs σ_end below σ_max, got σ_end={end}")
    return torch.cat([sig, sig.new_zeros(1)])


# ----------------------------------------------------------------------------------------------------------
# Optimised schedules.
@torch.no_grad()
def fit_schedule(
    denoiser: Denoiser,
    schedule: Schedule,
    steps: Sequence[int] = (5, 10, 20, 50),
    *,
    shape: Sequence[int],
    n: int = 64,
    grid: int = 128,
    sigma_data: float | None = None,
    seed: int = 0,
    cond: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    sampler: str | None = None,
    knobs: dict | None = None,
    refine_sweeps: int = 6,
    refine_max_steps: int = 20,
) -> dict[int, Tensor]:
    """Fit one σ list per entry of `steps` to `denoiser` (≈ 2·grid network calls on a batch of n).

    Args:
        shape: per-sample shape of x, e.g. (2,) or (3, 32, 32).
        n: calibration batch size (noise drawn with `seed`).
        grid: number of candidate σ levels, log-spaced over [σ_min, σ_max] of `schedule`.
        sigma_data: data scale for the error weighting; estimated from the reference samples when None.
        sampler: if given (a registry name, with `knobs`), the schedules are then chosen for that sampler: the
            best (on the calibration batch) of the DP schedule and the named spacings, and for at most
            `refine_max_steps` steps refined from there by a pattern search in log σ over the interior levels
            that minimises the sampler's measured RMS error against the reference endpoints of the calibration
            batch (≤ refine_sweeps·2(N−1) sampler runs per N; the step is halved after a sweep without gain).
    Returns {N: (N+1,) float64 σ list ending at 0}.
    """
    steps = sorted({_steps_arg(int(s)) for s in steps})
    if steps[-1] > grid:
        raise NoisecraftError(f"grid ({grid}) must be at least the largest step count ({steps[-1]})")
    s_grid = torch.logspace(math.log10(schedule.sigma_max), math.log10(schedule.sigma_min), grid, dtype=torch.float64)
    sig = [*s_grid.tolist(), 0.0]
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, *shape, generator=g, dtype=torch.float64) * sig[0]).to(dtype=dtype, device=device)

    def D(x: Tensor, s: float) -> Tensor:
        return denoiser(x, torch.tensor(s, dtype=torch.float64), **(cond or {}))

    # Reference PF-ODE trajectories by Heun on the fine grid; X[k] the states, X0[k] = D(X[k]; σ_k).
    X, X0 = [x], []
    for k in range(grid):
        x0 = D(x, sig[k])
        X0.append(x0)
        d = (x - x0) / sig[k]
        x_next = x + (sig[k + 1] - sig[k]) * d
        if sig[k + 1] > 0:
            x_next = x + (sig[k + 1] - sig[k]) * 0.5 * (d + (x_next - D(x_next, sig[k + 1])) / sig[k + 1])
        x = x_next
        X.append(x)
    if sigma_data is None:
        sigma_data = float(X[-1].double().std())
    # cost[j, k]: RMS error (VP scale) of one DDIM step j → k against the reference state at k.
    K = grid + 1
    cost = torch.full((K, K), math.inf, dtype=torch.float64)
    for j in range(grid):
        for k in range(j + 1, K):
            r = sig[k] / sig[j]
            step = X0[j] + r * (X[j] - X0[j])
            w = sigma_data / math.sqrt(sigma_data**2 + sig[k] ** 2)
            cost[j, k] = w * float((step - X[k]).double().pow(2).mean().sqrt())
    # Dynamic programming: best[m, k] = least summed cost of reaching node k from node 0 in m steps.
    best = torch.full((steps[-1] + 1, K), math.inf, dtype=torch.float64)
    arg = torch.zeros((steps[-1] + 1, K), dtype=torch.long)
    best[0, 0] = 0.0
    for m in range(1, steps[-1] + 1):
        total = best[m - 1][:, None] + cost  # (from j, to k)
        best[m], arg[m] = total.min(0)
    out = {}
    for N in steps:
        path, k = [K - 1], K - 1
        for m in range(N, 0, -1):
            k = int(arg[m, k])
            path.append(k)
        out[N] = torch.tensor([sig[k] for k in reversed(path)], dtype=torch.float64)
    if sampler is not None:
        for N in out:
            if N > 1:
                # the best of the DP schedule and the named spacings on the calibration batch, then refined
                starts = [out[N]] + [_named(schedule, N, name) for name in ("default", "karras", "logsnr", "quadratic")]
                starts = [s for s in starts if s is not None and abs(float(s[0]) - sig[0]) < 1e-9 * sig[0]]
                sweeps = refine_sweeps if N <= refine_max_steps else 0
                out[N] = _refine(denoiser, starts, X[0], X[-1], sampler, knobs or {}, cond, sweeps, sig[-2])
    return out


def _named(schedule: Schedule, steps: int, name: str) -> Tensor | None:
    try:
        return step_sigmas(schedule, steps, name)
    except NoisecraftError:
        return None


def _refine(
    denoiser: Denoiser,
    starts: list[Tensor],
    x: Tensor,
    ref: Tensor,
    sampler: str,
    knobs: dict,
    cond: dict | None,
    sweeps: int,
    sigma_floor: float,
) -> Tensor:
    """Pattern search on log σ_1..σ_{N−1} (σ_0 = σ_max and the final 0 fixed) minimising the sampler's error,
    from the best of the starting lists."""
    from noisecraft.sampling.samplers import get_sampler

    fn = get_sampler(sampler)

    def loss(logs: Tensor) -> float:
        sig = torch.cat([sigmas[:1], logs.exp(), sigmas[-1:]])
        return float((fn(denoiser, x, sig, cond=cond, **knobs) - ref).double().pow(2).mean())

    sigmas = starts[0]
    best, logs = min(((loss(s[1:-1].log()), s[1:-1].log()) for s in starts), key=lambda p: p[0])
    top, floor = math.log(float(sigmas[0])), math.log(min(sigma_floor, float(logs.exp().min())))
    step = 0.5
    for _ in range(sweeps):
        improved = False
        for i in range(len(logs)):
            for sign in (1.0, -1.0):
                cand = logs.clone()
                cand[i] += sign * step
                bounds = torch.cat([torch.tensor([top]), cand, torch.tensor([floor - 1e-9])])
                if not (bounds[1:] < bounds[:-1]).all():
                    continue
                value = loss(cand)
                if value < best:
                    logs, best, improved = cand, value, True
                    break
        if not improved:
            step /= 2
    return torch.cat([sigmas[:1], logs.exp(), sigmas[-1:]])


def save_schedule(path: str | Path, fitted: dict[int, Tensor], **meta) -> Path:
    """Write fitted schedules as JSON; a folder path gets ``optimised_steps.json`` inside it."""
    path = Path(path)
    if path.is_dir():
        path = path / OPTIMISED_FILE
    payload = {"format": FORMAT, "schedules": {str(k): v.tolist() for k, v in sorted(fitted.items())}, **meta}
    path.write_text(json.dumps(payload, indent=1))
    return path


def read_fit_file(path: str | Path, file_name: str, fmt: str, what: str, how: str) -> dict:
    """The JSON of a saved fit: `path` is the file or a folder holding `file_name`; one clear error when it is
    missing (`how` says how to make it), unreadable, or of another format than `fmt`."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise NoisecraftError(f"no {what} at {str(path)!r}; {how}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NoisecraftError(f"{str(path)!r} is not valid JSON ({e}); fit again") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise NoisecraftError(f"{str(path)!r} is not a noisecraft {what} file (format {fmt})")
    return data


def load_schedule(path: str | Path, steps: int) -> Tensor:
    """The fitted σ list for `steps` from a JSON file (or a folder holding ``optimised_steps.json``); other step
    counts interpolate the nearest fitted list in log σ over its normalised index."""
    how = "fit one with `noisecraft samplers --fit RUN` (or fit_steps + save_schedule)"
    data = read_fit_file(path, OPTIMISED_FILE, FORMAT, "optimised step schedule", how)
    fitted = {int(k): torch.tensor(v, dtype=torch.float64) for k, v in data["schedules"].items()}
    if steps in fitted:
        return fitted[steps]
    near = min(fitted, key=lambda m: (abs(m - steps), -m))
    pos = fitted[near][:-1].log()  # positive levels of the nearest fit
    if len(pos) == 1:
        return torch.cat([pos.exp().expand(1), torch.zeros(1, dtype=torch.float64)])
    u = torch.linspace(0, len(pos) - 1, steps, dtype=torch.float64)
    lo = u.floor().long().clamp(max=len(pos) - 2)
    w = u - lo
    sig = (pos[lo] * (1 - w) + pos[lo + 1] * w).exp()
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
