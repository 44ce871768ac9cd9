"""An adaptive-step probability-flow ODE solver: an embedded Runge–Kutta pair with per-sample step control.

The PF-ODE dx/dσ = (x − D(x; σ))/σ (Karras et al. 2022, Eq. 3) is integrated in t = log σ, where it reads
dx/dt = x − D(x; e^t) and is far less stiff. Each sample carries its own t and step size h, so the steps it
takes (and therefore its result) never depend on the rest of the batch; the solver calls the denoiser on the
still-active samples only, each with its own σ (a (B,) tensor). Error control is the standard one (Hairer,
Nørsett & Wanner, Sec. II.4): RMS of err/(atol + rtol·|x|) ≤ 1, h ← h·clip(0.9·e^{−1/(q+1)}, 0.2, 5).

Pairs: "bs32" (Bogacki & Shampine 1989, 3(2), FSAL, 3 calls per step) and "dopri5" (Dormand & Prince 1980,
5(4), FSAL, 6 calls per step; the reference solver of the test suite), and "dpm12", the adaptive
exponential-integrator pair of DPM-Solver (Lu et al. 2022, Sec. 3.4 and App. C, "DPM-Solver-12") in its
data-prediction form: the first-order step x' = (σ'/σ)x + (1 − σ'/σ)·D(x; σ) (DDIM) and the second-order one that
uses D at the log-σ midpoint instead; their difference (1 − σ'/σ)(D_mid − D) is the error estimate. The linear
part of the ODE is integrated exactly, so where D changes slowly (at high σ) the steps are long: it reaches a
given error with far fewer calls than the Runge–Kutta pairs at the low budgets of sampling (2 calls per step,
and the final denoising call at σ_min is free: D there is the last step's). The default.
"pc2" is a variable-step multistep pair with one call per step: the DPM-Solver++(2M) predictor and the UniC-1
corrector, whose difference is the error estimate (``_pc2``); it reaches dpm12's error with about half the calls
(benchmarks/samplers.py), but fixed schedules of the multistep samplers are still more accurate at equal NFE.

``info={}`` receives "nfe" (batched network calls), "nfe_per_sample" (B,) (calls that evaluated each sample:
samples stop at different times), "steps" and "rejected" (B,).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from noisecraft.core.process import expand
from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.noise import Generators
from noisecraft.sampling.registry import Model, Step, register

# Butcher tableaux: (c, a, b (propagated), b_hat (embedded), error order q).
_TABLEAUX: dict[str, tuple[list[float], list[list[float]], list[float], list[float], int]] = {
    "bs32": (
        [0.0, 1 / 2, 3 / 4, 1.0],
        [[], [1 / 2], [0.0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
        [2 / 9, 1 / 3, 4 / 9, 0.0],
        [7 / 24, 1 / 4, 1 / 3, 1 / 8],
        2,
    ),
    "dopri5": (
        [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
        [
            [],
            [1 / 5],
            [3 / 40, 9 / 40],
            [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        ],
        [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0],
        [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40],
        4,
    ),
}
METHODS = ("dpm12", "pc2", *_TABLEAUX)


@register(
    "adaptive",
    "Adaptive PF-ODE solver with per-sample steps: DPM-Solver-12 exponential pair (default), a one-call "
    "multistep predictor–corrector pair (pc2) or embedded Runge–Kutta in log σ (bs32, dopri5); rtol/atol; "
    "deterministic, reports network calls via info={}",
    deterministic=True,
)
def adaptive(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    method: str = "dpm12",
    h_init: float | None = None,
    max_steps: int = 100_000,
    h_max: float = 1.0,
    sigma_top: float = 20.0,
    info: dict | None = None,
) -> Iterator[Step]:
    """Integrates from sigmas[0] to the last positive σ of the list (the intermediate levels are ignored);
    if the list ends at 0, a final denoising call returns D(x; σ_last). h_init is the first step in log σ
    (default: 1/20 of the range; 1/2 for dpm12, whose steps are bounded by h_max and sigma_top); the denoiser
    is called on the still-active rows only, with their own σ and their rows of any per-sample conditioning.
    Pass ``info={}`` to receive
    "nfe" (batched network calls), "nfe_per_sample", "steps" and "rejected" (per-sample (B,) counts)."""
    check_choice("method", method, METHODS)
    if rtol <= 0 or atol <= 0:
        raise NoisecraftError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if method == "dpm12":
        yield from _dpm12(model, x, sigmas, rtol, atol, h_init, max_steps, h_max, sigma_top, info)
        return
    if method == "pc2":
        yield from _pc2(model, x, sigmas, rtol, atol, h_init, max_steps, h_max, sigma_top, info)
        return
    c, a, b, b_hat, q = _TABLEAUX[method]
    e_w = [bi - bj for bi, bj in zip(b, b_hat)]
    sig = sigmas.tolist()
    positive = [s for s in sig if s > 0]
    t_end = math.log(positive[-1])
    x = x.clone()  # updated in place, per sample
    B = x.shape[0]
    t = torch.full((B,), math.log(sig[0]), dtype=torch.float64)
    span = t_end - t[0].item()
    h = torch.full((B,), span / 20 if h_init is None else -abs(h_init), dtype=torch.float64)
    steps = torch.zeros(B, dtype=torch.long)
    rejected = torch.zeros(B, dtype=torch.long)

    calls = torch.zeros(B, dtype=torch.long)

    def f(xa: Tensor, ta: Tensor, rows: Tensor | None = None) -> Tensor:  # dx/dt = x − D(x; e^t), t (b,)
        calls[slice(None) if rows is None else rows] += 1
        return xa - model(xa, ta.exp(), rows=rows)

    k1 = f(x, t)
    x0 = x - k1
    i = 0
    done = t <= t_end if span < 0 else torch.ones(B, dtype=torch.bool)
    while not done.all():
        if i >= max_steps:
            raise NoisecraftError(f"adaptive solver exceeded max_steps={max_steps}; loosen rtol/atol")
        act = (~done).nonzero().squeeze(1)
        act_d = act.to(x.device)
        xa, ta, ka = x[act_d], t[act], k1[act_d]
        ha = torch.maximum(h[act], t_end - ta)  # never step past the end
        ks = [ka]
        for j in range(1, len(c)):
            xj = xa + expand(ha, xa) * sum(aj * kj for aj, kj in zip(a[j], ks) if aj != 0)
            ks.append(f(xj, ta + c[j] * ha, None if len(act) == B else act))
        x_new = xa + expand(ha, xa) * sum(bj * kj for bj, kj in zip(b, ks) if bj != 0)
        err = expand(ha, xa) * sum(ej * kj for ej, kj in zip(e_w, ks) if ej != 0)
        scale = atol + rtol * torch.maximum(xa.abs(), x_new.abs())
        e = (err / scale).reshape(len(act), -1).double().pow(2).mean(1).sqrt().cpu()  # (b,), step control on CPU
        ok = e <= 1
        acc = act[ok]
        ok_d, acc_d = ok.to(x.device), acc.to(x.device)  # the state may live on an accelerator
        x[acc_d] = x_new[ok_d]
        t[acc] = ta[ok] + ha[ok]
        k1[acc_d] = ks[-1][ok_d]  # FSAL: the last stage is f at the new point
        steps[acc] += 1
        rejected[act[~ok]] += 1
        factor = (0.9 * e.clamp(min=1e-10) ** (-1 / (q + 1))).clamp(0.2, 5.0)
        h[act] = ha * factor
        done = t <= t_end + 1e-12
        x0 = x - k1
        yield model.step(i, float(t[act].max().exp()), float(t.max().exp()), x.clone(), x0)
        i += 1
    if sig[-1] == 0:
        x0 = model(x, positive[-1])
        calls += 1
        x = x0
        yield model.step(i, positive[-1], 0.0, x, x0)
    if info is not None:
        info.update(nfe=model.nfe, nfe_per_sample=calls, steps=steps, rejected=rejected)


def _dpm12(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    rtol: float,
    atol: float,
    h_init: float | None,
    max_steps: int,
    h_max: float,
    sigma_top: float,
    info: dict | None,
) -> Iterator[Step]:
    """DPM-Solver-12 with per-sample step control in t = log σ (h < 0); x̂0 at the current point is carried over,
    so a step costs the midpoint call plus the call at the accepted new point.

    Steps are at most h_max long in log σ, except that the first may go straight down to sigma_top: a longer step
    can skip the range where paths choose their mode with both estimates still near the data mean, so the
    error estimate would pass a step that lands in the wrong mode (measured: 8 % of paths at tol 0.003)."""
    sig = sigmas.tolist()
    positive = [s for s in sig if s > 0]
    t_end = math.log(positive[-1])
    x = x.clone()
    B = x.shape[0]
    t = torch.full((B,), math.log(sig[0]), dtype=torch.float64)
    span = t_end - t[0].item()
    # default first step: half the range; the error control shortens it where D is not nearly constant
    h = torch.full((B,), span / 2 if h_init is None else -abs(h_init), dtype=torch.float64)
    log_top = math.log(sigma_top)
    steps = torch.zeros(B, dtype=torch.long)
    rejected = torch.zeros(B, dtype=torch.long)
    calls = torch.ones(B, dtype=torch.long)
    d0 = model(x, t.exp()).clone()  # x̂0 at the current point (B, ...)
    done = t <= t_end if span < 0 else torch.ones(B, dtype=torch.bool)
    i = 0
    while not done.all():
        if i >= max_steps:
            raise NoisecraftError(f"adaptive solver exceeded max_steps={max_steps}; loosen rtol/atol")
        act = (~done).nonzero().squeeze(1)
        act_d = act.to(x.device)
        rows = None if len(act) == B else act
        xa, ta, da = x[act_d], t[act], d0[act_d]
        # never past the end; at most h_max in log σ, except for the one step down to σ_top (see the docstring)
        longest = torch.maximum(torch.full_like(ta, h_max), ta - log_top)
        ha = torch.maximum(torch.maximum(h[act], -longest), t_end - ta)
        r_mid, r = expand((0.5 * ha).exp(), xa).to(xa.dtype), expand(ha.exp(), xa).to(xa.dtype)
        u = r_mid * xa + (1 - r_mid) * da  # DDIM to the log-σ midpoint
        d_mid = model(u, (ta + 0.5 * ha).exp(), rows=rows)
        calls[act] += 1
        x_new = r * xa + (1 - r) * d_mid  # second order; the first-order step uses da instead
        err = (1 - r) * (d_mid - da)
        scale = atol + rtol * torch.maximum(xa.abs(), x_new.abs())
        e = (err / scale).reshape(len(act), -1).double().pow(2).mean(1).sqrt().cpu()  # (b,)
        ok = e <= 1
        acc = act[ok]
        if len(acc):
            acc_d, ok_d = acc.to(x.device), ok.to(x.device)
            x[acc_d] = x_new[ok_d]
            t[acc] = ta[ok] + ha[ok]
            d0[acc_d] = model(x[acc_d], t[acc].exp(), rows=None if len(acc) == B else acc)
            calls[acc] += 1
        steps[acc] += 1
        rejected[act[~ok]] += 1
        h[act] = ha * (0.9 * e.clamp(min=1e-10) ** -0.5).clamp(0.2, 5.0)
        done = t <= t_end + 1e-12
        yield model.step(i, float(t[act].max().exp()), float(t.max().exp()), x.clone(), d0.clone())
        i += 1
    if sig[-1] == 0:  # the denoising step into σ = 0: D at σ_min is already known
        x = d0.clone()
        yield model.step(i, positive[-1], 0.0, x, d0)
    if info is not None:
        info.update(nfe=model.nfe, nfe_per_sample=calls, steps=steps, rejected=rejected)


def _pc2(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    rtol: float,
    atol: float,
    h_init: float | None,
    max_steps: int,
    h_max: float,
    sigma_top: float,
    info: dict | None,
) -> Iterator[Step]:
    """Variable-step multistep predictor–corrector with a free error estimate: one network call per step.

    Predictor: DPM-Solver++(2M) with the step ratio r0 = h_{i−1}/h_i of each sample (Lu et al. 2022, Alg. 2; its
    first step DDIM). The new x̂0 at the predicted point then feeds the UniC-1 corrector (Zhao et al. 2023, bh2:
    the trapezoidal rule in λ on x̂0), x_c = x_p + (1 − σ'/σ)/2·((m' − m) − (m − m_prev)/r0), and x_c − x_p, a
    difference of two second-order updates, is the error estimate — no extra call (an embedded pair in the
    multistep sense, as in variable-step Adams PECE codes; Hairer, Nørsett & Wanner, Sec. III.5). Accepted steps
    keep x_c, and m' (taken at x_p, as UniPC does) is the next step's x̂0. A rejected step costs its one call.
    Step bounds as for dpm12 (h_max in log σ, one crossing step down to σ_top); the step into σ = 0 is one more
    denoising call at the final corrected state."""
    sig = sigmas.tolist()
    positive = [s for s in sig if s > 0]
    t_end = math.log(positive[-1])
    x = x.clone()
    B = x.shape[0]
    t = torch.full((B,), math.log(sig[0]), dtype=torch.float64)
    span = t_end - t[0].item()
    h = torch.full((B,), span / 2 if h_init is None else -abs(h_init), dtype=torch.float64)
    h_prev = torch.zeros(B, dtype=torch.float64)  # 0: no history yet
    log_top = math.log(sigma_top)
    steps = torch.zeros(B, dtype=torch.long)
    rejected = torch.zeros(B, dtype=torch.long)
    calls = torch.ones(B, dtype=torch.long)
    m0 = model(x, t.exp()).clone()  # x̂0 at the current point (B, ...)
    m_prev = m0.clone()
    done = t <= t_end if span < 0 else torch.ones(B, dtype=torch.bool)
    i = 0
    while not done.all():
        if i >= max_steps:
            raise NoisecraftError(f"adaptive solver exceeded max_steps={max_steps}; loosen rtol/atol")
        act = (~done).nonzero().squeeze(1)
        act_d = act.to(x.device)
        rows = None if len(act) == B else act
        xa, ta, ma, mp = x[act_d], t[act], m0[act_d], m_prev[act_d]
        longest = torch.maximum(torch.full_like(ta, h_max), ta - log_top)
        ha = torch.maximum(torch.maximum(h[act], -longest), t_end - ta)
        hp = h_prev[act]
        r = expand(ha.exp(), xa).to(xa.dtype)  # σ'/σ
        # D1/2 weight of DPM-Solver++(2M): (m − m_prev)/(2 r0), r0 = h_prev/h; zero without history
        w = torch.where(hp < 0, 0.5 * ha / hp.clamp(max=-1e-300), torch.zeros_like(ha))
        slope = expand(w, xa).to(xa.dtype) * (ma - mp)
        x_d = r * xa + (1 - r) * ma  # DDIM
        x_p = x_d + (1 - r) * slope
        m_new = model(x_p, (ta + ha).exp(), rows=rows)
        calls[act] += 1
        x_c = x_d + (1 - r) * 0.5 * (m_new - ma)
        err = x_c - x_p
        scale = atol + rtol * torch.maximum(xa.abs(), x_c.abs())
        e = (err / scale).reshape(len(act), -1).double().pow(2).mean(1).sqrt().cpu()  # (b,)
        ok = e <= 1
        acc = act[ok]
        if len(acc):
            acc_d, ok_d = acc.to(x.device), ok.to(x.device)
            x[acc_d] = x_c[ok_d]
            m_prev[acc_d] = ma[ok_d]
            m0[acc_d] = m_new[ok_d]
            h_prev[acc] = ha[ok]
            t[acc] = ta[ok] + ha[ok]
        steps[acc] += 1
        rejected[act[~ok]] += 1
        h[act] = ha * (0.9 * e.clamp(min=1e-10) ** (-1 / 3)).clamp(0.2, 5.0)
        done = t <= t_end + 1e-12
        yield model.step(i, float(t[act].max().exp()), float(t.max().exp()), x.clone(), m0.clone())
        i += 1
    if sig[-1] == 0:
        x0 = model(x, positive[-1])
        calls += 1
        x = x0
        yield model.step(i, positive[-1], 0.0, x, x0)
    if info is not None:
        info.update(nfe=model.nfe, nfe_per_sample=calls, steps=steps, rejected=rejected)
