"""A careless or hostile user: every CLI verb over bad input gives exit 2 and ONE line that says what to fix,
never a traceback, and never loses or overwrites anything already saved.

The table CASES is the whole test: (verb, a setup that damages a copy of a real run or writes a bad file,
the command line, a phrase the one-line message must contain). A new verb joins by adding rows;
``test_every_verb_is_in_the_table`` fails until it has at least one.

Read-only folders: the suite runs as root, for whom permission bits do not stop a write, so "read-only" is
simulated two ways that hold for root too: an output path whose parent is a FILE (the OS refuses to create a
folder there), and ``os.access`` reporting the folder unwritable (what it reports to an ordinary user for a
chmod 555 folder, or to anyone on a read-only mount). And one real one: /proc, where os.access tells root
"writable" but no file can be created (the check tries to create one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisecraft.cli.main import COMMANDS, main

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
HUGE = "99999999999999999999"
UNWRITABLE = "/proc/noisecraft-out"  # Linux: no file can be created in /proc, whoever asks


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished runs with two checkpoints each: a 2-D toy (MLP) and 8 px digits (MLP), and a diffusers-like
    folder. Cases work on copies."""
    root = tmp_path_factory.mktemp("runs")
    every = ["--set", "checkpoint_every=3", "--set", "keep_last=2"]
    toy, img = root / "toy", root / "img"
    assert (
        main(["train", "--data", "toy:moons", "--steps", "6", "--batch-size", "16", "--out", str(toy), *QUIET, *every])
        == 0
    )
    argv = ["train", "--data", "digits", "--resolution", "8", "--arch", "mlp", "--steps", "6", "--batch-size", "16"]
    assert main([*argv, "--out", str(img), *QUIET, *every]) == 0
    return {"toy": toy, "img": img}


@dataclass
class Ctx:
    tmp: Path
    toy: Path
    img: Path
    monkeypatch: pytest.MonkeyPatch
    extra: dict = field(default_factory=dict)

    def ckpts(self, run: Path) -> list[Path]:
        return sorted((run / "checkpoints").glob("step-*"))


# -- ways to damage things ---------------------------------------------------------------------------------
def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def to_pickle(path: Path) -> None:
    """Replace a safetensors file by a pickle file of the same stem (as a careless conversion would)."""
    import torch

    torch.save({"w": torch.zeros(1)}, path.with_suffix(".bin"))
    path.unlink()


def read_only(ctx: Ctx, folder: Path) -> None:
    """os.access says `folder` (and everything in it) cannot be written."""
    real = os.access
    top = str(folder.resolve())

    def access(path, mode, *a, **k):
        inside = str(Path(path).resolve()).startswith(top)
        return False if inside and mode & os.W_OK else real(path, mode, *a, **k)

    ctx.monkeypatch.setattr(os, "access", access)


