"""Imagic (editing/imagic.py) on a tiny text model trained here: coloured rectangles on black, captioned "red"
or "blue" (pixels 3×8×8, a tiny CLIP text encoder built locally). Steps 1–2 lower the reconstruction loss
and touch only what they may; η = 0 reconstructs the input; η moves a red input towards "blue"."""

from __future__ import annotations

import hashlib

import pytest
import torch

from noisecraft.editing import imagic as im
from noisecraft.editing.edits import psnr
from noisecraft.errors import NoisecraftError
from tiny_models import make_tiny_clip

COLOURS = {"red": (1.0, -1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}
# settings for this tiny model: a fine-tuning that reconstructs closely (STRONG) and a lighter one that leaves
# the prompt room to act over η in [0, 1] (LIGHT); the paper's trade-off between the two
STRONG = im.ImagicSettings(embed_steps=60, finetune_steps=60, embed_lr=1e-2, finetune_lr=1e-3, seed=0)
LIGHT = im.ImagicSettings(embed_steps=60, finetune_steps=60, embed_lr=1e-2, finetune_lr=1e-4, seed=0)


def rectangles(n: int, colour: list[str], g: torch.Generator) -> torch.Tensor:
    """n images (n, 3, 8, 8) in [-1, 1]: black with one rectangle (sides 3–6) of the given colours."""
    x = -torch.ones(n, 3, 8, 8)
    for i in range(n):
        h, w = (int(v) for v in torch.randint(3, 7, (2,), generator=g))
        t, left = int(torch.randint(0, 9 - h, (1,), generator=g)), int(torch.randint(0, 9 - w, (1,), generator=g))
        x[i, :, t : t + h, left : left + w] = torch.tensor(COLOURS[colour[i]])[:, None, None]
    return x


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train_colour_model(folder, steps: int = 200, batch: int = 16):
    """(denoiser with its text encoder attached, loss, TrainConfig): Adam on red/blue rectangles, captions
    "red"/"blue" dropped to "" one time in five."""
    from noisecraft.core.losses import DenoisingLoss
    from noisecraft.data.config import DataConfig
    from noisecraft.models.cond_unet import attach_text_encoder
    from noisecraft.models.factory import ModelConfig
    from noisecraft.models.text import TextConfig, load_text_encoder
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.setup import build_model

    clip = make_tiny_clip(folder)
    text = TextConfig("clip", path=str(clip), max_tokens=8, dropout=0.2)
    cfg = TrainConfig(
        data=DataConfig(source="digits", resolution=8, channels=3),
        model=ModelConfig(
            arch="cond-unet",
            resolution=8,
            channels=3,
            text_dim=32,
            net_kwargs={"block_out_channels": [32, 32]},
            parameterisation="edm",
            schedule="edm",
        ),
        text=text,
        trackers=[],
    )
    torch.manual_seed(0)
    denoiser, schedule = build_model(cfg)
    enc = load_text_encoder(text)
    loss = DenoisingLoss(schedule)
    opt = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        names = [("red", "blue")[int(b)] for b in torch.randint(0, 2, (batch,), generator=g)]
        x = rectangles(batch, names, g)
        caps = [("" if d < 0.2 else c) for c, d in zip(names, torch.rand(batch, generator=g).tolist())]
        value = loss(denoiser, x, generator=g, **enc.encode(caps)).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    attach_text_encoder(denoiser, enc)
    return denoiser.eval().requires_grad_(False), loss, cfg


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    return train_colour_model(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def red_input():
    return rectangles(1, ["red"], torch.Generator().manual_seed(123))  # a held-out rectangle (1, 3, 8, 8)


@pytest.fixture(scope="module")
def edit(colour_model, red_input):
    den, loss, _ = colour_model
    return im.imagic(den, loss, red_input, "blue", STRONG)


def test_step1_lowers_the_loss_and_changes_only_the_embedding(colour_model, red_input) -> None:
    den, loss, _ = colour_model
    before = digest(den)
    e_tgt = im.embed_prompt(den.net.text_encoder, "blue", "cpu")
    kept = {k: v.clone() for k, v in e_tgt.items()}
    e_opt, losses = im.optimise_embedding(den, loss, red_input, e_tgt, im.ImagicSettings(embed_steps=60, embed_lr=1e-2))
    assert digest(den) == before  # the model is frozen
    assert all(torch.equal(e_tgt[k], kept[k]) for k in kept)  # the target embedding is not changed in place
    assert torch.equal(e_opt["text_mask"], e_tgt["text_mask"])
    assert not torch.equal(e_opt["text_states"], e_tgt["text_states"])
    l_tgt = im.reconstruction_loss(den, loss, red_input, e_tgt)
    l_opt = im.reconstruction_loss(den, loss, red_input, e_opt)
    assert len(losses) == 60 and l_opt < 0.8 * l_tgt, (l_tgt, l_opt)  # measured on draws step 1 never saw


def test_step2_lowers_it_further_and_changes_only_the_copy(colour_model, red_input, edit) -> None:
    den, loss, _ = colour_model
    before = digest(den)
    e_opt = {k: v.clone() for k, v in edit.e_opt.items()}
    tuned, losses = im.finetune(den, loss, red_input, e_opt, im.ImagicSettings(finetune_steps=30, finetune_lr=1e-3))
    assert len(losses) == 30
    assert digest(den) == before  # the caller's model is untouched
    assert digest(tuned) != before
    assert all(torch.equal(e_opt[k], edit.e_opt[k]) for k in e_opt)
    assert tuned.net.text_encoder is den.net.text_encoder  # shared, not copied
    l_opt = im.reconstruction_loss(den, loss, red_input, e_opt)
    l_ft = im.reconstruction_loss(tuned, loss, red_input, e_opt)
    assert l_ft < 0.8 * l_opt, (l_opt, l_ft)
    # the edit's own (60-step) copy: delta = tuned − original, and only floating-point weights
    delta = im.weight_delta(den, edit.tuned)
    assert delta.keys() == edit.delta.keys() and any(v.abs().max() > 0 for v in delta.values())


def test_eta0_reconstructs_the_input(colour_model, red_input, edit) -> None:
    """η = 0 with the fine-tuned copy regenerates the input: PSNR ≥ 22 dB (measured 26.1 dB here), far above
    the prompt's own image (η = 1) and the untuned model with e_opt."""
    den, loss, _ = colour_model
    from noisecraft.sampling.steps import step_sigmas

    sig = step_sigmas(loss.schedule, 20, None, sampler="dpmpp_2m")
    y = edit.sample([0.0, 1.0], sig, (3, 8, 8), seed=1)
    untuned = im.sample_etas(den, edit.e_tgt, edit.e_opt, [0.0], sig, (3, 8, 8), seed=1)
    p0, p1, pu = float(psnr(y[:1], red_input)), float(psnr(y[1:], red_input)), float(psnr(untuned, red_input))
    assert p0 >= 22.0 and p0 > p1 + 5 and p0 > pu, (p0, p1, pu)


def test_eta_moves_the_output_towards_the_prompt(colour_model, red_input) -> None:
    """Blueness (mean of B − R over the image) rises monotonically with η from the red input to the blue prompt
    (measured −0.51 at η = 0 to +0.58 at η = 1.25)."""
    den, loss, _ = colour_model
    edit = im.imagic(den, loss, red_input, "blue", LIGHT)
    from noisecraft.sampling.steps import step_sigmas

    sig = step_sigmas(loss.schedule, 20, None, sampler="dpmpp_2m")
    etas = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    y = edit.sample(etas, sig, (3, 8, 8), seed=2)
    blue = (y[:, 2] - y[:, 0]).mean((1, 2))  # (len(etas),)
    assert (blue.diff() >= -0.02).all(), blue
    assert float(blue[-1] - blue[0]) > 0.3, blue
    assert float(blue[0]) < 0 < float(blue[-1]), blue  # red at η = 0, blue at the far end


def test_deterministic_and_save_load_samples_the_same(colour_model, red_input, edit, tmp_path) -> None:
    den, loss, _ = colour_model
    short = im.ImagicSettings(embed_steps=5, finetune_steps=5, embed_lr=1e-2, seed=3)
    a1, a2 = (im.imagic(den, loss, red_input, "blue", short) for _ in range(2))
    assert torch.equal(a1.e_opt["text_states"], a2.e_opt["text_states"])
    assert all(torch.equal(a1.delta[k], a2.delta[k]) for k in a1.delta)
    other = im.imagic(den, loss, red_input, "blue", im.ImagicSettings(5, 5, 1e-2, seed=4))
    assert not torch.equal(other.e_opt["text_states"], a1.e_opt["text_states"])  # the seed matters
    edit.save(tmp_path / "saved")
    loaded = im.ImagicEdit.load(tmp_path / "saved", den)
    sig = torch.tensor([20.0, 5.0, 1.0, 0.2, 0.0], dtype=torch.float64)
    a = edit.sample([0.3, 0.9], sig, (3, 8, 8), seed=4)
    b = loaded.sample([0.3, 0.9], sig, (3, 8, 8), seed=4)
    assert loaded.prompt == "blue" and torch.equal(a, b)
    with pytest.raises(NoisecraftError, match="not a saved imagic edit"):
        im.ImagicEdit.load(tmp_path, den)


def test_bad_input(colour_model, red_input) -> None:
    den, loss, _ = colour_model
    with pytest.raises(NoisecraftError, match="non-empty --prompt"):
        im.imagic(den, loss, red_input, "  ")
    with pytest.raises(NoisecraftError, match=r"\(1, C, H, W\)"):
        im.imagic(den, loss, red_input.expand(2, -1, -1, -1), "blue")
    from noisecraft.models.factory import ModelConfig, build_denoiser

    plain, _ = build_denoiser(ModelConfig(arch="mlp", preset="tiny", resolution=8, channels=3))
    with pytest.raises(NoisecraftError, match="imagic needs a text-conditioned model"):
        im.imagic(plain, loss, red_input, "blue")
    with pytest.raises(NoisecraftError, match="embed_steps"):
        im.ImagicSettings(embed_steps=-1)
