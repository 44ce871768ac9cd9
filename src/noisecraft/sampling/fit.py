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
   accepts moves lowering the calibration error and keeps neighbouring steps within a ratio ``OMEGA`` = 2 (a
   zigzag list destabilises a multistep solver on rare paths that no validation batch of a few hundred sees);
3. a separate validation batch decides, by a paired test on its per-path errors (``choose``): the best named
   spacing on validation is the fall-back, and a fitted list (the refined one or the family start) replaces it
   only when its per-path mean-square error is lower by more than ``z`` standard errors of the paired differences.
   A mean over 128 paths is easily swayed by a few paths that end in another mode, and a "win" within that noise
   does not carry over to new noise (measured: without the test the fit lost to the best named spacing on
   held-out noise in 7 of 108 benchmark cases, by up to 4.3×). ``chosen[N]`` says "refined", "family" or
   "named:<spacing>". The validation paths are screened from a pool 8× larger (``sampling.screened``): every
   candidate runs on the whole pool (N calls per path, no reference), the paths where their end points disagree
   most are taken whole and the rest drawn at random, weighted to stand for the pool. The rare mode-switching
   paths that decide a ranking are then counted over the pool, while only the validation batch pays for a
   reference solve (measured: a plain 512-path batch kept a named spacing 1.5-4.5× worse on new noise than another
   named one in 5 of 192 benchmark cases at 20 steps).

