"""Latent space: the autoencoder (shapes, scaling factor, loading), the codec and the on-disk latent cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError
from noisecraft.models.autoencoder import (
    IdentityCodec,
    VAEConfig,
    build_vae,
    latent_shape,
    load_codec,
    scaling_factor,
    train_vae,
    vae_folder,
)


def tiny_vae_folder(folder: Path, seed: int = 0, preset: str = "tiny-f4") -> Path:
    """A randomly initialised AutoencoderKL saved as a diffusers folder, with a scaling factor."""
    torch.manual_seed(seed)
    vae = build_vae(preset, 3, 32)
    vae.register_to_config(scaling_factor=0.7)
    vae.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("preset", "factor"), [("tiny-f4", 4), ("tiny-f8", 8)])
def test_autoencoder_shapes_and_codec(tmp_path, preset, factor) -> None:
    folder = tiny_vae_folder(tmp_path / "vae", preset=preset)
    codec = load_codec(folder)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, 4, 32 // factor, 32 // factor) == (2, *latent_shape(folder, 32))
    # z = s·μ(x): the posterior mean, scaled (deterministic)
    mean = codec.vae.encode(x).latent_dist.mean
    assert torch.allclose(z, 0.7 * mean) and torch.equal(codec.encode(x), z)
    assert codec.decode(z).shape == x.shape
    assert torch.allclose(codec.decode(z), codec.vae.decode(mean).sample, atol=1e-5)
    # nothing clips latents: a latent far outside [−1, 1] decodes from itself
    big = 5 * torch.ones(1, *z.shape[1:])
    assert not torch.allclose(codec.decode(big), codec.decode(big.clamp(-1, 1)))
    assert torch.equal(IdentityCodec().encode(x), x)


def test_scaling_factor_makes_latents_unit_variance() -> None:
    torch.manual_seed(0)
    vae = build_vae("tiny-f4", 3, 32).eval()
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    s = scaling_factor(vae, x)
    with torch.no_grad():
        m = vae.encode(x).latent_dist.mean
    assert abs(float((s * m).std()) - 1) < 1e-4
    assert s == scaling_factor(vae, x)  # deterministic


def test_missing_or_bad_autoencoder_folder(tmp_path) -> None:
    with pytest.raises(NoisecraftError, match="is not an autoencoder") as e:
        vae_folder(tmp_path / "nothing")
    assert "\n" not in str(e.value)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(NoisecraftError, match="is not an autoencoder"):
        load_codec(tmp_path)


def test_train_vae_learns_and_writes_a_diffusers_folder(fake_fashion_mnist, tmp_path) -> None:
    from diffusers import AutoencoderKL

    from noisecraft.data.datasets import make_dataset
    from noisecraft.models.autoencoder import psnr

    data = DataConfig(source="scenes", channels=3, scenes_size=16)
    cfg = VAEConfig(data=data, steps=60, batch_size=8, lr=3e-3, scale_items=16, out_dir=str(tmp_path / "run"))
    folder = train_vae(cfg, progress=False, say=lambda *_: None)
    vae = AutoencoderKL.from_pretrained(folder)  # plain diffusers loads it
    xs = torch.stack([make_dataset(data)[i]["x"] for i in range(16)])
    with torch.no_grad():
        mean = vae.encode(xs).latent_dist.mean
        rec = vae(xs).sample
    assert abs(vae.config.scaling_factor * float(mean.std()) - 1) < 1e-3
    torch.manual_seed(0)
    fresh = build_vae("tiny-f4", 3, 32).eval()
    with torch.no_grad():
        rec0 = fresh(xs).sample
    assert psnr(rec, xs).mean() > psnr(rec0, xs).mean() + 3  # it learned something
    with pytest.raises(NoisecraftError, match="already holds"):
        train_vae(cfg, progress=False, say=lambda *_: None)


# ---------------------------------------------------------------------------------------------------------
def _latents(cfg: DataConfig, **kw):
    from noisecraft.data.latent_cache import LatentDataset

    return LatentDataset(cfg, say=lambda *_: None, **kw)


def test_latent_cache_round_trip_and_key(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    from noisecraft.data.datasets import make_dataset

    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    vae = tiny_vae_folder(tmp_path / "vae")
    cfg = DataConfig(source="scenes", channels=3, scenes_size=10, captions=True, latent=str(vae))
    ds = make_dataset(cfg)
    pixels = make_dataset(DataConfig(source="scenes", channels=3, scenes_size=10))
    want = load_codec(vae).encode(torch.stack([pixels[i]["x"] for i in range(10)]))
    assert len(ds) == 10 and ds.shape == (4, 8, 8)
    assert torch.allclose(torch.stack([ds[i]["x"] for i in range(10)]), want, atol=1e-6)
    assert ds[3]["caption"] in ds.caption_choices(3)
    shards = sorted(ds.folder.glob("shard-*.safetensors"))
    assert len(shards) == 1 and (ds.folder / "done.json").is_file()
    # the same data and autoencoder reuse the cache; other data or another autoencoder get their own
    assert _latents(cfg).folder == ds.folder
    assert _latents(DataConfig(**{**cfg.to_dict(), "seed": 1})).folder != ds.folder
    vae2 = tiny_vae_folder(tmp_path / "vae2", seed=1)
    other = _latents(DataConfig(**{**cfg.to_dict(), "latent": str(vae2)}))
    assert other.folder != ds.folder and not torch.allclose(other.latents, ds.latents)


KILL_SCRIPT = """
import sys, time
import noisecraft.models.autoencoder as ae
from noisecraft.data.config import DataConfig
from noisecraft.data.latent_cache import LatentDataset
codec = ae.load_codec(sys.argv[1])
enc = codec.encode
def slow(x):
    time.sleep(0.5)
    return enc(x)
