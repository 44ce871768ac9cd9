"""Draw the pictures that explain diffusion, as PNG (and GIF) files.

  schedules        ᾱ and log-SNR of linear, scaled_linear, cosine, sigmoid and zero-SNR schedules
  forward          the forward process on a real image at several t
  trajectory       the reverse process as a strip and an animated GIF (a trained --run, or the exact
                   "ideal" denoiser of the digits training set when no run is given)
  interpolation    samples from slerp-interpolated noises with a deterministic sampler (DDIM/Euler)
  score-field      the exact score of a 2-D Gaussian mixture with annealed Langevin trajectories
  training-curve   loss against step from one or more runs' log.jsonl

Examples:
  noisecraft show schedules --out pics/schedules.png
  noisecraft show forward --dataset fashion-mnist --schedule cosine
  noisecraft show trajectory --run runs/digits --sampler ddim --steps 50
  noisecraft show training-curve runs/a runs/b
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import non_negative_int, positive_int

WHAT = ("schedules", "forward", "trajectory", "interpolation", "score-field", "training-curve")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=WHAT, help="which picture")
    p.add_argument("logs", nargs="*", help="training-curve: run folders or log.jsonl files")
    p.add_argument("--out", help="output PNG file (default: pictures/<what>.png)")
    p.add_argument("--run", help="trained run folder (trajectory, interpolation)")
    p.add_argument("--dataset", default="digits", help="digits or fashion-mnist (forward, trajectory without --run)")
    p.add_argument("--schedule", default="linear", help="noise schedule (forward, trajectory without --run)")
    p.add_argument("--sampler", default="ddim", help="sampler (trajectory, interpolation)")
    p.add_argument("--steps", type=positive_int, default=50, help="sampling steps")
    p.add_argument("--num", type=positive_int, default=8, help="samples per picture")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--key", default="loss", help="training-curve: which logged value")
    p.add_argument("--toy", default="8gaussians", help="score-field: 8gaussians or gmm")


def run(args: argparse.Namespace) -> int:
    from noisecraft.cli.args import output_file, write_guard

    out = output_file(args.out or f"pictures/{args.what}.png", (".png",))
    with write_guard(out.parent):
        paths = globals()["_" + args.what.replace("-", "_")](args, out)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _schedules(args, out):
    from noisecraft.evaluation.plots import plot_schedules

    return [plot_schedules(out)]


def _forward(args, out):
    from noisecraft.core.schedules import make_schedule
    from noisecraft.evaluation.plots import plot_forward_process
    from noisecraft.evaluation.reference import reference_images

    imgs, _ = reference_images(args.dataset, "test")
    return [plot_forward_process(imgs[args.seed % len(imgs)], make_schedule(args.schedule), out, seed=args.seed)]


def _model(args):
    """(denoiser, schedule, per-sample shape, cond) of --run, or the digits ideal denoiser."""
    import torch

    if args.run:
        from noisecraft.training.checkpoint import load_run

        den, sched, cfg = load_run(args.run, device="cpu")
        m = cfg.model
        cond = {"class_labels": torch.arange(args.num) % m.num_classes} if m.num_classes else {}
        shape = (m.channels, m.resolution, m.resolution) if m.arch != "mlp" else (m.channels * m.resolution**2,)
        return den, sched, shape, cond
    from noisecraft.core.oracles import EmpiricalDenoiser
    from noisecraft.core.schedules import make_schedule
    from noisecraft.evaluation.reference import reference_images

    imgs, _ = reference_images(args.dataset, "train")
    return EmpiricalDenoiser(imgs[:2000]), make_schedule(args.schedule), tuple(imgs.shape[1:]), {}


def _sigmas(sched, steps):
    from noisecraft.sampling.steps import step_sigmas

    return step_sigmas(sched, steps)


def _trajectory(args, out):
    import torch

    from noisecraft.evaluation.animate import trajectory_gif
    from noisecraft.evaluation.plots import plot_trajectory_strip
    from noisecraft.sampling.noise import per_sample_generators, randn
    from noisecraft.sampling.samplers import get_sampler

    den, sched, shape, cond = _model(args)
    if len(shape) != 3:
        from noisecraft.errors import NoisecraftError

        raise NoisecraftError("trajectory pictures need an image model; for 2-D runs use `noisecraft demo`")
    sigmas = _sigmas(sched, args.steps)
    gens = per_sample_generators(range(args.seed, args.seed + args.num))
    x = float(sigmas[0]) * randn((args.num, *shape), gens)
    steps: list = []
    with torch.no_grad():
        get_sampler(args.sampler)(den, x, sigmas, cond=cond, generator=gens, callback=steps.append)
    return [plot_trajectory_strip(steps, out), trajectory_gif(steps, out.with_suffix(".gif"), nrow=min(args.num, 8))]


def _interpolation(args, out):
    import torch

    from noisecraft.editing.edits import slerp
    from noisecraft.evaluation.plots import plot_interpolation
    from noisecraft.sampling.samplers import get_sampler

    den, sched, shape, cond = _model(args)
    sigmas = _sigmas(sched, args.steps)
    g = torch.Generator().manual_seed(args.seed)
    rows = min(args.num, 4)
    z0, z1 = torch.randn(rows, *shape, generator=g), torch.randn(rows, *shape, generator=g)
    ts = [i / 8 for i in range(9)]
    cond = {k: v[:rows].repeat_interleave(len(ts)) for k, v in cond.items()}
    z = torch.stack([slerp(z0, z1, t) for t in ts], 1).reshape(rows * len(ts), *shape).float()
    with torch.no_grad():
        x = get_sampler(args.sampler)(den, float(sigmas[0]) * z, sigmas, cond=cond)
    return [plot_interpolation(x.reshape(rows, len(ts), *shape), out, ts)]


def _score_field(args, out):
    import torch

    from noisecraft.data.toys import eight_gaussians_mixture, gmm_mixture
    from noisecraft.errors import check_choice
    from noisecraft.evaluation.plots import plot_score_field
    from noisecraft.sampling.samplers import get_sampler

    check_choice("toy", args.toy, ("8gaussians", "gmm"))
    gm = eight_gaussians_mixture() if args.toy == "8gaussians" else gmm_mixture()
    data, _ = gm.sample(2000, torch.Generator().manual_seed(args.seed))
    lim = float(data.abs().max()) * 1.3
    sigmas = torch.cat([torch.logspace(0.3, -1.5, 10, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.num * 2, 2, generator=g, dtype=torch.float64) * 2 * lim - lim
    path = [x]
    get_sampler("langevin")(gm, x, sigmas, generator=g, callback=lambda st: path.append(st.x), n_steps=20)
    return [
        plot_score_field(
            lambda p: gm.score(p, 0.3),
            out,
            lim=lim,
            trajectories=torch.stack(path),
            data=data,
            title="exact score at σ=0.3; annealed Langevin paths",
        )
    ]


def _training_curve(args, out):
    from noisecraft.errors import NoisecraftError
    from noisecraft.evaluation.plots import plot_training_curve

    logs = args.logs or ([args.run] if args.run else [])
    if not logs:
        raise NoisecraftError("training-curve needs run folders or log.jsonl files: noisecraft show training-curve RUN")
    return [plot_training_curve(logs, out, key=args.key)]