With a ``start`` (``sampling.gaussian_start.GaussianStart``: the data's mean and covariance), the fit also
considers lists that begin *below* σ_max, at a level σ_skip reached from σ_max by the closed-form flow of the
Gaussian with those statistics (no network call; Wang & Vastola 2023), so that all N calls are spent below it.
σ_skip is one more coordinate of the search, started from a few multiples of the data scale (``SKIPS``), and the
same validation rule decides: a skipping list ("gauss-family", "gauss-refined") is kept only when it beats the
best named spacing (started at σ_max) by the paired test. ``sigmas[N][0] < sigma_max`` then means "start with
``start.flow(x, sigma_max, sigmas[N][0])``" (``FittedSteps.start_state``).
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
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.screened import Design, screen, spread
from noisecraft.sampling.steps import powerlog_sigmas, step_sigmas

NAMED = ("default", "trailing", "linspace", "karras", "logsnr", "quadratic", "powerlog")
POWERS = (0.4, 0.55, 0.7, 0.85, 1.0)
# Largest ratio of neighbouring steps (in log σ) the search may create. Variable-step multistep methods are
# zero-stable only for bounded step ratios (ω < 1 + √2 for variable-step BDF2, Grigorieff 1983; smaller for higher
# orders; Hairer, Nørsett & Wanner, Sec. III.5): a list whose steps zigzag can be accurate on most paths and
# amplify the error of a rare few many-fold (measured: UniPC-3, 20 steps, ratios up to 9, 99 % of the held-out
# error in 5 of 1024 paths, 3.3× the powerlog error, though 2× better on 512 validation paths).
OMEGA = 2.0
# Candidates screened on the validation pool: those within this factor of the best calibration RMS error (a list
# far worse on the calibration batch does not win; leaving it out of the screen only widens its own estimate).
SCREEN_WITHIN = 3.0
Z_MARGIN = 2.0  # standard errors by which a fitted list must beat the best named spacing on validation
ENDS = (0.02, 0.05, 0.1, 0.2, 0.5)  # candidate σ_end (besides σ_min), for data of roughly unit scale
TOPS = (20.0, math.inf)  # σ_1 = min(σ_max, top): with and without the one-step crossing of the top levels
# σ_skip candidates of the analytic start, in units of the data scale √(tr Σ / D); the search then moves σ_skip.
SKIPS = (30.0, 15.0, 8.0, 5.0, 3.0)
# Step counts up to which skipping lists are candidates. Above it the paired test was fooled on the benchmark:
# skipping lists that won on 512 validation paths lost 2.7-3.6× on new noise at 20 steps (64-D linear gauss_pc,
# 16-D cosine UniPC-3), while at 20 steps the plain fit is as good (benchmarks/results/samplers.md).
SKIP_MAX_STEPS = 10


@dataclass
class FittedSteps:
    """The outcome of ``fit_steps``: one σ list per step count, and how it was chosen."""

    sampler: str
    knobs: dict
    sigmas: dict[int, Tensor] = field(default_factory=dict)  # N -> (N+1,) float64, ends at 0
    chosen: dict[int, str] = field(default_factory=dict)  # N -> "refined", "family" or "named:<spacing>"
    calibration: dict[int, float] = field(default_factory=dict)  # N -> RMS error of the refined list (calibration)
    validation: dict[int, dict[str, float]] = field(default_factory=dict)  # N -> {candidate: RMS error (validation)}
    margin: dict[int, dict[str, float]] = field(default_factory=dict)  # N -> {fitted candidate: paired z-score}
    sigma_max: float = math.inf  # the schedule's top level: a list starting below it starts with the analytic jump
    pool: int = 0  # start paths screened for the validation batch (``screened``)

    def skips(self, steps: int) -> bool:
        """Whether the list for `steps` starts below σ_max (it then needs ``start_state``)."""
        return float(self.sigmas[steps][0]) < self.sigma_max * (1 - 1e-9)

    def start_state(self, x: Tensor, steps: int, start: GaussianStart | None = None) -> Tensor:
        """The sampler's start state for the list of `steps`, from x = σ_max·ε: x itself, or the closed-form
        Gaussian flow of `start` from σ_max down to the list's first level when the list skips."""
        if not self.skips(steps):
            return x
        if start is None:
            raise NoisecraftError(f"the fitted list for {steps} steps starts below σ_max; pass its GaussianStart")
        return start.flow(x, self.sigma_max, float(self.sigmas[steps][0]))

    def meta(self) -> dict:
        """JSON-ready description (saved beside the schedules by ``save_schedule``)."""
        return {
            "sampler": self.sampler,
            "knobs": {
                k: v if isinstance(v, int | float | str | bool | None) else type(v).__name__
                for k, v in self.knobs.items()
            },
            "chosen": {str(k): v for k, v in self.chosen.items()},
            "validation_rms": {str(k): v for k, v in self.validation.items()},
            "validation_z": {str(k): v for k, v in self.margin.items()},
            "sigma_max": self.sigma_max,
            "pool": self.pool,
        }


class _Problem:
    """Start states and exact PF-ODE end points of one batch: err(σ list) = RMS error of the sampler's output."""

    def __init__(self, denoiser, schedule, x, cond, sampler, knobs, ref_steps, start=None):
        self.denoiser, self.x, self.cond, self.knobs = denoiser, x, cond, knobs
        self.fn, self.start, self.top = get_sampler(sampler), start, schedule.sigma_max
        self.ref = None
        if ref_steps == 0:  # runs only (the screening pool): no reference end points
            return
        top, bottom = math.log(schedule.sigma_max), math.log(schedule.sigma_min)
        fine = torch.linspace(top, bottom, ref_steps + 1, dtype=torch.float64).exp()
        sol = get_sampler("unipc")(denoiser, x, fine, cond=cond, order=3)
        self.ref = denoiser(sol, torch.tensor(schedule.sigma_min, dtype=torch.float64), **(cond or {}))

    @classmethod
    def on_reference(cls, denoiser, x, ref, cond, sampler, knobs) -> _Problem:
        """The same problem with given reference end points (benchmarks/samplers_bound.py: exact ones)."""
        self = cls.__new__(cls)
        self.denoiser, self.x, self.cond, self.knobs, self.fn, self.ref = (
            denoiser,
            x,
            cond,
            knobs,
            get_sampler(sampler),
            ref,
        )
        self.start, self.top = None, math.inf
        return self

    def run(self, sigmas: Tensor) -> Tensor:
        """The sampler's outputs (n, ...) on this batch. A list starting below σ_max starts from the analytic
        Gaussian flow of ``start`` down to its first level."""
        x = self.x
        if float(sigmas[0]) < self.top * (1 - 1e-9):
            x = self.start.flow(x, self.top, float(sigmas[0]))
        return self.fn(self.denoiser, x, sigmas, cond=self.cond, **self.knobs)

    def per_path(self, sigmas: Tensor) -> Tensor:
        """(n,) float64 mean-square error of each path (inf where the sampler's output is not finite)."""
        out = self.run(sigmas)
        e = (out - self.ref).double().pow(2).reshape(len(out), -1).mean(1).cpu()
        return torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))

    def err(self, sigmas: Tensor) -> float:
        return float(self.per_path(sigmas).mean().sqrt())


