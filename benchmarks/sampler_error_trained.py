"""Sampler error on a trained run: each configuration against a long UniPC-3 solve from the same start noise.

    OMP_NUM_THREADS=1 python benchmarks/sampler_error_trained.py RUN [--num 1000] [--steps 5,10] [--ref-steps 400]

FD cannot tell few-step samplers apart on small reference sets (the digits test split has 359 images, so FD's
95 % interval is about ±0.18 around 0.4); the error of the deterministic sampler against the ODE solution it
approximates can. Seeds 10000.. are used, never the noise `noisecraft samplers --fit` drew, so a fitted
schedule (`optimised:RUN`, fitted beforehand) is judged on held-out noise. Prints a markdown table: RMS over all
samples and values, and the median of the per-sample RMS error, in the model's units ([−1, 1] pixels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from noisecraft.sampling.data_stats import run_data_stats
from noisecraft.sampling.generate import generate
from noisecraft.training.checkpoint import load_run
from noisecraft.training.setup import sample_shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--steps", default="5,10")
    ap.add_argument("--ref-steps", type=int, default=400)
    args = ap.parse_args()
    den, sch, cfg = load_run(args.run, device="cpu")
    shape, seeds = sample_shape(cfg), list(range(10_000, 10_000 + args.num))
    stats = run_data_stats(args.run, cfg)
    ref = generate(den, sch, shape, seeds, sampler="unipc", steps=args.ref_steps, knobs={"order": 3}, batch_size=500)
    fitted = (Path(args.run) / "optimised_steps.json").is_file()
    configs = [
        ("unipc / powerlog (its default)", "unipc", None, None),
        ("unipc / karras", "unipc", "karras", None),
        ("unipc3 / powerlog", "unipc", None, {"order": 3}),
        ("dpmpp_2m / karras", "dpmpp_2m", "karras", None),
        ("gauss_pc / powerlog (run's statistics)", "gauss_pc", None, {"stats": stats}),
    ]
    if fitted:
        configs.insert(2, ("unipc / optimised:RUN", "unipc", f"optimised:{args.run}", None))
    print(f"{args.run}: {args.num} samples, reference UniPC-3 with {args.ref_steps} steps\n")
    print("| steps | sampler / spacing | rms | median per sample |\n|---|---|---|---|")
    for steps in [int(s) for s in args.steps.split(",")]:
        for name, sampler, spacing, knobs in configs:
            x = generate(den, sch, shape, seeds, sampler=sampler, steps=steps, spacing=spacing, knobs=knobs,
                         batch_size=500)  # fmt: skip
            d = (x - ref).flatten(1).pow(2).mean(1)  # (num,) per-sample mean squared error
            print(f"| {steps} | {name} | {float(d.mean().sqrt()):.4f} | {float(d.sqrt().median()):.4f} |", flush=True)


if __name__ == "__main__":
    main()
