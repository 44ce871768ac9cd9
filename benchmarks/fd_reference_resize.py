"""FD at 10 vs 200 NFE on the demo digits model, against the reference resized two ways (the finding in
docs/guide/evaluation.md, "FD at 10 vs 200 NFE").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fd_reference_resize.py RUN 500

RUN: a 16-px digits run (configs/demo-digits.json). Columns: reference upsampled 8 -> 16 px with a bilinear torch
resize (what eval did before) or with the trainer's own Pillow lanczos (what it does now), judged by the
digits and the Fashion-MNIST feature networks; rows: real training images made both ways, and samples.
"""

import sys
import time

import torch

from noisecraft.data.datasets import make_dataset
from noisecraft.data.io import quantise
from noisecraft.evaluation import evaluate as E
from noisecraft.evaluation.features import get_extractor
from noisecraft.evaluation.metrics import frechet_distance, frechet_distance_ci
from noisecraft.evaluation.reference import reference_images
from noisecraft.sampling.generate import generate
from noisecraft.training.checkpoint import load_run

torch.set_num_threads(1)
N = int(sys.argv[2])
den, sched, cfg = load_run(sys.argv[1], device="cpu")
test, _ = reference_images("digits", "test")
train, _ = reference_images("digits", "train")
nets = {n: get_extractor(n) for n in ("digits", "fashion-mnist")}


def bil(x):
    return torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear")


refs = {}
for how, f in (("bilinear", bil), ("lanczos", lambda x: E.at_resolution(x, 16, "lanczos"))):
    for n, net in nets.items():
        refs[how, n] = net(quantise(f(test)))
# the training images as the model sees them (the trainer's own pipeline), train split only
ds = make_dataset(cfg.data)
perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
idx = perm[:-359]
pipe = torch.stack([ds[int(i)]["x"] for i in idx[:1000]])
print("training pipeline images", pipe.shape, float(pipe.min()), float(pipe.max()))
sets = {"train split via bilinear (old floor)": bil(train[:1000]), "train split via trainer pipeline (lanczos)": pipe}
for sampler, steps in (("unipc", 10), ("euler", 10), ("unipc", 200)):
    t = time.perf_counter()
    sets[f"{sampler} {steps} NFE"] = generate(
        den, sched, (1, 16, 16), list(range(N)), sampler=sampler, steps=steps, batch_size=500
    )
    print(f"  {sampler} {steps}: {time.perf_counter() - t:.0f} s", flush=True)
print(f"FD [95% CI] vs the 359 test digits at 16 px; samples n={N}, 8-bit")
for name, x in sets.items():
    row = []
    for how in ("bilinear", "lanczos"):
        for n, net in nets.items():
            f = net(quantise(x))
            lo, hi = frechet_distance_ci(refs[how, n], f)
            row.append(f"{how[:4]}/{n[:6]} {frechet_distance(refs[how, n], f):.3f} [{lo:.2f},{hi:.2f}]")
    print(f"{name:>44}: " + "  ".join(row), flush=True)
