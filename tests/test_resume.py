"""Exact resume: a run SIGKILLed mid-run and resumed ends at bit-identical weights to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

STEPS, EVERY = 150, 25


def _cmd(out: Path, resume: bool = False, steps: int = STEPS) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "noisecraft.cli.main",
        "train",
        "--data",
        "toy:swissroll",
        "--steps",
        str(steps),
        "--batch-size",
        "64",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        f"checkpoint_every={EVERY}",
        "--set",
        "trackers=[]",
        "--set",
        "sample_every=0",
        "--set",
        "keep_last=2",
        "--set",
        "optim.warmup_steps=20",
        "--set",
        "ema.decay=0.9",
    ]
    return [*cmd, "--resume"] if resume else cmd


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    p_ref = subprocess.Popen(_cmd(ref), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p_kill = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = killed / "checkpoints"
    deadline = time.time() + 120
    while not any(ckpts.glob("step-*")) and p_kill.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.05)  # somewhere after the first checkpoint, possibly inside a later checkpoint write
    p_kill.send_signal(signal.SIGKILL)
    p_kill.wait()
    done = sorted(p.name for p in ckpts.glob("step-*"))
    assert done and done[-1] != f"step-{STEPS:08d}", f"the run was not interrupted mid-way: {done}"
    assert p_ref.wait(timeout=180) == 0, p_ref.stderr.read().decode()[-2000:]

    r = subprocess.run(_cmd(killed, resume=True), env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout + r.stderr
    final = f"checkpoints/step-{STEPS:08d}"
    for name in ("model", "ema", "optimizer"):
        a, b = load_file(ref / final / f"{name}.safetensors"), load_file(killed / final / f"{name}.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    # and the weights did change during training, so the comparison is not vacuous
    first = load_file(sorted((ref / "checkpoints").glob("step-*"))[0] / "model.safetensors")
    last = load_file(ref / final / "model.safetensors")
    assert any(not torch.equal(first[k], last[k]) for k in first)


def test_training_into_a_used_folder_without_resume_is_refused(tmp_path):
    from noisecraft.cli.main import main

    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        "toy:moons",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "trackers=[]",
        "--set",
        "sample_every=0",
    ]
    assert main(args) == 0
    assert main(args) == 2  # would silently overwrite: refused with a message
    assert main([*args[:4], "5", *args[5:], "--resume"]) == 0
    assert (out / "checkpoints" / "step-00000005").is_dir()


def test_resume_with_a_different_model_or_data_is_refused(tmp_path):
    from noisecraft.cli.main import main

    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        "toy:moons",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "trackers=[]",
        "--set",
        "sample_every=0",
    ]
    assert main(args) == 0
    assert main([*args, "--resume", "--set", "model.preset=small"]) == 2
    assert main([*args, "--resume", "--set", "data.source=toy:swissroll"]) == 2
    assert main([*args, "--resume", "--steps", "4", "--lr", "0.01"]) == 0  # steps and lr may change


def test_a_run_saved_before_a_config_field_existed_resumes(tmp_path):
    """A run written by an older noisecraft lacks fields added since (their defaults are what it trained with):
    it resumes, while a real change in the same section is still refused."""
    import json

    from noisecraft.cli.main import main

    out = tmp_path / "run"
    args = ["train", "--data", "toy:moons", "--steps", "2", "--batch-size", "8", "--out", str(out), "--no-progress"]
    args += ["--set", "trackers=[]", "--set", "sample_every=0"]
    assert main(args) == 0
    for path in [out / "config.json", *out.glob("checkpoints/step-*/config.json")]:
        cfg = json.loads(path.read_text())
        del cfg["data"]["background"], cfg["model"]["text_layout"]  # fields an older version did not write
        path.write_text(json.dumps(cfg))
    assert main([*args, "--resume", "--steps", "4", "--set", "data.source=toy:swissroll"]) == 2
    assert main([*args, "--resume", "--steps", "4"]) == 0


def test_resume_drops_log_lines_past_the_checkpoint_and_half_written_ones(tmp_path):
    from noisecraft.training.core import truncate_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 10, "loss": 1}\n{"step": 20, "loss": 0.5}\n{"step": 30, "loss": 0.4}\n{"step": 4')
    truncate_log(log, 20)
    assert log.read_text() == '{"step": 10, "loss": 1}\n{"step": 20, "loss": 0.5}\n'


def test_signal_stops_cleanly_with_a_checkpoint_and_resume_is_bit_identical(tmp_path):
    """Ctrl-C (SIGINT) or SIGTERM: the run finishes its step, writes a checkpoint there (off the cadence), exits
    with 128 + signal, and resuming it ends at the uninterrupted run's weights."""
    steps = 500  # long enough that the signal lands mid-run, even on a loaded machine
    ref = tmp_path / "ref"
    assert subprocess.run(_cmd(ref, steps=steps), env=_env(), capture_output=True, timeout=300).returncode == 0
    want = load_file(ref / f"checkpoints/step-{steps:08d}" / "model.safetensors")
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / sig.name
        p = subprocess.Popen(
            _cmd(out, steps=steps), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline and not any((out / "checkpoints").glob("step-*")):
            time.sleep(0.01)
        p.send_signal(sig)
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 128 + sig, err[-2000:]
        assert f"{sig.name} received: stopped after step" in err and "--resume" in err
        stopped = int(err.split("stopped after step ")[1].split(",")[0])
        assert EVERY <= stopped < steps
        assert (out / "checkpoints" / f"step-{stopped:08d}" / "model.safetensors").is_file()
        r = subprocess.run(_cmd(out, True, steps), env=_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and f"step {stopped})" in r.stdout + r.stderr, r.stderr[-2000:]
        got = load_file(out / f"checkpoints/step-{steps:08d}" / "model.safetensors")
        assert all(torch.equal(want[k], got[k]) for k in want), f"{sig.name}: weights differ after resume"
