"""List the samplers and step schedules (one line each), or fit an optimised step schedule to a trained run.

noisecraft samplers                         # samplers: paper, order, deterministic or stochastic; knobs
noisecraft samplers --fit runs/digits --sampler unipc   # writes runs/digits/optimised_steps.json
noisecraft sample runs/digits --sampler unipc --steps 10 --schedule optimised:runs/digits

The fit also tries lists that start with the analytic first step (sampling/gaussian_start.py) for ≤ 10 steps,
using the training data's mean and covariance (computed once into RUN/data_stats.safetensors); it keeps such a
list only when it beats the named spacings on validation noise. --no-analytic-start fits from σ_max only.
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", metavar="RUN", help="fit optimised step schedules to this run and save them in it")
    parser.add_argument("--steps", default="5,10,20", help="with --fit: comma-separated step counts to fit")
    parser.add_argument("--sampler", default="unipc", help="with --fit: the sampler to fit the steps for")
    parser.add_argument(
        "--calibration",
        type=positive_int,
        default=128,
        help="with --fit: paths in the calibration batch (the separate validation batch has 4 times as many)",
    )
    parser.add_argument(
        "--pool",
        type=positive_int,
        default=None,
        help="with --fit: new start paths screened for the validation batch: where the candidate lists disagree "
        "most (default 8 times the validation batch)",
    )
    parser.add_argument(
        "--no-analytic-start",
        dest="analytic_start",
        action="store_false",
        help="with --fit: do not try lists that jump over the top noise levels with the data's Gaussian statistics",
    )
    parser.add_argument(
        "--prompt", default=None, help="with --fit on a text run: the prompt to fit for (default: training captions)"
    )
    parser.add_argument("--prompts", default=None, metavar="FILE", help="with --fit on a text run: one prompt per line")
    parser.add_argument(
        "--cfg", dest="cfg_scale", type=float, default=None, help="with --fit on a text run: the CFG scale to fit for"
    )
    parser.add_argument(
        "--solver",
        action="store_true",
        help="with --fit: also fit per-step solver weights on each list (sample with --sampler fitted_ms); "
        "pays off with a large --calibration, e.g. 1024",
    )
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
    from noisecraft.sampling.data_stats import STATS_FILE, run_data_stats
    from noisecraft.sampling.fit import fit_steps
    from noisecraft.sampling.generate import model_device
    from noisecraft.sampling.run_knobs import run_sampler_knobs
    from noisecraft.sampling.steps import save_schedule
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.setup import sample_shape

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        raise NoisecraftError(f"--steps must be comma-separated integers, got {args.steps!r}") from None
    if args.calibration < 2:
        raise NoisecraftError(f"--calibration must be at least 2, got {args.calibration}")
    denoiser, schedule, cfg = load_run(args.fit)
    device = model_device(denoiser)  # CUDA where present (load_run): the calibration states go there too
    cond = None
    if cfg.text.enabled:  # the guided denoiser `sample --prompt ... --cfg W` runs, over the prompts in turn
        denoiser, cond = _text_denoiser(denoiser, cfg, args)
    elif args.prompt is not None or args.prompts is not None or args.cfg_scale is not None:
        raise NoisecraftError(f"--prompt, --prompts and --cfg are for text-conditioned runs; {args.fit} is not one")
    elif cfg.model.num_classes > 0:  # calibrate over all classes in turn
        cond = {"class_labels": (torch.arange(args.calibration) % cfg.model.num_classes).to(device)}
    if args.sampler == "fitted_ms":
        raise NoisecraftError("fit the steps for a multistep sampler (e.g. --sampler unipc) and add --solver: "
                              "fitted_ms takes its weights from that fit")  # fmt: skip
    knobs = run_sampler_knobs(args.sampler, args.fit, cfg=cfg)  # gauss_pc takes the data statistics as a knob
    stats = (knobs.get("stats") or run_data_stats(args.fit, cfg)) if args.analytic_start else None
    fit = fit_steps(
        denoiser, schedule, steps, shape=sample_shape(cfg), sampler=args.sampler, knobs=knobs,
        n=args.calibration, cond=cond, start=stats if args.analytic_start else None, device=device, pool=args.pool,
    )  # fmt: skip
    extra = {"analytic_start": STATS_FILE} if any(fit.skips(n) for n in fit.sigmas) else {}
    if cfg.text.enabled:
        extra["cfg_scale"] = args.cfg_scale
    path = save_schedule(
        args.fit, fit.sigmas, fitted_for=str(args.fit), calibration=args.calibration, **fit.meta(), **extra
    )
    for n, sig in fit.sigmas.items():
        how = fit.chosen[n]
        note = (
            f"  (fell back to {how[6:]}: the fit was not better on held-out noise)" if how.startswith("named:") else ""
        )
        if fit.skips(n):
            note = f"  (analytic first step from σ_max = {schedule.sigma_max:.3g}, no network call)"
        print(f"{n:>3} steps: " + " ".join(f"{s:.3g}" for s in sig.tolist()) + note)
        scores = fit.validation.get(n, {})
        named = {k[6:]: v for k, v in scores.items() if k.startswith("named:")}
        if named and not how.startswith("named:"):
            best = min(named, key=named.get)
            ratio = scores[how] / named[best]
            print(f"           on {4 * args.calibration} validation paths (screened from {fit.pool}): error "
                  f"{scores[how]:.4g}, {ratio:.2f}x "
                  f"that of the best named spacing ({best}, {named[best]:.4g})")  # fmt: skip
    print(f"saved {path}; use it with --sampler {args.sampler} --schedule optimised:{args.fit}")
    if args.solver:
        _fit_solvers(args, denoiser, schedule, fit, cfg, cond, knobs, stats, device)
    return 0


def _fit_solvers(args, denoiser, schedule, fit, cfg, cond, knobs, stats, device) -> None:
    """Per-step weights of a linear multistep map fitted on each saved list (sampling/solver_fit.py); saved
    beside it as fitted_solver.json, used by `sample --sampler fitted_ms --schedule optimised:RUN`."""
    import torch

    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.solver_fit import base_coefficients, fit_solver, save_solvers
    from noisecraft.training.setup import sample_shape

    try:
        base_coefficients(args.sampler, fit.sigmas[max(fit.sigmas)], knobs)
    except NoisecraftError:
        raise NoisecraftError(f"--solver fits the weights of a linear multistep sampler (ddim, dpmpp_2m, "
                              f"dpmpp_3m, unipc); {args.sampler} is not one") from None  # fmt: skip
    solvers = {}
    for n, sig in fit.sigmas.items():
        solvers[n] = s = fit_solver(
            denoiser, schedule, sig, shape=sample_shape(cfg), base=args.sampler, knobs=knobs,
            start=stats if fit.skips(n) else None, n=args.calibration, n_val=4 * args.calibration, cond=cond,
            dtype=torch.float32, device=device,
        )  # fmt: skip
        v = s.validation
        verdict = "kept" if s.chosen == "fitted" else f"not better than {args.sampler}'s own weights: those kept"
        print(f"{n:>3} steps: fitted_ms weights {verdict} (validation error {v['fitted']:.4g} against "
              f"{v['base']:.4g}, z {s.z:.1f})")  # fmt: skip
    path = save_solvers(args.fit, solvers)
    print(f"saved {path}; use it with --sampler fitted_ms --steps N --schedule optimised:{args.fit}")


def _text_denoiser(denoiser, cfg, args: argparse.Namespace):
    """(guided denoiser, per-sample text conditioning of the calibration batch) for a text run: the prompts of
    --prompt/--prompts, else the first captions of its training data, cycled over the batch."""
    import dataclasses
    from types import SimpleNamespace

    from noisecraft.cli.sample import _read_prompts
    from noisecraft.sampling.prompt_guidance import prompt_denoiser

    prompts = _read_prompts(SimpleNamespace(prompt=args.prompt, prompts=args.prompts))
    if prompts is None:
        from noisecraft.data.datasets import make_dataset
        from noisecraft.data.latent_cache import caption_choices

        data = dataclasses.replace(cfg.data, latent=None, captions=True, labels=False, flip=False)
        ds = make_dataset(data)
        prompts = [caption_choices(ds, i)[0] for i in range(min(args.calibration, len(ds)))]
        print(f"fitting for {len(prompts)} training captions, e.g. {prompts[0]!r}, at CFG {args.cfg_scale or 1:g}")
    per_sample = [prompts[i % len(prompts)] for i in range(args.calibration)]
    return prompt_denoiser(denoiser, denoiser.net.text_encoder, per_sample, cfg_scale=args.cfg_scale)
