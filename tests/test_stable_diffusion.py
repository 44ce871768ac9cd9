"""Stable-Diffusion folders in and out, proven by parity with diffusers' StableDiffusionPipeline on the same σ list
and the same starting latents: a tiny randomly initialised pipeline built and saved here (no hub) is sampled by
`noisecraft sample SD_FOLDER` and by the pipeline (DDIM, trailing steps, with and without CFG + a negative
prompt; Euler on the scheduler's own σ's); a noisecraft text run exported with `export --format sd` is loaded by
StableDiffusionPipeline.from_pretrained and draws the images noisecraft draws.

Tolerance: 8-bit PNGs against the pipeline's float output differ by the rounding, ≤ 0.5/255, plus float32
noise (measured < 1e-5); TOL = 1/255 + 1e-4 in [0, 1] units. Float arrays against float arrays: 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.sampling.noise import per_sample_generators, randn
from tiny_models import make_tiny_clip, make_tiny_sd

PNG_TOL = 1 / 255 + 1e-4
TOL = 1e-4


def pipeline(folder: Path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    # the σ list of noisecraft's `--sampler ddim --schedule trailing`, ending at σ = 0 (ᾱ = 1)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, steps_offset=0
    )
    return pipe


def start_latents(seeds: list[int], shape: tuple[int, ...], sigma_max: float) -> torch.Tensor:
    """noisecraft's starting state σ_max·ε (per-seed generators) in the pipeline's VP form x/√(1+σ_max²)."""
    return randn((len(seeds), *shape), per_sample_generators(seeds)) * sigma_max / (1 + sigma_max**2) ** 0.5


def read_pngs(folder: Path, seeds: list[int]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / f"seed{s:06d}.png"), dtype=np.float64) / 255 for s in seeds])


@pytest.mark.parametrize("cfg", [None, 3.0])
def test_sample_sd_folder_matches_stable_diffusion_pipeline(tmp_path: Path, cfg: float | None) -> None:
    from noisecraft.interop.pretrained import load_pretrained

    folder = make_tiny_sd(tmp_path / "sd")
    model = load_pretrained(str(folder), device="cpu")
    assert model.kind == "stable-diffusion" and model.shape == (4, 8, 8) and model.text_encoder.max_tokens == 16
    seeds, prompt, negative = [5, 6], "a red bag on the left", "a blue coat"
    argv = ["sample", str(folder), "--prompt", prompt, "--sampler", "ddim", "--steps", "4", "--schedule", "trailing"]
    argv += ["--num", "2", "--seed", "5", "--out", str(tmp_path / "ours")]
    argv += [] if cfg is None else ["--cfg", str(cfg), "--negative-prompt", negative]
    assert main(argv) == 0
    ours = read_pngs(tmp_path / "ours", seeds)
    assert ours.shape == (2, 16, 16, 3)

    pipe = pipeline(folder)
    sigma_max = float(model.schedule.sigma(torch.tensor(999.0)))
    kw = {"guidance_scale": 1.0} if cfg is None else {"guidance_scale": cfg, "negative_prompt": [negative] * 2}
    theirs = pipe(
        [prompt] * 2,
        num_inference_steps=4,
        latents=start_latents(seeds, model.shape, sigma_max),
        output_type="np",
        **kw,
    ).images
    assert abs(theirs - ours).max() < PNG_TOL
    assert ours.std() > 0.01  # not a flat picture
    # the prompt matters: another prompt gives another picture
    other = pipe(["left: empty; right: white coat"] * 2, num_inference_steps=4, output_type="np",
                 latents=start_latents(seeds, model.shape, sigma_max), **kw).images  # fmt: skip
    assert abs(other - theirs).max() > 10 / 255


def test_euler_on_the_schedulers_own_sigmas_matches_euler_discrete(tmp_path: Path) -> None:
    """noisecraft's euler sampler on EulerDiscreteScheduler's σ list == the pipeline with that scheduler."""
    from diffusers import EulerDiscreteScheduler

    from noisecraft.interop.pretrained import load_pretrained
    from noisecraft.models.autoencoder import load_codec
    from noisecraft.sampling.prompt_guidance import prompt_denoiser
    from noisecraft.sampling.samplers import get_sampler

    folder = make_tiny_sd(tmp_path / "sd", seed=1, prediction_type="v_prediction")
    model = load_pretrained(str(folder), device="cpu")
    pipe = pipeline(folder)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.scheduler.set_timesteps(5)
    sigmas = pipe.scheduler.sigmas.double()  # (6,), last 0
    eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = eps * pipe.scheduler.init_noise_sigma
    theirs = pipe(["a red bag"] * 2, negative_prompt=["sneaker"] * 2, guidance_scale=4.0, num_inference_steps=5,
                  latents=eps, output_type="np").images  # fmt: skip
    denoiser, cond = prompt_denoiser(model.denoiser, model.text_encoder, ["a red bag"] * 2, "sneaker", 4.0)
    z = get_sampler("euler")(denoiser, x, sigmas, cond=cond)
    ours = (load_codec(str(folder)).decode(z) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(theirs - ours).max() < TOL
    assert ours.std() > 0.01


QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "ema.decay=0.5"]
SMALL = ["--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--set", "data.scenes_size=16"]


def interop_section() -> tuple[list[list[str]], str]:
    """The `noisecraft` commands and the Python block of docs/interop.md's Stable-Diffusion section."""
    import re
    import shlex

    doc = (Path(__file__).parents[1] / "docs" / "interop.md").read_text()
    sec = doc[doc.index("## Stable-Diffusion folders") :]
    sec = sec[: sec.index("\n## ")]
    bash = re.search(r"```bash\n(.*?)```", sec, re.S).group(1)
    commands = [shlex.split(ln, comments=True)[1:] for ln in bash.splitlines() if ln.startswith("noisecraft ")]
    return commands, re.search(r"```python\n(.*?)```", sec, re.S).group(1)


