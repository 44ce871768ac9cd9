"""diffusers interop, proven by parity on the same inputs: export → diffusers pipelines draw the same samples
as noisecraft's samplers; a diffusers folder built locally → load → D(x, σ) equals the manual diffusers
computation and noisecraft's DDIM walks diffusers' DDIM timesteps to the same samples. Tolerance: 1e-4 in
[0, 1] pixel units (measured differences are ~1e-6: float32 rounding of ᾱ and of the network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from noisecraft.errors import NoisecraftError
from noisecraft.interop.diffusers import export_diffusers, load_diffusers
from noisecraft.models.factory import ModelConfig, build_denoiser
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas

TOL = 1e-4
SMALL_UNET = {"block_out_channels": [16, 16, 32], "norm_num_groups": 8}


def randomise(module: torch.nn.Module, scale: float = 0.05) -> None:
    """diffusers zero-initialises output layers; perturb all weights so the outputs are non-trivial."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def tiny_model(**kw):
    cfg = ModelConfig(arch="unet", resolution=8, channels=1, net_kwargs=SMALL_UNET, **kw)
    denoiser, schedule = build_denoiser(cfg)
    randomise(denoiser)
    return denoiser.eval(), schedule


def to_pixels(x: torch.Tensor):
    """noisecraft [-1, 1] (B, C, H, W) → what the diffusers pipeline returns with output_type="np"."""
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


# The cosine schedule reaches σ_max ≈ 2·10⁴: the VE state x = x0 + σ·ε then holds ~1e-3 absolute float32
# rounding at the first steps, so its tolerance is 1e-3 (a quarter of an 8-bit level).
@pytest.mark.parametrize(
    ("kind", "schedule", "tol"), [("eps", "linear", TOL), ("v", "cosine", 1e-3), ("x0", "scaled_linear", TOL)]
)
def test_export_ddpm_pipeline_matches_noisecraft_samplers(tmp_path: Path, kind: str, schedule: str, tol: float) -> None:
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline

    denoiser, sched = tiny_model(parameterisation=kind, schedule=schedule)
    export_diffusers(denoiser, sched, tmp_path / "out")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    config = pipe.scheduler.config
    assert config.prediction_type == {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[kind]
    assert config.beta_schedule == {"linear": "linear", "cosine": "squaredcos_cap_v2"}.get(schedule, schedule)
    steps = 10
    sigmas = step_sigmas(sched, steps, "trailing")
    vp_to_ve = float((1 + sigmas[0] ** 2).sqrt())  # the pipeline starts from ε in VP form: x_ve = x_vp/√ᾱ

    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=steps, output_type="np")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 8, 8, generator=g) * vp_to_ve
    ours = get_sampler("ddpm")(denoiser, x, sigmas, generator=g)  # same generator: same posterior noise
    assert abs(theirs.images - to_pixels(ours)).max() < tol

    ddim = DDIMPipeline(
        unet=pipe.unet, scheduler=DDIMScheduler.from_pretrained(tmp_path / "out", subfolder="scheduler")
    )
    ddim.set_progress_bar_config(disable=True)
    theirs = ddim(
        batch_size=2, generator=torch.Generator().manual_seed(4), num_inference_steps=steps, eta=0.0, output_type="np"
    )
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * vp_to_ve
    ours = get_sampler("ddim")(denoiser, x, sigmas)
    assert abs(theirs.images - to_pixels(ours)).max() < tol
    assert abs(to_pixels(ours)).mean() > 0.05  # not a degenerate all-black sample


def test_export_round_trip_restores_the_denoiser(tmp_path: Path) -> None:
    denoiser, sched = tiny_model(parameterisation="v", schedule="linear", num_classes=3)
    export_diffusers(denoiser, sched, tmp_path / "out")
    loaded, loaded_sched = load_diffusers(tmp_path / "out")
    assert loaded.config == denoiser.config and loaded.net.null_label == 3
    assert torch.allclose(loaded_sched.sigmas, sched.sigmas, rtol=1e-5)
    x, sigma, labels = torch.randn(3, 1, 8, 8), torch.tensor([0.05, 1.0, 40.0]), torch.tensor([0, 2, 3])
    with torch.no_grad():
        assert torch.allclose(loaded(x, sigma, class_labels=labels), denoiser(x, sigma, class_labels=labels), atol=1e-5)
    meta = json.loads((tmp_path / "out" / "noisecraft.json").read_text())
    assert meta["parameterisation"] == "v" and meta["null_label"] == 3


