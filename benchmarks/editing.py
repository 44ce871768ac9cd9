"""Editing benchmark: inversion round trips, inpainting and class swaps, measured on an exact oracle and a
trained digits model, and judged by an independent classifier.

1. Inversion: PSNR of invert → regenerate against the input, by sampler, steps and fixed-point iterations,
   on (a) an exact Gaussian-mixture denoiser on 8x8 "images" and (b) real digits (the evaluation test split) through a
   trained run (noisecraft.sampling.inversion, the library's one inversion API), with network calls (NFE).
2. Inpainting (digits test split): unmasked pixels preserved (max |Δ|), MSE of the filled region against the
   truth, class kept (independent judge's accuracy on the true label), and Fréchet distance of the judge's
   features against the real test set, for replace and RePaint, beside a mean-image fill baseline.
3. Class swap (digits test split): invert under the true class, regenerate under another class with CFG;
   success = the judge (evaluation.features' CNN trained on clean real digits only) says the target class;
   "PSNR to input" says how much of the input survives, beside a fresh sample of the target class.

Run:
  python benchmarks/editing.py --run runs/digits-cond            # a class-conditional run with label dropout
  python benchmarks/editing.py                                   # trains one first (MLP, ~10 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from noisecraft.sampling.steps import step_sigmas


class Counting:
    """A denoiser that counts its calls (NFE)."""

    def __init__(self, denoiser):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma, **cond):
        self.nfe += 1
        return self.denoiser(x, sigma, **cond)


def oracle() -> tuple[object, Tensor]:
    from noisecraft.core.oracles import GaussianMixture

    g = torch.Generator().manual_seed(0)
    means = 0.6 * torch.randn(3, 64, generator=g, dtype=torch.float64)
    variances = 0.05 + 0.1 * torch.rand(3, 64, generator=g, dtype=torch.float64)
    gm = GaussianMixture(means, variances, shape=(1, 8, 8))
    return gm, gm.sample(64, torch.Generator().manual_seed(1))[0].float()


def train_run(out: Path, steps: int) -> Path:
    from noisecraft.data.config import DataConfig
    from noisecraft.models.factory import ModelConfig
    from noisecraft.training.config import OptimConfig, TrainConfig
    from noisecraft.training.loop import train

    cfg = TrainConfig(
        data=DataConfig(source="digits", resolution=8, channels=1, labels=True),
        model=ModelConfig(
            arch="mlp", preset="small", resolution=8, channels=1, num_classes=10, parameterisation="edm", schedule="edm"
        ),
        optim=OptimConfig(lr=1e-3),
        label_dropout=0.15,
        steps=steps,
        batch_size=256,
        sample_every=0,
        checkpoint_every=steps,
        trackers=[],
        out_dir=str(out),
    )
    train(cfg, progress=False)
    return out


def _summary(rec: Tensor, x: Tensor) -> dict:
    from noisecraft.editing.edits import psnr

    p = psnr(rec, x)
    pooled = 10 * torch.log10(4 / (rec.double() - x.double()).pow(2).mean().clamp(min=1e-20)).item()
    return dict(median=p.median().item(), min=p.min().item(), pooled=pooled)


def inversion_table(name: str, denoiser, schedule, x: Tensor, steps: list[int], cond: dict) -> list[dict]:
    from noisecraft.sampling.inversion import invert, regenerate

    rows = []
    for sampler, iters in [("euler", 0), ("euler", 3), ("heun", 0), ("heun", 3), ("ddim", 3)]:
        for n in steps:
            sig = step_sigmas(schedule, n)
            m = Counting(denoiser)
            z = invert(m, x, sig, sampler=sampler, iters=iters, cond=cond)
            row = dict(
                model=name,
                sampler=sampler,
                iters=iters,
                steps=n,
                ours=_summary(regenerate(m, z, sig, sampler=sampler, cond=cond), x),
                nfe=m.nfe,
            )
            rows.append(row)
            o = row["ours"]
            print(
                f"  {name:6s} {sampler:5s} it{iters} {n:4d} steps: ours {o['median']:6.1f} / {o['min']:5.1f} / "
                f"{o['pooled']:5.1f} dB ({m.nfe:4d} NFE)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a class-conditional digits run (else one is trained)")
    ap.add_argument("--train-steps", type=int, default=8000)
    ap.add_argument("--dataset", default="digits", help="digits or fashion-mnist: the run's data and the judge")
    ap.add_argument("--steps", default="10,20,50,100", help="inversion step counts")
    ap.add_argument("--edit-steps", type=int, default=50, help="steps of the inpainting and swap runs")
    ap.add_argument("--n", type=int, default=64, help="images per inversion measurement")
    ap.add_argument("--n-edit", type=int, default=359, help="test digits per inpainting / swap measurement")
    ap.add_argument("--resample", type=int, default=5, help="RePaint resamplings (jump length 5)")
    ap.add_argument("--parts", default="inversion,inpaint,swap", help="which parts to run")
    ap.add_argument("--out", default="benchmarks/results/editing")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = [int(s) for s in args.steps.split(",")]
    t0 = time.time()

    from noisecraft.core.schedules import make_schedule
    from noisecraft.editing.edits import psnr, swap_class
    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.io import rect_mask, save_comparison
    from noisecraft.evaluation.features import BuiltinFeatures
    from noisecraft.evaluation.metrics import frechet_distance
    from noisecraft.evaluation.reference import reference_images
    from noisecraft.sampling.inversion import regenerate
    from noisecraft.sampling.noise import per_sample_generators
    from noisecraft.training.checkpoint import load_run

    parts = args.parts.split(",")
    results: dict = {}
    if "inversion" in parts:
        print("1. inversion round trip: PSNR median / min over images / of the pooled MSE (dB)")
        gm, xg = oracle()
        results["inversion"] = inversion_table("oracle", gm, make_schedule("edm"), xg, steps, {})

    run = Path(args.run) if args.run else train_run(out / "run", args.train_steps)
    denoiser, schedule, cfg = load_run(run)
    k = cfg.model.num_classes
    from noisecraft.evaluation.evaluate import at_resolution

    res = cfg.model.resolution
    x_test, y_test = reference_images(args.dataset, "test")  # the judge's held-out split, e.g. (359, 1, 8, 8)
    x_train, _ = reference_images(args.dataset, "train")
    x_test, x_train = at_resolution(x_test, res), at_resolution(x_train, res)
    xs, ys = x_test[: args.n], y_test[: args.n]
    cond = {"class_labels": ys} if k else {}
    if "inversion" in parts:
        results["inversion"] += inversion_table(args.dataset, denoiser, schedule, xs, steps, cond)

    judge = BuiltinFeatures(args.dataset)
    real_f = judge(x_test)
    sig = step_sigmas(schedule, args.edit_steps)

    def judged(img: Tensor) -> tuple[Tensor, float]:
        logits = judge.net(img.float().clamp(-1, 1))
        return logits.argmax(-1), frechet_distance(judge(img.float().clamp(-1, 1)), real_f)

    xt, yt = x_test[: args.n_edit], y_test[: args.n_edit]
    cond_t = {"class_labels": yt} if k else {}
    rows = []
    if "inpaint" in parts:
        print(f"\n2. inpainting ({len(xt)} digits of the test split)")
        floor = frechet_distance(judge(x_train[: len(xt)]), real_f)
        for mask_name, spec, outside in [
            ("top half", "0,0,8,4", False),
            ("centre", "2,2,6,6", False),
            ("outpaint", "2,2,6,6", True),
        ]:
            mask = rect_mask(spec, 8, outside=outside)  # (1, 8, 8), 1 = generate
            mean_fill = xt * (1 - mask) + mask * x_train.mean(0)
            pred, fd = judged(mean_fill)
            rows.append(
                dict(
                    mask=mask_name,
                    method="mean-image fill (baseline)",
                    max_kept_diff=0.0,
                    fill_mse=((mean_fill - xt) * mask).pow(2).sum().item() / (mask.sum().item() * len(xt)),
                    acc=(pred == yt).float().mean().item(),
                    fd=fd,
                    nfe=0,
                )
            )
            methods = [("replace", dict(sampler="euler")), ("repaint", dict(jump_length=5, resample=args.resample))]
            for method, kw in methods:
                for use_cond in [False, True] if k else [False]:
                    m = Counting(denoiser)
                    y = inpaint(
                        m,
                        xt,
                        mask,
                        sig,
                        method=method,
                        cond=cond_t if use_cond else None,
                        generator=per_sample_generators(range(len(xt))),
                        **kw,
                    )
                    pred, fd = judged(y)
                    rows.append(
                        dict(
                            mask=mask_name,
                            method=method + (" + true class" if use_cond else ""),
                            max_kept_diff=((y - xt) * (1 - mask)).abs().max().item(),
                            fill_mse=((y - xt) * mask).pow(2).sum().item() / (mask.sum().item() * len(xt)),
                            acc=(pred == yt).float().mean().item(),
                            fd=fd,
                            nfe=m.nfe,
                        )
                    )
                    if method == "repaint" and not use_cond:
                        save_comparison(
                            [xt[:8], xt[:8] * (1 - mask), y[:8]],
                            out / f"inpaint-{mask_name.replace(' ', '-')}.png",
                            ["input", "kept", method],
                        )
            for r in rows[-(3 if not k else 5) :]:
                print(
                    f"  {r['mask']:9s} {r['method']:28s} max|Δ| kept {r['max_kept_diff']:.1e}  fill MSE "
                    f"{r['fill_mse']:.3f}  judge acc {r['acc']:.3f}  FD {r['fd']:7.2f}  NFE {r['nfe']}",
                    flush=True,
                )
        print(f"  (FD floor: {len(xt)} real training digits vs the test set = {floor:.2f})")
        results["inpaint"], results["fd_floor"] = rows, floor

    if k and "swap" in parts:
        print(f"\n3. class swap ({len(xt)} test digits, target = another class at random)")
        g = torch.Generator().manual_seed(0)
        tgt = (yt + torch.randint(1, k, yt.shape, generator=g)) % k
        rows = []
        for w in (1.0, 2.0, 4.0):
            from noisecraft.sampling.guidance import CFGDenoiser

            model = denoiser if w == 1 else CFGDenoiser(denoiser, w, null_label=k)
            fresh = regenerate(
                model,
                float(sig[0]) * torch.randn(xt.shape, generator=torch.Generator().manual_seed(1)),
                sig,
                cond={"class_labels": tgt},
            )
            rows.append(
                dict(
                    method="fresh sample of target",
                    guidance=w,
                    strength=1.0,
                    success=(judged(fresh)[0] == tgt).float().mean().item(),
                    psnr_to_input=psnr(fresh, xt).mean().item(),
                )
            )
            for strength in (1.0, 0.8, 0.6):
                y = swap_class(denoiser, xt, sig, yt, tgt, guidance=w, null_label=k, strength=strength, iters=3)
                rows.append(
                    dict(
                        method="swap (invert + regenerate)",
                        guidance=w,
                        strength=strength,
                        success=(judged(y)[0] == tgt).float().mean().item(),
                        psnr_to_input=psnr(y, xt).mean().item(),
                    )
                )
                if strength == 0.8 and w == 2.0:
                    save_comparison([xt[:8], y[:8]], out / "swap.png", ["input", "swapped"])
        for r in rows:
            print(
                f"  {r['method']:28s} w={r['guidance']:g} strength {r['strength']:.1f}: judge says target "
                f"{r['success']:.3f}   PSNR to input {r['psnr_to_input']:.2f} dB",
                flush=True,
            )
        results["swap"] = rows

    results["judge"] = judge.describe()
    results["run"] = str(run)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out / 'results.json'} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
