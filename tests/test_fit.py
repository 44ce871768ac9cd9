"""Fitted step schedules (sampling/fit.py), the powerlog spacing and per-sampler default spacings.

Judged on start noise the fit never saw (its own calibration and validation batches come from another seed), with
the exact PF-ODE solution of a Gaussian-mixture oracle as the reference, and on two problems of different
dimension, schedule and sampler.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.sampling.fit import NAMED, OMEGA, _refine, _tile_cond, choose, fit_steps, step_ratio
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.steps import powerlog_sigmas, step_sigmas


def ring(k: int = 6, var: float = 0.01) -> GaussianMixture:
    ang = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return GaussianMixture(1.5 * torch.stack([ang.cos(), ang.sin()], 1), torch.full((k,), var, dtype=torch.float64))


def blobs(dim: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.01 + 0.2 * torch.rand(8, dim, generator=g, dtype=torch.float64))


def held_out_error(gm, sch, sampler, knobs, sigmas_by_name, dim, n=512, seed=99):
    x = sch.sigma_max * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ends = torch.tensor([sch.sigma_max, 1e-4], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends, rtol=1e-8, atol=1e-8, method="dopri5"), torch.tensor(1e-4))
    fn = get_sampler(sampler)
    return {k: float((fn(gm, x, s, **knobs) - ref).pow(2).mean().sqrt()) for k, s in sigmas_by_name.items()}


def named_lists(sch, n):
    out = {}
    for name in NAMED:
        try:
            out[name] = step_sigmas(sch, n, name)
        except Exception:
            continue
    return out


@pytest.mark.parametrize(
    ("gm", "schedule", "sampler", "knobs", "dim"),
    [
        (ring(), "linear", "unipc", {"order": 3}, 2),
        (blobs(8, 4), "edm", "dpmpp_2m", {}, 8),
    ],
    ids=["2d-linear-unipc3", "8d-edm-dpmpp2m"],
)
def test_fit_beats_every_named_spacing_on_fresh_noise(gm, schedule, sampler, knobs, dim):
    sch = make_schedule(schedule)
    fit = fit_steps(gm, sch, (5, 10), shape=(dim,), sampler=sampler, knobs=knobs, n=96, dtype=torch.float64)
    for n in (5, 10):
        s = fit.sigmas[n]
        assert s.shape == (n + 1,) and s[-1] == 0 and (s[1:] < s[:-1]).all()
        assert float(s[0]) == pytest.approx(sch.sigma_max)
        errs = held_out_error(gm, sch, sampler, knobs, {"fit": s, **named_lists(sch, n)}, dim)
        best_named = min(v for k, v in errs.items() if k != "fit")
        assert errs["fit"] <= 1.02 * best_named, (n, fit.chosen[n], errs)
        assert errs["fit"] < 0.8 * errs["default"], (n, errs)  # and clearly better than the schedule's default
        scores = fit.validation[n]  # the kept list is the fall-back (best named on validation) or beats it there
        kept = scores[fit.chosen[n]]
        assert kept == min(v for k, v in scores.items() if k.startswith("named:") or k == fit.chosen[n])


def test_fit_falls_back_to_a_named_spacing_when_the_fit_is_not_better(monkeypatch):
    """With a poor family and no search, no fitted list beats the named spacings: the best named one is kept and
    reported as the fall-back."""
    import noisecraft.sampling.fit as fit_module

    monkeypatch.setattr(fit_module, "POWERS", (8.0,))  # a deliberately poor family: crowds the steps at σ_max
    monkeypatch.setattr(fit_module, "TOPS", (math.inf,))
    monkeypatch.setattr(fit_module, "ENDS", ())
    monkeypatch.setattr(fit_module, "NAMED", ("karras", "logsnr"))
    sch = make_schedule("edm")
    fit = fit_steps(ring(), sch, (6,), shape=(2,), sampler="euler", n=64, sweeps=0, dtype=torch.float64)
    assert fit.chosen[6] in ("named:karras", "named:logsnr", "family", "refined")
    scores = fit.validation[6]
    assert scores[fit.chosen[6]] == min(scores.values())
    assert fit.chosen[6].startswith("named:")  # the poor family never beats both named spacings
    assert torch.equal(fit.sigmas[6], step_sigmas(sch, 6, fit.chosen[6][6:]))


def test_validation_keeps_a_fitted_list_only_when_its_win_is_beyond_the_noise():
    """`choose`: a paired test on per-path validation errors. A fitted list with a lower mean that rests on a
    few paths (or that ruins a few paths) is not kept; a consistent win is."""
    g = torch.Generator().manual_seed(0)
    base = 0.01 * torch.rand(512, generator=g, dtype=torch.float64)
    consistent = 0.8 * base
    lucky = base.clone()
    lucky[:3] = 0.0  # lower mean, carried by three paths out of 512
    tail = 0.5 * base
    tail[:5] += 1.0  # better on most paths, ruins five
    other = 1.5 * base
    pick, z = choose({"named:a": base, "named:b": other, "refined": consistent})
    assert pick == "refined" and z["refined"] < -2
    pick, z = choose({"named:a": base, "named:b": other, "refined": lucky})
    assert pick == "named:a" and -2 < z["refined"] < 0
    pick, _ = choose({"named:b": other, "named:a": base, "refined": tail, "family": lucky})
    assert pick == "named:a"
    pick, _ = choose({"named:a": base, "refined": lucky}, z=0.0)  # z = 0: the plain validation argmin
    assert pick == "refined"
    nan = consistent.clone()
    nan[0] = math.inf
    assert choose({"named:a": base, "refined": nan})[0] == "named:a"


def test_fit_is_not_worse_than_the_best_named_spacing_where_a_small_validation_batch_was_fooled():
    """A 32-D mixture under DDPM linear with UniPC-3 at 12 steps and 64 calibration paths: without the ratio cap
    and with a 64-path validation batch and a plain argmin, the kept list was 1.46x the best named spacing's error
    on 1024 fresh paths; with the cap, the 4x larger validation batch and the paired test it is no worse."""
    gm, sch = blobs(32, 5), make_schedule("linear")
    fit = fit_steps(gm, sch, (12,), shape=(32,), sampler="unipc", knobs={"order": 3}, n=64, dtype=torch.float64)
    errs = held_out_error(gm, sch, "unipc", {"order": 3}, {"fit": fit.sigmas[12], **named_lists(sch, 12)}, 32, n=1024)
    best_named = min(v for k, v in errs.items() if k != "fit")
    assert errs["fit"] <= 1.02 * best_named, (fit.chosen[12], fit.margin[12], errs)


def test_per_sample_conditioning_is_repeated_over_the_larger_validation_batch():
    labels = torch.arange(8) % 6
    tiled = _tile_cond({"class_labels": labels, "scale": 2.0}, 8, 20)
    assert tiled["scale"] == 2.0 and torch.equal(tiled["class_labels"], torch.cat([labels, labels, labels[:4]]))
    fit = fit_steps(ring(), make_schedule("edm"), (4,), shape=(2,), sampler="euler", n=8, sweeps=1,
                    cond={"class_labels": labels}, dtype=torch.float64)  # fmt: skip
    assert fit.sigmas[4].shape == (5,) and math.isfinite(fit.validation[4][fit.chosen[4]])


def test_the_search_keeps_neighbouring_steps_within_the_ratio_cap():
    """An objective that rewards zigzag steps (as a calibration batch without the rare paths they ruin can) must
    not get a list whose neighbouring log-σ steps differ by more than OMEGA."""
    sch = make_schedule("linear")
    start = step_sigmas(sch, 12, "powerlog")
    assert step_ratio(start) < 1.5
    zig = torch.cat([start[:2], torch.tensor([5.0, 4.9, 1.0, 0.95, 0.2]), start[-3:]])
    assert step_ratio(zig) > 10  # the measure sees a zigzag (the step from σ_max and the one into 0 do not count)

    class Rewards:  # lower "error" for larger step ratios
        def err(self, sigmas):
            return -step_ratio(sigmas)

    refined, value = _refine(Rewards(), start, math.log(sch.sigma_min), sweeps=8)
    assert -value > 1.5  # the search did move towards zigzags ...
    assert step_ratio(refined) <= OMEGA + 1e-9  # ... but only up to the cap
    free, _ = _refine(Rewards(), start, math.log(sch.sigma_min), sweeps=8, omega=math.inf)
    assert step_ratio(free) > OMEGA  # negative control: without the cap it goes further


def test_powerlog_spacing_and_per_sampler_defaults():
    lin, scaled = make_schedule("linear"), make_schedule("scaled_linear")
    s = step_sigmas(lin, 10, "powerlog")
    assert s.shape == (11,) and s[-1] == 0 and (s[1:] < s[:-1]).all()
    assert s[0] == pytest.approx(lin.sigma_max) and s[1] == pytest.approx(20.0) and s[-2] == pytest.approx(0.1)
    t = step_sigmas(scaled, 10, "powerlog")  # σ_max = 14.6 < 20: no crossing step
    assert t[0] == pytest.approx(scaled.sigma_max) and t[1] < 10 and t[-2] == pytest.approx(0.1)
    assert step_sigmas(lin, 100, "powerlog")[-2] == pytest.approx(lin.sigma_min)  # 1/N below σ_min
    torch.testing.assert_close(powerlog_sigmas(lin, 10, 1.0, lin.sigma_min, math.inf), step_sigmas(lin, 10, "logsnr"))
    assert torch.equal(step_sigmas(lin, 10, sampler="unipc"), s)
    assert torch.equal(step_sigmas(lin, 10, sampler="euler"), step_sigmas(lin, 10))  # the schedule's default
    assert torch.equal(step_sigmas(lin, 10, "karras", sampler="unipc"), step_sigmas(lin, 10, "karras"))


def test_powerlog_default_beats_the_schedule_default_for_multistep_samplers_on_ddpm_linear():
    gm, sch = blobs(16, 3), make_schedule("linear")
    for sampler, knobs in (("unipc", {}), ("dpmpp_2m", {}), ("unipc", {"order": 3})):
        lists = {"default": step_sigmas(sch, 10), "powerlog": step_sigmas(sch, 10, sampler=sampler)}
        errs = held_out_error(gm, sch, sampler, knobs, lists, 16, n=256)
        assert errs["powerlog"] < 0.6 * errs["default"], (sampler, errs)


def test_adaptive_reports_per_sample_calls_and_is_monotone_in_tolerance():
    gm, sch = blobs(4, 1), make_schedule("linear")
    x = sch.sigma_max * torch.randn(64, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ends = torch.tensor([sch.sigma_max, sch.sigma_min, 0.0], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends[:2], rtol=1e-9, atol=1e-9, method="dopri5"), sch.sigma_min)
    for method in ("dpm12", "pc2", "bs32"):
        nfes, errs = [], []
        for tol in (1e-1, 1e-2, 1e-3, 1e-4):
            info: dict = {}
            out = get_sampler("adaptive")(gm, x, ends, rtol=tol, atol=tol, method=method, info=info)
            per = info["nfe_per_sample"]
            assert per.shape == (64,) and (per > 0).all() and int(per.max()) <= info["nfe"]
            nfes.append(float(per.double().mean()))
            errs.append(float((out - ref).pow(2).mean().sqrt()))
        assert all(a <= b for a, b in itertools.pairwise(nfes)), (method, nfes)
        assert errs[-1] < 0.1 * errs[0], (method, errs)
    info = {}
    get_sampler("adaptive")(gm, x, ends, rtol=0.3, atol=0.3, info=info)  # dpm12: a loose tolerance is cheap
    fewest = 2 * (1 + math.ceil(math.log(20 / sch.sigma_min))) + 1  # σ_max → 20, then steps of e, then D for free
    assert info["nfe"] <= fewest, (info["nfe"], fewest)


def test_adaptive_pc2_reaches_the_error_of_dpm12_with_fewer_calls():
    """The one-call-per-step predictor–corrector pair against DPM-Solver-12 (two calls per step) at equal
    tolerances, on exact PF-ODE solutions of a 16-D mixture under DDPM linear: no less accurate, far cheaper."""
    gm, sch = blobs(16, 2), make_schedule("linear")
    x = sch.sigma_max * torch.randn(128, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ends = torch.tensor([sch.sigma_max, sch.sigma_min, 0.0], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends[:2], rtol=1e-9, atol=1e-9, method="dopri5"), sch.sigma_min)
    for tol in (3e-3, 1e-3):
        res = {}
        for method in ("dpm12", "pc2"):
            info: dict = {}
            out = get_sampler("adaptive")(gm, x, ends, rtol=tol, atol=tol, method=method, info=info)
            res[method] = (float(info["nfe_per_sample"].double().mean()), float((out - ref).pow(2).mean().sqrt()))
        assert res["pc2"][0] < 0.75 * res["dpm12"][0], (tol, res)
        assert res["pc2"][1] < 2.0 * res["dpm12"][1], (tol, res)
