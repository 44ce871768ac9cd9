"""Kill `noisecraft train` at random moments (SIGKILL, like a power cut or the OOM killer), resume it, and
count how many runs end bit-identical to an uninterrupted run or are refused cleanly (exit 2, one line).

Each trial starts a fresh run and kills it 1-3 times, each kill at a moment drawn uniformly over the
uninterrupted run's wall time (process start included: imports, data loading, checkpoint writes and pruning
are all fair game), resuming with ``noisecraft train --out RUN --resume`` after each. It then resumes to the
end and compares model, EMA and optimiser tensors of the final checkpoint with the reference run's, and
checks that "keep the last K" holds and no temporary/trash folder is left. Target: all trials.

    OMP_NUM_THREADS=1 python benchmarks/crash_resume.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = 2
ARGS = ["--data", "digits", "--resolution", "8", "--arch", "mlp", "--batch-size", "32", "--no-progress"]
SETS = ["trackers=[]", "sample_every=0", "checkpoint_every=10", f"keep_last={KEEP}", "optim.warmup_steps=10"]


def command(out: Path, steps: int, resume: bool) -> list[str]:
    base = [sys.executable, "-m", "noisecraft.cli.main", "train", "--out", str(out)]
    if resume:  # the folder alone: the run's own record says what to train
        return [*base, "--resume", "--no-progress"]
    return [*base, *ARGS, "--steps", str(steps), *[a for s in SETS for a in ("--set", s)]]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def same_final(a: Path, b: Path, steps: int) -> bool:
    import torch
    from safetensors.torch import load_file

    name = f"checkpoints/step-{steps:08d}"
    for f in ("model", "ema", "optimizer"):
        x, y = load_file(a / name / f"{f}.safetensors"), load_file(b / name / f"{f}.safetensors")
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def run_and_kill(cmd: list[str], after: float) -> str:
    """Start `cmd`, SIGKILL it `after` seconds later; 'killed' or 'finished' (it ended first)."""
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=after)
        return "finished"
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return "killed"


def trial(root: Path, ref: Path, steps: int, wall: float, rng: random.Random) -> tuple[str, str]:
    out = root / "run"
    kills = []
    for k in range(rng.randint(1, 3)):
        at = rng.uniform(0, wall)
        what = run_and_kill(command(out, steps, resume=k > 0 and out.exists()), at)
        kills.append(f"{at:.1f}s:{what}")
    r = subprocess.run(command(out, steps, resume=True), env=env(), capture_output=True, text=True, timeout=900)
    where = " ".join(kills)
    if r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr:
        return "refused cleanly", f"{where}; {r.stderr.strip()}"
    if r.returncode != 0:
        return "FAILED", f"{where}; exit {r.returncode}: {r.stderr.strip()[-300:]}"
    names = [p.name for p in (out / "checkpoints").iterdir()]
    steps_kept = [n for n in names if n.startswith("step-")]
    if len(steps_kept) > KEEP or len(names) != len(steps_kept):
        return "FAILED", f"{where}; checkpoints left: {sorted(names)}"
    if not same_final(ref, out, steps):
        return "FAILED", f"{where}; final weights differ"
    return "bit-identical", where


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="crash_resume_"))
    ref = work / "ref"
    t0 = time.perf_counter()
    subprocess.run(command(ref, a.steps, False), env=env(), check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    print(f"reference: {a.steps} steps, {wall:.1f} s wall (kills drawn uniformly in [0, {wall:.1f}] s)")
    counts: dict[str, int] = {}
    for i in range(a.trials):
        root = work / f"t{i:02d}"
        root.mkdir()
        outcome, detail = trial(root, ref, a.steps, wall, rng)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"trial {i + 1:2d}: {outcome:<15} kills at {detail}", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    good = counts.get("bit-identical", 0) + counts.get("refused cleanly", 0)
    print("\n| outcome | trials |\n|---|---|")
    for k in ("bit-identical", "refused cleanly", "FAILED"):
        print(f"| {k} | {counts.get(k, 0)} |")
    print(f"\n{good}/{a.trials} bit-identical or refused cleanly (target {a.trials}/{a.trials})")
    return 0 if good == a.trials else 1


if __name__ == "__main__":
    sys.exit(main())