def test_export_text_run_as_stable_diffusion_folder(fake_fashion_mnist, tmp_path: Path, monkeypatch) -> None:
    """Trains a tiny text run in the "sd" layout, then runs docs/interop.md's Stable-Diffusion section (its
    commands and its Python block) and checks the exported folder against StableDiffusionPipeline."""
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    vae, clip = tmp_path / "vae", make_tiny_clip(tmp_path / "clip")
    argv = ["train-vae", "--steps", "3", "--batch-size", "4", "--set", "data.scenes_size=16", "--out", str(vae)]
    assert main([*argv, "--no-progress"]) == 0
    run = tmp_path / "runs" / "scenes-sd"
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", "6"]
    argv += ["--batch-size", "4", "--lr", "3e-3", "--set", "sample_every=0", "--text-layout", "sd"]
    argv += ["--schedule", "scaled_linear", "--parameterisation", "v"]  # as Stable Diffusion 2
    assert main([*argv, "--out", str(run), *QUIET, *SMALL]) == 0
    make_tiny_sd(tmp_path / "path" / "to" / "stable-diffusion-v1-5")
    commands, python = interop_section()
    assert [c[0] for c in commands] == ["sample", "edit", "export"]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save("photo.png")
    small = {"sample": ["--steps", "3", "--num", "2"], "edit": ["--steps", "3"], "export": []}
    for argv in commands:
        assert main(argv + small[argv[0]]) == 0, argv
    edited = tmp_path / "path" / "to" / "stable-diffusion-v1-5" / "edits" / "img2img" / "img2img_000_00.png"
    assert Image.open(edited).size == (16, 16)
    assert len(list((tmp_path / "path" / "to" / "stable-diffusion-v1-5" / "generated").glob("seed*.png"))) == 2
    out = tmp_path / "exported" / "scenes-sd"
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"][1] == "UNet2DConditionModel"
    assert json.loads((run / "config.json").read_text())["model"]["text_layout"] == "sd"  # set by --text-layout
    scope: dict = {}
    exec(python, scope)  # the documented diffusers snippet, as written
    assert scope["image"].size == (32, 32) and np.asarray(scope["image"]).std() > 1

    pipe = pipeline(out)  # StableDiffusionPipeline.from_pretrained(out, safety_checker=None), DDIM trailing
    assert pipe.tokenizer.model_max_length == 16 and pipe.vae_scale_factor == 4
    seeds, prompt = [0, 1], "a red bag on the left"
    import noisecraft as nc

    sigma_max = float(nc.load_run(run)[1].sigma(torch.tensor(999.0)))
    for cfg in (None, 5.0):
        extra = [] if cfg is None else ["--cfg", str(cfg)]
        for source, name in ((run, "from_run"), (out, "from_export")):
            argv = ["sample", str(source), "--prompt", prompt, "--sampler", "ddim", "--steps", "5"]
            argv += ["--schedule", "trailing", "--num", "2", "--out", str(tmp_path / name), *extra]
            assert main(argv) == 0
        kw = {"guidance_scale": 1.0} if cfg is None else {"guidance_scale": cfg, "negative_prompt": [""] * 2}
        theirs = pipe([prompt] * 2, num_inference_steps=5, output_type="np", height=32, width=32,
                      latents=start_latents(seeds, (4, 8, 8), sigma_max), **kw).images  # fmt: skip
        assert theirs.shape == (2, 32, 32, 3)
        # the exported folder sampled by noisecraft: float32 text embeddings, as the pipeline's
        assert abs(theirs - read_pngs(tmp_path / "from_export", seeds)).max() < PNG_TOL
        # the run itself caches its text embeddings in float16 (measured: nothing beyond the 8-bit rounding)
        assert abs(theirs - read_pngs(tmp_path / "from_run", seeds)).max() < PNG_TOL + 1e-3
        assert theirs.std() > 0.01


