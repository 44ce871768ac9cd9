"""CLIP, CLIP guidance and unCLIP on ``scenes``: CLIP retrieval, and text alignment of direct text conditioning
against prior → decoder, each with and without CLIP guidance, at (reported) sample time.

    python benchmarks/unclip.py retrieval --clip runs/clip [--num 1000]
    python benchmarks/unclip.py prior --unclip runs/unclip [--num 500] [--prior-cfgs 1,2,4]
    python benchmarks/unclip.py align --text-run runs/scenes-text --unclip runs/unclip --clip runs/clip \\
        [--num 100] [--steps 20] [--cfg 5] [--clip-scales 3,10] [--json out.json]
    python benchmarks/unclip.py cpu-budget train-unclip ... --minutes 12     # any noisecraft command line

cpu-budget: runs a noisecraft command whose --minutes is read on the process's CPU clock (time.process_time)
instead of the wall clock, so two trainings on a loaded, shared machine get the same CPU time (equal compute).

retrieval: text → image top-1 among 100 (blocks of 100 held-out pairs: scenes "test" split, Fashion-MNIST test
items; "heldout": every scene shows a colour–item pair the train split never shows), for clean images and, for a
noise-aware CLIP, images noised to σ.
prior: the prior's sampled image embeddings z_i for held-out captions t_i against random pairing, the real image
embeddings v_i, and the rate at which z_i is nearest to its own scene's v_i among 100 (chance 0.01).
align: for the first caption of `--num` held-out scenes ("test" split), each method generates one image per
caption; the independent checker of noisecraft.evaluation.scene_check reads each half (position, colour, class,
whole scene) and the CLIP scores the image against its caption (CLIP score = 100·max(cos, 0); note: the CLIP that
scores is the one that guides, so the CLIP score of guided rows is not independent; the checker is).
Seconds per sample are wall-clock on this machine, batch 50, CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pairs(split: str, num: int, seed: int = 0):
    from text_to_image import _scenes

    ds = _scenes(split, num, seed)
    x = torch.stack([ds[i]["x"] for i in range(len(ds))])
    return ds, x, [ds.caption_choices(i)[0] for i in range(len(ds))]


def retrieval_table(args) -> None:
    from noisecraft.models.clip import load_clip, retrieval_top1

    clip = load_clip(args.clip)
    sigmas = [0.0] + ([0.5, 2.0] if getattr(clip, "noise_aware", False) else [])
    print("| held-out pairs | n | σ | text → image top-1 of 100 | chance |")
    print("|---|---|---|---|---|")
    for split in ("test", "heldout"):
        _, x, prompts = _pairs(split, args.num)
        for s in sigmas:
            g = torch.Generator().manual_seed(0)
            xs = x + s * torch.randn(x.shape, generator=g)
            if s:
                emb = _noisy_retrieval(clip, xs, s, prompts)
            else:
                emb = retrieval_top1(clip, xs, prompts)
            print(f"| {split} | {len(x) // 100 * 100} | {s:g} | {emb:.3f} | 0.010 |", flush=True)


@torch.no_grad()
def _noisy_retrieval(clip, x, sigma: float, prompts) -> float:
    right = total = 0
    for lo in range(0, len(x) - 99, 100):
        im = clip.image_embeds(x[lo : lo + 100], torch.full((100,), sigma, dtype=torch.float64))
        tx = clip.text_embeds(prompts[lo : lo + 100])
        right += int((tx @ im.T).argmax(1).eq(torch.arange(100)).sum())
        total += 100
    return right / total


@torch.no_grad()
def prior_table(args) -> None:
    """Prior samples against the truth: cos(z_i, t_i) beside random pairing cos(z_i, t_{i+1}) and the real image
    embeddings' cos(v_i, t_i); and how often z_i is closest to its own scene's image v_i among 100."""
    from noisecraft.sampling.unclip import sample_image_embeds
    from noisecraft.training.unclip import load_unclip

    un = load_unclip(args.unclip)
    _, x, prompts = _pairs("test", args.num)
    t = un.clip.text_embeds(prompts)
    v = torch.cat([un.clip.image_embeds(x[i : i + 250]) for i in range(0, len(x), 250)])
    cos_real = (v * t).sum(-1).mean()
    n100 = len(v) // 100 * 100

    def top1(q: torch.Tensor) -> float:  # is q_i nearest to its own scene's image v_i among its block of 100
        hits = 0
        for lo in range(0, n100, 100):
            hits += int((q[lo : lo + 100] @ v[lo : lo + 100].T).argmax(1).eq(torch.arange(100)).sum())
        return hits / n100

    print("| embeddings | cos(·, own text) | cos(·, another text) | nearest to own image, of 100 |")
    print("|---|---|---|---|")
    other = (v * t.roll(1, 0)).sum(-1).mean()
    print(f"| real image embeddings v (query: the text t) | {cos_real:.3f} | {other:.3f} | {top1(t):.3f} |")
    for w in args.prior_cfgs:
        z = sample_image_embeds(un, t, range(len(t)), cfg_scale=w, steps=args.steps)
        own, other = (z * t).sum(-1).mean(), (z * t.roll(1, 0)).sum(-1).mean()
        print(f"| prior samples z, CFG {w:g}, {args.steps} steps | {own:.3f} | {other:.3f} | {top1(z):.3f} |")


def align_table(args) -> None:
    import noisecraft as nc
    from noisecraft.data.transforms import to_pixels
    from noisecraft.evaluation.scene_check import score
    from noisecraft.models.autoencoder import load_codec
    from noisecraft.models.clip import clip_score, load_clip
    from noisecraft.sampling.clip_guidance import ClipGuidedDenoiser, clip_text_cond
    from noisecraft.sampling.generate import decode_latents, generate
    from noisecraft.sampling.prompt_guidance import prompt_denoiser
    from noisecraft.sampling.unclip import sample_prompts
    from noisecraft.training.setup import sample_shape
    from noisecraft.training.unclip import load_unclip
    from text_to_image import _checker

    torch.manual_seed(0)
    clip = load_clip(args.clip)
    ds, _, prompts = _pairs("test", args.num)
    seeds = list(range(args.num))
    chk = _checker()
    gcond = clip_text_cond(clip, prompts)

    def decoder_of(latent):
        codec = load_codec(latent)

        def decode(z):  # differentiable, for guidance through x̂0
            return codec.vae.decode(z / codec.scaling_factor + codec.shift).sample

        return decode

    rows = []

    def record(name: str, steps: str, fn) -> None:
        t = time.perf_counter()
        x = fn()
        sec = (time.perf_counter() - t) / len(x)
        x = x.clamp(-1, 1)
        s = score(chk.read(to_pixels(x).permute(0, 2, 3, 1).numpy()), ds.layouts)
        cs = clip_score(clip, x, prompts)
        rows.append({"method": name, "steps": steps, "s_per_sample": sec, "clip_score": float(cs.mean()), **s})
        r = rows[-1]
        print(
            f"| {name} | {steps} | {sec:.3f} | {r['position']:.3f} | {r['colour']:.3f} | {r['class']:.3f} | "
            f"{r['scene']:.3f} | {r['clip_score']:.2f} |",
            flush=True,
        )
        if args.save:
            from noisecraft.data.io import save_grid

            Path(args.save).mkdir(parents=True, exist_ok=True)
            save_grid(x[:16], Path(args.save) / f"{name.replace(' ', '_').replace('/', '-')}.png", nrow=4)

    print("| method | steps | s/sample | position | colour | class | whole scene | CLIP score |")
    print("|---|---|---|---|---|---|---|---|")
    den, sched, cfg = nc.load_run(args.text_run)
    enc = den.net.text_encoder
    shape = sample_shape(cfg)

    def direct(steps: int, scale: float):
        d, cond = prompt_denoiser(den, enc, prompts, "", args.cfg)
        if scale:
            d = ClipGuidedDenoiser(d, clip, scale, interval=args.clip_interval, decode=decoder_of(cfg.data.latent))
            cond = {**cond, **gcond}
        z = generate(d, sched, shape, seeds, sampler=args.sampler, steps=steps, cond=cond, batch_size=50)
        return decode_latents(cfg.data.latent, z)

    un = load_unclip(args.unclip)

    def unclip(steps: int, scale: float):
        guide = None
        if scale:

            def guide(d):
                return ClipGuidedDenoiser(
                    d, clip, scale, interval=args.clip_interval, decode=decoder_of(un.config.latent)
                )

        return sample_prompts(
            un, prompts, seeds, prior_cfg=args.prior_cfg, decoder_cfg=args.cfg, sampler=args.sampler, steps=steps,
            prior_steps=args.steps,
            guide=guide, guide_cond=gcond if scale else None,
        )  # fmt: skip

    n, m = args.steps, args.matched_steps
    base, ucfg = f"direct text, CFG {args.cfg:g}", f"unCLIP prior/decoder, CFG {args.prior_cfg:g}/{args.cfg:g}"
    record(base, str(n), lambda: direct(n, 0.0))
    record(base, str(m), lambda: direct(m, 0.0))
    for sc in args.clip_scales:
        record(f"{base} + CLIP guidance {sc:g}", str(n), lambda sc=sc: direct(n, sc))
    record(ucfg, f"{n}+{n}", lambda: unclip(n, 0.0))
    record(ucfg, f"{n}+{m}", lambda: unclip(m, 0.0))
    for sc in args.clip_scales:
        record(f"{ucfg} + CLIP guidance {sc:g}", f"{n}+{n}", lambda sc=sc: unclip(n, sc))
    real = torch.stack([ds[i]["x"] for i in range(len(ds))])
    s = score(chk.read(to_pixels(real).permute(0, 2, 3, 1).numpy()), ds.layouts)
    cs = float(clip_score(clip, real, prompts).mean())
    print(f"| real scenes (ceiling) | – | – | {s['position']:.3f} | {s['colour']:.3f} | {s['class']:.3f} | "
          f"{s['scene']:.3f} | {cs:.2f} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1, default=str))


def cpu_budget(argv: list[str]) -> int:
    """`noisecraft ARGV` with the trainers' time-budget clock (training.core / training.loop) on CPU time."""
    from noisecraft.cli.main import main as noisecraft
    from noisecraft.training import core, loop

    core.clock = loop.clock = time.process_time
    t0 = time.process_time()
    rc = noisecraft(argv)
    print(f"cpu-budget: the process used {(time.process_time() - t0) / 60:.2f} CPU-minutes in all", flush=True)
    return rc