def choose(
    per_path: dict[str, Tensor], z: float = Z_MARGIN, design: Design | None = None
) -> tuple[str, dict[str, float]]:
    """The validation decision: (kept candidate, {fitted candidate: z-score}).

    `per_path` maps candidate names to (n,) per-path mean-square errors on the same validation paths; names
    starting with "named:" are the named spacings; `design` (``screened.screen``) weights the paths of a screened
    pool (default: a plain batch, each path weight 1). The fall-back is the named one of least mean error. A fitted
    candidate replaces it when the paired differences d = e_fitted − e_named have mean(d) < −z·se(mean(d)) (a
    one-sided paired test); of those, the one of least mean error is kept. The z-score reported is
    mean(d)/se(mean(d))."""
    named = {k: v for k, v in per_path.items() if k.startswith("named:")}
    if not named:
        raise NoisecraftError("choose needs at least one named spacing")
    design = design or Design.plain(len(next(iter(per_path.values()))))
    fallback = min(named, key=lambda k: design.mean(named[k]))
    base = named[fallback]
    scores, passed = {}, []
    for k, v in per_path.items():
        if k in named:
            continue
        d = v - base
        if not torch.isfinite(d).all():
            scores[k] = math.inf
            continue
        se, mean = design.standard_error(d), design.mean(d)
        scores[k] = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
        if mean < 0 and scores[k] < -z:
            passed.append(k)
    pick = min(passed, key=lambda k: design.mean(per_path[k])) if passed else fallback
    return pick, scores


def _rows(cond: dict | None, n: int, rows: Tensor) -> dict | None:
    """`cond` for the given rows of a batch in which its per-sample tensors (n rows) repeat cyclically (row r has
    conditioning row r mod n); other values kept."""
    if cond is None:
        return None
    out = {}
    for k, v in cond.items():
        if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == n:
            v = v[(rows % n).to(v.device)]
        out[k] = v
    return out


def _tile_cond(cond: dict | None, n: int, m: int) -> dict | None:
    """`cond` for a batch of m: tensors with n rows (per-sample conditioning) repeated over their rows."""
    return _rows(cond, n, torch.arange(m))


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


def _power_list(top: float, end: float, steps: int, power: float) -> Tensor:
    """(steps+1,) float64: log σ moving as (i/(steps−1))^power from `top` to `end`, then 0."""
    u = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    sig = (math.log(top) + (math.log(end) - math.log(top)) * u**power).exp()
    return torch.cat([sig, sig.new_zeros(1)])


def _skip_family(schedule: Schedule, steps: int, scale: float) -> list[Tensor]:
    """Lists that start at σ_skip = scale·SKIPS[j] < σ_max (reached by the analytic start), power-spaced in log σ
    down to the candidate ends (as ``_family``), then 0."""
    ends = sorted({schedule.sigma_min, *(e for e in ENDS if schedule.sigma_min < e < schedule.sigma_max)})
    out = []
    for skip in (scale * k for k in SKIPS):
        if schedule.sigma_min < skip < schedule.sigma_max:
            out += [_power_list(skip, e, steps, p) for p in POWERS for e in ends if e < skip]
    return out


def step_ratio(sigmas: Tensor) -> float:
    """The largest ratio of neighbouring steps in log σ, max(h_{i+1}/h_i, h_i/h_{i+1}), over the steps between
    positive levels after the first (the step from σ_max has no history behind it; the one into 0 is a denoising
    call). 1.0 for lists with fewer than two such steps."""
    pos = sigmas[sigmas > 0].log()
    h = pos[1:-1] - pos[2:]  # steps σ_1 → σ_2 … σ_{N−2} → σ_{N−1}
    if len(h) < 2:
        return 1.0
    q = h[1:] / h[:-1]
    return float(torch.maximum(q, 1 / q).max())