def test_sd_folder_and_export_errors_are_one_line(fake_fashion_mnist, tmp_path: Path, capsys) -> None:
    import shutil

    folder = make_tiny_sd(tmp_path / "sd")
    shutil.rmtree(folder / "vae")
    capsys.readouterr()
    assert main(["sample", str(folder), "--prompt", "a red bag", "--steps", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has no vae/ folder" in err and "Traceback" not in err and err.count("\n") == 1
    folder = make_tiny_sd(tmp_path / "sd2")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(folder / "unet" / "diffusion_pytorch_model.bin")
    assert main(["sample", str(folder), "--prompt", "a red bag", "--steps", "2", "--out", str(tmp_path / "o")]) == 2
    assert "pickle weights" in capsys.readouterr().err
    # a text run in the default layout cannot become an SD folder: it says which flag to train with
    clip = make_tiny_clip(tmp_path / "clip")
    run = tmp_path / "run"
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--steps", "1", "--batch-size", "2"]
    assert main([*argv, "--set", "sample_every=0", "--out", str(run), *QUIET, *SMALL]) == 0
    capsys.readouterr()
    assert main(["export", str(run), str(tmp_path / "e"), "--format", "sd"]) == 2
    err = capsys.readouterr().err
    assert "--text-layout sd" in err and "Traceback" not in err and err.count("\n") == 1
    assert json.loads((run / "config.json").read_text())["model"]["text_layout"] == "noisecraft"


def test_a_prompt_longer_than_the_encoder_is_truncated_with_one_warning(tmp_path: Path, capsys) -> None:
    folder = make_tiny_sd(tmp_path / "sd")
    long = "a red bag on the left and a blue coat on the right " * 3
    argv = ["sample", str(folder), "--steps", "2", "--num", "1", "--out"]
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "long"), "--prompt", long]) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if "truncated" in ln]
    assert len(warnings) == 1 and "limit of 16" in warnings[0] and "Traceback" not in err
    # truncated: a prompt that differs only after the 16th token draws the same picture
    assert main([*argv, str(tmp_path / "tail"), "--prompt", long + "and a white sandal"]) == 0
    assert np.array_equal(read_pngs(tmp_path / "long", [0]), read_pngs(tmp_path / "tail", [0]))
    assert main([*argv, str(tmp_path / "short"), "--prompt", "a white sandal"]) == 0
    assert not np.array_equal(read_pngs(tmp_path / "long", [0]), read_pngs(tmp_path / "short", [0]))


