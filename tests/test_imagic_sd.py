"""Imagic on a Stable-Diffusion folder (editing/imagic.py through interop/stable_diffusion.py), on the tiny randomly
initialised pipeline of tiny_models.make_tiny_sd: 16×16 RGB images, 8×8×4 latents through its vae/ (scaling
factor 0.5), a 32-d CLIP text encoder padding prompts to 16 tokens, an ε-prediction U-Net in the "sd" text layout.

A random pipeline draws nothing recognisable, so the checks are ones that hold for any model: steps 1–2 lower the
image's reconstruction loss (on noise draws they never saw) and touch only what they may; along η the tuned
copy's loss rises from e_opt to e_tgt, and its η = 0 sample lies closer to the input's latents than its η = 1
sample and far closer than the untuned model's; `--load` gives the pixels the first run gave; the folder's files
are bit-identical after an edit; every tensor stays on the model's device (PyTorch's `meta` device)."""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.editing import imagic as im
from tiny_models import make_tiny_sd

# enough steps for the tiny U-Net to feel both steps (about 8 s on one CPU thread)
SETTINGS = im.ImagicSettings(embed_steps=30, finetune_steps=60, embed_lr=1e-1, finetune_lr=1e-3, batch=8, seed=0)


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """(folder, denoiser, loss, codec, z (1, 4, 8, 8) of a random 16×16 picture, digests before any edit)."""
    from noisecraft.cli.edit import load_model
    from noisecraft.editing.io import load_image
    from noisecraft.models.autoencoder import load_codec

    root = tmp_path_factory.mktemp("imagic-sd")
    folder = make_tiny_sd(root / "sd")
    den, schedule, cfg = load_model(str(folder), True, "cpu")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "in.png")
    x, _ = load_image(root / "in.png", cfg.data.resolution, cfg.data.channels)
    codec = load_codec(str(folder))
    z = codec.encode(x[None])
    assert z.shape == (1, 4, 8, 8) and den.net.layout == "sd"
    before = {"unet": digest(den), "clip": digest(den.net.text_encoder.model)}
    return folder, den, im.run_loss(cfg, schedule), codec, z, before


@pytest.fixture(scope="module")
def edit(sd):
    _, den, loss, _, z, _ = sd
    return im.imagic(den, loss, z, "a blue bag", SETTINGS)


def test_steps_lower_the_loss_and_touch_only_the_embedding_then_the_copy(sd, edit) -> None:
    """Step 1 moves only the token states (the "sd" U-Net reads no mask and no pooled vector); step 2 changes only
    the copy. Measured on held-out draws: 1.368 (prompt) → 1.129 (e_opt) → 0.170 (tuned copy)."""
    _, den, loss, _, z, before = sd
    assert digest(den) == before["unet"] and digest(den.net.text_encoder.model) == before["clip"]
    assert im.trained_keys(den) == ("text_states",)
    assert not torch.equal(edit.e_opt["text_states"], edit.e_tgt["text_states"])
    assert edit.e_opt["text_states"].shape == (1, 16, 32)  # every token state, padding included
    for k in ("text_mask", "text_pooled"):
        assert torch.equal(edit.e_opt[k], edit.e_tgt[k]), k
    assert torch.equal(edit.e_tgt["text_states"], den.net.text_encoder.encode(["a blue bag"])["text_states"])
    l_tgt = im.reconstruction_loss(den, loss, z, edit.e_tgt)
    l_opt = im.reconstruction_loss(den, loss, z, edit.e_opt)
    l_ft = im.reconstruction_loss(edit.tuned, loss, z, edit.e_opt)
    assert l_opt < 0.9 * l_tgt and l_ft < 0.5 * l_opt, (l_tgt, l_opt, l_ft)
    assert len(edit.embed_losses) == 30 and len(edit.finetune_losses) == 60
    assert digest(edit.tuned) != before["unet"] and edit.tuned.net.unet is not den.net.unet
    assert edit.tuned.net.text_encoder is den.net.text_encoder  # shared, not copied
    assert any(float(v.abs().max()) > 0 for v in edit.delta.values())


def test_eta0_reconstructs_more_closely_than_eta1(sd, edit) -> None:
    """Along η the tuned copy's held-out loss rises from e_opt to e_tgt (measured 0.170 → 0.305); sampled, η = 0
    lands nearer the input's latents than η = 1 (MSE 8.3 against 13.3) and the untuned model (219). Held on
    3 pipeline seeds × 3 sampling seeds while choosing SETTINGS."""
    from noisecraft.sampling.steps import step_sigmas

    _, den, loss, _, z, _ = sd
    etas = [0.0, 0.25, 0.5, 0.75, 1.0]
    keys = im.trained_keys(den)
    along = [im.reconstruction_loss(edit.tuned, loss, z, im.mix(edit.e_tgt, edit.e_opt, e, keys)) for e in etas]
    assert all(b > a for a, b in itertools.pairwise(along)), along
    sig = step_sigmas(loss.schedule, 10, None, sampler="dpmpp_2m")
    y = edit.sample([0.0, 1.0], sig, z.shape[1:], seed=0)
    untuned = im.sample_etas(den, edit.e_tgt, edit.e_opt, [0.0], sig, z.shape[1:], seed=0)
    d0, d1, du = ((v - z).pow(2).mean().item() for v in (y[:1], y[1:], untuned))
    assert d0 < 0.8 * d1 and d0 < 0.1 * du, (d0, d1, du)


