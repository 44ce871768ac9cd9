"""The README's class-conditional guidance recipe with the defaults, and with the guide's setting added
(--parameterisation eps --schedule linear): class accuracy of CFG-4 samples judged by the digits CNN.

    OMP_NUM_THREADS=1 python benchmarks/readme_guidance.py --steps 600 --out /tmp/readme-guidance

Measured 2026-11-29 (600 steps, 8 samples per class, seeds 100..107): defaults 1.00, guide's setting 0.40.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisecraft.cli.main import main as cli
from noisecraft.evaluation.features import BuiltinFeatures

SETTINGS = {"defaults": [], "guide-eps-linear": ["--parameterisation", "eps", "--schedule", "linear"]}


def accuracy(run: Path, per_class: int) -> float:
    judge = BuiltinFeatures("digits").net
    hits = 0
    for c in range(10):
        out = run / f"class{c}"
        cli(["sample", str(run), "--class", str(c), "--cfg", "4", "--cfg-interval", "0.3,5", "--cfg-rescale", "0.7",
             "--num", str(per_class), "--seed", "100", "--out", str(out)])  # fmt: skip
        x = torch.stack(
            [torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32)) for p in sorted(out.glob("seed*.png"))]
        )
        with torch.no_grad():
            hits += int((judge(x[:, None] / 127.5 - 1).argmax(1) == c).sum())
    return hits / (10 * per_class)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("/tmp/readme-guidance"))
    args = ap.parse_args()
    rows = {}
    for name, extra in SETTINGS.items():
        run = args.out / name
        cli(["train", "--data", "digits", "--arch", "mlp", "--resolution", "8", "--set", "model.num_classes=10",
             "--set", "data.labels=true", "--set", "label_dropout=0.15", "--out", str(run), "--steps",
             str(args.steps), "--set", "trackers=[]", "--set", "sample_every=0", "--no-progress", *extra])  # fmt: skip
        rows[name] = accuracy(run, args.per_class)
    print(f"\nREADME guidance recipe, {args.steps} steps, CFG 4: class accuracy by the digits CNN")
    for name, acc in rows.items():
        print(f"{name:20} {acc:.2f}")


if __name__ == "__main__":
    main()
