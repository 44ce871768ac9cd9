"""CPU minutes to reach a sample quality on digits: noisecraft's defaults against the guide's reference loop.

Both sides train the same small U-Net (the `make demo` network: UNet2DModel, 16×16, blocks 16/32/32) on the
scikit-learn digits upsampled to 16×16, batch 64, one CPU thread:

- noisecraft: ``configs/demo-digits.json`` (EDM preconditioning, log-normal σ, lr 2e-3 with warm-up and cosine
  decay, EMA half-life 8000 images), trained with ``noisecraft.training.loop.train`` in chunks (resume is exact);
- reference: the guide / ``train_unconditional`` defaults (DDPM linear schedule, ε-MSE, AdamW lr 1e-4, 500
  warm-up steps, cosine decay, diffusers ``EMAModel`` with warm-up, max decay 0.9999), same model and batch.

After every ``--eval-every`` steps each side's EMA model draws ``--num`` samples with the *same* sampler
(Heun, 20 steps, the schedule's default spacing; sampling is not what is timed) and the Fréchet distance to
the digits test split is computed with noisecraft's built-in digits feature network. Only training CPU time
(this process's CPU seconds) is counted. The table gives FD against training CPU minutes, and the CPU time
each side needs to first reach the target FD (default: the best FD the reference reached in its budget).

    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --budget-steps 3000 --eval-every 250
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fd_of(denoiser, schedule, a, extractor) -> float:
    from noisecraft.evaluation.evaluate import evaluate_images
    from noisecraft.sampling.generate import generate

    x = generate(denoiser, schedule, (1, 16, 16), list(range(a.num)), sampler="heun", steps=20, batch_size=250)
    # clamped to the image range, as every pipeline does before it saves an image
    return evaluate_images(x.clamp(-1, 1), "digits", extractor, with_floor=False).scores.fd


def curve_ours(a, extractor, tmp: Path) -> list[tuple[float, int, float]]:
    """One uninterrupted run over the whole budget (its LR schedule spans it), a checkpoint every eval_every
    steps; the training CPU time at each checkpoint comes from the run's own log (cpu_s)."""
    from noisecraft.training.checkpoint import list_checkpoints, load_run
    from noisecraft.training.config import TrainConfig, apply_overrides
    from noisecraft.training.loop import train

    base = TrainConfig.from_json_file(str(ROOT / "configs" / "demo-digits.json"))
    keep = a.budget_steps // a.eval_every + 1
    cfg = apply_overrides(
        base,
        [
            f"out_dir={tmp / 'ours'}",
            "sample_every=0",
            f"steps={a.budget_steps}",
            "trackers=[]",
            f"checkpoint_every={a.eval_every}",
            f"keep_last={keep}",
            "log_every=25",
        ],
    )
    c0 = time.process_time()
    train(cfg, progress=False)
    cpu_at = {r["step"]: r["cpu_s"] - c0 for r in map(json.loads, (tmp / "ours" / "log.jsonl").open())}
    points = []
    for ckpt in list_checkpoints(cfg.out_dir):
        den, sched, _ = load_run(ckpt)
        step = int(ckpt.name.split("-")[1])
        points.append((cpu_at[step] / 60, step, fd_of(den, sched, a, extractor)))
        print(f"  ours      step {step:5d}  {points[-1][0]:6.2f} CPU-min  FD {points[-1][2]:.3f}", file=sys.stderr)
    return points


def curve_reference(a, extractor) -> list[tuple[float, int, float]]:
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    from noisecraft.models.factory import ModelConfig, build_denoiser
    from noisecraft.training.config import TrainConfig

    torch.manual_seed(0)
    demo = TrainConfig.from_json_file(str(ROOT / "configs" / "demo-digits.json"))
    mcfg = ModelConfig(
        resolution=16, channels=1, schedule="linear", parameterisation="eps", net_kwargs=demo.model.net_kwargs
    )
    denoiser, schedule = build_denoiser(mcfg)  # the same UNet2DModel, wrapped only for evaluation
    model = denoiser.net.unet
    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset

    ds = make_dataset(DataConfig(source="digits", resolution=16))
    data = torch.stack([ds[i]["x"] for i in range(len(ds))])
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lr_sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=500, num_training_steps=a.budget_steps)
    ema = EMAModel(
        model.parameters(),
        decay=0.9999,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=3 / 4,
        model_cls=UNet2DModel,
        model_config=model.config,
    )
    g = torch.Generator().manual_seed(0)
    points, cpu, step = [], 0.0, 0
    while step < a.budget_steps:
        c0 = time.process_time()
        model.train()
        for _ in range(a.eval_every):
            clean = data[torch.randint(0, len(data), (64,), generator=g)]
            noise = torch.randn(clean.shape)
            t = torch.randint(0, 1000, (64,)).long()
            loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t, return_dict=False)[0], noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad()
            ema.step(model.parameters())
            step += 1
        cpu += time.process_time() - c0
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        points.append((cpu / 60, step, fd_of(denoiser.eval(), schedule, a, extractor)))
        ema.restore(model.parameters())
        print(f"  reference step {step:5d}  {cpu / 60:6.2f} CPU-min  FD {points[-1][2]:.3f}", file=sys.stderr)
    return points


def first_reach(points, target: float) -> float | None:
    return next((m for m, _, fd in points if fd <= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-steps", type=int, default=3000, help="training steps of each side")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--num", type=int, default=500, help="samples per FD evaluation")
    p.add_argument("--target-fd", type=float, default=None, help="default: the reference's best FD")
    a = p.parse_args()
    import torch

    from noisecraft.evaluation.features import BuiltinFeatures

    torch.set_num_threads(1)
    extractor = BuiltinFeatures("digits")
    with tempfile.TemporaryDirectory() as tmp:
        ours = curve_ours(a, extractor, Path(tmp))
    ref = curve_reference(a, extractor)
    target = a.target_fd if a.target_fd is not None else min(fd for _, _, fd in ref)
    print(f"\ntime to quality on digits 16x16 (FD with the built-in digits features, {a.num} samples, Heun 20)")
    print(f"{'step':>6s} {'ours CPU-min':>13s} {'ours FD':>9s} {'ref CPU-min':>12s} {'ref FD':>9s}")
    for (mo, s, fo), (mr, _, fr) in zip(ours, ref):
        print(f"{s:6d} {mo:13.2f} {fo:9.3f} {mr:12.2f} {fr:9.3f}")
    to, tr = first_reach(ours, target), first_reach(ref, target)
    print(
        f"target FD {target:.3f}: ours {to if to is None else round(to, 2)} CPU-min, "
        f"reference {tr if tr is None else round(tr, 2)} CPU-min"
        + (f", ratio {to / tr:.2f}x" if to is not None and tr else "")
    )
    print(json.dumps({"ours": ours, "reference": ref, "target_fd": target}))


if __name__ == "__main__":
    main()
