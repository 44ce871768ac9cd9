"""Training throughput and peak memory: the noisecraft trainer against the guide's reference loop.

The reference is written the way the diffusers training guide and its ``train_unconditional`` example do it:
a ``datasets`` dataset with an on-the-fly per-item transform (resize, to-tensor, normalise), a shuffling
DataLoader, ``UNet2DModel`` + ``DDPMScheduler.add_noise`` + ε-MSE, Accelerate with ``accumulate``, gradient
clipping, a cosine LR schedule with warm-up, diffusers' ``EMAModel`` and a TensorBoard log every step. Both
sides flip images at random, as the guide's preprocessing does (RandomHorizontalFlip).
noisecraft trains the *same* U-Net (same preset, same resolution, same batch, same DDPM-linear ε objective,
EMA, clipping, TensorBoard) with ``noisecraft.training.loop.train``.

Each side runs in its own fresh process (so peak RSS is its own); images/s is measured after a warm-up,
over the same number of optimiser steps. Runs alternate (ours, reference, ours, ...) and the median is
reported, which keeps other load on the machine from favouring either side.

A third row, the *floor*, times the bare step on one pre-made batch: the same U-Net's forward, ε-MSE,
backward and a fused AdamW step, with no data pipeline, noise schedule, EMA, clipping or logging. No trainer
that does the same work per image can beat it, so floor/reference is the largest ratio reachable on this
machine; ours/floor says how close the trainer comes to it.

    python benchmarks/train_throughput.py                    # digits at 16x16, tiny U-Net, batch 64
    python benchmarks/train_throughput.py --resolution 32 --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("images_per_s", "images_per_cpu_s", "peak_mb")


def peak_mb() -> float:
    """Peak memory of this process: allocated GPU memory when training ran on CUDA, else peak RSS."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(a: argparse.Namespace, out: Path) -> dict:
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.loop import train

    cfg = TrainConfig.from_dict(
        {
            "data": {"source": "digits", "resolution": a.resolution, "channels": 1, "flip": True},
            "model": {
                "arch": "unet",
                "preset": a.preset,
                "resolution": a.resolution,
                "channels": 1,
                "schedule": "linear",
                "parameterisation": "eps",
            },
            "optim": {"lr": 1e-4, "warmup_steps": 10, "grad_clip": 1.0},
            "ema": {"decay": 0.9999},
            "steps": a.warmup + a.steps,
            "batch_size": a.batch,
            "log_every": 1,
            "checkpoint_every": 10**6,
            "sample_every": 0,
            "trackers": ["tensorboard"],
            "out_dir": str(out / "ours"),
        }
    )
    train(cfg, progress=False)
    log = [json.loads(line) for line in (out / "ours" / "log.jsonl").read_text().splitlines()]
    timed = [r for r in log if r["step"] > a.warmup]
    seconds = sum(a.batch / r["images_per_s"] for r in timed)
    cpu = timed[-1]["cpu_s"] - next(r["cpu_s"] for r in log if r["step"] == a.warmup)
    images = len(timed) * a.batch
    return {"images_per_s": images / seconds, "images_per_cpu_s": images / cpu, "peak_mb": peak_mb()}


def run_reference(a: argparse.Namespace, out: Path) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from datasets import Dataset
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel
    from PIL import Image
    from sklearn.datasets import load_digits

    from noisecraft.models.unet import build_unet

    torch.manual_seed(0)
    pil = [Image.fromarray((d * 255 / 16).astype(np.uint8)) for d in load_digits().images]
    dataset = Dataset.from_dict({"image": pil})

    def preprocess(im: Image.Image) -> torch.Tensor:  # Resize + RandomHorizontalFlip + ToTensor + Normalize
        im = im.convert("L").resize((a.resolution, a.resolution), Image.BILINEAR)
        if torch.rand(()) < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return (torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None] - 0.5) / 0.5

    dataset.set_transform(lambda ex: {"images": [preprocess(im) for im in ex["image"]]})
    loader = torch.utils.data.DataLoader(dataset, batch_size=a.batch, shuffle=True)
    model = build_unet(a.preset, a.resolution, 1).unet  # the very same UNet2DModel configuration
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lr_sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=10, num_training_steps=a.warmup + a.steps)
    acc = Accelerator(mixed_precision="no", log_with="tensorboard", project_dir=str(out / "ref"))
    acc.init_trackers("reference")
    model, opt, loader, lr_sched = acc.prepare(model, opt, loader, lr_sched)
    ema = EMAModel(
        model.parameters(),
        decay=0.9999,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=3 / 4,
        model_cls=UNet2DModel,
        model_config=model.config,
    )
    step, images, t0, c0 = 0, 0, 0.0, 0.0
    while step < a.warmup + a.steps:
        for batch in loader:
            clean = batch["images"]
            noise = torch.randn(clean.shape, device=clean.device)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (clean.shape[0],), device=clean.device).long()
            noisy = scheduler.add_noise(clean, noise, t)
            with acc.accumulate(model):
                pred = model(noisy, t, return_dict=False)[0]
                loss = F.mse_loss(pred.float(), noise.float())
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                lr_sched.step()
                opt.zero_grad()
            if acc.sync_gradients:
                ema.step(model.parameters())
                step += 1
                if step == a.warmup:
                    t0, c0 = time.perf_counter(), time.process_time()
                elif step > a.warmup:
                    images += clean.shape[0]
            acc.log({"loss": loss.detach().item(), "lr": lr_sched.get_last_lr()[0], "step": step}, step=step)
            if step >= a.warmup + a.steps:
                break
    acc.end_training()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images_per_s": images / wall, "images_per_cpu_s": images / cpu, "peak_mb": peak_mb()}


