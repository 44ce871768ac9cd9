"""FD against NFE for each sampler on trained image models, with the noise floor, offline.

For each dataset (a trained run folder given with --run DATASET=PATH, or a small model trained here with
noisecraft's trainer when none is given), draws --num samples per (sampler, NFE) from the same seeds, and scores
them in the built-in feature space of that dataset (noisecraft's deterministic CNN, identified by checksum)
against the dataset's test split. The noise floor is the same metric between --num real training images and
the test split. The target (issue 6): the best sampler at 10 NFE within 15 % of its own FD at 200 NFE.

    python benchmarks/sample_quality.py --run digits=runs/digits --run fashion-mnist=runs/fashion
    python benchmarks/sample_quality.py --dataset digits --train-steps 2000     # trains a small model first

NFE is counted by wrapping the denoiser (network calls, not sampler steps), and the step count per sampler
is the largest that fits the NFE budget. Prints a table per dataset and writes JSON and a PNG beside --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

NFE_PER_STEP = {"heun": 2}  # samplers not listed use one network call per step


class CountingDenoiser:
    """Wraps a denoiser and counts its calls per sample (NFE)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, **cond):
        self.calls += 1
        return self.denoiser(x, sigma, **cond)


def _train_small(dataset: str, steps: int, out: Path) -> Path:
    from noisecraft.data.config import DataConfig
    from noisecraft.models.factory import ModelConfig
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.loop import train

    cfg = TrainConfig(
        data=DataConfig(source=dataset, resolution=16),
        model=ModelConfig(arch="unet", preset="tiny", resolution=16),
        steps=steps,
        out_dir=str(out),
        trackers=[],
        sample_every=0,
    )
    train(cfg, resume=(out / "checkpoints").exists())
    return out


def bench_dataset(dataset: str, run: Path, args) -> dict:
    from noisecraft.data.io import quantise
    from noisecraft.evaluation.evaluate import at_resolution, noise_floor
    from noisecraft.evaluation.features import BuiltinFeatures
    from noisecraft.evaluation.metrics import quality_scores
    from noisecraft.evaluation.reference import reference_images
    from noisecraft.sampling.generate import generate
    from noisecraft.training.checkpoint import load_run, resolve_checkpoint

    den, schedule, cfg = load_run(run)
    ckpt = resolve_checkpoint(run)
    m = cfg.model
    shape = (m.channels, m.resolution, m.resolution)
    feats = BuiltinFeatures(dataset)
    # real images at the model's resolution, so that only the model's error is measured
    ref = feats(at_resolution(reference_images(dataset, "test")[0], m.resolution))
    floor = noise_floor(feats, dataset, ref, args.num, resolution=m.resolution)
    seeds = list(range(args.num))
    labels = torch.arange(args.num) % m.num_classes if m.num_classes else None
    rows = []

    def score(sampler: str, nfe: int) -> dict:
        steps = max(1, nfe // NFE_PER_STEP.get(sampler, 1))
        counter = CountingDenoiser(den)
        t0 = time.time()
        imgs = generate(
            counter,
            schedule,
            shape,
            seeds,
            sampler=sampler,
            steps=steps,
            class_labels=labels,
            batch_size=args.batch_size,
        )
        batches = -(-args.num // args.batch_size)
        s = quality_scores(ref, feats(quantise(imgs)))  # scored as the saved PNGs hold them
        row = {
            "sampler": sampler,
            "steps": steps,
            "nfe": counter.calls // batches,
            **s.to_dict(),
            "seconds": round(time.time() - t0, 1),
        }
        print(
            f"  {sampler:16s} steps {steps:4d}  NFE {row['nfe']:4d}  FD {s.fd:8.3f}  KID {s.kid_mean:8.4f}  "
            f"P {s.precision:.3f}  R {s.recall:.3f}",
            flush=True,
        )
        return row

    print(
        f"\n== {dataset}: {ckpt} ({m.arch}/{m.preset}, {m.resolution}px, {m.parameterisation}, {m.schedule}); "
        f"{args.num} samples vs {len(ref)} test images at {m.resolution} px; features {feats.name} [{feats.checksum}]",
        flush=True,
    )
    print(
        f"  noise floor (real train vs test, {args.num} vs {len(ref)}): FD {floor.fd:.3f}  KID {floor.kid_mean:.4f}",
        flush=True,
    )
    for sampler in args.samplers:
        for nfe in args.nfe:
            rows.append(score(sampler, nfe))
    at10 = [r for r in rows if r["nfe"] <= 10]
    best = min(at10, key=lambda r: r["fd"]) if at10 else min(rows, key=lambda r: r["fd"])
    ref_row = score(best["sampler"], args.ref_nfe)
    rows.append(ref_row)
    ratio = best["fd"] / ref_row["fd"]
    print(
        f"  best at ≤10 NFE: {best['sampler']} FD {best['fd']:.3f}; "
        f"its FD at {ref_row['nfe']} NFE {ref_row['fd']:.3f}; "
        f"ratio {ratio:.3f} (target ≤ 1.15: {'met' if ratio <= 1.15 else 'NOT met'})",
        flush=True,
    )
    return {
        "dataset": dataset,
        "run": str(ckpt),
        "num_samples": args.num,
        "reference": f"{dataset} test ({len(ref)}) at {m.resolution} px",
        "extractor": feats.name,
        "extractor_checksum": feats.checksum,
        "seeds": f"0..{args.num - 1}",
        "noise_floor": floor.to_dict(),
        "rows": rows,
        "best_at_10": best["sampler"],
        "ratio_10_vs_ref": ratio,
        "model": {
            "arch": m.arch,
            "preset": m.preset,
            "resolution": m.resolution,
            "schedule": m.schedule,
            "parameterisation": m.parameterisation,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], metavar="DATASET=PATH", help="a trained run per dataset")
    p.add_argument("--dataset", action="append", default=[], help="train a small model for this dataset if no --run")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--num", type=int, default=500, help="samples per (sampler, NFE)")
    p.add_argument("--samplers", default="euler,heun,dpmpp_2m,unipc")
    p.add_argument("--nfe", default="10,20,50")
    p.add_argument("--ref-nfe", type=int, default=200, help="NFE of the reference run of the best sampler")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--out", default="benchmarks/results/sample_quality.json")
    args = p.parse_args(argv)
    args.samplers = [s for s in args.samplers.split(",") if s]
    args.nfe = [int(n) for n in args.nfe.split(",") if n]
    runs = dict(r.split("=", 1) for r in args.run)
    for ds in args.dataset:
        if ds not in runs:
            runs[ds] = str(_train_small(ds, args.train_steps, Path("runs") / f"bench-{ds}"))
    if not runs:
        p.error("give --run DATASET=PATH or --dataset NAME")
    results = [bench_dataset(ds, Path(path), args) for ds, path in runs.items()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    from noisecraft.evaluation.plots import plot_metric_vs_nfe

    for res in results:
        table: dict[str, list[tuple[float, float]]] = {}
        for r in res["rows"]:
            table.setdefault(r["sampler"], []).append((r["nfe"], r["fd"]))
        plot_metric_vs_nfe(
            table,
            out.with_name(f"{out.stem}-{res['dataset']}.png"),
            floor=res["noise_floor"]["fd"],
            title=f"{res['dataset']}: FD vs NFE ({res['num_samples']} samples)",
        )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
