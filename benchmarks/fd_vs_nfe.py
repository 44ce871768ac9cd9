"""Why FD at 10 NFE can look far from FD at 200 NFE: sample count, clamping and the feature network.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fd_vs_nfe.py RUN [--num 2000] [--subset 500]

For each (sampler, NFE) it draws `--num` samples once (seeds 0..num−1) and prints FD with its 95 % bootstrap
interval under: the raw sampler output (what `eval` scored before 0.2) and the 8-bit samples (what the saved
PNGs hold and `eval` scores now), with the digits network and with the Fashion-MNIST network (an independent
judge), on all `--num` samples and on the first `--subset` of them; then the ratio FD(10 NFE)/FD(200 NFE) of
each column with the spread of that ratio over disjoint subsets of `--subset` samples.
"""

from __future__ import annotations

import argparse
import time

import torch

from noisecraft.data.io import quantise
from noisecraft.evaluation.evaluate import at_resolution
from noisecraft.evaluation.features import get_extractor
from noisecraft.evaluation.metrics import frechet_distance, frechet_distance_ci
from noisecraft.evaluation.reference import reference_images
from noisecraft.sampling.generate import generate
from noisecraft.training.checkpoint import load_run

NFE_PER_STEP = {"heun": 2, "adaptive": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--subset", type=int, default=500)
    ap.add_argument("--samplers", default="unipc,euler")
    ap.add_argument("--nfe", default="10,200")
    ap.add_argument(
        "--ref-resize",
        default="lanczos",
        choices=("lanczos", "bilinear"),
        help="how real images reach the model's resolution: the trainer's Pillow filter (eval now) or a bilinear "
        "torch resize (eval before the fix)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    den, sched, cfg = load_run(args.run, device="cpu")
    shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
    real = reference_images(cfg.data.source, "test")[0]
    nets = {n: get_extractor(n) for n in ("digits", "fashion-mnist")}
    if args.ref_resize == "bilinear":
        real = torch.nn.functional.interpolate(real, size=shape[-2:], mode="bilinear")
    refs = {n: f(quantise(at_resolution(real, shape[-1], cfg.data.resize_filter))) for n, f in nets.items()}
    nfes = [int(v) for v in args.nfe.split(",")]
    print(f"run {args.run}: {args.num} samples per setting vs {len(real)} test images, {args.ref_resize} resize")
    print(f"{'sampler':>8} {'NFE':>4} {'pixels':>6} {'net':>13} | FD (n={args.num}) [95% CI] | FD (n={args.subset})")
    feats: dict[tuple, torch.Tensor] = {}
    for sampler in args.samplers.split(","):
        for nfe in nfes:
            steps = nfe // NFE_PER_STEP.get(sampler, 1)
            t0 = time.perf_counter()
            x = generate(den, sched, shape, list(range(args.num)), sampler=sampler, steps=steps, batch_size=500)
            secs = time.perf_counter() - t0
            out = (x.abs() > 1).float().mean().item()
            print(f"  ({sampler} {nfe} NFE: {secs:.0f} s, {100 * out:.1f} % of raw pixel values outside [-1, 1])")
            for pixels, imgs in (("raw", x), ("8-bit", quantise(x))):
                for net, f in nets.items():
                    ft = f(imgs)
                    feats[sampler, nfe, pixels, net] = ft
                    lo, hi = frechet_distance_ci(refs[net], ft)
                    fd = frechet_distance(refs[net], ft)
                    fd_s = frechet_distance(refs[net], ft[: args.subset])
                    print(f"{sampler:>8} {nfe:>4} {pixels:>6} {net:>13} | {fd:8.4f} [{lo:.4f}, {hi:.4f}] | {fd_s:8.4f}")
    lo_nfe, hi_nfe = min(nfes), max(nfes)
    k = args.num // args.subset
    print(f"\nratio FD({lo_nfe} NFE) / FD({hi_nfe} NFE): all samples; then over {k} disjoint subsets of {args.subset}")
    for sampler in args.samplers.split(","):
        for pixels in ("raw", "8-bit"):
            for net in nets:
                a, b = feats[sampler, lo_nfe, pixels, net], feats[sampler, hi_nfe, pixels, net]
                full = frechet_distance(refs[net], a) / frechet_distance(refs[net], b)
                subs = [
                    frechet_distance(refs[net], a[i * args.subset : (i + 1) * args.subset])
                    / frechet_distance(refs[net], b[i * args.subset : (i + 1) * args.subset])
                    for i in range(k)
                ]
                print(
                    f"{sampler:>8} {pixels:>6} {net:>13}: {full:.3f}   subsets: "
                    + " ".join(f"{r:.2f}" for r in subs)
                    + f"   (min {min(subs):.2f}, max {max(subs):.2f})"
                )


if __name__ == "__main__":
    main()
