"""A cascade (a 16 px base model + a 16 → 32 px diffusion upsampler, Ho et al. 2021) against one model trained
at 32 px, with equal training compute, on Fashion-MNIST.

Equal compute is equal training CPU seconds of one thread: each network's CPU seconds per step are measured
first (steps 2..11 of a short run), and the steps are set so that the single model gets the whole budget and
the base and the upsampler half of it each. The same U-Net preset, batch and defaults (EDM preconditioning,
auto learning rate and EMA) for all three. Each trained pipeline then draws --num samples with Heun at 20
steps per stage (the same seeds), timed (wall and CPU seconds), and is scored with the evaluation protocol of
`noisecraft eval` (FD with its 95 % bootstrap interval against the Fashion-MNIST test split resized to 32 px,
features of the built-in Fashion-MNIST network; the noise floor for scale). The upsampler is sampled at
augmentation levels 0 and --aug.

    OMP_NUM_THREADS=1 nice python benchmarks/cascade.py --budget 240 --num 500 > cascade.log 2>&1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

COMMON = ["--data", "fashion-mnist", "--batch-size", "32", "--no-progress", "--set", "trackers=[]",
          "--set", "sample_every=0", "--set", "eval_every=0"]  # fmt: skip


def train(out: Path, resolution: int, steps: int, preset: str, upsample_from: int | None = None) -> None:
    from noisecraft.cli.main import main

    argv = ["train", *COMMON, "--resolution", str(resolution), "--steps", str(steps), "--model-preset", preset,
            "--out", str(out), "--set", "log_every=1" if steps <= 20 else "log_every=10"]  # fmt: skip
    if upsample_from:
        argv += ["--upsample-from", str(upsample_from)]
    assert main(argv) == 0, argv


def cpu_seconds(out: Path) -> tuple[float, int]:
    """(training CPU seconds of the whole run, from the CPU time a step took between its first and last log
    records (the log's cpu_s), and its steps)."""
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rate = (recs[-1]["cpu_s"] - recs[0]["cpu_s"]) / max(1, recs[-1]["step"] - recs[0]["step"])
    return rate * recs[-1]["step"], recs[-1]["step"]


def per_step(tmp: Path, name: str, resolution: int, preset: str, upsample_from: int | None = None) -> float:
    out = tmp / f"calib-{name}"
    train(out, resolution, 12, preset, upsample_from)
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return (recs[-1]["cpu_s"] - recs[1]["cpu_s"]) / (recs[-1]["step"] - recs[1]["step"])


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=240.0, help="training CPU seconds per pipeline")
    ap.add_argument("--num", type=int, default=500, help="samples per pipeline")
    ap.add_argument("--preset", default="nano", help="U-Net preset of all three networks")
    ap.add_argument("--aug", type=float, default=0.2, help="the upsampler's augmentation level at sampling")
    ap.add_argument("--keep", default=None, help="keep the runs in this folder")
    a = ap.parse_args()
    import torch

    from noisecraft.evaluation.evaluate import evaluate_images
    from noisecraft.evaluation.features import get_extractor
    from noisecraft.models.upsampler import upscale
    from noisecraft.sampling.generate import generate
    from noisecraft.training.checkpoint import load_run

    torch.set_num_threads(1)
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="nc-cascade-"))
    tmp.mkdir(parents=True, exist_ok=True)
    t32, t16 = per_step(tmp, "single", 32, a.preset), per_step(tmp, "base", 16, a.preset)
    tsr = per_step(tmp, "sr", 32, a.preset, 16)
    plan = {"single": int(a.budget / t32), "base": int(a.budget / 2 / t16), "sr": int(a.budget / 2 / tsr)}
    print(f"CPU s/step: single 32 px {t32:.4f}, base 16 px {t16:.4f}, upsampler 16→32 {tsr:.4f}; steps {plan}")
    train(tmp / "single", 32, plan["single"], a.preset)
    train(tmp / "base", 16, plan["base"], a.preset)
    train(tmp / "sr", 32, plan["sr"], a.preset, 16)
    used = {k: cpu_seconds(tmp / k) for k in plan}
    print("training CPU s (logged): " + ", ".join(f"{k} {v[0]:.0f} over {v[1]} steps" for k, v in used.items()))

    feats = get_extractor("fashion-mnist")
    seeds = list(range(a.num))
    single, sched1, _ = load_run(tmp / "single", device="cpu")
    base, sched_b, _ = load_run(tmp / "base", device="cpu")
    sr, sched_sr, _ = load_run(tmp / "sr", device="cpu")
    rows = []
    x1, w1, c1 = timed(lambda: generate(single, sched1, (1, 32, 32), seeds, sampler="heun", steps=20, batch_size=100))
    rows.append(("single 32 px", x1, w1, c1, used["single"][0]))
    low, wb, cb = timed(lambda: generate(base, sched_b, (1, 16, 16), seeds, sampler="heun", steps=20, batch_size=100))
    from noisecraft.data.io import quantise

    low = quantise(low)  # as the base's PNGs hold it
    for aug in (0.0, a.aug):
        x, w, c = timed(lambda aug=aug: upscale(sr, sched_sr, low, seeds, aug_sigma=aug, sampler="heun", steps=20,
                                                batch_size=100))  # fmt: skip
        rows.append((f"cascade 16→32, aug {aug:g}", x, wb + w, cb + c, used["base"][0] + used["sr"][0]))
    up = torch.nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    rows.append(("base 16 px, bilinear ×2 (no upsampler)", up, wb, cb, used["base"][0]))
    print(f"\nFashion-MNIST 32 px, {a.num} samples each, Heun 20 steps a stage, features {feats.name} "
          f"[{feats.checksum}], preset {a.preset}, equal training budget {a.budget:g} CPU s")  # fmt: skip
    print(f"{'pipeline':<40} {'FD [95% CI]':>24} {'KID':>8} {'train CPU s':>12} {'sample s (wall/CPU)':>20}")
    floor = None
    for name, x, w, c, train_s in rows:
        r = evaluate_images(x, "fashion-mnist", feats, with_floor=floor is None)
        floor = floor or r.noise_floor
        s = r.scores
        ci = f"{s.fd:.3g} [{s.fd_low:.3g}, {s.fd_high:.3g}]"
        print(f"{name:<40} {ci:>24} {s.kid_mean:>8.4f} {train_s:>12.0f} {w:>9.1f} / {c:<9.1f}")
    print(f"noise floor (real train vs test, {a.num} images): FD {floor.fd:.3g}")
    print(f"runs in {tmp}")


if __name__ == "__main__":
    main()
