"""Why FD at 10 NFE can look far from FD at 200 NFE: sample count, clamping and the feature network.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fd_vs_nfe.py RUN [--num 2000] [--subset 500]
        [--samplers euler,unipc,unipc.order=3,dpmpp_2m@karras] [--clip-x0 [R]] [--nets own]

For each (sampler, NFE) it draws `--num` samples once (seeds 0..num−1) and prints FD with its 95 % bootstrap
interval under: the raw sampler output (what `eval` scored before 0.2) and the 8-bit samples (what the saved
PNGs hold and `eval` scores now), with the digits network and with the Fashion-MNIST network (an independent
judge), on all `--num` samples and on the first `--subset` of them; then the ratio FD(10 NFE)/FD(200 NFE) of
each column with the spread of that ratio over disjoint subsets of `--subset` samples.

A sampler entry is NAME[.KNOB=VALUE...][@SPACING]: `euler` is what `noisecraft sample RUN --steps N` draws (the
sampler's own default spacing), `unipc.order=3` sets a knob, `euler@powerlog` another spacing. `--clip-x0`
clamps every x̂0 to [−R, R] as `sample --clip-x0` does (core.denoiser.ClippedDenoiser).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor

from noisecraft.data.io import quantise
from noisecraft.evaluation.evaluate import at_resolution
from noisecraft.evaluation.features import get_extractor
from noisecraft.evaluation.metrics import frechet_distance, frechet_distance_ci
from noisecraft.evaluation.reference import reference_images
from noisecraft.sampling.generate import clip_pixels, generate, model_device
from noisecraft.sampling.noise import per_sample_generators, randn
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas
from noisecraft.training.checkpoint import load_run
from noisecraft.training.heldout import tile_defects

NFE_PER_STEP = {"heun": 2, "adaptive": None}


def parse_entry(entry: str) -> tuple[str, dict, str | None]:
    """'unipc.order=3.corrector=false@karras' → ("unipc", {"order": 3, "corrector": False}, "karras")."""
    entry, _, spacing = entry.partition("@")
    name, *knobs = entry.split(".")
    parsed = {}
    for kv in knobs:
        k, _, v = kv.partition("=")
        if v.lower() in ("true", "false"):
            parsed[k] = v.lower() == "true"
        else:
            parsed[k] = int(v) if v.lstrip("-").isdigit() else float(v) if v.replace(".", "", 1).isdigit() else v
    return name, parsed, spacing or None


def draw(den, sched, shape, n: int, entry: str, steps: int) -> Tensor:
    """Samples for seeds 0..n−1: through `generate` (the library's path) unless knobs are set, then the same
    per-sample noise and σ list with the knobs passed to the sampler. (n, *shape) float32."""
    name, knobs, spacing = parse_entry(entry)
    if not knobs:
        return generate(den, sched, shape, list(range(n)), sampler=name, steps=steps, spacing=spacing, batch_size=500)
    fn, sigmas, out = get_sampler(name), step_sigmas(sched, steps, spacing, sampler=name), []
    for lo in range(0, n, 500):
        gens = per_sample_generators(range(lo, min(n, lo + 500)))
        x = float(sigmas[0]) * randn((len(gens), *shape), gens, torch.float32, model_device(den))
        out.append(fn(den, x, sigmas, generator=gens, **knobs).float().cpu())
    return torch.cat(out)


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
    ap.add_argument("--clip-x0", type=float, nargs="?", const=1.0, default=None, metavar="R")
    ap.add_argument(
        "--ref",
        default=None,
        help="a sampler entry: draw the highest NFE only with it and take every ratio against it (the ODE's "
        "answer, for a slow model); default: each sampler against itself",
    )
    ap.add_argument("--nets", default="both", choices=("both", "own"), help="own: only the data set's own network")
    args = ap.parse_args()
    torch.set_num_threads(1)
    den, sched, cfg = load_run(args.run, device="cpu")
    shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
    den = clip_pixels(den, args.clip_x0, None, shape)
    real = reference_images(cfg.data.source, "test")[0]
    names = ("digits", "fashion-mnist") if args.nets == "both" else (cfg.data.source,)
    nets = {n: get_extractor(n) for n in names}
    if args.ref_resize == "bilinear":
        real = torch.nn.functional.interpolate(real, size=shape[-2:], mode="bilinear")
    real_px = quantise(at_resolution(real, shape[-1], cfg.data.resize_filter))  # (M, C, H, W) in [-1, 1]
    refs = {n: f(real_px) for n, f in nets.items()}
    nfes = [int(v) for v in args.nfe.split(",")]
    clip = "" if args.clip_x0 is None else f", x̂0 clamped to ±{args.clip_x0:g}"
    print(f"run {args.run}: {args.num} samples per setting vs {len(real)} test images, {args.ref_resize} resize{clip}")
    print(f"{'sampler':>13} {'NFE':>4} {'pixels':>6} {'net':>13} | FD (n={args.num}) [95% CI] | FD (n={args.subset})")
    feats: dict[tuple, torch.Tensor] = {}
    entries = args.samplers.split(",")
    if args.ref is not None and args.ref not in entries:
        entries.insert(0, args.ref)
    for sampler in entries:
        for nfe in nfes:
            if args.ref is not None and sampler != args.ref and nfe == max(nfes):
                continue
            name, _, spacing = parse_entry(sampler)
            steps = nfe // NFE_PER_STEP.get(name, 1)
            t0 = time.perf_counter()
            x = draw(den, sched, shape, args.num, sampler, steps)
            secs = time.perf_counter() - t0
            out = (x.abs() > 1).float().mean().item()
            noise = tile_defects(quantise(x), real_px)["noise"]
            print(
                f"  ({sampler} {nfe} NFE: {secs:.0f} s, {100 * out:.1f} % of raw pixel values outside [-1, 1], "
                f"{100 * noise:.1f} % of samples noise tiles)"
            )
            if nfe < 50:
                sig = step_sigmas(sched, steps, spacing, sampler=name).tolist()
                print("  (σ: " + ", ".join(f"{v:.3g}" for v in sig) + ")")
            for pixels, imgs in (("raw", x), ("8-bit", quantise(x))):
                for net, f in nets.items():
                    ft = f(imgs)
                    feats[sampler, nfe, pixels, net] = ft
                    lo, hi = frechet_distance_ci(refs[net], ft)
                    fd = frechet_distance(refs[net], ft)
                    fd_s = frechet_distance(refs[net], ft[: args.subset])
                    ci = f"[{lo:.4f}, {hi:.4f}]"
                    print(f"{sampler:>13} {nfe:>4} {pixels:>6} {net:>13} | {fd:8.4f} {ci} | {fd_s:8.4f}")
    lo_nfe, hi_nfe = min(nfes), max(nfes)
    k = args.num // args.subset
    against = "" if args.ref is None else f" of {args.ref}"
    print(f"\nratio FD({lo_nfe} NFE) / FD({hi_nfe} NFE{against}): all samples; then over {k} disjoint subsets")
    for sampler in entries:
        for pixels in ("raw", "8-bit"):
            for net in nets:
                a, b = feats[sampler, lo_nfe, pixels, net], feats[args.ref or sampler, hi_nfe, pixels, net]
                full = frechet_distance(refs[net], a) / frechet_distance(refs[net], b)
                subs = [
                    frechet_distance(refs[net], a[i * args.subset : (i + 1) * args.subset])
                    / frechet_distance(refs[net], b[i * args.subset : (i + 1) * args.subset])
                    for i in range(k)
                ]
                print(
                    f"{sampler:>13} {pixels:>6} {net:>13}: {full:.3f}   subsets: "
                    + " ".join(f"{r:.2f}" for r in subs)
                    + f"   (min {min(subs):.2f}, max {max(subs):.2f})"
                )


if __name__ == "__main__":
    main()
