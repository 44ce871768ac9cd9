"""Multistep exponential-integrator samplers: DPM-Solver++ 2M / 3M / 2M-SDE and UniPC.

All work in the log-SNR time λ = −log σ (for the VE state x = x0 + σε; the same λ as log(α/σ) of a VP state),
with step h = λ' − λ = log(σ/σ'). The base move is ``exp_step`` (DDIM = DPM-Solver++(1)); the higher orders
add finite differences of past denoised estimates, kept in loop-local history. A step to σ' = 0 is always
first order (h = ∞), and with ``lower_order_final`` lists of fewer than 15 steps lower the order of the last
steps, as in DPM-Solver++ (Lu et al. 2022, Sec. 4) and diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.sampling.noise import Generators
from noisecraft.sampling.registry import Model, Step, register
from noisecraft.sampling.samplers import exp_step, noise_like


def _remaining(i: int, sigmas: list[float]) -> int:
    """Steps left from step i on, counting a list that stops at σ_min > 0 as if its step to 0 were still to come:
    lowering the order "at the end" is meant for the steps into σ = 0, and a list ending at σ_min must not end
    with a first-order ODE step (its O(h²) local error would cap the global order at 2)."""
    return len(sigmas) - 1 - i + (sigmas[-1] > 0)


def _order_at(i: int, sigmas: list[float], order: int, lower_order_final: bool, max_steps: int = 15) -> int:
    """Warm-up (order ≤ i+1), first order into σ' = 0, and DPM-Solver++'s lower-order final steps (for lists of
    fewer than `max_steps` steps)."""
    o = min(order, i + 1)
    if sigmas[i + 1] == 0:
        return 1
    if lower_order_final and len(sigmas) - 1 < max_steps:
        o = min(o, _remaining(i, sigmas))
    return o


@register(
    "dpmpp_2m",
    "DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): multistep exponential integrator on x̂0; order 2, deterministic",
    deterministic=True,
    order=2,
    multistep=True,
    spacing="powerlog",
)
def dpmpp_2m(
    model: Model, x: Tensor, sigmas: Tensor, generator: Generators, *, lower_order_final: bool = True
) -> Iterator[Step]:
    """x' = (σ'/σ)x + (1 − σ'/σ)·D̃ with D̃ = (1 + 1/2r)·x̂0_i − (1/2r)·x̂0_{i−1}, r = h_{i−1}/h_i."""
    sig = sigmas.tolist()
    n = len(sig) - 1
    old, h_last = None, 0.0
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        h = math.log(s / s_next) if s_next > 0 else math.inf
        if old is not None and _order_at(i, sig, 2, lower_order_final) == 2:
            r = h_last / h
            x = exp_step(x, (1 + 0.5 / r) * x0 - (0.5 / r) * old, s, s_next)
        else:
            x = exp_step(x, x0, s, s_next)
        old, h_last = x0, h
        yield model.step(i, s, s_next, x, x0)


def _phi(h: float) -> tuple[float, float, float]:
    """e^{−h} − 1, (e^{−h} − 1)/h + 1 and (e^{−h} − 1 + h)/h² − 1/2: the φ-weights of DPM-Solver++ (order ≤ 3)."""
    e = math.expm1(-h)
    return e, e / h + 1, (e + h) / h**2 - 0.5


@register(
    "dpmpp_3m",
    "DPM-Solver++(3M) (Lu et al. 2022, multistep order 3, lower-order warm-up and final steps); order 3, deterministic",
    deterministic=True,
    order=3,
    multistep=True,
    spacing="powerlog",
)
def dpmpp_3m(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    lower_order_final: bool = True,
    warmup: str = "euler",
    compat: bool | str = False,
) -> Iterator[Step]:
    """Third-order multistep: x' = (σ'/σ)x − (e^{−h}−1)D0 + ((e^{−h}−1)/h + 1)D1 − ((e^{−h}−1+h)/h² − ½)D2,
    with D1, D2 the first and second divided differences of the last three x̂0 in λ (scaled by h).

    The first step has no history. warmup="euler" (as diffusers and k-diffusion) takes it with first order,
    whose O(h²) local error caps the *global* order at 2 as h → 0; warmup="midpoint" takes it with
    DPM-Solver++(2S) at the λ-midpoint (one extra network call), which keeps the global order 3.

    D2 = (D1_0 − D1_1)/(r0 + r1) estimates h²·x̂0''/2, so the Taylor term of the exact solution,
    −h²φ3·x̂0'', is −2φ3·D2 (the default). The peers weight it by −φ3 (half), which lowers the global order to 2
    (tests/test_samplers_exact.py measures it). `compat` reproduces a peer exactly:
    - True or "diffusers": diffusers 0.42's DPMSolverMultistepScheduler(solver_order=3): −φ3·D2; the second step
      (two estimates) is DPM-Solver++(2M)'s −(e^{−h}−1)/2·D1; lower-order final steps as `lower_order_final`;
    - "k-diffusion": k-diffusion's sample_dpmpp_3m_sde at eta=0: −φ3·D2; the second step uses φ2·D1 (with
      φ2 = (e^{−h}−1)/h + 1, not (1−e^{−h})/2); it never lowers the order at the end (`lower_order_final` is
      ignored), only the step into σ = 0 is the plain denoised estimate."""
    check_choice("warmup", warmup, ("euler", "midpoint"))
    mode = ("diffusers" if compat else "taylor") if isinstance(compat, bool) else compat
    check_choice("compat", mode, ("taylor", "diffusers", "k-diffusion"))
    sig = sigmas.tolist()
    n = len(sig) - 1
    hist: list[Tensor] = []  # past x̂0, most recent first
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        hist = [x0, *hist][:3]
        if mode == "k-diffusion":
            o = 1 if s_next == 0 else min(3, i + 1)
        else:
            o = _order_at(i, sig, 3, lower_order_final)
        if i == 0 and warmup == "midpoint" and s_next > 0:
            s_mid = math.sqrt(s * s_next)  # the midpoint in λ = −log σ
            x = exp_step(x, model(exp_step(x, x0, s, s_mid), s_mid), s, s_next)
        elif o == 1:
            x = exp_step(x, x0, s, s_next)
        else:
            h = math.log(s / s_next)
            r0 = math.log(sig[i - 1] / s) / h
            e, phi2, phi3 = _phi(h)
            d1_0 = (hist[0] - hist[1]) / r0
            if o == 2:
                w = phi2 if mode == "k-diffusion" else -0.5 * e
                x = (s_next / s) * x - e * x0 + w * d1_0
            else:
                r1 = math.log(sig[i - 2] / sig[i - 1]) / h
                d1_1 = (hist[1] - hist[2]) / r1
                d2 = (d1_0 - d1_1) / (r0 + r1)
                d1 = d1_0 + r0 * d2
                x = (s_next / s) * x - e * x0 + phi2 * d1 - (2.0 if mode == "taylor" else 1.0) * phi3 * d2
        yield model.step(i, s, s_next, x, x0)


@register(
    "dpmpp_2m_sde",
    "SDE-DPM-Solver++(2M) (Lu et al. 2022, App.; k-diffusion's midpoint form), eta-scaled noise; order 2 in "
    "the drift, stochastic",
    deterministic=False,
    multistep=True,
)
def dpmpp_2m_sde(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    eta: float = 1.0,
    s_noise: float = 1.0,
    lower_order_final: bool = True,
) -> Iterator[Step]:
    """x' = (σ'/σ)e^{−ηh}x + (1 − e^{−(1+η)h})·(x̂0 + D1/2) + σ'√(1 − e^{−2ηh})·z, D1 = (x̂0_i − x̂0_{i−1})/r."""
    sig = sigmas.tolist()
    n = len(sig) - 1
    old, h_last = None, 0.0
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        x0 = model(x, s)
        if s_next == 0:
            x = x0
        else:
            h = math.log(s / s_next)
            eta_h = eta * h
            w = -math.expm1(-h - eta_h)
            x = (s_next / s) * math.exp(-eta_h) * x + w * x0
            if old is not None and _order_at(i, sig, 2, lower_order_final) == 2:
                x = x + 0.5 * w * (h / h_last) * (x0 - old)
            if eta > 0:
                x = x + s_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise * noise_like(x, generator)
            h_last = h
        old = x0
        yield model.step(i, s, s_next, x, x0)


def _unipc_update(
    x: Tensor,
    m0: Tensor,
    s: float,
    s_next: float,
    older: list[tuple[float, Tensor]],
    order: int,
    variant: str,
    model_t: Tensor | None = None,
) -> Tensor:
    """One UniP (predictor) or, given the new x̂0 `model_t` at σ', UniC (corrector) step σ → σ' of order `order`.

    Zhao et al. 2023, Alg. 1–2 with data prediction: x' = DDIM(x, m0) − B(h)·Σ_k ρ_k D_k, where D_k are the
    divided differences (m_k − m0)/r_k of older estimates at relative positions r_k = (λ_k − λ)/h, and ρ solves
    the order conditions R ρ = b (R_{ik} = r_k^{i−1}); B(h) = e^{−h} − 1 for bh2, −h for bh1.
    """
    if s_next == 0:
        return m0
    h = math.log(s / s_next)
    hh = -h
    rks = [math.log(s / sk) / h for sk, _ in older[: order - 1]]
    d1s = [(mk - m0) / rk for rk, (_, mk) in zip(rks, older)]
    rks.append(1.0)
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = math.expm1(hh) if variant == "bh2" else hh
    fact, rows, b = 1, [], []
    for i in range(1, order + 1):
        rows.append([rk ** (i - 1) for rk in rks])
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    x_new = (s_next / s) * x - h_phi_1 * m0  # the DDIM step
    if model_t is None:  # predictor
        if not d1s:
            return x_new
        rhos = [0.5] if order == 2 else _solve([r[:-1] for r in rows[:-1]], b[:-1])
        return x_new - b_h * sum(r * d for r, d in zip(rhos, d1s))
    rhos = [0.5] if order == 1 else _solve(rows, b)
    corr = sum((r * d for r, d in zip(rhos[:-1], d1s)), torch.zeros_like(x))
    return x_new - b_h * (corr + rhos[-1] * (model_t - m0))


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    return torch.linalg.solve(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)).tolist()


