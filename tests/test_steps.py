"""Step schedules: named spacings, and schedules optimised for a model (fit, save beside it, use by name)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import STEP_SCHEDULES, fit_schedule, save_schedule, step_sigmas

NAMES = ["default", "linspace", "trailing", "karras", "logsnr", "quadratic", "leading"]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "edm", "vp", "ve"])
@pytest.mark.parametrize("name", NAMES)
def test_named_spacings_are_valid_sigma_lists(schedule, name):
    sch = make_schedule(schedule)
    if name in ("leading", "trailing") and not sch.discrete:
        pytest.skip("leading/trailing strides exist only for discrete schedules")
    for steps in (1, 7):
        s = step_sigmas(sch, steps, name)
        assert s.dtype == torch.float64 and s.shape == (steps + 1,)
        assert s[-1] == 0 and (s[1:] < s[:-1]).all()
        if name != "leading":  # every spacing but "leading" starts at the top noise level
            assert s[0] == pytest.approx(sch.sigma_max, rel=1e-9)


def test_leading_misses_the_top_of_a_cosine_schedule():
    """The trap that the default avoids (Lin et al. 2023): leading strides never reach σ_max."""
    sch = make_schedule("cosine")
    assert step_sigmas(sch, 10, "leading")[0] < 0.01 * sch.sigma_max
    assert step_sigmas(sch, 10)[0] == pytest.approx(sch.sigma_max)


def test_quadratic_and_logsnr_shapes():
    sch = make_schedule("ve")  # t is linear in log σ here
    t = sch.t(step_sigmas(sch, 6, "quadratic")[:-1])
    u = torch.linspace(1, 0, 6, dtype=torch.float64)
    torch.testing.assert_close(t, u**2)  # t quadratic in the step index, from the top
    log_s = step_sigmas(make_schedule("edm"), 6, "logsnr")[:-1].log()
    d = log_s[1:] - log_s[:-1]
    torch.testing.assert_close(d, d.mean().expand_as(d))


def test_bad_names_and_step_counts():
    sch = make_schedule("edm")
    with pytest.raises(NoisecraftError, match="valid choices: .*karras.*optimised:<path>"):
        step_sigmas(sch, 10, "cosine-ish")
    for steps in (0, -3, 2.5):
        with pytest.raises(NoisecraftError, match="steps must be a positive integer"):
            step_sigmas(sch, steps)
    with pytest.raises(NoisecraftError, match="no optimised step schedule"):
        step_sigmas(sch, 10, "optimised:/nonexistent/folder")
    assert set(NAMES) <= set(STEP_SCHEDULES)


def test_a_damaged_or_foreign_fit_file_is_one_clear_error(tmp_path):
    from noisecraft.sampling.solver_fit import load_solvers

    sch = make_schedule("edm")
    (tmp_path / "optimised_steps.json").write_text('{"schedules": ')  # cut short
    with pytest.raises(NoisecraftError, match="is not valid JSON"):
        step_sigmas(sch, 10, f"optimised:{tmp_path}")
    (tmp_path / "fitted_solver.json").write_text("[1, 2]")  # JSON, but not a noisecraft fit
    with pytest.raises(NoisecraftError, match="is not a noisecraft fitted solver file"):
        load_solvers(tmp_path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 8, generator=g, dtype=torch.float64)
    gm = GaussianMixture(means, 0.05 + 0.5 * torch.rand(4, 8, generator=g))
    sch = make_schedule("edm")
    fit = fit_schedule(gm, sch, (5, 10), shape=(8,), n=64, grid=96, dtype=torch.float64)
    folder = tmp_path_factory.mktemp("model")
    save_schedule(folder, fit, fitted_for="test oracle")
    return gm, sch, fit, folder


def test_optimised_schedule_round_trips_through_json(fitted):
    _, sch, fit, folder = fitted
    for n in (5, 10):
        s = fit[n]
        assert s.shape == (n + 1,) and s[-1] == 0 and (s[1:] < s[:-1]).all()
        assert s[0] == pytest.approx(sch.sigma_max)
        torch.testing.assert_close(step_sigmas(sch, n, f"optimised:{folder}"), s)
    data = json.loads((folder / "optimised_steps.json").read_text())
    assert data["fitted_for"] == "test oracle" and set(data["schedules"]) == {"5", "10"}
    other = step_sigmas(sch, 7, f"optimised:{folder / 'optimised_steps.json'}")  # not fitted: interpolated
    assert other.shape == (8,) and other[-1] == 0 and (other[1:] < other[:-1]).all()
    assert other[0] == pytest.approx(sch.sigma_max)


def test_optimised_schedule_beats_the_named_ones_for_ddim(fitted):
    """Measured against the exact ODE solution of the oracle on fresh noise (not the calibration batch)."""
    gm, sch, fit, _ = fitted
    x = 80.0 * torch.randn(256, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ends = torch.tensor([80.0, 0.002], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends, rtol=1e-8, atol=1e-8, method="dopri5"), torch.tensor(0.002))

    def err(s):
        return float((get_sampler("ddim")(gm, x, s) - ref).pow(2).mean().sqrt())

    for n in (5, 10):
        ours = err(fit[n])
        best_named = min(err(step_sigmas(sch, n, name)) for name in ("karras", "logsnr", "linspace", "quadratic"))
        assert ours < 0.8 * best_named, (n, ours, best_named)
    assert math.isfinite(err(fit[5]))


def test_refinement_for_a_sampler_lowers_its_error_on_fresh_noise():
    """The DP schedule (DDIM proxy) refined for dpmpp_2m on calibration noise beats the DP one for dpmpp_2m on
    independent noise, and stays a valid σ list."""
    ang = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6)
    gm = GaussianMixture(1.5 * torch.stack([ang.cos(), ang.sin()], 1), torch.full((6,), 0.01, dtype=torch.float64))
    sch = make_schedule("linear")
    kw = dict(shape=(2,), n=128, grid=64, dtype=torch.float64)
    dp = fit_schedule(gm, sch, (5,), **kw)[5]
    refined = fit_schedule(gm, sch, (5,), **kw, sampler="dpmpp_2m", refine_sweeps=4)[5]
    assert refined[-1] == 0 and (refined[1:] < refined[:-1]).all() and refined[0] == dp[0]
    x = float(dp[0]) * torch.randn(256, 2, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    ends = torch.tensor([float(dp[0]), 1e-4], dtype=torch.float64)
    ref = gm(get_sampler("adaptive")(gm, x, ends, rtol=1e-8, atol=1e-8, method="dopri5"), torch.tensor(1e-4))

    def err(s):
        return float((get_sampler("dpmpp_2m")(gm, x, s) - ref).pow(2).mean().sqrt())

    assert err(refined) < 0.7 * err(dp), (err(refined), err(dp))
