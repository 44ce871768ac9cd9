"""GLIDE-style text-guided editing in latent space (img2img and inpainting with a prompt), on an exact oracle and
through `noisecraft edit` on a tiny trained text run in latent space; the other edit verbs on that run too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.editing import img2img, inpaint, latent_mask
from noisecraft.models.text import TextConfig, load_text_encoder
from noisecraft.sampling.prompt_guidance import prompt_denoiser
from noisecraft.sampling.steps import step_sigmas
from test_text import TextOracle
from tiny_models import make_tiny_clip

SCALE = 3.0  # latents span about ±3: anything that clipped them to [-1, 1] would miss the oracle's answer


class PoolCodec:
    """A linear stand-in for an autoencoder: z = 3·avgpool₂(x) (B, 3, 4, 4), x̂ = nearest-upsample(z/3)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return SCALE * F.avg_pool2d(x, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z / SCALE, scale_factor=2, mode="nearest")


def colour(rgb: tuple[float, float, float]) -> torch.Tensor:
    return torch.tensor(rgb)[:, None, None].expand(3, 8, 8)  # (3, 8, 8) in [-1, 1]


RED, BLUE = colour((1.0, -1.0, -1.0)), colour((-1.0, -1.0, 1.0))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Latents of red or blue 8×8 images (tight Gaussians around them); prompt "a red bag" → red, "bag" → blue,
    "" → the whole mixture. Returns (denoiser, encoder, codec)."""
    enc = load_text_encoder(TextConfig("clip", path=str(make_tiny_clip(tmp_path_factory.mktemp("clip")))))
    codec = PoolCodec()
    means = torch.stack([codec.encode(RED[None])[0], codec.encode(BLUE[None])[0]]).flatten(1)  # (2, 48)
    mix = GaussianMixture(means, 1e-4, shape=(3, 4, 4))
    table = enc.encode(["a red bag", "bag"])["text_pooled"]
    return TextOracle(mix, table, enc.encode("")["text_pooled"][0]), enc, codec


def sigmas(steps: int = 30) -> torch.Tensor:
    return step_sigmas(make_schedule("edm"), steps, "karras")


@pytest.mark.parametrize(("prompt", "target", "other"), [("a red bag", RED, BLUE), ("bag", BLUE, RED)])
def test_latent_img2img_moves_towards_the_prompt(oracle, prompt, target, other) -> None:
    denoiser, enc, codec = oracle
    grey = torch.zeros(2, 3, 8, 8)
    guided, cond = prompt_denoiser(denoiser, enc, [prompt] * 2, "", cfg_scale=2.0)
    g = [torch.Generator().manual_seed(i) for i in range(2)]
    y = img2img(guided, grey, sigmas(), 0.8, sampler="euler", cond=cond, generator=g, codec=codec)
    assert y.shape == grey.shape
    # the exact posterior under the prompt's component: its mean, to within the component's spread
    assert (y - target).abs().max() < 0.05 and (y - other).abs().max() > 1.5
    # strength 0 returns the input exactly, codec or not
    assert torch.equal(img2img(guided, grey, sigmas(), 0.0, cond=cond, codec=codec), grey)


def test_latent_mask_covers_every_masked_pixel() -> None:
    m = torch.zeros(1, 3, 8, 8)
    m[0, 1, 3, 3] = 1  # one pixel of one channel
    m[0, :, 6:, 0] = 1
    z = latent_mask(m, (4, 4))
    want = torch.zeros(1, 1, 4, 4)
    want[0, 0, 1, 1] = want[0, 0, 3, 0] = 1
    assert torch.equal(z, want)


@pytest.mark.parametrize("method", ["replace", "repaint"])
def test_latent_inpaint_keeps_pixels_exactly_and_fills_with_the_prompt(oracle, method) -> None:
    denoiser, enc, codec = oracle
    x = RED[None].clone()
    x[..., :3] = torch.linspace(-0.9, 0.9, 24).reshape(1, 8, 3)  # kept pixels the codec cannot reproduce
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 4:] = 1  # generate a block on the right
    guided, cond = prompt_denoiser(denoiser, enc, ["bag"], "", cfg_scale=1.0)
    y = inpaint(guided, x, mask, sigmas(20), method=method, cond=cond, codec=codec,
                generator=[torch.Generator().manual_seed(0)], jump_length=5, resample=2)  # fmt: skip
    keep = mask.expand_as(x) == 0
    assert torch.equal(y[keep], x[keep])  # bit for bit, although decode(encode(x)) ≠ x there
    assert not torch.equal(codec.decode(codec.encode(x))[keep], x[keep])
    filled = y[..., 2:6, 4:]
    # the known latents are red, so the mixture is conditioned on them; the prompt "bag" still picks blue
    assert (filled - BLUE[..., 2:6, 4:]).abs().max() < 0.05


# ---------------------------------------------------------------------------------------------------------
QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "ema.decay=0.5"]
SMALL = ["--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--set", "data.scenes_size=16"]


@pytest.fixture
def text_latent_run(fake_fashion_mnist, tmp_path, monkeypatch):
    """A text run (tiny CLIP) on the latents of a tiny autoencoder, 4 steps; two random 32×32 input images."""
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    vae, clip = tmp_path / "vae", make_tiny_clip(tmp_path / "clip")
    argv = ["train-vae", "--steps", "3", "--batch-size", "4", "--set", "data.scenes_size=16", "--out", str(vae)]
    assert main([*argv, "--no-progress"]) == 0
    run = tmp_path / "run"
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", "4"]
    argv += ["--batch-size", "4", "--lr", "3e-3", "--set", "sample_every=0", "--out", str(run), *QUIET, *SMALL]
    assert main(argv) == 0
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    return run, tmp_path


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_edit_verbs_on_a_text_run_in_latent_space(text_latent_run, capsys) -> None:
    run, tmp = text_latent_run
    img = str(tmp / "a.png")
    small = ["--steps", "4"]
    for prompt, name in (("a red bag on the left", "red"), ("a white coat on the right", "white")):
        argv = ["edit", "img2img", str(run), img, "--prompt", prompt, "--cfg", "3", "--num", "2"]
        assert main([*argv, "--strength", "0.6", "--out", str(tmp / name), *small]) == 0
    red, white = pixels(tmp / "red" / "img2img_000_00.png"), pixels(tmp / "white" / "img2img_000_00.png")
    assert red.shape == (32, 32, 3) and (red != white).any()  # decoded to pixels; the prompt matters
    assert (tmp / "red" / "comparison.png").is_file()

    argv = ["edit", "inpaint", str(run), img, "--rect", "16,0,32,32", "--prompt", "a white coat on the right"]
    assert main([*argv, "--cfg", "3", "--num", "2", "--out", str(tmp / "inp"), *small]) == 0
    src = pixels(img)
    for i in range(2):
        out = pixels(tmp / "inp" / f"inpaint_{i:02d}.png")
        assert np.array_equal(out[:, :16], src[:, :16])  # the kept half, bit for bit after decoding
        assert not np.array_equal(out[:, 16:], src[:, 16:])
    argv = ["edit", "inpaint", str(run), img, "--rect", "16,0,32,32", "--method", "repaint", "--jump", "2"]
    assert main([*argv, "--resample", "2", "--num", "1", "--out", str(tmp / "rp"), *small]) == 0
    assert np.array_equal(pixels(tmp / "rp" / "inpaint_00.png")[:, :16], src[:, :16])

    # the other verbs work on latents too (the empty prompt: the run's unconditional model)
    capsys.readouterr()
    assert main(["edit", "invert", str(run), img, "--out", str(tmp / "inv"), "--iters", "0", *small]) == 0
    said = capsys.readouterr().out
    assert "PSNR" in said and "the autoencoder alone" in said
    assert pixels(tmp / "inv" / "reconstruction_000.png").shape == (32, 32, 3)
    argv = ["edit", "interpolate", str(run), img, str(tmp / "b.png"), "--frames", "3", "--iters", "0"]
    assert main([*argv, "--out", str(tmp / "itp"), *small]) == 0
    assert pixels(tmp / "itp" / "frame_002.png").shape == (32, 32, 3)

    # eval samples latents, decodes them and scores the pixels `noisecraft sample` would write
    ref = tmp / "ref"
    ref.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(ref / f"{i}.png")
    argv = ["eval", str(run), "--ref", str(ref), "--num", "4", "--no-floor", "--out", str(tmp / "ev.json"), *small]
    assert main(argv) == 0
    rec = json.loads((tmp / "ev.json").read_text())
    assert rec["protocol"]["extra"]["latent"] and rec["protocol"]["extra"]["prompt"] == ""
    import noisecraft as nc
    from noisecraft.data.io import to_uint8
    from noisecraft.evaluation.evaluate import evaluate_denoiser, folder_reference
    from noisecraft.evaluation.features import get_extractor

    d, sched, cfg = nc.load_run(run)
    _, scored = evaluate_denoiser(
        d, sched, folder_reference(str(ref), resolution=32, channels=3), get_extractor("rgb"), shape=(4, 8, 8),
        num=4, steps=4, with_floor=False, latent=cfg.data.latent, cond=d.net.text_encoder.encode([""] * 4),
        sampler="unipc",  # `noisecraft sample`'s default
    )  # fmt: skip
    assert main(["sample", str(run), "--prompt", "", "--num", "4", "--out", str(tmp / "s"), *small]) == 0
    for i in range(4):
        assert np.array_equal(to_uint8(scored[i : i + 1])[0], pixels(tmp / "s" / f"seed{i:06d}.png"))

    # bad flags: one line each, no traceback
    img = str(tmp / "a.png")
    capsys.readouterr()
    assert main(["edit", "img2img", str(run), img, "--class", "3", "--out", str(tmp / "o")]) == 2
    err = capsys.readouterr().err
    assert "steer it with --prompt" in err and "Traceback" not in err and err.count("\n") == 1
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["text"]["encoder"] == "clip"
    # a pixel run without text refuses --prompt in one line
    pix = tmp / "pix"
    argv = ["train", "--data", "digits", "--resolution", "8", "--steps", "1", "--batch-size", "2"]
    assert main([*argv, "--set", "sample_every=0", "--out", str(pix), *QUIET]) == 0
    capsys.readouterr()
    assert main(["edit", "img2img", str(pix), img, "--prompt", "a red bag", "--out", str(tmp / "p")]) == 2
    err = capsys.readouterr().err
    assert "need a text-conditioned run" in err and "Traceback" not in err