def test_edit_img2img_and_inpaint_an_sd_folder_with_a_prompt(tmp_path: Path, capsys) -> None:
    """`noisecraft edit img2img|inpaint SD_FOLDER IMG --prompt`: the loader of `sample SD_FOLDER`, latents through
    the folder's vae/, decoded 16×16 RGB results; a light edit stays at the autoencoder's own round trip."""
    from noisecraft.editing.io import load_image
    from noisecraft.models.autoencoder import load_codec

    folder = make_tiny_sd(tmp_path / "sd")
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(img)
    small = ["--steps", "10", "--num", "1"]

    def out(name: str, stem: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / name / f"{stem}.png"), dtype=np.float64) / 255

    for prompt, name in (("a red bag on the left", "red"), ("left: empty; right: white coat", "white")):
        argv = ["edit", "img2img", str(folder), str(img), "--prompt", prompt, "--cfg", "3", "--strength", "0.8"]
        assert main([*argv, "--out", str(tmp_path / name), *small]) == 0
    red, white = out("red", "img2img_000_00"), out("white", "img2img_000_00")
    assert red.shape == (16, 16, 3) and abs(red - white).max() > 10 / 255  # decoded pixels; the prompt matters
    # parity: diffusers' StableDiffusionImg2ImgPipeline on the same latents (our encoder's mean), noise (seed 0),
    # σ list (DDIM, trailing; strength 0.6 of 10 steps = its last 6 in both conventions) and CFG
    argv = ["edit", "img2img", str(folder), str(img), "--prompt", "a red bag", "--negative-prompt", "a blue coat"]
    argv += ["--cfg", "3", "--strength", "0.6", "--sampler", "ddim", "--schedule", "trailing", "--seed", "0"]
    assert main([*argv, "--out", str(tmp_path / "par"), *small]) == 0
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, steps_offset=0
    )
    x, _ = load_image(str(img), 16, 3)
    with torch.no_grad():
        z = load_codec(str(folder)).encode(x[None])  # (1, 4, 8, 8): the pipeline takes latents as they are
    theirs = pipe(
        ["a red bag"], image=z, strength=0.6, num_inference_steps=10, guidance_scale=3.0,
        negative_prompt=["a blue coat"], generator=torch.Generator().manual_seed(0), output_type="np",
    ).images[0]  # fmt: skip
    ours = out("par", "img2img_000_00")
    assert abs(theirs - ours).max() < PNG_TOL and abs(ours - red).max() > 10 / 255

    argv = ["edit", "inpaint", str(folder), str(img), "--rect", "8,0,16,16", "--prompt", "a white coat on the right"]
    assert main([*argv, "--cfg", "3", "--out", str(tmp_path / "inp"), "--steps", "4", "--num", "2"]) == 0
    src = np.asarray(Image.open(img), dtype=np.float64) / 255
    for i in range(2):
        fill = out("inp", f"inpaint_{i:02d}")
        assert np.array_equal(fill[:, :8], src[:, :8]) and not np.array_equal(fill[:, 8:], src[:, 8:])
    # bad input stays one line: an SD folder has no classes
    capsys.readouterr()
    assert main(["edit", "img2img", str(folder), str(img), "--class", "3", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "--prompt and --cfg" in err and "Traceback" not in err
