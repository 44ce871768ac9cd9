"""A user's own folder, out of the box: `noisecraft train --data FOLDER --minutes M` with defaults only, against
the guide's setting (--parameterisation eps --schedule linear), on real folders that no one here made.

Folders (made from files a package ships; nothing is downloaded):
- icons: the GNOME icon theme's 32x32 PNGs (`apt-get install gnome-icon-theme`; symlinks and duplicates
  dropped: 369 files, 347 RGBA and 22 palettes with transparency, one 256x128), composited onto white;
- photos: scikit-learn's two sample photographs cut into non-overlapping 32x32 tiles.

For each (folder, setting) it trains for the same time budget, draws 64 samples (euler, 40 steps: what
`noisecraft sample` draws by default), saves the grid, and scores the samples against the folder's held-out
part (noisecraft.training.heldout: per-channel built-in features, FD and KID) beside the split-to-split noise
floor, and counts failed tiles (flat, saturated, noise). Runs go two at a time, one thread each.

    OMP_NUM_THREADS=1 python benchmarks/own_folder.py --minutes 15 --work /tmp/own --images docs/images
    python benchmarks/own_folder.py --minutes 15 --work /tmp/own --score-only    # rescore finished runs

Target (issue 17): no saturated or flat tiles in a 64-sample grid with defaults; FD within 3x the noise floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SETTINGS = {"defaults": [], "guide-eps-linear": ["--parameterisation", "eps", "--schedule", "linear"]}
ICONS = Path("/usr/share/icons/gnome/32x32")


def make_icons(dst: Path) -> int:
    if not ICONS.is_dir():
        sys.exit("icons need the GNOME icon theme: apt-get install gnome-icon-theme")
    dst.mkdir(parents=True, exist_ok=True)
    seen = set()
    for p in sorted(ICONS.rglob("*.png")):
        if p.is_symlink():
            continue
        data = p.read_bytes()
        h = hashlib.sha256(data).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        (dst / f"{p.parent.name}-{p.name}").write_bytes(data)
    return len(seen)


def make_photos(dst: Path, tile: int = 32) -> int:
    from sklearn.datasets import load_sample_images

    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for k, img in enumerate(load_sample_images().images):
        h, w, _ = img.shape
        for y in range(0, h - tile + 1, tile):
            for x in range(0, w - tile + 1, tile):
                Image.fromarray(np.ascontiguousarray(img[y : y + tile, x : x + tile])).save(dst / f"p{k}-{y}-{x}.png")
                n += 1
    return n


def train(folder: Path, run: Path, minutes: float, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "noisecraft.cli.main", "train", "--data", str(folder), "--resolution", "32",
           "--minutes", str(minutes), "--out", str(run), "--no-progress", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = open(run.with_suffix(".log"), "w")
    print(" ".join(cmd[1:]), flush=True)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def score(folder: Path, run: Path, images: Path | None, name: str) -> dict:
    import torch

    from noisecraft.data.io import save_grid
    from noisecraft.data.transforms import from_pixels, to_pixels
    from noisecraft.sampling.generate import generate
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.heldout import HeldoutEval, tile_defects

    torch.set_num_threads(1)
    denoiser, schedule, cfg = load_run(run)
    x = generate(denoiser, schedule, (cfg.data.channels, 32, 32), list(range(64)), sampler="euler", steps=40)
    x = from_pixels(to_pixels(x))
    ev = HeldoutEval(cfg)
    ref = torch.stack([ev_item["x"] for ev_item in _train_items(cfg)])
    res = ev.score(x)
    res["defects"] = tile_defects(x, ref)
    res["steps"] = json.loads((run / "config.json").read_text())["steps"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    res["steps_done"], res["elapsed_s"] = log[-1]["step"], log[-1]["elapsed_s"]
    if images is not None:
        save_grid(x, images / f"own-folder-{name}.png")
    return res


def _train_items(cfg):
    from noisecraft.data.folder import FolderDataset

    ds = FolderDataset(cfg.data, split="train")
    return [ds[i] for i in range(min(len(ds), 512))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--work", type=Path, default=Path("/tmp/own-folder"))
    ap.add_argument("--images", type=Path, default=None, help="write the 64-sample grids here (docs/images)")
    ap.add_argument("--folders", default="icons,photos")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--score-only", action="store_true")
    args = ap.parse_args()
    folders = {}
    for name in args.folders.split(","):
        f = args.work / "data" / name
        if not f.is_dir():
            n = make_icons(f) if name == "icons" else make_photos(f)
            print(f"{name}: {n} images in {f}")
        folders[name] = f
    jobs = [(fn, sn) for fn in folders for sn in SETTINGS]
    if not args.score_only:
        queue = list(jobs)
        running: list[subprocess.Popen] = []
        while queue or running:
            while queue and len(running) < args.parallel:
                fn, sn = queue.pop(0)
                run = args.work / "runs" / f"{fn}-{sn}"
                run.parent.mkdir(parents=True, exist_ok=True)
                running.append(train(folders[fn], run, args.minutes, SETTINGS[sn]))
            running[0].wait()
            running = [p for p in running if p.poll() is None]
    rows = {}
    for fn, sn in jobs:
        rows[f"{fn}/{sn}"] = score(folders[fn], args.work / "runs" / f"{fn}-{sn}", args.images, f"{fn}-{sn}")
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{args.minutes:g}-minute budget, one CPU thread per run; 64 samples (euler 40) vs the held-out part")
    print(f"{'folder/setting':28} {'steps':>6} {'FD':>8} {'floor':>8} {'FD/floor':>8} {'KID':>8} {'floor':>8} "
          f"{'flat':>5} {'satur':>5} {'noise':>5}")  # fmt: skip
    for k, r in rows.items():
        s, f, d = r["scores"], r["noise_floor"], r["defects"]
        ratio = s["fd"] / f["fd"]
        print(f"{k:28} {r['steps_done']:>6} {s['fd']:8.3f} {f['fd']:8.3f} {ratio:8.2f} {s['kid_mean']:8.4f} "
              f"{f['kid_mean']:8.4f} {d['flat']:5.2f} {d['saturated']:5.2f} {d['noise']:5.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
