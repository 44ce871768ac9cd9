"""Draw a grid over guidance scales × classes: one row per class, one column block per scale.

Every cell of a row uses the same seeds, so a row shows what the guidance scale alone changes. The method is
classifier-free guidance (a class-conditional run trained with label dropout) or, with --classifier,
classifier guidance of the run (conditional or not). Writes OUT/grid.png and OUT/sweep.json (the layout).

Examples:
  noisecraft sweep runs/digits-cond --scales 0,1,2,4 --classes 0-9
  noisecraft sweep runs/digits-cond --scales 1,3,6 --classes 3,5,8 --per-cell 4 --cfg-interval 0.3,5
  noisecraft sweep runs/digits --classifier runs/clf-digits --scales 0,1,2,4,8 --classes 0-9
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_device_argument, non_negative_int, positive_int


def parse_scales(text: str) -> list[float]:
    """ "0,1,2.5" → [0.0, 1.0, 2.5]; every scale must be a number >= 0."""
    from noisecraft.errors import NoisecraftError

    try:
        scales = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NoisecraftError(f"--scales must be comma-separated numbers, e.g. 0,1,2,4; got {text!r}") from None
    if not scales or any(not s >= 0 for s in scales):
        raise NoisecraftError(f"--scales must be numbers >= 0, got {text!r}")
    return scales


def parse_classes(text: str) -> list[int]:
    """ "0-9" → [0..9]; "3,5,8" → [3, 5, 8]; ranges and lists may mix ("0-2,7")."""
    from noisecraft.errors import NoisecraftError

    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise NoisecraftError(f"--classes must look like 0-9 or 3,5,8; got {text!r}") from None
    if not out:
        raise NoisecraftError(f"--classes is empty: {text!r}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by `noisecraft train` (or one checkpoint folder)")
    p.add_argument("--scales", default="0,1,2,4", help="guidance scales (CFG w, or classifier scale s)")
    p.add_argument("--classes", default="0-9", help="class labels: a range 0-9 and/or a list 3,5,8")
    p.add_argument("--classifier", default=None, help="a noisy classifier folder: sweep classifier guidance")
    p.add_argument("--cfg-interval", default=None, help="guide only for σ in (lo, hi], e.g. 0.3,5")
    p.add_argument("--cfg-rescale", type=float, default=0.0, help="CFG rescale φ in [0, 1]")
    p.add_argument("--per-cell", type=positive_int, default=1, help="samples per (class, scale) cell")
    p.add_argument("--sampler", default="euler", help="sampler name")
    p.add_argument("--steps", type=positive_int, default=40, help="sampling steps")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first sample of each row")
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/sweep)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from noisecraft.errors import NoisecraftError

    scales, classes = parse_scales(args.scales), parse_classes(args.classes)
    if not Path(args.run).exists():
        raise NoisecraftError(f"run folder {args.run!r} does not exist")
    from noisecraft.data.io import save_grid
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.sampling.sweep import guidance_sweep
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.setup import sample_shape

    device = resolve_device(args.device)
    denoiser, schedule, cfg = load_run(args.run, device=device)
    classifier = None
    if args.classifier is not None:
        from noisecraft.models.classifier import load_classifier

        classifier = load_classifier(args.classifier, device=device)
    images, layout = guidance_sweep(
        denoiser,
        schedule,
        sample_shape(cfg),
        classes,
        scales,
        num_classes=cfg.model.num_classes,
        classifier=classifier,
        cfg_interval=args.cfg_interval,
        cfg_rescale=args.cfg_rescale,
        per_cell=args.per_cell,
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        on_row=lambda k: print(f"class {k}: {len(scales)} scales done"),
    )
    n = args.per_cell
    out = Path(args.out or Path(args.run) / "sweep")
    grid = save_grid(images, out / "grid.png", nrow=len(scales) * n)
    layout["classifier"] = args.classifier
    (out / "sweep.json").write_text(json.dumps(layout, indent=2))
    print(f"wrote {grid} ({len(classes)} classes × {len(scales)} scales × {n}) and {out / 'sweep.json'}")
    return 0