def test_export_edm_matches_edm_euler_scheduler_loop(tmp_path: Path) -> None:
    from diffusers import EDMEulerScheduler, UNet2DModel

    denoiser, sched = tiny_model(parameterisation="edm", schedule="edm", num_classes=3)
    export_diffusers(denoiser, sched, tmp_path / "edm")
    assert not (tmp_path / "edm" / "model_index.json").exists()
    unet = UNet2DModel.from_pretrained(tmp_path / "edm", subfolder="unet")
    scheduler = EDMEulerScheduler.from_pretrained(tmp_path / "edm", subfolder="scheduler")
    steps, labels = 8, torch.tensor([0, 2])
    scheduler.set_timesteps(steps)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * float(scheduler.sigmas[0])
    theirs = x.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = unet(scheduler.scale_model_input(theirs, t), t, class_labels=labels).sample
            theirs = scheduler.step(out, t, theirs).prev_sample
    ours = get_sampler("euler")(denoiser, x, step_sigmas(sched, steps), cond={"class_labels": labels})
    assert (ours - theirs).abs().max() < TOL * 2  # in [-1, 1] units
    assert ours.abs().mean() > 0.05


def make_diffusers_folder(folder: Path, **scheduler_kw) -> tuple:
    """A UNet2DModel pipeline written by diffusers alone (no noisecraft involved)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    randomise(unet)
    scheduler = DDPMScheduler(**scheduler_kw)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return unet.eval(), scheduler


@pytest.mark.parametrize(
    "scheduler_kw",
    [
        {"beta_schedule": "linear", "prediction_type": "epsilon"},
        {"beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "rescale_betas_zero_snr": True},
        {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample", "num_train_timesteps": 500},
    ],
)
def test_load_diffusers_denoiser_equals_manual_diffusers(tmp_path: Path, scheduler_kw: dict) -> None:
    unet, scheduler = make_diffusers_folder(tmp_path / "pipe", **scheduler_kw)
    denoiser, schedule = load_diffusers(tmp_path / "pipe")
    abar = scheduler.alphas_cumprod.double()
    t = torch.tensor([0, 100, schedule.num_timesteps - 2])
    a = abar[t][:, None, None, None]
    x_vp = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        out = unet(x_vp, t).sample.double()
        x0 = {
            "epsilon": (x_vp - (1 - a).sqrt() * out) / a.sqrt(),
            "v_prediction": a.sqrt() * x_vp - (1 - a).sqrt() * out,
            "sample": out,
        }[scheduler_kw["prediction_type"]]
        ours = denoiser((x_vp / a.sqrt()).float(), ((1 - a) / a).sqrt().flatten())  # σ_t = √((1−ᾱ)/ᾱ)
    assert torch.allclose(ours.double(), x0, atol=1e-4, rtol=1e-4)


def test_load_diffusers_samples_like_diffusers_ddim(tmp_path: Path) -> None:
    """noisecraft's DDIM on step_sigmas(schedule, n, loaded.timestep_spacing) walks diffusers' DDIM steps."""
    from diffusers import DDIMPipeline, DDIMScheduler

    unet, _ = make_diffusers_folder(tmp_path / "pipe", beta_schedule="linear", timestep_spacing="leading")
    denoiser, schedule = load_diffusers(tmp_path / "pipe")
    assert denoiser.timestep_spacing == "leading"
    # diffusers' DDPM default clip_sample=True clamps x̂0 to [-1, 1]; noisecraft's samplers never clip
    scheduler = DDIMScheduler.from_pretrained(tmp_path / "pipe", subfolder="scheduler", clip_sample=False)
    ddim = DDIMPipeline(unet=unet, scheduler=scheduler)
    ddim.set_progress_bar_config(disable=True)
    theirs = ddim(
        batch_size=2, generator=torch.Generator().manual_seed(1), num_inference_steps=10, eta=0.0, output_type="np"
    )
    sigmas = step_sigmas(schedule, 10, denoiser.timestep_spacing)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * float((1 + sigmas[0] ** 2).sqrt())
    ours = get_sampler("ddim")(denoiser, x, sigmas)
    assert abs(theirs.images - to_pixels(ours)).max() < TOL


def test_clipped_denoiser_reproduces_clip_sample(tmp_path: Path) -> None:
    """A foreign DDPM pipeline with clip_sample=True (diffusers' default): ClippedDenoiser matches it."""
    from diffusers import DDPMPipeline

    from noisecraft.core.denoiser import ClippedDenoiser

    make_diffusers_folder(tmp_path / "pipe", beta_schedule="linear", clip_sample=True, timestep_spacing="trailing")
    denoiser, schedule = load_diffusers(tmp_path / "pipe")
    assert denoiser.clip_sample and denoiser.clip_sample_range == 1.0
    pipe = DDPMPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(5), num_inference_steps=10, output_type="np")
    sigmas = step_sigmas(schedule, 10, "trailing")
    results = {}
    for clip in (False, True):
        g = torch.Generator().manual_seed(5)
        x = torch.randn(2, 1, 8, 8, generator=g) * float((1 + sigmas[0] ** 2).sqrt())
        model = ClippedDenoiser(denoiser, denoiser.clip_sample_range) if clip else denoiser
        results[clip] = abs(theirs.images - to_pixels(get_sampler("ddpm")(model, x, sigmas, generator=g))).max()
    assert results[True] < TOL < results[False]  # clipping matters for this net, and is reproduced


