"""A user's own folder out of the box (issue 17): defaults that draw recognisable samples, a time budget that
plans the run and stops on time, transparency composited onto a chosen background, a held-out split scored
while training. The folders are made here from images a package ships (scikit-learn's sample photographs cut
into tiles) and from RGBA icons drawn here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from noisecraft.cli.main import main
from noisecraft.data.config import DataConfig
from noisecraft.data.folder import FolderDataset, split_files
from noisecraft.training.config import TrainConfig


def photo_tiles(root, tile: int = 32, every: int = 1) -> int:
    """scikit-learn's two sample photographs cut into non-overlapping tile×tile PNGs."""
    from sklearn.datasets import load_sample_images

    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for k, img in enumerate(load_sample_images().images):
        for y in range(0, img.shape[0] - tile + 1, tile * every):
            for x in range(0, img.shape[1] - tile + 1, tile * every):
                Image.fromarray(np.ascontiguousarray(img[y : y + tile, x : x + tile])).save(root / f"p{k}-{y}-{x}.png")
                n += 1
    return n


def rgba_icons(root, n: int = 120, size: int = 32, seed: int = 0) -> None:
    """Icons on a transparent page: a shaded disc or rounded square of a muted colour with a dark outline."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        colour = tuple(int(v) for v in rng.integers(60, 200, 3))
        lo, hi = int(rng.integers(3, 8)), int(rng.integers(size - 8, size - 3))
        shape = d.ellipse if i % 2 else d.rectangle
        shape((lo, lo, hi, hi), fill=(*colour, 255), outline=(30, 30, 30, 255), width=2)
        d.ellipse((lo + 4, lo + 4, lo + 10, lo + 10), fill=(255, 255, 255, 160))  # a half-transparent highlight
        img.save(root / f"icon{i:03d}.png")


# ------------------------------------------------------------------------------------------------------------
# Transparency and the data summary line
@pytest.mark.parametrize(
    ("background", "rgb"),
    [
        ("white", (255, 255, 255)),
        ("black", (0, 0, 0)),
        ("#336699", (51, 102, 153)),
        ("10,200,30", (10, 200, 30)),
    ],
)
def test_transparent_pixels_are_composited_onto_the_chosen_background(tmp_path, background, rgb):
    root = tmp_path / "imgs"
    root.mkdir()
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((2, 2, 5, 5), fill=(200, 40, 40, 255))
    rgba.save(root / "a_rgba.png")
    rgba.convert("LA").save(root / "b_la.png")
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)
    ImageDraw.Draw(pal).rectangle((2, 2, 5, 5), fill=1)
    pal.save(root / "c_palette.png", transparency=0)  # index 0 transparent
    ds = FolderDataset(DataConfig(source=str(root), resolution=8, channels=3, background=background))
    want = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
    for i in range(3):
        x = ds[i]["x"]  # (3, 8, 8)
        assert torch.allclose(x[:, 0, 0], want, atol=1e-6), ds.describe(i)
        assert not torch.allclose(x[:, 3, 3], want, atol=0.05)  # the opaque square is kept
    assert torch.allclose(ds[0]["x"][:, 3, 3], torch.tensor([200, 40, 40]) / 127.5 - 1, atol=1e-6)
    summary = ds.summary()
    assert f"3 with transparency composited onto {background}" in summary


def test_the_data_line_states_compositing_and_resizing(tmp_path, capsys):
    root = tmp_path / "imgs"
    rgba_icons(root, n=6, size=16)
    Image.new("RGB", (24, 16), (10, 20, 30)).save(root / "wide.png")
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--resolution", "16", "--steps", "1", "--background", "black",
            "--set", "trackers=[]", "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("data: 7 items"))
    assert "6 with transparency composited onto black" in line
    assert "1 of 7 not 16x16 (e.g. 24x16 (1)): short side resized to 16 (lanczos), then center square crop" in line
    assert json.loads((run / "config.json").read_text())["data"]["background"] == "black"


@pytest.mark.parametrize("bad", ["blurple", "1,2", "300,0,0", ""])
def test_a_bad_background_is_a_one_line_error(bad, capsys):
    assert main(["train", "--data", "digits", "--background", bad, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "background" in err and "Traceback" not in err and err.count("\n") == 1


def test_the_held_out_part_is_disjoint_stable_and_about_the_fraction(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    files = []
    for i in range(400):
        files.append(root / f"f{i}.png")
    train = split_files(root, files, 0.1, "train")
    held = split_files(root, files, 0.1, "holdout")
    assert sorted(train + held) == sorted(files) and not set(train) & set(held)
    assert 20 <= len(held) <= 60  # 40 expected
    more = files + [root / f"g{i}.png" for i in range(100)]  # new files do not move old ones between parts
    assert set(held) <= set(split_files(root, more, 0.1, "holdout"))


# ------------------------------------------------------------------------------------------------------------
# Defaults: chosen from the data, printed, saved, overridable; the guide's setting one flag away
def test_defaults_are_edm_and_auto_choices_are_printed_and_saved(tmp_path, capsys):
    root = tmp_path / "tiles"
    photo_tiles(root, tile=16, every=2)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--resolution", "16", "--steps", "2", "--set", "trackers=[]",
                 "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"]["parameterisation"], cfg["model"]["schedule"]) == ("edm", "edm")
    assert cfg["model"]["preset"] == "nano" and "preset 'nano', chosen for" in out
    assert cfg["batch_size"] in (8, 16, 32, 64) and f"batch size {cfg['batch_size']}" in out
    assert cfg["optim"]["lr"] > 0 and cfg["optim"]["warmup_steps"] >= 1 and cfg["ema"]["half_life_images"] > 0
    assert cfg["data"]["holdout"] == 0.1 and cfg["eval_every"] == 1  # FD/KID at mid-run and at the end
    assert json.loads((run / "eval.jsonl").read_text().splitlines()[-1])["noise_floor"]["fd"] > 0


def test_the_guides_setting_is_one_flag_away_and_its_config_still_loads(capsys):
    assert main(["train", "--data", "digits", "--parameterisation", "eps", "--schedule", "linear", "--dry-run"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["model"]["parameterisation"], d["model"]["schedule"]) == ("eps", "linear")
    guide = TrainConfig.from_json_file("configs/guide-butterflies.json")
    assert (guide.model.parameterisation, guide.model.schedule, guide.model.preset) == ("eps", "linear", "guide-128")
    assert (guide.optim.lr, guide.ema.decay, guide.batch_size) == (1e-4, 0.9999, 16)


def test_the_auto_ema_half_life_is_at_least_one_image_on_a_tiny_run():
    from noisecraft.training.defaults import resolve_for_length

    cfg = TrainConfig.from_dict({"steps": 2, "batch_size": 2, "model": {"arch": "mlp", "resolution": 8}})
    assert resolve_for_length(cfg).ema.half_life_images >= 1  # round(0.08·2·2) = 0 was refused as not positive


def test_held_out_evaluation_is_on_for_a_folder_and_off_for_a_text_run_on_it(tmp_path):
    from noisecraft.training.defaults import resolve_for_length

    rgba_icons(tmp_path / "icons", n=4)
    d = {"steps": 100, "batch_size": 8, "data": {"source": str(tmp_path / "icons"), "resolution": 8, "holdout": 0.1}}
    assert resolve_for_length(TrainConfig.from_dict(d)).eval_every > 0
    # a text model's samples need prompts: unprompted samples scored against the held-out part would mislead
    assert resolve_for_length(TrainConfig.from_dict({**d, "text": {"encoder": "minilm"}})).eval_every == 0


def test_a_partial_model_section_keeps_the_training_defaults():
    cfg = TrainConfig.from_dict({"model": {"arch": "unet", "resolution": 16}})
    assert (cfg.model.parameterisation, cfg.model.schedule, cfg.model.preset) == ("edm", "edm", "auto")


# ------------------------------------------------------------------------------------------------------------
# A time budget
def _budget_cfg(root, out, **kw) -> TrainConfig:
    d = {"data": {"source": str(root), "resolution": 8, "channels": 3},
         "model": {"resolution": 8, "channels": 3}, "minutes": 0.5, "batch_size": 8, "log_every": 2,
         "checkpoint_every": 4, "keep_last": 20, "sample_every": 0, "eval_every": 0, "trackers": [],
         "out_dir": str(out), **kw}  # fmt: skip
    return TrainConfig.from_dict(d)


def test_a_time_budget_plans_the_steps_saves_them_and_resume_is_exact(tmp_path, monkeypatch):
    from noisecraft.training import loop
    from noisecraft.training.checkpoint import latest_checkpoint, load_tensors

    root = tmp_path / "tiles"
    photo_tiles(root, tile=8, every=4)
    planned, real_plan = {}, loop.plan_steps

    def plan(cfg, left, per_step, done, eval_images=None):  # the real planner, recorded; capped to stay small
        planned["real"] = real_plan(cfg, left, per_step, done, eval_images)
        return min(planned["real"], 16)

    monkeypatch.setattr(loop, "plan_steps", plan)
    loop.train(_budget_cfg(root, tmp_path / "a"), progress=False)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["minutes"] == 0.5 and saved["steps"] == min(planned["real"], 16) >= loop.CALIBRATION_STEPS
    assert saved["optim"]["warmup_steps"] is not None and saved["ema"]["half_life_images"] is not None
    log = [json.loads(ln) for ln in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in log}
    steps = saved["steps"]
    from noisecraft.training.setup import lr_at

    plan_cfg = TrainConfig.from_dict(saved)
    assert lrs[steps] == pytest.approx(lr_at(steps - 1, plan_cfg.optim, steps))  # the schedule ends on the plan
    # resume from the checkpoint at step 12 (after the plan): same final weights, bit for bit
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for c in (tmp_path / "b" / "checkpoints").iterdir():
        if int(c.name.split("-")[1]) > 12:
            shutil.rmtree(c)
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--no-progress"]) == 0
    a, b = latest_checkpoint(tmp_path / "a"), latest_checkpoint(tmp_path / "b")
    assert a.name == b.name == f"step-{steps:08d}"
    for name in ("model.safetensors", "ema.safetensors"):
        ta, tb = load_tensors(a / name), load_tensors(b / name)
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_a_time_budget_stops_at_the_first_log_step_past_it(tmp_path, monkeypatch):
    from noisecraft.training import loop

    root = tmp_path / "tiles"
    photo_tiles(root, tile=8, every=4)
    monkeypatch.setattr(loop, "plan_steps", lambda *a, **k: 10**9)  # a plan far too long: the clock must stop it
    ticks = iter(range(10**6))
    monkeypatch.setattr(loop, "clock", lambda: 0.25 * next(ticks))  # a fake clock: 0.25 s a reading, no waiting
    loop.train(_budget_cfg(root, tmp_path / "run", minutes=0.05), progress=False)  # a 3-second budget
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    budget = 0.05 * 60
    read = [r["elapsed_s"] for r in log]  # the fake clock's readings, as the loop logged them
    assert log[-1].get("budget_stop") and read[-1] >= budget
    assert all(t < budget for t, r in zip(read[:-1], log[:-1], strict=True) if r["step"] > loop.CALIBRATION_STEPS)
    assert log[-1]["step"] - log[-2]["step"] == 2  # one logging interval past the last check under budget
    assert (tmp_path / "run" / "checkpoints" / f"step-{log[-1]['step']:08d}").is_dir()


def test_minutes_and_steps_together_are_refused(capsys):
    assert main(["train", "--data", "digits", "--minutes", "1", "--steps", "5", "--dry-run"]) == 2
    assert "either --steps or --minutes" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# Quality with defaults: real photo tiles and RGBA icons, against fixed bad baselines
def _baselines(n: int, shape, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    prim = torch.tensor(
        [[1, -1, -1], [-1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, -1, 1], [-1, 1, -1]], dtype=torch.float32
    )
    flat = prim[torch.arange(n) % len(prim), :c, None, None].expand(n, c, h, w).clone()  # saturated flat tiles
    noise = torch.where(torch.rand(n, c, h, w, generator=g) < 0.5, -1.0, 1.0)  # salt and pepper
    return {"saturated flat tiles": flat, "salt-and-pepper noise": noise}


@pytest.mark.parametrize("kind", ["photo tiles", "rgba icons"])
def test_defaults_draw_samples_that_beat_bad_baselines(tmp_path, kind):
    from noisecraft.sampling.generate import generate
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.heldout import HeldoutEval, tile_defects

    root = tmp_path / "data"
    if kind == "photo tiles":
        photo_tiles(root, tile=16, every=3)  # about 250 tiles: the held-out part is ~25
    else:
        rgba_icons(root, n=320, size=16)
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--resolution", "16", "--steps", "300", "--set", "eval_every=0",
            "--set", "sample_every=0", "--set", "trackers=[]", "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    denoiser, schedule, cfg = load_run(run)
    x = generate(denoiser, schedule, (3, 16, 16), list(range(64)), sampler="euler", steps=40)
    ev = HeldoutEval(cfg)
    train = FolderDataset(cfg.data, split="train")
    real = torch.stack([train[i]["x"] for i in range(min(len(train), 256))])
    ours, fd = tile_defects(x, real), ev.score(x)["scores"]["fd"]
    assert ours["flat"] == ours["saturated"] == 0 and ours["bad"] <= 0.25, ours  # the failure: none of it
    for name, bad in _baselines(64, (3, 16, 16)).items():
        assert tile_defects(bad, real)["bad"] == 1.0, name  # the statistic sees the failure ...
        assert fd < 0.5 * ev.score(bad)["scores"]["fd"], name  # ... and so does FD against the held-out part
