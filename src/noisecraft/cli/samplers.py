"""List the samplers and step schedules (one line each), or fit an optimised step schedule to a trained run.

noisecraft samplers                         # samplers: paper, order, deterministic or stochastic; knobs
noisecraft samplers --fit runs/digits       # writes runs/digits/optimised_steps.json
noisecraft sample runs/digits --sampler dpmpp_2m --steps 10 --schedule optimised:runs/digits
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", metavar="RUN", help="fit optimised step schedules to this run and save them in it")
    parser.add_argument("--steps", default="5,10,20,50", help="with --fit: comma-separated step counts to fit")
    parser.add_argument("--calibration", type=int, default=64, help="with --fit: calibration batch size")
    parser.add_argument("--grid", type=int, default=128, help="with --fit: candidate noise levels (≈2 calls each)")
    parser.add_argument("--knobs", action="store_true", help="also list each sampler's knobs and defaults")


def run(args: argparse.Namespace) -> int:
    if args.fit:
        return _fit(args)
    from noisecraft.sampling.samplers import SAMPLER_INFO, sampler_knobs
    from noisecraft.sampling.steps import STEP_SCHEDULES

    width = max(map(len, SAMPLER_INFO)) + 2
    print("samplers (--sampler NAME):")
    for name, info in SAMPLER_INFO.items():
        print(f"  {name:<{width}}{info}")
        if args.knobs:
            knobs = ", ".join(f"{k}={v!r}" for k, v in sampler_knobs(name).items())
            print(f"  {'':<{width}}  knobs: {knobs or 'none'}")
    width = max(map(len, STEP_SCHEDULES)) + 2
    print("\nstep schedules (--schedule NAME):")
    for name, info in STEP_SCHEDULES.items():
        print(f"  {name:<{width}}{info}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import torch

    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.steps import fit_schedule, save_schedule
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.setup import sample_shape

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        raise NoisecraftError(f"--steps must be comma-separated integers, got {args.steps!r}") from None
    denoiser, schedule, cfg = load_run(args.fit)
    cond = None
    if cfg.model.num_classes > 0:  # calibrate over all classes in turn
        cond = {"class_labels": torch.arange(args.calibration) % cfg.model.num_classes}
    fitted = fit_schedule(
        denoiser, schedule, steps, shape=sample_shape(cfg), n=args.calibration, grid=args.grid, cond=cond
    )
    path = save_schedule(args.fit, fitted, fitted_for=str(args.fit), calibration=args.calibration, grid=args.grid)
    for n, sig in fitted.items():
        print(f"{n:>3} steps: " + " ".join(f"{s:.3g}" for s in sig.tolist()))
    print(f"saved {path}; use it with --schedule optimised:{args.fit}")
    return 0
