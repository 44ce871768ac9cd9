"""Evaluation scores what the user gets: 8-bit samples as saved, FD with an interval, any folder as reference,
MLP image runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.core.schedules import make_schedule
from noisecraft.data.io import load_images, quantise, save_images
from noisecraft.evaluation.evaluate import PIXELS, evaluate_denoiser, evaluate_images, folder_reference
from noisecraft.evaluation.features import BuiltinFeatures
from noisecraft.evaluation.metrics import frechet_distance, frechet_distance_ci
from noisecraft.evaluation.reference import reference_images


class Overshoot(torch.nn.Module):
    """A denoiser whose x̂0 is a real digit scaled past [−1, 1] (what a poor sampler at few steps produces)."""

    def __init__(self):
        super().__init__()
        self.digits = torch.nn.Parameter(reference_images("digits", "train")[0][:64], requires_grad=False)

    def forward(self, x, sigma, **cond):
        idx = torch.arange(len(x), device=x.device) % len(self.digits)
        return 1.8 * self.digits[idx] + 0.05 * x


def test_eval_scores_the_saved_pngs_not_the_raw_samples(tmp_path):
    den, sched, feats = Overshoot(), make_schedule("edm"), BuiltinFeatures("digits")
    res, images = evaluate_denoiser(
        den, sched, "digits", feats, shape=(1, 8, 8), num=48, steps=3, with_floor=False, fd_boots=0
    )
    assert images.min() >= -1 and images.max() <= 1 and torch.equal(images, quantise(images))
    assert res.protocol.pixels == PIXELS and "8-bit" in res.summary()
    # the same seeds drawn, written as PNGs like `noisecraft sample` does, read back and scored: same numbers
    from noisecraft.sampling.generate import generate

    raw = generate(den, sched, (1, 8, 8), list(range(48)), steps=3)
    assert raw.abs().max() > 1.2  # the raw samples do overshoot: clamping matters here
    save_images(raw, tmp_path / "pngs", range(48))
    back, _ = load_images(tmp_path / "pngs")
    assert torch.equal(back, images)
    from_pngs = evaluate_images(back, "digits", feats, with_floor=False, fd_boots=0)
    assert from_pngs.scores.fd == pytest.approx(res.scores.fd, rel=1e-9)
    ref = feats(reference_images("digits", "test")[0])
    assert frechet_distance(ref, feats(raw)) != pytest.approx(res.scores.fd, rel=1e-3)  # raw would score otherwise


def test_fd_interval_tells_different_models_apart_and_not_equal_ones():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 8, generator=g, dtype=torch.float64)
    same_a = torch.randn(400, 8, generator=g, dtype=torch.float64)
    same_b = torch.randn(400, 8, generator=g, dtype=torch.float64)
    shifted = torch.randn(400, 8, generator=g, dtype=torch.float64) + 0.4
    a, b, s = (frechet_distance_ci(real, f, boots=200) for f in (same_a, same_b, shifted))
    fa = frechet_distance(real, same_a)
    assert a[0] <= fa <= a[1] and a[0] < a[1]
    assert a[1] > b[0] and b[1] > a[0]  # two draws of one model: the intervals overlap
    assert s[0] > max(a[1], b[1])  # a worse model: its interval lies above
    wide = frechet_distance_ci(real, same_a[:100], boots=200)
    assert wide[1] - wide[0] > a[1] - a[0]  # fewer samples, wider interval


def _write_digits(folder, images, rgb=False):
    folder.mkdir(parents=True)
    u8 = ((images[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    for i, im in enumerate(u8):
        im = np.kron(im, np.ones((2, 2), dtype=np.uint8))  # 16×16
        Image.fromarray(np.stack([im] * 3, -1) if rgb else im).save(folder / f"{i:04d}.png")


def test_eval_against_any_folder(tmp_path, capsys):
    train, _ = reference_images("digits", "train")
    _write_digits(tmp_path / "ref", train[:160], rgb=True)  # a user's folder (RGB PNGs)
    _write_digits(tmp_path / "good", train[200:280])
    _write_digits(tmp_path / "bad", torch.rand(80, 1, 8, 8) * 2 - 1)
    for name in ("good", "bad"):
        assert main(["eval", "--samples-dir", str(tmp_path / name), "--ref", str(tmp_path / "ref")]) == 0
    out = capsys.readouterr().out
    assert "the folder's other half" in out and "per-channel-rgb" not in out  # grey samples: the grey network
    res = {n: json.loads((tmp_path / n / "eval.json").read_text()) for n in ("good", "bad")}
    p = res["good"]["protocol"]
    assert p["reference_split"] == "folder" and p["num_reference"] == 80 and p["dataset"] == str(tmp_path / "ref")
    good, bad, floor = res["good"]["scores"], res["bad"]["scores"], res["good"]["noise_floor"]
    assert good["fd_high"] < bad["fd_low"]  # told apart by their intervals
    assert good["fd"] < 3 * floor["fd"] and bad["fd"] > 5 * good["fd"]
    ref = folder_reference(tmp_path / "ref", resolution=16, channels=1)
    assert ref.images.shape == (80, 1, 16, 16) and ref.others.shape == (80, 1, 16, 16)
    capsys.readouterr()
    assert main(["eval", "--samples-dir", str(tmp_path / "good"), "--ref", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_a_run_against_a_folder_and_an_mlp_image_run(tmp_path, capsys):
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.loop import train

    run = tmp_path / "mlp"
    cfg = {
        "data": {"source": "digits", "resolution": 8},
        "model": {"arch": "mlp", "preset": "tiny", "channels": 1, "resolution": 8, "schedule": "edm"},
        "trackers": [],
        "sample_every": 0,
        "steps": 4,
        "batch_size": 16,
        "checkpoint_every": 4,
        "out_dir": str(run),
    }
    train(TrainConfig.from_dict(cfg), progress=False)
    assert main(["eval", str(run), "--num", "24", "--steps", "3", "--no-floor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "24 samples vs 359 digits test images at 8 px" in out
    saved = json.loads(next((run / "eval").glob("*.json")).read_text())
    assert saved["protocol"]["pixels"] == PIXELS and saved["scores"]["fd_low"] <= saved["scores"]["fd_high"]
    _write_digits(tmp_path / "ref", reference_images("digits", "test")[0][:40])
    assert main(["eval", str(run), "--num", "16", "--steps", "3", "--ref", str(tmp_path / "ref")]) == 0
    assert "the folder's other half" in capsys.readouterr().out
    assert main(["eval", str(run), "--ref", str(tmp_path / "ref"), "--dataset", "digits"]) == 2


def test_reference_is_resized_like_the_training_images():
    """A 16-px digits model is scored against 16-px real digits made exactly as its training images were (the
    trainer's Pillow lanczos upsampling), not a blurrier bilinear copy that favours blurred samples."""
    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset
    from noisecraft.evaluation.evaluate import at_resolution

    ds = make_dataset(DataConfig(source="digits", resolution=16, channels=1, split="test"))  # as training makes them
    trained_on = torch.stack([ds[i]["x"] for i in range(50)])
    ref = at_resolution(reference_images("digits", "test")[0][:50], 16)
    assert torch.equal(ref, trained_on)
    bilinear = torch.nn.functional.interpolate(
        reference_images("digits", "test")[0][:50], size=(16, 16), mode="bilinear"
    )
    assert (quantise(bilinear) - trained_on).abs().max() > 0.1
