"""`noisecraft edit imagic` end to end on a tiny, untrained, locally built latent text run (tiny autoencoder,
tiny CLIP text encoder, cond-unet): the commands of docs/editing.md at small size, weights untouched, --save and
--load, and the one-line errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from tiny_models import make_tiny_clip

SMALL = ["--embed-steps", "3", "--finetune-steps", "3", "--batch", "2", "--steps", "4", "--no-progress"]


def _save_run(folder, cfg) -> None:
    from noisecraft.training.checkpoint import save_tensors
    from noisecraft.training.setup import build_model

    torch.manual_seed(0)
    denoiser, _ = build_model(cfg)
    ckpt = folder / "checkpoints" / "step-00000001"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(cfg.to_json())
    (ckpt / "state.json").write_text("{}")
    state = {k: v.contiguous() for k, v in denoiser.state_dict().items()}
    save_tensors(state, ckpt / "ema.safetensors")
    save_tensors(state, ckpt / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(latent text run, unconditional pixel run, scene picture)."""
    from noisecraft.data.config import DataConfig
    from noisecraft.models.autoencoder import build_vae
    from noisecraft.models.factory import ModelConfig
    from noisecraft.models.text import TextConfig
    from noisecraft.training.config import TrainConfig

    root = tmp_path_factory.mktemp("imagic")
    torch.manual_seed(0)
    vae = build_vae("tiny-f4", 3, 32)
    vae.register_to_config(scaling_factor=0.8)
    vae.save_pretrained(root / "vae" / "vae")
    clip = make_tiny_clip(root / "clip")
    text = TrainConfig(
        data=DataConfig(source="scenes", resolution=32, channels=3, latent=str(root / "vae")),
        model=ModelConfig(
            arch="cond-unet", resolution=8, channels=4, text_dim=32, net_kwargs={"block_out_channels": [32, 32]}
        ),
        text=TextConfig("clip", path=str(clip), max_tokens=16),
        trackers=[],
    )
    _save_run(root / "scenes-text", text)
    plain = TrainConfig(
        data=DataConfig(source="digits", resolution=8, channels=1),
        model=ModelConfig(arch="mlp", preset="tiny", resolution=8, channels=1),
        trackers=[],
    )
    _save_run(root / "digits", plain)
    rng = np.random.default_rng(0)
    pic = np.zeros((32, 32, 3), np.uint8)
    pic[8:24, 2:14] = rng.integers(0, 256, (16, 12, 1)) * np.array([1, 1, 1])  # a white item on the left
    Image.fromarray(pic).save(root / "scene.png")
    Image.fromarray(rng.integers(0, 256, (50, 40)).astype(np.uint8), "L").save(root / "gray.png")
    return root / "scenes-text", root / "digits", root


def _hashes(run) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*")) if p.is_file()}


def test_documented_commands_write_edits_and_leave_the_run_untouched(runs, capsys) -> None:
    run, _, root = runs
    before = _hashes(run)
    saved, out1, out2 = root / "saved", root / "out1", root / "out2"
    # docs/editing.md: the first command, at small size
    argv = ["edit", "imagic", str(run), str(root / "scene.png"), "--prompt", "a red sneaker on the left"]
    assert main([*argv, "--etas", "0,0.4,0.7,1", "--save", str(saved), "--out", str(out1), *SMALL]) == 0
    text = capsys.readouterr().out
    assert "reconstruction loss of the image" in text and "32x32 RGB -> 32x32 RGB" in text
    names = sorted(p.name for p in out1.glob("*.png"))
    assert names == ["comparison.png", "imagic_eta0.4.png", "imagic_eta0.7.png", "imagic_eta0.png", "imagic_eta1.png"]
    assert Image.open(out1 / "imagic_eta0.7.png").size == (32, 32)
    assert {p.name for p in saved.iterdir()} == {"embeddings.safetensors", "delta.safetensors", "imagic.json"}
    # the second: a new η from the saved edit costs sampling only, and gives the same pixels
    argv = ["edit", "imagic", str(run), str(root / "scene.png"), "--load", str(saved), "--eta", "0.7"]
    assert main([*argv, "--out", str(out2), "--steps", "4", "--no-progress"]) == 0
    assert "reconstruction loss" not in capsys.readouterr().out
    a, b = Image.open(out1 / "imagic_eta0.7.png"), Image.open(out2 / "imagic_eta0.7.png")
    assert a.tobytes() == b.tobytes()
    assert _hashes(run) == before  # the run folder's files are bit-identical (no edits/ folder written into it)