codec.encode = slow
LatentDataset(DataConfig(source="scenes", channels=3, scenes_size=12, latent=sys.argv[1]), shard=2)
"""


def test_latent_cache_resumes_after_sigkill(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("NOISECRAFT_CACHE", str(cache))
    vae = tiny_vae_folder(tmp_path / "vae")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(vae)], env=env)
    try:
        while not list(cache.glob("latents/*/shard-00001.safetensors")):  # wait for two whole shards
            assert p.poll() is None, "the encoding process ended before it was killed"
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    (folder,) = cache.glob("latents/*")
    before = {s.name: s.stat().st_mtime_ns for s in folder.glob("shard-*.safetensors")}
    assert 2 <= len(before) < 6 and not (folder / "done.json").exists()
    cfg = DataConfig(source="scenes", channels=3, scenes_size=12, latent=str(vae))
    ds = _latents(cfg, shard=2)  # resumes: keeps the whole shards, encodes the rest
    after = {s.name: s.stat().st_mtime_ns for s in folder.glob("shard-*.safetensors")}
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())
    fresh = _latents(DataConfig(**{**cfg.to_dict(), "seed": 0}), shard=2)
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "other"))
    uninterrupted = _latents(cfg, shard=2)
    assert torch.equal(ds.latents, uninterrupted.latents) and torch.equal(fresh.latents, ds.latents)


def test_periodic_eval_of_a_latent_run_scores_decoded_images(fake_fashion_mnist, tmp_path, monkeypatch) -> None:
    """eval_every on a latent run: the samples are decoded to pixels before FD sees them (never latents)."""
    from noisecraft.cli.main import main
    from noisecraft.evaluation import evaluate

    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    vae = tmp_path / "vae"
    argv = ["train-vae", "--data", "fashion-mnist", "--channels", "1", "--steps", "2", "--batch-size", "4"]
    assert main([*argv, "--out", str(vae), "--no-progress"]) == 0
    seen = []
    real = evaluate.evaluate_images
    monkeypatch.setattr(
        evaluate, "evaluate_images", lambda images, *a, **k: seen.append(images.shape) or real(images, *a, **k)
    )
    argv = ["train", "--data", "fashion-mnist", "--latent", str(vae), "--steps", "2", "--batch-size", "4"]
    argv += ["--set", "eval_every=2", "--set", "eval_count=8", "--set", "sample_every=0", "--set", "trackers=[]"]
    assert main([*argv, "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert seen == [(8, 1, 32, 32)]  # pixels, not (8, 4, 8, 8) latents
    rec = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[0])
    assert rec["protocol"]["extra"]["latent"] == str(vae)


def test_latent_runs_precondition_for_unit_variance_and_keep_edm_signal_to_noise() -> None:
    """A latent run under EDM gets σ_data 1 (its latents have unit variance) and a training density whose σ/σ_data
    is distributed as a pixel run's; pixels, discrete VP schedules, explicit settings and resumed runs are left
    as they are (a resumed run keeps the preconditioning it was trained with)."""
    import math

    from noisecraft.training.config import TrainConfig
    from noisecraft.training.defaults import resolve_for_data
    from noisecraft.training.setup import build_model

    def cfg(**model) -> TrainConfig:
        base = {"data": {"source": "scenes", "latent": "runs/vae", "channels": 3}, "batch_size": 8}
        base["optim"] = {"lr": 1e-3}
        base["model"] = {"preset": "tiny", "parameterisation": "edm", "schedule": "edm", **model}
        return TrainConfig.from_dict(base)

    latent, notes = resolve_for_data(cfg(), 100)
    assert latent.model.sigma_data == 1.0 and any("sigma_data 1" in n for n in notes)
    pixel, _ = resolve_for_data(TrainConfig.from_dict({**cfg().to_dict(), "data": {"source": "scenes"}}), 100)
    assert pixel.model.sigma_data is None and pixel.model.resolved_sigma_data == 0.5
    # the same distribution of σ/σ_data: log-normal means differ by ln(1/0.5)
    s_lat, s_pix = (build_model(c)[1] for c in (latent, pixel))
    assert math.isclose(s_lat.p_mean - math.log(1.0), s_pix.p_mean - math.log(0.5), abs_tol=1e-3)
    g = torch.Generator().manual_seed(0)
    r_lat = s_lat.training_sigmas(20000, generator=g) / 1.0
    r_pix = s_pix.training_sigmas(20000, generator=torch.Generator().manual_seed(0)) / 0.5
    assert torch.allclose(r_lat.log().median(), r_pix.log().median(), atol=1e-2)
    # left alone: an explicit σ_data, a discrete VP schedule, a resumed run
    assert resolve_for_data(cfg(sigma_data=0.7), 100)[0].model.sigma_data == 0.7
    vp, _ = resolve_for_data(cfg(parameterisation="eps", schedule="linear"), 100)
    assert vp.model.sigma_data is None and vp.model.resolved_sigma_data == 1.0
    resumed, _ = resolve_for_data(cfg(), 100, resuming=True)
    assert resumed.model.sigma_data is None and "p_mean" not in resumed.model.schedule_kwargs