def sd_section() -> tuple[list[list[str]], str]:
    """The `noisecraft` commands and the Python block of docs/editing.md's "Imagic on a Stable-Diffusion folder"."""
    doc = (Path(__file__).parents[1] / "docs" / "editing.md").read_text()
    sec = doc[doc.index("### Imagic on a Stable-Diffusion folder") :]
    sec = sec[: sec.index("\n## ")]
    bash = re.search(r"```bash\n(.*?)```", sec, re.S).group(1).replace("\\\n", " ")
    commands = [shlex.split(ln, comments=True)[1:] for ln in bash.splitlines() if ln.startswith("noisecraft ")]
    return commands, re.search(r"```python\n(.*?)```", sec, re.S).group(1)


def test_documented_sd_commands_edit_and_leave_the_folder_bit_identical(tmp_path, monkeypatch, capsys) -> None:
    """docs/editing.md's Stable-Diffusion commands at small size, on a gray 40×50 photo (converted to 16×16 RGB):
    the edits and comparison strip are written, --load gives the same pixels, the folder's files are unchanged;
    then the section's Python block, with fewer steps."""
    monkeypatch.chdir(tmp_path)
    folder = make_tiny_sd(tmp_path / "path" / "to" / "stable-diffusion-v1-5")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 40), dtype=np.uint8), "L").save("photo.png")
    before = file_hashes(folder)
    commands, python = sd_section()
    assert [c[:2] for c in commands] == [["edit", "imagic"]] * 2
    small = ["--embed-steps", "3", "--finetune-steps", "3", "--batch", "2"]
    capsys.readouterr()
    for argv in commands:
        assert main([*argv, "--steps", "4", "--no-progress", *(small if "--prompt" in argv else [])]) == 0, argv
    text = capsys.readouterr().out
    assert text.count("40x50 L -> 16x16 RGB") == 2 and text.count("reconstruction loss of the image") == 1
    out = tmp_path / "edits" / "sd-imagic"
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["comparison.png", "imagic_eta0.7.png", "imagic_eta0.png", "imagic_eta1.png"]
    pixels = {n: np.asarray(Image.open(out / n)) for n in names}
    assert pixels["imagic_eta0.7.png"].shape == (16, 16, 3)
    assert not np.array_equal(pixels["imagic_eta0.png"], pixels["imagic_eta1.png"])  # η matters
    saved = tmp_path / "edits" / "sd-red-bag"
    assert {p.name for p in saved.iterdir()} == {"embeddings.safetensors", "delta.safetensors", "imagic.json"}
    again = np.asarray(Image.open(tmp_path / "edits" / "sd-0.7" / "imagic_eta0.7.png"))
    assert np.array_equal(again, pixels["imagic_eta0.7.png"])  # --load: sampling only, the same pixels
    assert file_hashes(folder) == before  # nothing written into the folder, nothing changed

    small_settings = "im.ImagicSettings(embed_steps=2, finetune_steps=2, batch=2)"
    assert "im.ImagicSettings()" in python
    scope: dict = {}
    python = python.replace("im.ImagicSettings()", small_settings).replace("(schedule, 25,", "(schedule, 3,")
    exec(python, scope)
    assert scope["z"].shape == (1, 4, 8, 8) and scope["y"].shape == (3, 3, 16, 16)
    assert torch.isfinite(scope["y"]).all() and not torch.equal(scope["y"][0], scope["y"][2])
    assert file_hashes(folder) == before


@pytest.mark.parametrize("extra", [["--prompt", " "], []])
def test_an_empty_prompt_is_one_line(tmp_path, capsys, extra) -> None:
    folder = make_tiny_sd(tmp_path / "sd")
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    capsys.readouterr()
    assert main(["edit", "imagic", str(folder), str(tmp_path / "in.png"), *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "non-empty --prompt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_imagic_on_an_sd_folder_stays_on_the_model_device(sd, tmp_path) -> None:
    """Steps 1–3 and save/load with the U-Net on `meta`: any CPU tensor mixed in fails, as it would on CUDA (loss
    values read back as zeros: see test_device_placement.ValuesReadAsZero)."""
    from noisecraft.interop.stable_diffusion import load_stable_diffusion
    from noisecraft.sampling.steps import step_sigmas
    from test_device_placement import META, ValuesReadAsZero

    folder, _, loss, _, _, _ = sd
    den, schedule, shape, enc = load_stable_diffusion(folder, "cpu")
    den = den.to(META)
    z = torch.zeros(1, *shape, device=META)
    settings = im.ImagicSettings(embed_steps=2, finetune_steps=2, batch=2)
    with ValuesReadAsZero():
        edit = im.imagic(den, loss, z, "a red bag", settings)
        assert all(v.device == META for v in (*edit.e_opt.values(), *edit.delta.values()))
        assert next(edit.tuned.parameters()).device == META
        sig = step_sigmas(schedule, 3, sampler="dpmpp_2m")
        neg = enc.encode([""], device=META)
        assert edit.sample([0.0, 1.0], sig, shape, cfg_scale=3.0, negative=neg).device == META
        edit.save(tmp_path / "saved")
        loaded = im.ImagicEdit.load(tmp_path / "saved", den)
        assert loaded.e_opt["text_states"].device == META and loaded.sample([0.5], sig, shape).device == META