def _refine(
    prob: _Problem,
    sigmas: Tensor,
    lo: float,
    sweeps: int,
    step: float = 0.25,
    omega: float = OMEGA,
    top: float | None = None,
) -> tuple[Tensor, float]:
    """Coordinate search on log σ_1..σ_{N−1} (σ_0 = σ_max and the final 0 fixed), levels kept descending and
    ≥ e^lo, neighbouring steps within a ratio of max(omega, that of the start) (``step_ratio``); returns the best
    list and its error. With `top` (σ_max, for a list that starts below it with the analytic jump) σ_0 is a
    coordinate too, kept below `top`."""
    free = top is not None
    logs = sigmas[:-1].log() if free else sigmas[1:-1].log()
    best = prob.err(sigmas)
    top = math.log(top) if free else math.log(float(sigmas[0]))
    ratio_cap = max(omega, step_ratio(sigmas))

    def make(ls: Tensor) -> Tensor:
        return torch.cat([ls.exp(), sigmas[-1:]]) if free else torch.cat([sigmas[:1], ls.exp(), sigmas[-1:]])

    for _ in range(sweeps):
        improved = False
        for i in range(len(logs)):
            for sign in (-1.0, 1.0):
                cand = logs.clone()
                cand[i] += sign * step
                bounds = torch.cat([torch.tensor([top], dtype=torch.float64), cand])
                if not (bounds[1:] < bounds[:-1]).all() or float(cand[-1]) < lo - 1e-12:
                    continue
                if step_ratio(make(cand)) > ratio_cap + 1e-9:
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
    n_val: int | None = None,
    seed: int = 0,
    cond: dict | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    ref_steps: int = 256,
    sweeps: int = 8,
    refine_max_steps: int = 20,
    z: float = Z_MARGIN,
    start: GaussianStart | None = None,
    pool: int | None = None,
) -> FittedSteps:
    """Fit one σ list per entry of `steps` for `sampler` (with `knobs`) to `denoiser`.

    Args:
        shape: per-sample shape of x, e.g. (2,) or (3, 32, 32).
        n: paths in the calibration batch; `cond` (e.g. class labels of batch n) applies to it.
        n_val: paths in the separate validation batch (default 4n), the ones that get a reference solve. It must
            be large enough to contain the rare paths a fitted list can ruin (a long step across the levels where
            paths choose their mode fails on ~1 % of them): 128 validation paths missed such a list that was 4×
            worse on new noise. Per-sample tensors of `cond` (n rows) are repeated over its rows.
        pool: start paths screened for the validation batch (default 8·n_val; drawn after the calibration batch
            from `seed`; ``screened.screen``): every candidate list whose calibration error is within
            ``SCREEN_WITHIN`` of the best runs on all of them, the half of the validation batch where their end
            points disagree most is taken whole and the rest drawn at random, weighted to stand for the pool.
            ``pool = n_val`` validates on a plain batch.
        ref_steps: steps of the reference solves (UniPC-3, uniform in log σ; its error is ~1e-6 of the data
            scale on the mixtures of the test suite at 256).
        sweeps: coordinate-search sweeps (each ≤ 2(N−1) sampler runs) for N ≤ refine_max_steps.
        z: how many standard errors of the paired per-path differences a fitted list must win by on the validation
            batch to replace the best named spacing (``choose``); 0 keeps the plain validation argmin.
        start: the data's Gaussian statistics (``GaussianStart``, e.g. from training samples): also fit lists that
            begin below σ_max after the analytic jump (module doc), for N ≤ ``SKIP_MAX_STEPS``;
            ``FittedSteps.start_state`` applies it.
    Cost (network calls on batches of n): (1 + n_val/n)·ref_steps for the references, then per N about
    (|family| + |named| + 2(N−1)·sweeps + (|named| + 2)·n_val/n + |screened|·pool/n)·N.
    """
    if n < 2:
        raise NoisecraftError(f"n must be at least 2 calibration paths, got {n}")
    steps_list = sorted({_steps_arg(int(s)) for s in steps})
    knobs = dict(knobs or {})
    get_sampler(sampler)  # a clear error for an unknown name before any work
    g = torch.Generator().manual_seed(seed)
    n_val = 4 * n if n_val is None else n_val
    if n_val < 2:
        raise NoisecraftError(f"n_val must be at least 2 validation paths, got {n_val}")
    pool = max(n_val, 8 * n_val if pool is None else pool)
    eps = torch.randn(n + pool, *shape, generator=g, dtype=torch.float64)
    x = (schedule.sigma_max * eps).to(dtype=dtype, device=device)
    cal = _Problem(denoiser, schedule, x[:n], cond, sampler, knobs, ref_steps, start)
    out = FittedSteps(sampler, knobs, sigma_max=schedule.sigma_max, pool=pool)
    scale = start.scale if start is not None else 0.0
    lo = math.log(schedule.sigma_min)
    found: dict[int, dict[str, Tensor]] = {}  # N -> {candidate: σ list}, decided together on one validation batch
    for N in steps_list:
        named = {name: s for name in NAMED if (s := _named(schedule, N, name)) is not None}
        if N == 1:  # nothing to fit: the single step σ_max → 0
            out.sigmas[N], out.chosen[N] = next(iter(named.values())), f"named:{next(iter(named))}"
            continue
        starts = [*named.values(), *_family(schedule, N)]
        errs = [cal.err(s) for s in starts]
        origin = starts[min(range(len(starts)), key=errs.__getitem__)]
        refined, out.calibration[N] = _refine(cal, origin, lo, sweeps if N <= refine_max_steps else 0)
        # named first, so that a tie (the search kept a named start unchanged) is reported as that name
        found[N] = {**{f"named:{k}": s for k, s in named.items()}, "family": origin, "refined": refined}
        skips = _skip_family(schedule, N, scale) if start is not None and N <= SKIP_MAX_STEPS else []
        if skips:  # the analytic start: σ_0 < σ_max, found the same way (family, then search with σ_0 free)
            errs = [cal.err(s) for s in skips]
            first = skips[min(range(len(skips)), key=errs.__getitem__)]
            found[N]["gauss-family"] = first
            sweeps_n = sweeps if N <= refine_max_steps else 0
            found[N]["gauss-refined"] = _refine(cal, first, lo, sweeps_n, top=schedule.sigma_max)[0]
    if not found:
        return out

    def problem(rows: Tensor, ref: int) -> _Problem:  # pool rows (after the n calibration paths)
        return _Problem(denoiser, schedule, x[n + rows.to(x.device)], _rows(cond, n, rows), sampler, knobs, ref, start)

    design = _screen(cal, found, problem, pool, n_val, g)
    val = problem(design.index, ref_steps)
    for N, candidates in found.items():
        per_path = {k: val.per_path(s) for k, s in candidates.items()}
        pick, out.margin[N] = choose(per_path, z, design)
        out.sigmas[N], out.chosen[N] = candidates[pick], pick
        out.validation[N] = {k: math.sqrt(design.mean(v)) for k, v in per_path.items()}
    return out


def _screen(cal: _Problem, found: dict[int, dict[str, Tensor]], problem, pool: int, n_val: int, g) -> Design:
    """The validation design (``screened.screen``) over `pool` paths: per N, the spread of the distinct candidate
    lists whose calibration error is within ``SCREEN_WITHIN`` of the best, run on chunks of n_val paths
    (``problem(rows, 0)``: a batch of pool rows without references)."""
    if pool <= n_val:
        return Design.plain(pool)
    lists = {}
    for N, candidates in found.items():
        errs = {k: cal.err(s) for k, s in candidates.items()}
        best = min(errs.values())
        keep: list[Tensor] = []
        for k, s in sorted(candidates.items(), key=lambda kv: errs[kv[0]]):
            if errs[k] <= SCREEN_WITHIN * best and not any(torch.equal(s, t) for t in keep):
                keep.append(s)
        lists[N] = keep
    spreads: dict[int, list[Tensor]] = {N: [] for N in lists}
    for lo in range(0, pool, n_val):
        chunk = problem(torch.arange(lo, min(lo + n_val, pool)), 0)
        for N, keep in lists.items():
            spreads[N].append(spread(chunk.run, keep))
    return screen([torch.cat(v) for v in spreads.values()], n_val, g)
