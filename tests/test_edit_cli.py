"""`noisecraft edit` end to end on a tiny, untrained, locally built run (no training, no hub)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from noisecraft.data.config import DataConfig
    from noisecraft.models.factory import ModelConfig
    from noisecraft.training.checkpoint import save_tensors
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.setup import build_model

    torch.manual_seed(0)
    cfg = TrainConfig(
        data=DataConfig(source="digits", resolution=8, channels=1, labels=True),
        model=ModelConfig(arch="mlp", preset="tiny", resolution=8, channels=1, num_classes=10, schedule="edm"),
        label_dropout=0.1,
        trackers=[],
    )
    denoiser, _ = build_model(cfg)
    ckpt = tmp_path_factory.mktemp("run") / "checkpoints" / "step-00000001"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(cfg.to_json())
    (ckpt / "state.json").write_text("{}")
    save_tensors({k: v.contiguous() for k, v in denoiser.state_dict().items()}, ckpt / "ema.safetensors")
    return ckpt.parent.parent


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    d = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8), "L").save(d / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 20, 3)).astype(np.uint8), "RGB").save(d / "b.png")
    return d


def test_every_mode_writes_its_outputs_and_a_comparison(run_dir, pictures, capsys):
    a, b = str(pictures / "a.png"), str(pictures / "b.png")
    cases = {
        "img2img": ["img2img", a, b, "--strength", "0.5", "--num", "2", "--class", "3", "--guidance", "2"],
        "inpaint": ["inpaint", a, "--rect", "0,0,8,4", "--method", "repaint", "--jump", "2", "--resample", "2"],
        "invert": ["invert", a, "--iters", "1"],
        "interpolate": ["interpolate", a, b, "--frames", "3"],
        "swap": ["swap", b, "--source", "1", "--target", "7"],
    }
    for mode, argv in cases.items():
        out = run_dir / "out" / mode
        assert main(["edit", argv[0], str(run_dir), *argv[1:], "--steps", "4", "--out", str(out)]) == 0
        assert (out / "comparison.png").is_file()
        assert len(list(out.glob("*.png"))) >= 2
    text = capsys.readouterr().out
    assert "b.png: 20x30 RGB -> 8x8 L" in text and "PSNR" in text


def test_inpaint_cli_keeps_unmasked_pixels_of_the_png(run_dir, pictures):
    out = run_dir / "keep"
    argv = ["edit", "inpaint", str(run_dir), str(pictures / "a.png"), "--rect", "2,2,6,6", "--num", "1"]
    assert main([*argv, "--steps", "4", "--out", str(out)]) == 0
    before = np.asarray(Image.open(pictures / "a.png"))
    after = np.asarray(Image.open(out / "inpaint_00.png"))
    keep = np.ones((8, 8), bool)
    keep[2:6, 2:6] = False
    assert (before[keep] == after[keep]).all()


def test_cli_bad_input_is_one_line_and_exit_2(run_dir, pictures, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    wrong = tmp_path / "mask.png"
    Image.new("L", (5, 5), 255).save(wrong)
    a = str(pictures / "a.png")
    for argv in (
        ["img2img", str(bad)],
        ["img2img", a, "--strength", "1.5"],
        ["inpaint", a, "--mask", str(wrong)],
        ["inpaint", a],
        ["swap", a, "--source", "1", "--target", "12"],
    ):
        capsys.readouterr()
        assert main(["edit", argv[0], str(run_dir), *argv[1:], "--steps", "2", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("noisecraft edit: error:") and "\n" not in err and "Traceback" not in err