def bomb_png(path: Path, side: int) -> Path:
    """A valid tiny PNG file whose header declares side x side pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def sr_run(ctx: Ctx) -> Path:
    """A 2-step upsampler from 4x4 to 8x8 digits."""
    out = ctx.tmp / "sr"
    argv = ["train", "--data", "digits", "--resolution", "8", "--upsample-from", "4", "--steps", "2", "--batch-size",
            "4", "--model-preset", "nano", "--set", 'model.net_kwargs={"block_out_channels": [8, 8], '
            '"down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"], '
            '"norm_num_groups": 4}', "--out", str(out), *QUIET]  # fmt: skip
    assert main(argv) == 0
    return out


def small_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
    return path


def pickle_diffusers(ctx: Ctx) -> Path:
    folder = ctx.tmp / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler"}))
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle
    return folder


def samples_dir(ctx: Ctx, bad: str) -> Path:
    """A --samples-dir holding only odd files (readable ones beside them are scored, the odd ones counted)."""
    d = ctx.tmp / "samples"
    d.mkdir()
    if bad == "corrupt":
        (d / "s9.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif bad == "bomb":
        bomb_png(d / "s9.png", 30000)
    elif bad == "folder":
        (d / "s9.png").mkdir()
        (d / "zz.png").write_bytes(b"")
    return d


def sd_without_vae(ctx: Ctx) -> Path:
    """A Stable-Diffusion folder whose vae/ was not copied (configs only: the check comes before any weights)."""
    folder = ctx.tmp / "sd"
    for part in ("unet", "text_encoder", "tokenizer", "scheduler"):
        (folder / part).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    return folder


def captioned_folder(ctx: Ctx, missing: str = "2.txt") -> Path:
    """Four captioned images (a .txt beside each) with one caption file missing, and a tiny CLIP encoder."""
    from tiny_models import make_tiny_clip

    folder = ctx.tmp / "captioned"
    folder.mkdir()
    for i in range(4):
        small_png(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a picture number {i}")
    (folder / missing).unlink()
    ctx.extra["clip"] = make_tiny_clip(ctx.tmp / "clip")
    return folder


def caption_argv(ctx: Ctx) -> list[str]:
    folder = captioned_folder(ctx)
    return ["train", "--data", str(folder), "--text", f"clip:{ctx.extra['clip']}", "--resolution", "8", "--steps", "1"]


@dataclass
class Case:
    verb: str
    argv: Callable[[Ctx], list[str]]
    expect: str
    setup: Callable[[Ctx], None] = lambda ctx: None
    id: str = ""


def _file(ctx: Ctx) -> Path:
    f = ctx.tmp / "a_file.txt"
    f.write_text("precious\n")
    return f


def unclip_pair(ctx: Ctx) -> None:
    """A tiny unCLIP run built on an 8-d CLIP, and another CLIP of 16-d embeddings (ctx.extra)."""
    from tiny_models import make_small_clip, make_tiny_clip, make_tiny_unclip

    text = make_tiny_clip(ctx.tmp / "text")
    clip8 = make_small_clip(ctx.tmp / "clip8", text, embed_dim=8)
    ctx.extra["clip16"] = make_small_clip(ctx.tmp / "clip16", text, embed_dim=16)
    ctx.extra["unclip"] = make_tiny_unclip(ctx.tmp / "unclip", clip8, embed_dim=8)


CASES: list[Case] = [
    # ---- train
    Case(
        "train",
        lambda c: ["train", "--out", str(c.tmp / "empty"), "--resume"],
        "nothing to resume",
        id="resume-nothing",
    ),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.tmp / "e"), "--resume", "--data", "toy:moons"],
        "nothing to resume",
        lambda c: (c.tmp / "e" / "checkpoints").mkdir(parents=True),
        id="resume-empty-folder",
    ),
    Case(
        "train",
        lambda c: ["train", "--data", "toy:moons", "--out", str(_file(c))],
        "is an existing file",
        id="out-file",
    ),
    Case(
        "train",
        lambda c: ["train", "--data", "toy:moons", "--out", str(_file(c) / "run")],
        "is a file, not a folder",
        id="out-under-file",
    ),
    Case(
        "train", lambda c: ["train", "--data", "toy:moons", "--steps", HUGE], "at most 1,000,000,000", id="steps-huge"
    ),
    Case("train", lambda c: ["train", "--set", f"steps={HUGE}", "--dry-run"], "at most 1,000,000,000", id="set-huge"),
    Case("train", lambda c: ["train", "--steps", "0", "--dry-run"], "must be a positive integer", id="steps-0"),
    Case("train", lambda c: ["train", "--lr", "nan", "--dry-run"], "must be a positive number", id="lr-nan"),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.toy), "--resume", "--steps", "9"],
        "model.safetensors is truncated",
        lambda c: [truncate(p / "model.safetensors") for p in c.ckpts(c.toy)],
        id="resume-all-truncated",
    ),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.toy), "--resume", "--steps", "9"],
        "pickle",
        lambda c: [to_pickle(p / "optimizer.safetensors") for p in c.ckpts(c.toy)],
        id="resume-pickle",
    ),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.toy), "--resume", "--steps", "9"],
        "ema.safetensors is missing",
        lambda c: [(p / "ema.safetensors").unlink() for p in c.ckpts(c.toy)],
        id="resume-missing",
    ),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.tmp / "early"), "--resume"],
        "not valid JSON",
        lambda c: ((c.tmp / "early").mkdir(), (c.tmp / "early" / "config.json").write_text('{"steps": 1')),
        id="resume-truncated-config",
    ),
    Case(
        "train",
        lambda c: ["train", "--out", str(c.toy), "--resume", "--steps", "9"],
        "not writable",
        lambda c: read_only(c, c.toy),
        id="resume-read-only",
    ),
    Case(
        "train",
        lambda c: ["train", "--data", "toy:moons", "--out", str(c.tmp / "ro" / "run")],
        "not writable",
        lambda c: ((c.tmp / "ro").mkdir(), read_only(c, c.tmp / "ro")),
        id="read-only",
    ),
    # ---- sample
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2"],
        "ema.safetensors is truncated",
        lambda c: truncate(c.ckpts(c.img)[-1] / "ema.safetensors"),
        id="truncated-ema",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2"],
        "pickle",
        lambda c: to_pickle(c.ckpts(c.img)[-1] / "ema.safetensors"),
        id="pickle-ema",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.ckpts(c.img)[-1]), "--num", "2"],
        "ema.safetensors is missing",
        lambda c: (c.ckpts(c.img)[-1] / "ema.safetensors").unlink(),
        id="missing-ema-checkpoint-folder",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2"],
        "config.json is not valid JSON",
        lambda c: truncate(c.ckpts(c.img)[-1] / "config.json"),
        id="truncated-config",
    ),
    Case("sample", lambda c: ["sample", str(c.img), "--out", str(_file(c))], "is an existing file", id="out-file"),
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2"],
        "not writable",
        lambda c: read_only(c, c.img),
        id="read-only-run",
    ),
    Case("sample", lambda c: ["sample", str(c.img), "--num", "1000000000"], "lower --num", id="num-huge"),
    Case("sample", lambda c: ["sample", str(c.img), "--steps", HUGE], "at most 1,000,000,000", id="steps-huge"),
    Case("sample", lambda c: ["sample", str(c.img), "--seed", "-1"], "must be an integer in [0", id="seed-negative"),
    Case(
        "sample",
        lambda c: ["sample", str(c.extra["pipe"]), "--num", "1"],
        "pickle weights",
        lambda c: c.extra.update(pipe=pickle_diffusers(c)),
        id="diffusers-pickle-only",
    ),
    # ---- export
    Case("export", lambda c: ["export", str(c.img), str(_file(c))], "is an existing file", id="out-file"),
    Case(
        "export",
        lambda c: ["export", str(c.img), str(c.tmp / "full")],
        "already holds other files",
        lambda c: ((c.tmp / "full").mkdir(), (c.tmp / "full" / "notes.txt").write_text("mine")),
        id="out-not-empty",
    ),
    Case(
        "export",
        lambda c: ["export", str(c.img), str(c.tmp / "exp")],
        "ema.safetensors is truncated",
        lambda c: [truncate(p / "ema.safetensors") for p in c.ckpts(c.img)],
        id="truncated-ema",
    ),
    # ---- edit
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(bomb_png(c.tmp / "bomb.png", 30000))],
        "too large",
        id="bomb-image",
    ),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(bomb_png(c.tmp / "bomb.png", 9000))],
        "too large",
        id="bomb-image-below-pillow-limit",
    ),
    Case(
        "edit",
        lambda c: [
            "edit",
            "inpaint",
            str(c.img),
            str(small_png(c.tmp / "a.png")),
            "--mask",
            str(bomb_png(c.tmp / "m.png", 30000)),
        ],
        "too large",
        id="bomb-mask",
    ),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(small_png(c.tmp / "a.png")), "--out", str(_file(c))],
        "is an existing file",
        id="out-file",
    ),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(small_png(c.tmp / "a.png"))],
        "not writable",
        lambda c: read_only(c, c.img),
        id="read-only-run",
    ),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(small_png(c.tmp / "a.png"))],
        "pickle",
        lambda c: to_pickle(c.ckpts(c.img)[-1] / "ema.safetensors"),
        id="pickle-ema",
    ),
    Case("edit", lambda c: ["edit", "invert", str(c.img), "x.png", "--steps", HUGE], "at most", id="steps-huge"),
    # ---- show
    Case(
        "show", lambda c: ["show", "schedules", "--out", str(c.tmp / "x.txt")], "unsupported file type", id="bad-format"
    ),
    Case("show", lambda c: ["show", "schedules", "--out", str(_file(c) / "x.png")], "is a file", id="out-under-file"),
    Case(
        "show",
        lambda c: ["show", "schedules", "--out", str(c.tmp / "d.png")],
        "is an existing folder",
        lambda c: (c.tmp / "d.png").mkdir(),
        id="out-is-folder",
    ),
    Case("show", lambda c: ["show", "schedules", "--num", "-3"], "must be a positive integer", id="num-negative"),
    # ---- eval
    Case(
        "eval",
        lambda c: ["eval", "--samples-dir", str(samples_dir(c, "corrupt")), "--dataset", "digits", "--num", "8"],
        "could be read",
        id="samples-corrupt",
    ),
    Case(
        "eval",
        lambda c: ["eval", "--samples-dir", str(samples_dir(c, "bomb")), "--dataset", "digits", "--num", "8"],
        "could be read",
        id="samples-bomb",
    ),
    Case(
        "eval",
        lambda c: ["eval", "--samples-dir", str(samples_dir(c, "folder")), "--dataset", "digits", "--num", "8"],
        "could be read",
        id="samples-odd-files",
    ),
    Case(
        "eval",
        lambda c: ["eval", str(c.img), "--num", "8"],
        "ema.safetensors is missing",
        lambda c: [(p / "ema.safetensors").unlink() for p in c.ckpts(c.img)],
        id="missing-ema",
    ),
    Case(
        "eval", lambda c: ["eval", str(c.img), "--out", str(c.tmp / "r.txt")], "unsupported file type", id="out-format"
    ),
    # ---- text and latents (issue 13)
    Case("train", lambda c: ["train", "--data", "digits", "--text", "bert"], "--text must be minilm", id="text-enc"),
    Case(
        "train",
        lambda c: ["train", "--data", "digits", "--set", "text.encoder=t5", "--out", str(c.tmp / "t")],
        "text.encoder",
        id="text-encoder-set",
    ),
    Case(
        "train",
        lambda c: ["train", "--data", "digits", "--latent", str(c.tmp / "no-vae"), "--out", str(c.tmp / "t")],
        "is not an autoencoder",
        id="latent-missing-vae",
    ),
    Case(
        "train",
        lambda c: [*caption_argv(c), "--out", str(c.tmp / "t"), *QUIET],
        "has no caption",
        id="caption-missing",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(sd_without_vae(c)), "--prompt", "a red bag", "--out", str(c.tmp / "g")],
        "has no vae/ folder",
        id="sd-missing-vae",
    ),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(small_png(c.tmp / "in.png")), "--prompt", "a red bag"],
        "need a text-conditioned run",
        id="prompt-without-text",
    ),
    Case(
        "eval",
        lambda c: ["eval", str(c.img), "--num", "8", "--prompt", "a red bag", "--no-floor"],
        "--prompt needs a text-conditioned run",
        id="prompt-without-text",
    ),
    # ---- an output folder that really cannot be written, even by root: /proc (permission bits do not stop root,
    # and os.access says yes to it there; the up-front check tries to create a file)
    Case("train", lambda c: ["train", "--data", "toy:moons", "--out", UNWRITABLE], "not writable", id="proc-out"),
    Case("sample", lambda c: ["sample", str(c.img), "--num", "2", "--out", UNWRITABLE], "not writable", id="proc-out"),
    Case(
        "edit",
        lambda c: ["edit", "img2img", str(c.img), str(small_png(c.tmp / "a.png")), "--out", UNWRITABLE],
        "not writable",
        id="proc-out",
    ),
    Case("export", lambda c: ["export", str(c.img), UNWRITABLE], "not writable", id="proc-out"),
    Case("eval", lambda c: ["eval", str(c.img), "--out", UNWRITABLE + ".json"], "not writable", id="proc-out"),
    Case("show", lambda c: ["show", "schedules", "--out", UNWRITABLE + ".png"], "not writable", id="proc-out"),
    Case(
        "train-classifier",
        lambda c: ["train-classifier", "--data", "digits", "--out", UNWRITABLE],
        "not writable",
        id="proc-out",
    ),
    Case("train-vae", lambda c: ["train-vae", "--out", UNWRITABLE], "not writable", id="proc-out"),
    Case(
        "train-classifier",
        lambda c: ["train-classifier", "--data", "digits", "--out", str(_file(c))],
        "is an existing file",
        id="out-file",
    ),
    Case(
        "train-vae", lambda c: ["train-vae", "--out", str(c.tmp / "none"), "--resume"], "nothing to resume", id="resume"
    ),
    Case(
        "train-classifier",
        lambda c: ["train-classifier", "--out", str(c.tmp / "none"), "--resume"],
        "nothing to resume",
        id="resume",
    ),
    # ---- upscale (a cascade's upsampler)
    Case(
        "upscale",
        lambda c: ["upscale", str(c.extra["sr"]), str(small_png(c.tmp / "a.png"))],  # 8x8 for a 4 → 8 upsampler
        "the upsampler takes 4x4 images",
        lambda c: c.extra.update(sr=sr_run(c)),
        id="wrong-size",
    ),
    Case(
        "upscale",
        lambda c: ["upscale", str(c.img), str(small_png(c.tmp / "a.png"))],
        "not a super-resolution run",
        id="not-sr",
    ),
    Case(
        "upscale",
        lambda c: ["upscale", str(c.extra["sr"]), str(bomb_png(c.tmp / "bomb.png", 30000))],
        "too large",
        lambda c: c.extra.update(sr=sr_run(c)),
        id="bomb",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2", "--upscale", str(c.extra["sr"])],
        "takes 1x4x4 images",
        lambda c: c.extra.update(sr=sr_run(c)),
        id="upscale-wrong-size",
    ),
    # ---- the other verbs: the shared argument types
    Case("sweep", lambda c: ["sweep", str(c.img), "--steps", HUGE], "at most 1,000,000,000", id="steps-huge"),
    Case("train-classifier", lambda c: ["train-classifier", "--out", "x", "--steps", "0"], "positive", id="steps-0"),
    Case("train-vae", lambda c: ["train-vae", "--out", "x", "--steps", "0"], "positive", id="steps-0"),
    Case("train-vae", lambda c: ["train-vae", "--out", "x", "--minutes", "-1"], "positive", id="minutes-negative"),
    Case("train-vae", lambda c: ["train-vae", "--out", "x", "--preset", "huge"], "tiny-f4", id="preset"),
    Case("train-vae", lambda c: ["train-vae", "--out", "x", "--set", "nope=1"], "--set expects", id="set-key"),
    Case("demo", lambda c: ["demo", "--iterations", "-5"], "must be a positive integer", id="iterations"),
    Case("samplers", lambda c: ["samplers", "--calibration", "lots"], "expected an integer", id="calibration-word"),
    Case("samplers", lambda c: ["samplers", "--pool", "0"], "must be a positive integer", id="pool-0"),
    Case("ui", lambda c: ["ui", "--port", "70000"], "--port must be in [0, 65535]", id="port"),
    # ---- CLIP and unCLIP (docs/unclip.md)
    Case(
        "train-clip", lambda c: ["train-clip", "--data", "scenes", "--out", "x", "--channels", "2"], "1 or 3", id="ch"
    ),
    Case("train-clip", lambda c: ["train-clip", "--data", "digits", "--out", "x"], "captions", id="no-captions"),
    Case(
        "train-unclip",
        lambda c: ["train-unclip", "--clip", str(c.tmp / "nope"), "--data", "scenes", "--out", "x"],
        "holds no CLIP",
        id="no-clip",
    ),
    Case(
        "edit",
        lambda c: [
            "edit",
            "variations",
            str(c.extra["unclip"]),
            str(small_png(c.tmp / "s.png")),
            "--clip",
            str(c.extra["clip16"]),
        ],
        "gives 16-d embeddings but the unCLIP decoder was trained on 8-d",
        unclip_pair,
        id="variations-clip-width",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.extra["unclip"]), "--num", "2"],
        "is an unCLIP run: pass --prompt",
        unclip_pair,
        id="unclip-no-prompt",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.extra["unclip"]), "--prompt", "a red bag", "--class", "3"],
        "is an unCLIP run, which does not take --class;",
        unclip_pair,
        id="unclip-class",
    ),
    Case(
        "sample",
        lambda c: ["sample", str(c.img), "--num", "2", "--clip-guide", str(c.img)],
        "--clip-guide steers towards a prompt",
        id="clip-guide-no-prompt",
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_every_verb_is_in_the_table():
    assert set(COMMANDS) <= {c.verb for c in CASES}, (
        f"add bad-input cases for {set(COMMANDS) - {c.verb for c in CASES}}"
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{c.verb}-{c.id}" for c in CASES])
def test_bad_input_gives_one_line_and_loses_nothing(case: Case, runs, tmp_path, monkeypatch, capsys):
    toy, img = tmp_path / "toy", tmp_path / "img"
    shutil.copytree(runs["toy"], toy)
    shutil.copytree(runs["img"], img)
    monkeypatch.chdir(tmp_path)  # default outputs (pictures/, generated/) land in the case's folder
    ctx = Ctx(tmp_path, toy, img, monkeypatch)
    case.setup(ctx)
    argv = case.argv(ctx)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    monkeypatch.undo()
    assert code == 2, f"exit {code}; stderr: {err[-1500:]}"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"noisecraft {case.verb}") and ": error: " in lines[0], lines[0]
    assert case.expect in lines[0], lines[0]
    after = _snapshot(tmp_path)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"a refused command changed or removed saved files: {changed}"
