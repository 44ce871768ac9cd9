"""benchmarks/samplers.py at a small size (one problem, few paths): it runs end to end, its report says the
targets hold on the 2-D ring, and every fit gets a check row against the best named spacing on new paths."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("samplers_benchmark", ROOT / "benchmarks" / "samplers.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_the_samplers_benchmark_at_a_small_size(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    small = ["--paths", "64", "--calibration", "16", "--validation", "32", "--sweeps", "0", "--check-paths", "256"]
    argv = [sys.executable, str(ROOT / "benchmarks" / "samplers.py"), "--problems", "0", *small, "--stats", "256"]
    subprocess.run([*argv, "--out", str(tmp_path)], capture_output=True, text=True, env=env, check=True)
    report = (tmp_path / "samplers.md").read_text()
    assert "Target ≤ 0.5× at NFE 5 and 10: holds in 2 of 2" in report, report[:3000]
    rows = json.loads((tmp_path / "samplers.json").read_text())
    checks = [r for r in rows if r[0] == "check"]
    plain = {(r[2], r[4]) for r in checks if r[3] == "fitted"}
    gauss = {(r[2], r[4]) for r in checks if r[3] == "gauss-fitted"}
    assert plain == {(s, n) for s in bench.OURS for n in bench.NFES}
    assert gauss == {(s, n) for s in (*bench.GAUSS, *bench.STATS_SAMPLERS) for n in bench.NFES}
    ratios = sorted(r[6]["rms"] / r[6]["named_rms"] for r in checks)
    assert all(math.isfinite(r[6]["z"]) and r[6]["paths"] == 256 for r in checks)
    assert ratios[len(ratios) // 2] < 1.0  # the median fit beats the best named spacing on new paths
    assert {r[0] for r in rows} == {"noisecraft", "diffusers", "adaptive", "check"}


def test_partial_runs_replace_their_own_rows_only():
    p = "2-D ring, DDPM linear"
    check_plain = ("check", p, "unipc", "fitted", 10, 10, {})
    check_gauss = ("check", p, "unipc", "gauss-fitted", 10, 10, {})
    fitted = ("noisecraft", p, "unipc", "fitted (refined)", 10, 10, {})
    named = ("noisecraft", p, "unipc", "powerlog", 10, 10, {})
    large = ("noisecraft", p, "unipc3", "large-fitted (refined)", 10, 10, {})
    theirs = ("diffusers", p, "UniPC", "trailing", 10, 10, {})
    assert [bench.replaced_by("fits", r, p) for r in (check_plain, check_gauss, fitted, named, large, theirs)] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
    assert [bench.replaced_by("gauss", r, p) for r in (check_plain, check_gauss, fitted)] == [False, True, False]
    assert [bench.replaced_by("large", r, p) for r in (check_plain, large)] == [False, True]
    assert not bench.replaced_by("fits", check_plain, "16-D, EDM")  # another problem's rows stay
