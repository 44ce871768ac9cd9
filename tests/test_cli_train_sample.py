"""`noisecraft train` / `noisecraft sample`: dry-run, one-line errors, PNG output, batch-size invariance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from noisecraft.cli.main import main

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]


def test_dry_run_prints_the_resolved_config(capsys):
    assert (
        main(["train", "--data", "toy:moons", "--steps", "12", "--lr", "0.01", "--set", "ema.decay=0.5", "--dry-run"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert d["steps"] == 12 and d["optim"]["lr"] == 0.01 and d["ema"]["decay"] == 0.5
    assert d["data"]["source"] == "toy:moons" and d["model"]["arch"] == "mlp"  # toys get the flat MLP


def test_config_file_then_flags_then_set(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"steps": 5, "batch_size": 32, "optim": {"lr": 0.1}}))
    assert main(["train", "--config", str(cfg), "--steps", "6", "--set", "steps=7", "--dry-run"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["steps"], d["batch_size"], d["optim"]["lr"]) == (7, 32, 0.1)


def test_a_folder_of_colour_images_trains_in_rgb_unless_told_otherwise(tmp_path, capsys):
    rng = np.random.default_rng(0)
    colour, gray = tmp_path / "colour", tmp_path / "gray"
    for folder, shape in ((colour, (8, 8, 3)), (gray, (8, 8))):
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")

    def channels(*argv: str) -> tuple[int, int, str]:
        assert main(["train", *argv, "--dry-run"]) == 0
        out = capsys.readouterr()
        d = json.loads(out.out)
        return d["data"]["channels"], d["model"]["channels"], out.err

    data_ch, model_ch, err = channels("--data", str(colour))
    assert (data_ch, model_ch) == (3, 3) and "training in RGB" in err
    assert channels("--data", str(gray))[:2] == (1, 1)
    assert channels("--data", str(colour), "--channels", "1")[:2] == (1, 1)
    assert channels("--data", str(colour), "--set", "data.channels=1", "--set", "model.channels=1")[:2] == (1, 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--set", "optim.nope=1", "--dry-run"],
        ["train", "--steps", "-1", "--dry-run"],
        ["train", "--data", "toy:nope", "--dry-run"],
        ["train", "--config", "/does/not/exist.json"],
        ["train", "--data", "toy:moons", "--arch", "unet", "--steps", "1"],  # shape mismatch, before training
        ["sample", "/does/not/exist"],
    ],
)
def test_bad_arguments_give_exit_2_and_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"noisecraft {argv[0]}: error:")


def test_bad_arguments_in_a_real_process_print_no_traceback():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "noisecraft.cli.main", "train", "--set", "loss.weighting=bogus", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "loss.weighting" in r.stderr


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    assert main(["train", "--data", "toy:moons", "--steps", "30", "--batch-size", "64", "--out", str(out), *QUIET]) == 0
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "run"
    argv = [
        "train",
        "--data",
        "digits",
        "--resolution",
        "8",
        "--arch",
        "mlp",
        "--steps",
        "5",
        "--batch-size",
        "32",
        "--out",
        str(out),
        *QUIET,
    ]
    assert main(argv) == 0
    return out


def test_sample_toy_writes_points_and_is_batch_size_invariant(toy_run, tmp_path):
    for bs in (3, 8):
        assert (
            main(
                [
                    "sample",
                    str(toy_run),
                    "--num",
                    "8",
                    "--steps",
                    "8",
                    "--batch-size",
                    str(bs),
                    "--out",
                    str(tmp_path / f"b{bs}"),
                ]
            )
            == 0
        )
    a, b = np.load(tmp_path / "b3" / "samples.npy"), np.load(tmp_path / "b8" / "samples.npy")
    assert a.shape == (8, 2) and (tmp_path / "b3" / "samples.png").stat().st_size > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # same noise; matmul blocking may differ
    assert np.abs(a[0] - a[1]).max() > 1e-3  # different seeds, different samples
    assert (
        main(["sample", str(toy_run), "--num", "2", "--steps", "8", "--seed", "1", "--out", str(tmp_path / "s1")]) == 0
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "s1" / "samples.npy")[0], a[1], rtol=1e-4, atol=1e-4
    )  # sample i = seed i


def test_sample_images_writes_one_png_per_seed_and_a_grid(image_run, tmp_path):
    assert (
        main(
            [
                "sample",
                str(image_run),
                "--num",
                "5",
                "--steps",
                "4",
                "--seed",
                "10",
                "--sampler",
                "ddpm",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    names = sorted(p.name for p in tmp_path.glob("seed*.png"))
    assert names == [f"seed{s:06d}.png" for s in range(10, 15)]
    assert Image.open(tmp_path / names[0]).size == (8, 8)
    assert Image.open(tmp_path / "grid.png").size[0] > 8 * 3
    assert main(["sample", str(image_run), "--sampler", "nope"]) == 2
    assert main(["sample", str(image_run), "--class", "3"]) == 2  # unconditional model


def test_clip_x0_clamps_every_denoised_estimate_and_refuses_runs_without_a_pixel_range(image_run, toy_run, tmp_path):
    def pixels(*extra: str) -> np.ndarray:
        out = tmp_path / "-".join(extra or ("plain",))
        argv = ["sample", str(image_run), "--num", "4", "--steps", "6", "--sampler", "euler", "--out", str(out)]
        assert main([*argv, *extra]) == 0
        return np.stack([np.asarray(Image.open(out / f"seed{s:06d}.png"), dtype=np.int16) for s in range(4)])

    plain, tight = pixels(), pixels("--clip-x0", "0.05")
    # euler's last step returns x̂0 itself: every x̂0 in [-0.05, 0.05] puts the pixels within 0.05·127.5 of grey
    assert np.abs(tight - 127.5).max() <= 7 < np.abs(plain - 127.5).max()
    assert np.array_equal(pixels("--clip-x0"), pixels("--clip-x0", "1"))  # R defaults to the pixel range
    assert main(["sample", str(toy_run), "--clip-x0", "--out", str(tmp_path / "toy")]) == 2  # vectors: no range


def test_eval_clip_x0_scores_what_sample_clip_x0_saves(image_run, tmp_path):
    common = ["--num", "24", "--steps", "6", "--sampler", "euler", "--seed", "5"]
    assert main(["sample", str(image_run), *common, "--clip-x0", "0.3", "--out", str(tmp_path / "pngs")]) == 0

    def fd(*argv: str) -> float:
        out = tmp_path / f"e{len(list(tmp_path.glob('e*.json')))}.json"
        assert main(["eval", *argv, "--no-floor", "--dataset", "digits", "--out", str(out)]) == 0
        return json.loads(out.read_text())["scores"]["fd"]

    saved = fd("--samples-dir", str(tmp_path / "pngs"), "--num", "24")
    clipped = fd(str(image_run), *common, "--clip-x0", "0.3")
    assert clipped == pytest.approx(saved, rel=1e-9)  # the same 8-bit images scored
    assert fd(str(image_run), *common) != pytest.approx(saved, rel=1e-3)  # unclipped samples score otherwise
    assert json.loads((tmp_path / "e1.json").read_text())["protocol"]["extra"]["clip_x0"] == 0.3
    assert main(["eval", "--samples-dir", str(tmp_path / "pngs"), "--dataset", "digits", "--clip-x0"]) == 2


def test_an_eps_pixel_model_is_clamped_by_default_and_an_edm_one_is_not(image_run, tmp_path, capsys):
    """`sample` (and `eval`, which scores what sample saves) clamp x̂0 to the pixel range by default for an
    ε-prediction pixel model only; --no-clip-x0 turns it off."""
    eps_run = tmp_path / "eps"
    argv = ["train", "--data", "digits", "--resolution", "8", "--arch", "mlp", "--steps", "5", "--batch-size", "32"]
    argv += ["--parameterisation", "eps", "--schedule", "linear", "--no-progress", "--set", "trackers=[]"]
    assert main([*argv, "--set", "sample_every=0", "--out", str(eps_run)]) == 0

    def pixels(run, *extra: str) -> np.ndarray:
        out = tmp_path / f"{run.name}-{'-'.join(extra) or 'default'}"
        assert main(["sample", str(run), "--num", "4", "--steps", "6", "--out", str(out), *extra]) == 0
        return np.stack([np.asarray(Image.open(out / f"seed{s:06d}.png"), dtype=np.int16) for s in range(4)])

    capsys.readouterr()
    default = pixels(eps_run)
    assert "auto: each x̂0 clamped to [-1, 1]" in capsys.readouterr().err
    assert np.array_equal(default, pixels(eps_run, "--clip-x0"))
    assert not np.array_equal(default, pixels(eps_run, "--no-clip-x0"))  # a 5-step ε-model overshoots
    assert np.array_equal(pixels(image_run), pixels(image_run, "--no-clip-x0"))  # EDM: unchanged
    assert "auto: each" not in capsys.readouterr().err
    argv = ["eval", str(eps_run), "--num", "8", "--steps", "3", "--no-floor", "--out", str(tmp_path / "e.json")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "e.json").read_text())["protocol"]["extra"]["clip_x0"] == 1
    assert main(["sample", str(eps_run), "--clip-x0", "--no-clip-x0", "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