def run_floor(a: argparse.Namespace, out: Path) -> dict:
    import torch

    from noisecraft.models.unet import build_unet

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    net = build_unet(a.preset, a.resolution, 1).unet.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)
    x = torch.randn(a.batch, 1, a.resolution, a.resolution, device=dev)  # (B, 1, H, W): one batch, reused
    noise = torch.randn_like(x)
    t = torch.randint(0, 1000, (a.batch,), device=dev)
    t0 = c0 = 0.0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
        loss = (net(x, t, return_dict=False)[0] - noise).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    images = a.steps * a.batch
    return {"images_per_s": images / wall, "images_per_cpu_s": images / cpu, "peak_mb": peak_mb()}


ROLES = {"ours": run_ours, "reference": run_reference, "floor": run_floor}


def child(role: str, a: argparse.Namespace) -> dict:
    argv = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--resolution",
        str(a.resolution),
        "--preset",
        a.preset,
        "--batch",
        str(a.batch),
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
    ]
    r = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    )
    if r.returncode:
        raise SystemExit(f"{role} run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--preset", default="tiny", help="U-Net preset (tiny, small, guide-128)")
    p.add_argument("--steps", type=int, default=40, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--role", choices=list(ROLES), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role:
        with tempfile.TemporaryDirectory() as tmp:
            res = ROLES[a.role](a, Path(tmp))
        print(json.dumps(res))
        return
    runs: dict[str, list[dict]] = {role: [] for role in ROLES}
    for i in range(a.repeats):
        order = ("ours", "reference", "floor")
        for role in order if i % 2 == 0 else order[::-1]:
            runs[role].append(child(role, a))
            r = runs[role][-1]
            print(
                f"  run {i + 1} {role:9s}: {r['images_per_s']:8.1f} images/s, "
                f"{r['images_per_cpu_s']:8.1f} images/CPU-s, "
                f"peak {r['peak_mb']:.0f} MB",
                file=sys.stderr,
            )
    med = {k: {m: statistics.median(r[m] for r in v) for m in METRICS} for k, v in runs.items()}
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(
        f"\ntraining throughput: digits {a.resolution}x{a.resolution}, {a.preset} UNet2DModel, batch {a.batch}, "
        f"{a.steps} timed steps, median of {a.repeats} (torch threads: {threads})"
    )
    print("images/CPU-s counts only the process's own CPU time, so other load on the machine does not enter it")
    import torch

    mem = "peak GPU MB" if torch.cuda.is_available() else "peak RSS MB"
    print(f"{'':24s}{'images/s':>12s}{'images/CPU-s':>14s}{mem:>14s}")
    names = {"ours": "noisecraft", "reference": "reference (guide loop)", "floor": "floor (bare step)"}
    for k, name in names.items():
        print(f"{name:24s}" + "".join(f"{med[k][m]:{w}.1f}" for m, w in zip(METRICS, (12, 14, 14))))
    for num, den in (("ours", "reference"), ("floor", "reference"), ("ours", "floor")):
        print(
            f"{'ratio ' + num + '/' + den:24s}"
            + "".join(f"{med[num][m] / med[den][m]:{w}.2f}x" for m, w in zip(METRICS, (11, 13, 13)))
        )


if __name__ == "__main__":
    main()
