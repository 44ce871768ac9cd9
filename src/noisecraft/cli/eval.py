"""Score a trained run (or a folder of PNG samples) against a real reference split, offline.

Prints FD, KID, precision and recall with the protocol and the noise floor (the same metrics between real
training and reference images), and writes them as JSON.

Examples:
  noisecraft eval runs/digits --num 1000 --sampler dpmpp_2m --steps 10
  noisecraft eval --samples-dir my_samples/ --dataset fashion-mnist
  noisecraft eval runs/digits --num 500 --nll 200        # also NLL in bits/dim on 200 test images
  noisecraft eval runs/cifar --features inception --inception ~/weights/inception-2015-12-05.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="run folder written by `noisecraft train` (or one checkpoint folder)")
    p.add_argument("--samples-dir", help="score the PNG images of this folder instead of sampling a run")
    p.add_argument("--dataset", help="reference dataset: digits or fashion-mnist (default: the run's data source)")
    p.add_argument("--split", default="test", choices=("test", "train"), help="reference split")
    p.add_argument("--features", help="feature extractor: digits, fashion-mnist or inception (default: --dataset)")
    p.add_argument("--inception", help="local TorchScript file inception-2015-12-05.pt (for --features inception)")
    p.add_argument("--num", type=int, default=1000, help="number of generated samples")
    p.add_argument("--sampler", default="euler", help="sampler name (see `noisecraft samplers`)")
    p.add_argument("--steps", type=int, default=40, help="sampling steps")
    p.add_argument("--spacing", help="σ spacing (default: the schedule's own)")
    p.add_argument("--seed", type=int, default=0, help="first seed; sample i uses seed+i")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--no-floor", action="store_true", help="skip the noise floor")
    p.add_argument("--nll", type=int, default=0, metavar="N", help="also estimate NLL (bits/dim) on N reference images")
    p.add_argument("--nll-steps", type=int, default=32, help="RK4 steps of the probability-flow ODE for --nll")
    p.add_argument("--out", help="JSON file to write (default: RUN_DIR/eval/<...>.json or SAMPLES_DIR/eval.json)")


def _load_pngs(folder: Path, limit: int | None):
    import numpy as np
    import torch
    from PIL import Image

    from noisecraft.data.transforms import from_pixels
    from noisecraft.errors import NoisecraftError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and "grid" not in p.name)
    if not files:
        raise NoisecraftError(f"no PNG images in {str(folder)!r}")
    if limit:
        files = files[:limit]
    arrs = [np.asarray(Image.open(f).convert("L"), dtype=np.uint8) for f in files]
    if len({a.shape for a in arrs}) != 1:
        raise NoisecraftError(f"the images in {str(folder)!r} do not all have the same size")
    return from_pixels(torch.from_numpy(np.stack(arrs)))[:, None]


def run(args: argparse.Namespace) -> int:
    import torch

    from noisecraft.errors import NoisecraftError
    from noisecraft.evaluation.evaluate import evaluate_denoiser, evaluate_images
    from noisecraft.evaluation.features import get_extractor
    from noisecraft.evaluation.reference import REFERENCE_DATASETS

    if not args.run_dir and not args.samples_dir:
        raise NoisecraftError("give a RUN_DIR to sample from, or --samples-dir with PNG samples")
    if args.num < 4:
        raise NoisecraftError(f"--num must be at least 4, got {args.num}")
    cfg = denoiser = schedule = None
    if args.run_dir and not args.samples_dir:
        from noisecraft.training.checkpoint import load_run

        denoiser, schedule, cfg = load_run(args.run_dir, ema=not args.no_ema)
    dataset = args.dataset or (cfg.data.source if cfg is not None else None)
    if dataset not in REFERENCE_DATASETS:
        raise NoisecraftError(
            f"--dataset must be one of {', '.join(REFERENCE_DATASETS)} (the reference images), got {dataset!r}"
        )
    extractor = get_extractor(args.features or dataset, inception_path=args.inception)
    print(f"features: {extractor.name} [{extractor.checksum}]")
    if args.samples_dir:
        images = _load_pngs(Path(args.samples_dir), args.num)
        result = evaluate_images(
            images,
            dataset,
            extractor,
            split=args.split,
            with_floor=not args.no_floor,
            protocol={"source": str(args.samples_dir)},
        )
        out = Path(args.out or Path(args.samples_dir) / "eval.json")
    else:
        m = cfg.model
        if m.arch == "mlp":
            raise NoisecraftError("this run is a 2-D/vector model; eval scores image models (use the toy metrics)")
        torch.manual_seed(args.seed)
        result, _ = evaluate_denoiser(
            denoiser,
            schedule,
            dataset,
            extractor,
            shape=(m.channels, m.resolution, m.resolution),
            num=args.num,
            sampler=args.sampler,
            steps=args.steps,
            spacing=args.spacing,
            seed=args.seed,
            num_classes=m.num_classes,
            batch_size=args.batch_size,
            split=args.split,
            with_floor=not args.no_floor,
            source=str(args.run_dir),
        )
        name = f"eval-{args.sampler}-{args.steps}steps-n{args.num}-{args.split}.json"
        out = Path(args.out or Path(args.run_dir) / "eval" / name)
    if args.nll:
        if denoiser is None:
            raise NoisecraftError("--nll needs a RUN_DIR (the model's likelihood), not --samples-dir")
        result.protocol.extra["nll"] = _nll(denoiser, schedule, cfg, dataset, args)
    print(result.summary())
    if "nll" in result.protocol.extra:
        n = result.protocol.extra["nll"]
        print(
            f"NLL {n['bpd_mean']:.4f} ± {n['bpd_sem']:.4f} bits/dim on {n['images']} {dataset} {args.split} images "
            f"({n['method']})"
        )
    result.save(out)
    print(f"wrote {out}")
    return 0


def _nll(denoiser, schedule, cfg, dataset: str, args) -> dict:
    """Probability-flow NLL (Hutchinson) on the first N reference images, resized to the model's resolution."""
    import torch

    from noisecraft.evaluation.likelihood import dequantize, ode_log_likelihood
    from noisecraft.evaluation.reference import reference_images

    imgs, _ = reference_images(dataset, args.split)
    imgs = imgs[: args.nll]
    levels = 17 if dataset == "digits" else 256  # digits hold 0..16
    res = cfg.model.resolution
    if imgs.shape[-1] != res:
        imgs = torch.nn.functional.interpolate(imgs, size=(res, res), mode="bilinear", align_corners=False)
        levels = 256  # resized images are no longer on the original grid: treat them as 8-bit
    x = dequantize(imgs, levels, torch.Generator().manual_seed(args.seed))
    bpd = []
    g = torch.Generator().manual_seed(args.seed)
    for chunk in x.split(args.batch_size):
        r = ode_log_likelihood(
            denoiser,
            chunk,
            sigma_min=max(schedule.sigma_min, 1e-3),
            sigma_max=schedule.sigma_max,
            steps=args.nll_steps,
            divergence="hutchinson",
            generator=g,
            levels=levels,
        )
        bpd.append(r.bpd)
    b = torch.cat(bpd)
    return {
        "bpd_mean": float(b.mean()),
        "bpd_sem": float(b.std() / len(b) ** 0.5),
        "images": len(b),
        "levels": levels,
        "method": f"probability-flow ODE, RK4 {args.nll_steps} steps, Hutchinson, uniform dequantisation",
    }