@register(
    "unipc",
    "UniPC (Zhao et al. 2023): multistep predictor UniP + corrector UniC, B(h) variant bh2 (or bh1); order "
    "2 or 3 (+1 from the corrector), deterministic",
    deterministic=True,
    order=3,
    multistep=True,
    spacing="powerlog",
)
def unipc(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    generator: Generators,
    *,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
    compat: bool = False,
) -> Iterator[Step]:
    """At each step the new x̂0 first corrects the previous step (UniC, free: no extra network call), then the
    predictor UniP of order min(order, warm-up) moves to σ'.

    lower_order_final lowers the order of the last steps as if the list went on to σ = 0, so a list that stops
    at σ_min > 0 ends with a second-order step, not a first-order one (which would cap the global order at 2).
    compat=True counts like diffusers 0.42 (UniPCMultistepScheduler, final_sigmas_type="sigma_min"), whose
    last step to σ_min is first order."""
    check_choice("variant", variant, ("bh1", "bh2"))
    if order not in (1, 2, 3):
        raise NoisecraftError(f"unipc order must be 1, 2 or 3, got {order!r}")
    sig = sigmas.tolist()
    n = len(sig) - 1
    hist: list[tuple[float, Tensor]] = []  # (σ_k, x̂0_k), most recent first
    x_last, order_last = x, 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        m = model(x, s)
        if corrector and hist:
            x = _unipc_update(x_last, hist[0][1], hist[0][0], s, hist[1:], order_last, variant, model_t=m)
        hist = [(s, m), *hist][:order]
        o = min(order, n - i if compat else _remaining(i, sig)) if lower_order_final else order
        o = 1 if s_next == 0 else min(o, i + 1)
        x_last, order_last = x, o
        x = _unipc_update(x, m, s, s_next, hist[1:], o, variant)
        yield model.step(i, s, s_next, x, m)