def test_export_refuses_what_diffusers_cannot_represent(tmp_path: Path) -> None:
    cases = [
        (ModelConfig(arch="dit", resolution=8), "only U-Net"),
        (ModelConfig(resolution=8, schedule="ve", net_kwargs=SMALL_UNET), "not VE"),
        (ModelConfig(resolution=8, schedule="edm", parameterisation="eps", net_kwargs=SMALL_UNET), "edm or v"),
        (ModelConfig(resolution=8, schedule="linear", sigma_data=0.5, net_kwargs=SMALL_UNET), "sigma_data 1"),
    ]
    for cfg, match in cases:
        denoiser, sched = build_denoiser(cfg)
        with pytest.raises(NoisecraftError, match=match) as e:
            export_diffusers(denoiser, sched, tmp_path / "x")
        assert "\n" not in str(e.value)
    with pytest.raises(NoisecraftError, match="not a diffusers pipeline folder"):
        load_diffusers(tmp_path)


def test_hub_offline_errors_are_one_line(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    from noisecraft.interop.hub import load_from_hub, push_to_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NoisecraftError, match="HF_HUB_OFFLINE") as e:
        push_to_hub(tmp_path, "someone/model")
    assert "\n" not in str(e.value)
    with pytest.raises(NoisecraftError, match="offline") as e:
        load_from_hub("someone/surely-not-cached-model", cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(e.value)
    with pytest.raises(NoisecraftError, match="user/name"):
        push_to_hub(tmp_path, "no-slash")


def test_export_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from noisecraft.cli.main import main

    assert main(["export", str(tmp_path / "no-run"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisecraft export: error:") and "\n" not in err


def test_export_cli_writes_a_pipeline(tmp_path: Path, monkeypatch, capsys) -> None:
    """The command's glue: load_run (stubbed with an in-memory model) → export → a loadable pipeline folder."""
    import types

    import noisecraft.training.checkpoint as checkpoint
    from noisecraft.cli.main import main

    denoiser, sched = tiny_model(parameterisation="v")
    seen = {}

    def fake_load_run(path, ema=True, device=None):
        seen.update(path=path, ema=ema)
        return denoiser, sched, types.SimpleNamespace(model=denoiser.config)

    monkeypatch.setattr(checkpoint, "load_run", fake_load_run)
    assert main(["export", "some-run", str(tmp_path / "out"), "--raw"]) == 0
    assert seen == {"path": "some-run", "ema": False} and "DDPMPipeline" in capsys.readouterr().out
    loaded, _ = load_diffusers(tmp_path / "out")
    assert loaded.config == denoiser.config
