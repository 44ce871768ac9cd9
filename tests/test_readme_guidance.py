"""The README's class-conditional guidance recipe, run as written (at a smaller step count), must draw the
digits it is asked for: class accuracy judged by the evaluation package's digits CNN, never by the model."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from noisecraft.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(heading: str) -> list[list[str]]:
    """The noisecraft commands of the first bash block after `heading` (continuation lines joined)."""
    text = README.read_text()
    block = re.search(re.escape(heading) + r".*?```bash\n(.*?)```", text, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(ln.split("#")[0])[1:] for ln in lines if ln.startswith("noisecraft ")]


def test_the_readme_guidance_recipe_draws_the_digits_asked_for(tmp_path):
    from noisecraft.evaluation.features import BuiltinFeatures

    cmds = readme_commands("Guidance (class-conditional")
    train = next(c for c in cmds if c[0] == "train")
    sample = next(c for c in cmds if c[0] == "sample" and "--cfg" in c)
    run = str(tmp_path / "run")
    train = [run if a == "runs/digits-cond" else a for a in train]
    assert main([*train, "--steps", "600", "--set", "trackers=[]", "--set", "sample_every=0", "--no-progress"]) == 0
    judge = BuiltinFeatures("digits").net
    hits = 0
    for c in range(10):
        args = [run if a == "runs/digits-cond" else a for a in sample]
        args[args.index("--class") + 1] = str(c)
        out = tmp_path / f"class{c}"
        assert main([*args, "--num", "8", "--seed", "100", "--out", str(out)]) == 0
        x = torch.stack(
            [torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32)) for p in sorted(out.glob("seed*.png"))]
        )
        x = x[:, None] / 127.5 - 1  # (8, 1, 8, 8) in [−1, 1]
        with torch.no_grad():
            hits += int((judge(x).argmax(1) == c).sum())
    assert hits / 80 >= 0.8, f"class accuracy {hits / 80:.2f} with CFG 4"


def test_the_readme_own_folder_command_plans_a_time_budget(tmp_path):
    """The first "Using it" command, on a small folder and a budget of seconds instead of 15 minutes."""
    from test_own_folder import photo_tiles

    cmd = readme_commands("## Using it")[0]
    assert cmd[:3] == ["train", "--data", "path/to/images"] and "--minutes" in cmd
    photo_tiles(tmp_path / "images", tile=32, every=3)
    run = tmp_path / "mine"
    swap = {"path/to/images": str(tmp_path / "images"), "runs/mine": str(run), "15": "0.3"}
    args = [swap.get(a, a) for a in cmd]
    assert main([*args, "--set", "trackers=[]", "--no-progress"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert cfg["minutes"] == 0.3 and cfg["steps"] >= 10 and last["step"] <= cfg["steps"]
    assert (run / "checkpoints" / f"step-{last['step']:08d}").is_dir()
