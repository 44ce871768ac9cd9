"""Text-driven edits of held-out ``scenes`` images: Imagic against the GLIDE-style text edits, judged by the
independent scene checker (noisecraft.evaluation.scene_check).

    python benchmarks/imagic.py --run runs/scenes-text --colour 8 --cls 4 --position 4 [--json out.json]
    python benchmarks/imagic.py --table out.json      # the table again from a (possibly partial) --json file

Images: scenes of the test split (real Fashion-MNIST test items). Edits, each with a source caption (the scene's)
and a target caption (the scene with one thing changed):
- colour: the first item gets another colour ("a white dress ..." → "a red dress ...");
- class: the first item becomes another class ("... sneaker ..." → "... bag ...");
- position: one-item scenes only, the item moves to the other half ("... on the left" → "... on the right").

Methods (all with CFG against the empty prompt, scale --cfg):
- imagic: editing/imagic.py with its defaults, swept over η;
- sdedit: img2img (SDEdit) with the target prompt, swept over the strength;
- inpaint: the edited half regenerated with the target prompt ("replace" method), the other half pasted back
  exactly in pixel space (colour and class edits);
- ddim: DDIM inversion under the source prompt, regeneration under the target prompt, swept over the CFG scale.

Success: the checker reads the target in the edited half (colour edits: its colour; class edits: its class;
position edits: the item in the new half, the old half empty). Identity: the unedited half keeps its content
(SSIM of its gray level ≥ 0.7 against the input, and the checker reads the same colour there), and for colour
and position edits the edited item keeps its shape (SSIM ≥ 0.7 of the gray level of the edited item against
the input's item, in its new half for position edits). SSIM: 7×7 uniform windows (Wang et al. 2004).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

SSIM_OK = 0.7  # identity threshold, fixed before any result was seen


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7) -> float:
    """Mean SSIM of two gray images (H, W) in [0, 1] over win×win uniform windows (Wang et al. 2004)."""
    x = torch.from_numpy(np.stack([a, b]).astype(np.float64))[:, None]  # (2, 1, H, W)
    mu = F.avg_pool2d(x, win, 1)
    sq = F.avg_pool2d(x * x, win, 1) - mu**2
    cov = F.avg_pool2d(x[:1] * x[1:], win, 1) - mu[:1] * mu[1:]
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu[0] * mu[1] + c1) * (2 * cov[0] + c2)) / ((mu[0] ** 2 + mu[1] ** 2 + c1) * (sq[0] + sq[1] + c2))
    return float(s.mean())


def gray_half(img: np.ndarray, half: int) -> np.ndarray:
    """Gray level (max over channels) of half 0 (left) or 1 (right) of an image (32, 32, 3) uint8 → (32, 16)."""
    return img[:, half * 16 : (half + 1) * 16].max(-1).astype(np.float64) / 255.0


@dataclasses.dataclass
class Case:
    kind: str  # colour, class, position
    index: int  # scene index in the test split
    src: tuple  # (left, right) slots
    tgt: tuple
    half: int  # the edited half (position: the half the item moves to)
    other: int | None  # the unedited half holding an item (None: no such half)


def make_cases(ds, n_colour: int, n_class: int, n_position: int) -> list[Case]:
    cases: list[Case] = []
    counts = {"colour": 0, "class": 0, "position": 0}
    want = {"colour": n_colour, "class": n_class, "position": n_position}
    for i, (left, right) in enumerate(ds.layouts):
        if all(counts[k] >= want[k] for k in want):
            break
        half = 0 if left is not None else 1
        item = left if left is not None else right
        other_slot = right if half == 0 else left
        other = None if other_slot is None else 1 - half
        # alternate the kinds over the scenes so that each kind sees different images
        order = ["colour", "class", "position"]
        kind = order[i % 3]
        if kind == "position" and other is not None:
            kind = "colour" if counts["colour"] < want["colour"] else "class"
        if counts[kind] >= want[kind]:
            continue
        if kind == "colour":
            new = dataclasses.replace(item, colour=(item.colour + 1 + i % 7) % 8)
            tgt = (new, right) if half == 0 else (left, new)
            cases.append(Case(kind, i, (left, right), tgt, half, other))
        elif kind == "class":
            new = dataclasses.replace(item, cls=(item.cls + 1 + i % 9) % 10)
            tgt = (new, right) if half == 0 else (left, new)
            cases.append(Case(kind, i, (left, right), tgt, half, other))
        else:
            tgt = (None, item) if half == 0 else (item, None)
            cases.append(Case(kind, i, (left, right), tgt, 1 - half, None))
        counts[kind] += 1
    return cases


def judge(case: Case, out: np.ndarray, inp: np.ndarray, read) -> tuple[bool, bool, float]:
    """(success, identity kept, SSIM of the edited item's gray level) of one edit; out, inp (32, 32, 3) uint8."""
    got = read[case.half]
    want = case.tgt[case.half]
    if case.kind == "colour":
        ok = got is not None and got.colour == want.colour
    elif case.kind == "class":
        ok = got is not None and got.cls == want.cls
    else:
        ok = got is not None and read[1 - case.half] is None
    keep = True
    if case.other is not None:
        o = case.other
        same = ssim(gray_half(out, o), gray_half(inp, o)) >= SSIM_OK
        keep &= same and read[o] is not None and read[o].colour == case.src[o].colour
    src_half = case.half if case.kind != "position" else 1 - case.half
    shape = ssim(gray_half(out, case.half), gray_half(inp, src_half))
    if case.kind in ("colour", "position"):
        keep &= shape >= SSIM_OK
    return bool(ok), bool(keep), shape


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a text-conditioned scenes run")
    p.add_argument("--table", default=None, help="print the table of a --json file written earlier, and exit")
    p.add_argument("--colour", type=int, default=8, help="number of colour edits")
    p.add_argument("--cls", type=int, default=4, help="number of class edits")
    p.add_argument("--position", type=int, default=4, help="number of position edits")
    p.add_argument("--etas", default="0.4,0.6,0.8,1,1.2")
    p.add_argument("--strengths", default="0.4,0.6,0.8")
    p.add_argument("--ddim-cfg", default="1,3,5")
    p.add_argument("--cfg", type=float, default=5.0, help="CFG scale of imagic, sdedit and inpaint")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--embed-steps", type=int, default=100)
    p.add_argument("--finetune-steps", type=int, default=100)
    p.add_argument("--methods", default="imagic,sdedit,inpaint,ddim")
    p.add_argument("--json", default=None)
    p.add_argument("--save", default=None, help="folder for a comparison strip per edit")
    args = p.parse_args()
    if args.table:
        with open(args.table) as f:
            rows = json.load(f)
        methods = list(dict.fromkeys(r["method"] for r in rows))
        return print_table(rows, methods)
    if args.run is None:
        p.error("give --run RUN (or --table FILE)")

    import noisecraft as nc
    from noisecraft.data.config import DataConfig
    from noisecraft.data.scenes import ScenesDataset, captions_for, render
    from noisecraft.data.transforms import to_pixels
    from noisecraft.editing import imagic as im
    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.sdedit import img2img
    from noisecraft.models.autoencoder import load_codec
    from noisecraft.sampling.inversion import invert, regenerate
    from noisecraft.sampling.prompt_guidance import PromptCFGDenoiser
    from noisecraft.sampling.steps import step_sigmas

    sys_path = __import__("sys").path
    sys_path.insert(0, __import__("os").path.dirname(__file__))
    from text_to_image import _checker

    torch.manual_seed(0)
    den, sched, cfg = nc.load_run(args.run)
    enc = den.net.text_encoder
    codec = load_codec(cfg.data.latent)
    chk = _checker()
    loss = im.run_loss(cfg, sched)
    ds = ScenesDataset(DataConfig(source="scenes", channels=3, split="test", scenes_size=400, seed=0))
    cases = make_cases(ds, args.colour, args.cls, args.position)
    sig = step_sigmas(sched, args.steps, None, sampler="dpmpp_2m")
    sig_e = step_sigmas(sched, args.steps, None, sampler="euler")
    neg = enc.encode([""])
    etas = [float(t) for t in args.etas.split(",")]
    strengths = [float(t) for t in args.strengths.split(",")]
    ddim_ws = [float(t) for t in args.ddim_cfg.split(",")]
    methods = args.methods.split(",")
    rows: list[dict] = []  # one per (case, method, knob)
    guided = PromptCFGDenoiser(den, args.cfg, neg)

    def record(case, method, knob, pix, inp, seconds):
        out = to_pixels(pix).permute(0, 2, 3, 1).numpy()
        reads = chk.read(out)
        for k, o, r in zip(knob, out, reads):
            ok, keep, shape = judge(case, o, inp, r)
            rows.append(dict(kind=case.kind, index=case.index, method=method, knob=k, success=ok, identity=keep,
                             shape_ssim=shape, seconds=seconds))  # fmt: skip
        return out

    for n, case in enumerate(cases):
        inp = render(*case.src, ds.items)  # (32, 32, 3) uint8
        x = torch.from_numpy(inp).permute(2, 0, 1).float()[None] / 127.5 - 1
        z = codec.encode(x)  # (1, 4, 8, 8)
        src_p, tgt_p = captions_for(*case.src)[0], captions_for(*case.tgt)[0]
        e_src, e_tgt = enc.encode([src_p]), enc.encode([tgt_p])
        strip = [x[0]]
        print(f"[{n + 1}/{len(cases)}] {case.kind}: {src_p!r} -> {tgt_p!r}", flush=True)
        if "imagic" in methods:
            t = time.perf_counter()
            ed = im.imagic(den, loss, z, tgt_p, im.ImagicSettings(args.embed_steps, args.finetune_steps))
            y = codec.decode(ed.sample(etas, sig, z.shape[1:], seed=0, cfg_scale=args.cfg, negative=neg))
            record(case, "imagic", etas, y, inp, (time.perf_counter() - t))
            strip += list(y)
        if "sdedit" in methods:
            t = time.perf_counter()
            zs = z.expand(len(strengths), -1, -1, -1)
            ys = []
            for s in strengths:
                g = torch.Generator().manual_seed(0)
                ys.append(img2img(guided, z, sig, s, sampler="dpmpp_2m", cond=e_tgt, generator=g))
            y = codec.decode(torch.cat(ys))
            record(case, "sdedit", strengths, y, inp, (time.perf_counter() - t) / len(zs))
            strip += list(y)
        if "inpaint" in methods and case.kind != "position":
            t = time.perf_counter()
            mask = torch.zeros(1, 1, 8, 8)
            mask[..., case.half * 4 : (case.half + 1) * 4] = 1  # the edited half of the 8×8 latent
            g = torch.Generator().manual_seed(0)
            zi = inpaint(guided, z, mask, sig_e, method="replace", sampler="euler", cond=e_tgt, generator=g)
            y = codec.decode(zi)
            pm = torch.zeros(1, 1, 32, 32)
            pm[..., case.half * 16 : (case.half + 1) * 16] = 1
            y = pm * y + (1 - pm) * x  # the kept half exactly as the input, in pixel space
            record(case, "inpaint", [args.cfg], y, inp, time.perf_counter() - t)
            strip += list(y)
        if "ddim" in methods:
            t = time.perf_counter()
            zt = invert(den, z, sig_e, sampler="euler", iters=2, cond=e_src)
            ys = [regenerate(PromptCFGDenoiser(den, w, neg) if w != 1 else den, zt, sig_e, sampler="euler",
                             cond=e_tgt) for w in ddim_ws]  # fmt: skip
            y = codec.decode(torch.cat(ys))
            record(case, "ddim", ddim_ws, y, inp, (time.perf_counter() - t) / len(ddim_ws))
            strip += list(y)
        if args.save:
            from pathlib import Path

            from noisecraft.editing.io import save_comparison

            Path(args.save).mkdir(parents=True, exist_ok=True)
            save_comparison([s.clamp(-1, 1) for s in strip], Path(args.save) / f"{n:02d}-{case.kind}.png")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)

    print_table(rows, methods)


def print_table(rows: list[dict], methods: list[str]) -> None:
    print("\n| edit | method | knob | n | success | identity | success×identity | both | item SSIM | s/edit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("colour", "class", "position"):
        for method in methods:
            knobs = sorted({r["knob"] for r in rows if r["kind"] == kind and r["method"] == method})
            for k in knobs:
                sel = [r for r in rows if r["kind"] == kind and r["method"] == method and r["knob"] == k]
                s = np.mean([r["success"] for r in sel])
                i = np.mean([r["identity"] for r in sel])
                both = np.mean([r["success"] and r["identity"] for r in sel])
                sh = np.mean([r["shape_ssim"] for r in sel])
                sec = np.mean([r["seconds"] for r in sel])
                name = {"imagic": "η", "sdedit": "strength", "inpaint": "CFG", "ddim": "CFG"}[method]
                print(f"| {kind} | {method} | {name} {k:g} | {len(sel)} | {s:.2f} | {i:.2f} | {s * i:.2f} | "
                      f"{both:.2f} | {sh:.2f} | {sec:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
