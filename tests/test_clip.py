"""CLIP: the InfoNCE loss against closed forms, a tiny train-clip run that learns (loss falls, retrieval beats
chance) and resumes, a transformers CLIPModel folder, and `eval --clip`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from noisecraft.cli.main import main
from noisecraft.models.clip import HFClip, clip_loss, clip_score, load_clip, retrieval_top1
from tiny_models import make_tiny_clip, make_tiny_clip_model, write_fake_fashion_mnist


def test_clip_loss_closed_forms():
    """All pairs alike: each row is a uniform softmax over B, so the loss is log B; matched one-hot pairs at a
    large temperature: the loss tends to 0; swapping two texts raises it."""
    B, E = 6, 8
    same = torch.nn.functional.normalize(torch.ones(B, E), dim=-1)
    assert clip_loss(same, same, torch.tensor(10.0)).item() == pytest.approx(math.log(B), rel=1e-6)
    eye = torch.eye(B, E)
    assert clip_loss(eye, eye, torch.tensor(100.0)).item() < 1e-6
    swapped = eye[[1, 0, 2, 3, 4, 5]]
    assert clip_loss(eye, swapped, torch.tensor(100.0)).item() > 10


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """A tiny train-clip run on scenes of a fake Fashion-MNIST (as conftest's, module-wide: it takes a few seconds),
    its text tower on a tiny random CLIP text encoder."""
    root = tmp_path_factory.mktemp("clip")
    mp = pytest.MonkeyPatch()
    write_fake_fashion_mnist(root / "fm", test_per_class=12)
    mp.setenv("NOISECRAFT_FASHION_MNIST", str(root / "fm"))
    text = make_tiny_clip(root / "text", max_positions=64)
    out = root / "clip"
    argv = ["train-clip", "--data", "scenes", "--size", "160", "--steps", "80", "--batch-size", "32", "--lr", "1e-3"]
    argv += ["--text", f"clip:{text}", "--holdout", "100", "--checkpoint-every", "40", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    yield out, text
    mp.undo()


def test_train_clip_learns_and_beats_chance(clip_run):
    out, _ = clip_run
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.8 * math.log(32)  # the InfoNCE loss falls well below chance's log B (B = 32)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["retrieval_top1_of_100"] > 0.05  # chance is 0.01 (held-out scenes: test-split items)
    clip = load_clip(out)
    assert clip.embed_dim == 64 and json.loads((out / "clip.json").read_text())["noise_aware"] is False
    assert clip.image_embeds(torch.zeros(2, 3, 32, 32)).norm(dim=-1) == pytest.approx(1.0, abs=1e-5)


def test_train_clip_resumes_from_its_record_to_the_same_weights(clip_run, tmp_path, capsys):
    """The run folder alone says what to run: with its newest checkpoint gone (a crash after step 40), --resume
    continues from step 40 and ends at the uninterrupted run's weights, bit for bit (training.core.fit)."""
    import shutil

    from safetensors.torch import load_file

    out, text = clip_run
    run = tmp_path / "copy"
    shutil.copytree(out, run)
    shutil.rmtree(run / "checkpoints" / "step-00000080")
    (run / "clip.safetensors").unlink()
    capsys.readouterr()
    assert main(["train-clip", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    a, b = load_file(out / "clip.safetensors"), load_file(run / "clip.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    argv = ["train-clip", "--data", "scenes", "--size", "160", "--steps", "90", "--text", f"clip:{text}"]
    assert main([*argv, "--out", str(run)]) == 2  # without --resume: refused, nothing overwritten
    assert "--resume" in capsys.readouterr().err


def test_transformers_clip_folder_loads_and_scores(tmp_path):
    folder = make_tiny_clip_model(tmp_path / "hfclip", projection=16)
    clip = load_clip(folder)
    assert isinstance(clip, HFClip) and clip.embed_dim == 16 and not clip.noise_aware
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    im = clip.image_embeds(x)
    assert im.shape == (5, 16) and im.norm(dim=-1) == pytest.approx(1.0, abs=1e-5)
    prompts = ["a red bag", "a blue coat", "left: red", "right", "empty"]
    s = clip_score(clip, x, prompts)
    cos = (im * clip.text_embeds(prompts)).sum(-1)
    assert torch.allclose(s, 100 * cos.clamp(min=0), atol=1e-4)  # the score is the clipped cosine ×100
    acc = retrieval_top1(clip, x.repeat(20, 1, 1, 1), prompts * 20, group=100)
    assert 0 <= acc <= 1


def test_eval_clip_scores_a_sample_folder(clip_run, tmp_path, capsys):
    """eval --clip: CLIP score of images against the prompts.txt `sample` writes; retrieval on held-out scenes.
    Real scenes against their own captions score higher than against shuffled captions."""
    from noisecraft.data.config import DataConfig
    from noisecraft.data.io import save_images
    from noisecraft.training.clip_train import load_captioned

    out, _ = clip_run
    x, caps = load_captioned(DataConfig(source="scenes", channels=3, split="test", scenes_size=40, captions=True))
    folder = tmp_path / "samples"
    save_images(x, folder, list(range(40)))
    right = [c[0] for c in caps]
    for name, prompts in (("right", right), ("shuffled", right[7:] + right[:7])):
        (folder / "prompts.txt").write_text("".join(f"seed{i:06d}.png\t{p}\n" for i, p in enumerate(prompts)))
        argv = ["eval", "--samples-dir", str(folder), "--clip", str(out), "--out", str(tmp_path / f"{name}.json")]
        assert main([*argv, "--retrieval", "100"]) == 0
    r, s = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("right", "shuffled"))
    assert r["num"] == 40 and r["clip_score_mean"] > s["clip_score_mean"]
    assert r["retrieval_top1_of_100"] > 0.05
    assert "CLIP score of 40 images" in capsys.readouterr().out
