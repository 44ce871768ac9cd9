"""`noisecraft eval --samples-dir` and `noisecraft show` end to end (in-process, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.evaluation.reference import reference_images


def _write_pngs(folder, images):
    folder.mkdir()
    u8 = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    for i, im in enumerate(u8):
        Image.fromarray(np.kron(im, np.ones((2, 2), dtype=np.uint8))).save(folder / f"{i:04d}.png")  # 16×16


def test_eval_samples_dir_writes_protocol(tmp_path, capsys):
    real, _ = reference_images("digits", "train")
    _write_pngs(tmp_path / "real", real[:80])
    _write_pngs(tmp_path / "noise", torch.rand(80, 1, 8, 8) * 2 - 1)
    for name in ("real", "noise"):
        assert main(["eval", "--samples-dir", str(tmp_path / name), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "noise floor" in out and "protocol: 80 samples vs 359 digits test images" in out
    res = {n: json.loads((tmp_path / n / "eval.json").read_text()) for n in ("real", "noise")}
    proto = res["real"]["protocol"]
    assert proto["num_samples"] == 80 and proto["reference_split"] == "test" and len(proto["extractor_checksum"]) == 16
    assert res["real"]["scores"]["fd"] < res["noise"]["scores"]["fd"]
    assert res["real"]["noise_floor"]["fd"] == pytest.approx(res["noise"]["noise_floor"]["fd"])


def test_eval_bad_input_is_one_line(tmp_path, capsys):
    assert main(["eval"]) == 2
    assert main(["eval", "--samples-dir", str(tmp_path), "--dataset", "cifar"]) == 2
    err = capsys.readouterr().err
    assert "RUN_DIR" in err and "digits, fashion-mnist" in err and "Traceback" not in err


def test_show_writes_pictures(tmp_path):
    assert main(["show", "schedules", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["show", "forward", "--out", str(tmp_path / "f.png"), "--schedule", "cosine"]) == 0
    assert main(["show", "trajectory", "--out", str(tmp_path / "t.png"), "--steps", "5", "--num", "4"]) == 0
    for name in ("s.png", "f.png", "t.png", "t.gif"):
        with Image.open(tmp_path / name) as im:
            assert im.width > 100
    assert main(["show", "training-curve", "--out", str(tmp_path / "c.png")]) == 2