def main() -> None:
    if sys.argv[1:2] == ["cpu-budget"]:
        raise SystemExit(cpu_budget(sys.argv[2:]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("retrieval")
    a.add_argument("--clip", required=True)
    a.add_argument("--num", type=int, default=1000)
    c = sub.add_parser("prior")
    c.add_argument("--unclip", required=True)
    c.add_argument("--num", type=int, default=500)
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--prior-cfgs", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 2.0, 4.0])
    b = sub.add_parser("align")
    b.add_argument("--text-run", required=True)
    b.add_argument("--unclip", required=True)
    b.add_argument("--clip", required=True)
    b.add_argument("--num", type=int, default=100)
    b.add_argument("--steps", type=int, default=15)
    b.add_argument("--sampler", default="dpmpp_2m")
    b.add_argument("--matched-steps", type=int, default=45, help="unguided steps that take about the guided time")
    b.add_argument("--cfg", type=float, default=5.0)
    b.add_argument("--prior-cfg", type=float, default=2.0)
    b.add_argument("--clip-scales", type=lambda v: [float(x) for x in v.split(",")], default=[3.0])
    b.add_argument("--clip-interval", default=None)
    b.add_argument("--json", default=None)
    b.add_argument("--save", default=None, help="folder for a grid of the first 16 images per method")
    args = p.parse_args()
    {"retrieval": retrieval_table, "align": align_table, "prior": prior_table}[args.cmd](args)


if __name__ == "__main__":
    main()