def test_same_seed_same_pixels_and_gray_input_converted(runs, capsys) -> None:
    run, _, root = runs
    outs = []
    for k in range(2):
        out = root / f"det{k}"
        argv = ["edit", "imagic", str(run), str(root / "gray.png"), "--prompt", "a blue bag"]
        assert main([*argv, "--eta", "0.8", "--seed", "5", "--out", str(out), *SMALL]) == 0
        outs.append(Image.open(out / "imagic_eta0.8.png").tobytes())
    assert outs[0] == outs[1]
    assert "40x50 L -> 32x32 RGB" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("digits", ["--prompt", "a red bag"], "imagic needs a text-conditioned model"),
        ("text", ["--prompt", "  "], "non-empty --prompt"),
        ("text", [], "non-empty --prompt"),
        ("text", ["--prompt", "a", "--eta", "1", "--etas", "0,1"], "--eta or --etas"),
        ("text", ["--prompt", "a", "--etas", "0,x"], "comma-separated"),
        ("text", ["--prompt", "a", "--load", "nowhere"], "not a saved imagic edit"),
        ("text", ["--prompt", "a", "--sampler", "nope"], "unknown sampler"),
    ],
)
def test_bad_input_is_one_line(runs, capsys, which, extra, message) -> None:
    run, digits, root = runs
    target = digits if which == "digits" else run
    code = main(["edit", "imagic", str(target), str(root / "scene.png"), *extra, "--out", str(root / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_documented_python_api(runs, tmp_path) -> None:
    """The Python example of docs/editing.md on the tiny latent run (fewer steps)."""
    import noisecraft as nc
    from noisecraft.editing import imagic as im
    from noisecraft.editing.io import load_image
    from noisecraft.models.autoencoder import load_codec
    from noisecraft.sampling.steps import step_sigmas

    run, _, root = runs
    denoiser, schedule, cfg = nc.load_run(run)
    codec = load_codec(cfg.data.latent)
    x, _ = load_image(root / "scene.png", cfg.data.resolution, cfg.data.channels)
    z = codec.encode(x[None])
    assert z.shape == (1, 4, 8, 8)
    settings = im.ImagicSettings(embed_steps=3, finetune_steps=3, batch=2)
    edit = im.imagic(denoiser, im.run_loss(cfg, schedule), z, "a red sneaker on the left", settings)
    neg = denoiser.net.text_encoder.encode([""])
    sigmas = step_sigmas(schedule, 4, sampler="dpmpp_2m")
    y = codec.decode(edit.sample([0.0, 0.7, 1.0], sigmas, z.shape[1:], seed=0, cfg_scale=5.0, negative=neg))
    assert y.shape == (3, 3, 32, 32) and torch.isfinite(y).all()
    assert not torch.equal(y[0], y[2])  # η changes the image
    edit.save(tmp_path / "sneaker-red")
    again = im.ImagicEdit.load(tmp_path / "sneaker-red", denoiser)
    y2 = codec.decode(again.sample([0.7], sigmas, z.shape[1:], seed=0, cfg_scale=5.0, negative=neg))
    assert torch.equal(y2[0], codec.decode(edit.sample([0.7], sigmas, z.shape[1:], seed=0, cfg_scale=5.0,
                                                      negative=neg))[0])  # fmt: skip
