"""`noisecraft samplers`: the listing, and fitting an optimised step schedule to a trained run, then sampling
with it by name through `noisecraft sample`."""

from __future__ import annotations

import json

import numpy as np

from noisecraft.cli.main import main
from noisecraft.sampling.samplers import SAMPLERS
from noisecraft.sampling.steps import STEP_SCHEDULES


def test_listing_names_every_sampler_and_schedule(capsys):
    assert main(["samplers", "--knobs"]) == 0
    out = capsys.readouterr().out
    for name in [*SAMPLERS, *STEP_SCHEDULES]:
        assert f"  {name} " in out, name
    assert "knobs: eta=0.0" in out


def test_fit_then_sample_with_the_optimised_schedule(tmp_path, capsys):
    run = tmp_path / "run"
    quiet = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
    assert main(["train", "--data", "toy:moons", "--steps", "20", "--batch-size", "32", "--out", str(run), *quiet]) == 0
    argv = ["samplers", "--fit", str(run), "--steps", "3,6", "--calibration", "16", "--sampler", "unipc"]
    assert main(argv) == 0
    saved = json.loads((run / "optimised_steps.json").read_text())
    fitted = saved["schedules"]
    assert set(fitted) == {"3", "6"} and fitted["6"][-1] == 0
    assert saved["sampler"] == "unipc" and set(saved["chosen"]) == {"3", "6"}
    assert saved["pool"] == 8 * 4 * 16  # validation paths (4 × calibration) screened from a pool 8× larger
    for n, how in saved["chosen"].items():  # the best named spacing on validation, or a fitted list that beat it
        scores = saved["validation_rms"][n]
        best_named = min(v for k, v in scores.items() if k.startswith("named:"))
        if how.startswith("named:"):
            assert scores[how] == best_named
        else:
            assert scores[how] < best_named and saved["validation_z"][n][how] < -2
    printed = capsys.readouterr().out
    assert "steps:" in printed
    for n, how in saved["chosen"].items():  # a kept fit reports its gain on the validation paths
        scores = saved["validation_rms"][n]
        best_named = min(v for k, v in scores.items() if k.startswith("named:"))
        shown = f"error {scores[how]:.4g}, {scores[how] / best_named:.2f}x that of the best named spacing"
        assert (shown in printed) != how.startswith("named:"), printed
    out = tmp_path / "samples"
    argv = ["sample", str(run), "--sampler", "unipc", "--steps", "6", "--schedule", f"optimised:{run}"]
    assert main([*argv, "--num", "5", "--out", str(out)]) == 0
    x = np.load(out / "samples.npy")
    assert x.shape == (5, 2) and np.isfinite(x).all()
    assert main(["samplers", "--fit", str(run), "--steps", "3,x"]) == 2
    assert "--steps must be comma-separated integers" in capsys.readouterr().err


def test_fit_solver_weights_then_sample_with_fitted_ms(tmp_path, capsys):
    """--solver fits fitted_ms weights on each list; `sample --sampler fitted_ms` uses them with their own list,
    and equals the base sampler exactly where the validation test kept the base weights."""
    run = tmp_path / "run"
    quiet = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
    assert main(["train", "--data", "toy:moons", "--steps", "20", "--batch-size", "32", "--out", str(run), *quiet]) == 0
    argv = ["samplers", "--fit", str(run), "--steps", "3,6", "--calibration", "24", "--sampler", "unipc", "--solver"]
    assert main(argv) == 0
    assert "fitted_ms weights" in capsys.readouterr().out
    saved = json.loads((run / "fitted_solver.json").read_text())["solvers"]
    assert set(saved) == {"3", "6"}
    outs = {}
    for sampler in ("fitted_ms", "unipc"):
        argv = ["sample", str(run), "--sampler", sampler, "--steps", "6", "--schedule", f"optimised:{run}"]
        assert main([*argv, "--num", "8", "--out", str(tmp_path / sampler)]) == 0
        outs[sampler] = np.load(tmp_path / sampler / "samples.npy")
    v = saved["6"]["validation_rms"]
    if saved["6"]["chosen"] == "base":
        np.testing.assert_allclose(outs["fitted_ms"], outs["unipc"], atol=1e-5)
    else:
        assert v["fitted"] < v["base"] and not np.allclose(outs["fitted_ms"], outs["unipc"], atol=1e-5)
    capsys.readouterr()
    assert main(["sample", str(run), "--sampler", "fitted_ms", "--steps", "5", "--schedule", f"optimised:{run}"]) == 2
    assert "fitted weights for [3, 6] steps, not 5" in capsys.readouterr().err
    assert main(["sample", str(run), "--sampler", "fitted_ms", "--steps", "6", "--out", str(tmp_path / "x")]) == 2
    assert "belong to the σ list" in capsys.readouterr().err
    assert main(["samplers", "--fit", str(run), "--sampler", "heun", "--steps", "3", "--solver"]) == 2
    assert "linear multistep sampler" in capsys.readouterr().err
