"""Backbones: presets build and run with the right shapes, class conditioning and the null label, the
ModelConfig conventions (what the network receives as its noise input), and one-line config errors."""

from __future__ import annotations

import json

import pytest
import torch

from noisecraft.errors import NoisecraftError
from noisecraft.models.factory import ModelConfig, build_denoiser

SMALL_UNET = {"block_out_channels": (16, 16, 32), "norm_num_groups": 8}


def randomise(module: torch.nn.Module, scale: float = 0.05) -> None:
    """diffusers zero-initialises output layers; perturb all weights so outputs depend on every input."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(
    ("arch", "preset", "resolution", "channels", "num_classes"),
    [
        ("unet", "tiny", 16, 1, 0),
        ("unet", "tiny", 8, 3, 10),
        ("unet", "small", 8, 3, 0),
        ("dit", "tiny", 8, 1, 0),
        ("dit", "tiny", 8, 3, 5),
        ("mlp", "tiny", 1, 2, 0),
    ],
)
def test_presets_forward_shapes(arch: str, preset: str, resolution: int, channels: int, num_classes: int) -> None:
    cfg = ModelConfig(arch=arch, preset=preset, resolution=resolution, channels=channels, num_classes=num_classes)
    denoiser, _ = build_denoiser(cfg)
    x = torch.randn(3, *cfg.shape)
    cond = {"class_labels": torch.tensor([0, 1, num_classes])} if num_classes else {}
    with torch.no_grad():
        out = denoiser(x, torch.tensor([0.1, 1.0, 10.0]), **cond)
        raw = denoiser.raw(x, 2.0, **cond)
    assert out.shape == x.shape == raw.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_guide_128_preset_is_the_guides_configuration() -> None:
    from noisecraft.models.unet import UNET_PRESETS

    p = UNET_PRESETS["guide-128"]
    assert tuple(p["block_out_channels"]) == (128, 128, 256, 256, 512, 512) and p["layers_per_block"] == 2
    assert p["down_block_types"] == ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    assert p["up_block_types"] == ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    with pytest.raises(NoisecraftError, match="multiple of 32"):
        build_denoiser(ModelConfig(preset="guide-128", resolution=48))


@pytest.mark.slow
def test_guide_128_builds_and_runs_at_128() -> None:
    denoiser, _ = build_denoiser(ModelConfig(preset="guide-128", resolution=128, channels=3))
    assert 100e6 < sum(p.numel() for p in denoiser.parameters()) < 130e6
    with torch.no_grad():
        assert denoiser(torch.randn(1, 3, 128, 128), 1.0).shape == (1, 3, 128, 128)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_class_conditioning_and_null_label(arch: str) -> None:
    kw = {"net_kwargs": SMALL_UNET} if arch == "unet" else {}
    cfg = ModelConfig(arch=arch, resolution=8, channels=1, num_classes=3, **kw)
    denoiser, _ = build_denoiser(cfg)
    randomise(denoiser)
    assert denoiser.net.null_label == 3
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        by_label = [denoiser(x, 1.0, class_labels=torch.full((4,), k)) for k in range(4)]
        default = denoiser(x, 1.0)
    assert torch.equal(default, by_label[3])  # no labels means the null label
    for a in range(4):
        for b in range(a):
            assert not torch.allclose(by_label[a], by_label[b])  # every label, null included, is distinct
    denoiser.train()  # diffusers' DiT would drop labels at random in train mode: switched off
    with torch.no_grad():
        assert torch.equal(denoiser(x, 1.0, class_labels=torch.zeros(4, dtype=torch.long)), by_label[0])


def test_unconditional_nets_refuse_labels() -> None:
    denoiser, _ = build_denoiser(ModelConfig(resolution=8, net_kwargs=SMALL_UNET))
    with pytest.raises(NoisecraftError, match="unconditional"):
        denoiser(torch.randn(1, 1, 8, 8), 1.0, class_labels=torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize(
    ("schedule", "noise_input", "sigma_data"),
    [("linear", "t", 1.0), ("cosine", "t", 1.0), ("edm", "log_sigma", 0.5), ("ve", "log_sigma", 0.5)],
)
def test_noise_input_conventions(schedule: str, noise_input: str, sigma_data: float) -> None:
    """Discrete VP: the U-Net sees the DDPM timestep index and the VP state; EDM: ¼·ln σ and x/√(σ²+σ_d²)."""
    cfg = ModelConfig(resolution=8, schedule=schedule, net_kwargs=SMALL_UNET)
    denoiser, sched = build_denoiser(cfg)
    assert denoiser.precond.noise_input == noise_input and denoiser.precond.sigma_data == sigma_data
    seen = {}
    denoiser.net.unet.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], t=args[1]))
    x = torch.randn(2, 1, 8, 8)
    if noise_input == "t":
        t = torch.tensor([17, 640])
        sigma = sched.sigmas[t]
        expect_t, expect_x = t.double(), x * (1 + sigma[:, None, None, None] ** 2).rsqrt()
    else:
        sigma = torch.tensor([0.3, 20.0], dtype=torch.float64)
        expect_t, expect_x = 0.25 * sigma.log(), x * (sigma[:, None, None, None] ** 2 + 0.25).rsqrt()
    with torch.no_grad():
        denoiser(x, sigma)
    assert torch.allclose(seen["t"].double(), expect_t, atol=1e-4)
    assert torch.allclose(seen["x"], expect_x.float(), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "transformer"}, "dit, mlp, unet"),
        ({"preset": "huge"}, "auto, guide-128, nano, small, tiny"),
        ({"parameterisation": "flow"}, "parameterisation"),
        ({"schedule": "quadratic"}, "schedule"),
        ({"num_classes": -1}, "num_classes"),
        ({"channels": 2}, "channels must be 1, 3 or 4"),
        ({"sigma_data": 0}, "sigma_data"),
        ({"noise_input": "sigma"}, "noise_input"),
        ({"schedule": "edm", "noise_input": "t"}, "log_sigma"),
    ],
)
def test_bad_model_config(kwargs: dict, match: str) -> None:
    with pytest.raises(NoisecraftError, match=match) as e:
        ModelConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_bad_build_values_are_one_line() -> None:
    for cfg, match in [
        (ModelConfig(resolution=10), "multiple of 4"),
        (ModelConfig(arch="dit", resolution=9), "patch size"),
        (ModelConfig(net_kwargs={"no_such_kwarg": 1}), "bad unet configuration"),
        (ModelConfig(schedule="linear", schedule_kwargs={"steps": 0}), "positive integer"),
    ]:
        with pytest.raises(NoisecraftError, match=match) as e:
            build_denoiser(cfg)
        assert "\n" not in str(e.value)


def test_model_config_json_round_trip() -> None:
    cfg = ModelConfig(arch="dit", num_classes=10, parameterisation="v", schedule="cosine", net_kwargs={"a": (1, 2)})
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(NoisecraftError, match="unknown model config key.*archh.*valid keys: arch"):
        ModelConfig.from_dict({"archh": "unet"})
