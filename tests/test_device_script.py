"""benchmarks/device_throughput.sh --smoke, the prepared check for a machine with a GPU, runs end to end on the
CPU at a tiny size (DEVICE=cpu): its trainer, sampler comparison, sample/eval/edit commands, step-schedule fit
and periodic evaluation, so that a session with a GPU finds it working. Slow (a few CPU minutes): pytest -m slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_smoke_script_runs_end_to_end_on_the_cpu(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "RUN_DIR": str(tmp_path / "run"), "OMP_NUM_THREADS": "1"}  # fmt: skip
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_throughput.sh"), "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    smoke = (tmp_path / "out" / "smoke.txt").read_text()
    assert "samplers on cpu: all agree with the cpu" in smoke
    assert "x̂0 clamped to ±1" in smoke and "periodic_eval on cpu" in smoke  # eval --clip-x0 ran, and the rest
    assert "smoke test on cpu: done" in r.stdout
    assert "validation paths (screened from" in smoke and (tmp_path / "run" / "optimised_steps.json").is_file()
    assert (tmp_path / "out" / "device-grid.png").stat().st_size > 0
