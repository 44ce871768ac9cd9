"""benchmarks/sampler_error_trained.py at a small size: it scores samplers on a trained run against a long
solve, and the error it reports falls as the step count rises (the check can fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from noisecraft.cli.main import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler_error_trained.py"


def test_the_trained_run_sampler_error_table(tmp_path):
    run = tmp_path / "run"
    quiet = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
    assert main(["train", "--data", "toy:moons", "--steps", "30", "--batch-size", "32", "--out", str(run), *quiet]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, str(SCRIPT), str(run), "--num", "64", "--steps", "2,12", "--ref-steps", "100"]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    rows = [r.split("|")[1:-1] for r in out.splitlines() if r.startswith("| ") and r[2].isdigit()]
    rms = {(int(s), name.strip()): float(e) for s, name, e, _ in rows}
    assert len(rms) == 10, out
    default = "unipc / powerlog (its default)"
    assert rms[(12, default)] < 0.5 * rms[(2, default)], out
    assert (run / "data_stats.safetensors").is_file()
