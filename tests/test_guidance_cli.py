"""The guidance commands end to end on a tiny run: train-classifier, sample --cfg/--classifier, sweep, errors."""

from __future__ import annotations

import json

import pytest

from noisecraft.cli.main import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step class-conditional MLP run on 8x8 digits, and a 3-step classifier matching it."""
    root = tmp_path_factory.mktemp("guidance-cli")
    run = root / "run"
    args = ["train", "--data", "digits", "--arch", "mlp", "--resolution", "8", "--steps", "3", "--batch-size", "16",
            "--schedule", "edm", "--set", "model.num_classes=10", "--set", "data.labels=true",
            "--set", "label_dropout=0.2", "--set", "sample_every=0", "--set", "trackers=[]",
            "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    clf = root / "clf"
    assert main(["train-classifier", "--run", str(run), "--steps", "3", "--width", "4", "--out", str(clf),
                 "--no-progress"]) == 0  # fmt: skip
    return root, run, clf


def test_train_classifier_writes_a_paired_config(tiny_run):
    _, _, clf = tiny_run
    meta = json.loads((clf / "classifier.json").read_text())
    assert (meta["resolution"], meta["channels"], meta["num_classes"], meta["schedule"]) == (8, 1, 10, "edm")
    assert set(json.loads((clf / "metrics.json").read_text())["accuracy_by_sigma"]) >= {"0.1", "1.0"}


def test_sample_with_cfg_and_classifier(tiny_run):
    root, run, clf = tiny_run
    common = ["--num", "3", "--steps", "3"]
    assert main(["sample", str(run), "--class", "3", "--cfg", "4", "--cfg-interval", "0.3,5",
                 "--cfg-rescale", "0.7", *common, "--out", str(root / "s1")]) == 0  # fmt: skip
    assert (root / "s1" / "grid.png").is_file()
    assert main(["sample", str(run), "--class", "3", "--classifier", str(clf), "--classifier-scale", "2",
                 *common, "--out", str(root / "s2")]) == 0  # fmt: skip
    assert len(list((root / "s2").glob("seed*.png"))) == 3


def test_sweep_writes_grid_and_layout(tiny_run):
    root, run, clf = tiny_run
    out = root / "sweep"
    assert main(["sweep", str(run), "--scales", "0,2", "--classes", "0-1,7", "--steps", "2", "--out", str(out)]) == 0
    layout = json.loads((out / "sweep.json").read_text())
    assert layout["rows"] == [0, 1, 7] and layout["columns"] == [0.0, 2.0] and layout["method"] == "cfg"
    assert main(["sweep", str(run), "--classifier", str(clf), "--scales", "0,1", "--classes", "2", "--steps", "2",
                 "--out", str(root / "sweep2")]) == 0  # fmt: skip
    assert json.loads((root / "sweep2" / "sweep.json").read_text())["method"] == "classifier"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "12", "--cfg", "2"], "class 12 is outside the model's labels 0..9"),
        (["--class", "1", "--cfg", "-1"], "cfg scale must be a finite number >= 0"),
        (["--cfg", "2"], "needs a class"),
        (["--class", "1", "--cfg", "2", "--cfg-interval", "5,0.3"], "sigma_lo < sigma_hi"),
        (["--class", "1", "--classifier", "OTHER", "--classifier-scale", "-3"], "classifier scale"),
        (["--class", "1", "--classifier", "OTHER"], "trained on 1x4x4 images but the model makes 1x8x8"),
    ],
)
def test_sample_bad_guidance_input_is_one_line_error(tiny_run, tmp_path, capsys, extra, message):
    root, run, _ = tiny_run
    other = root / "clf-4px"
    if not other.exists():  # a classifier trained at another resolution
        assert main(["train-classifier", "--data", "digits", "--resolution", "4", "--steps", "1", "--width", "4",
                     "--holdout", "0", "--out", str(other), "--no-progress"]) == 0  # fmt: skip
    extra = [str(other) if a == "OTHER" else a for a in extra]
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "1", "--steps", "1", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
