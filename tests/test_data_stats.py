"""The data statistics kept beside a run (sampling/data_stats.py) and the analytic first step through `generate`
and the CLI: fitted lists that start below σ_max, and `--sampler gauss_pc`.

Oracle: for Gaussian data, the analytic flow from σ_max to 0 is the exact PF-ODE sample, and gauss_pc with the
data's own statistics reproduces it in any number of steps; generate must give the same as the explicit
library calls (same seeds, same noise)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from noisecraft.cli.main import main
from noisecraft.core.oracles import GaussianData
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.sampling.data_stats import STATS_FILE, load_stats, save_stats
from noisecraft.sampling.gaussian_start import GaussianStart
from noisecraft.sampling.generate import generate
from noisecraft.sampling.noise import per_sample_generators, randn
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.steps import FORMAT, OPTIMISED_FILE, step_sigmas


def gaussian(dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(-2, 0.3, dim, dtype=torch.float64)
    return torch.randn(dim, generator=g, dtype=torch.float64), q @ torch.diag(lam) @ q.T


def test_statistics_round_trip_exactly_and_a_bad_file_is_one_clear_error(tmp_path):
    mean, cov = gaussian()
    stats = GaussianStart.from_covariance(mean, cov, shape=(1, 2, 3), rank=4)
    back = load_stats(save_stats(tmp_path / STATS_FILE, stats))
    assert back.shape == (1, 2, 3) and back.rest == stats.rest
    for name in ("mean", "eigvals", "eigvecs"):
        assert torch.equal(getattr(back, name), getattr(stats, name))
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(NoisecraftError, match="not a noisecraft data-statistics file"):
        load_stats(tmp_path / "bad.safetensors")
    with pytest.raises(NoisecraftError, match="samplers --fit"):
        load_stats(tmp_path / "missing.safetensors")


def write_fit(folder, sigmas: list[float], schedule) -> None:
    payload = {"format": FORMAT, "schedules": {str(len(sigmas) - 1): sigmas}, "sigma_max": schedule.sigma_max}
    (folder / OPTIMISED_FILE).write_text(json.dumps(payload))


def test_generate_makes_the_analytic_jump_for_a_fitted_list_that_starts_below_sigma_max(tmp_path):
    mean, cov = gaussian(seed=1)
    data, stats, sch = GaussianData(mean, cov), GaussianStart.from_covariance(mean, cov), make_schedule("linear")
    sigmas = [3.0, 1.0, 0.3, 0.1, 0.0]
    write_fit(tmp_path, sigmas, sch)
    save_stats(tmp_path / STATS_FILE, stats)
    seeds = list(range(8))
    out = generate(data, sch, (6,), seeds, sampler="unipc", steps=4, spacing=f"optimised:{tmp_path}")
    # the same by hand: σ_max·ε from the per-sample generators, the closed-form flow to 3, then UniPC
    x = sch.sigma_max * randn((8, 6), per_sample_generators(seeds), torch.float32, "cpu")
    x = stats.flow(x, sch.sigma_max, 3.0)
    ref = get_sampler("unipc")(data, x, torch.tensor(sigmas, dtype=torch.float64)).float()
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    # and it matters: starting the list at 3·ε (no jump) ends elsewhere
    naive = get_sampler("unipc")(data, 3.0 * randn((8, 6), per_sample_generators(seeds), torch.float32, "cpu"),
                                 torch.tensor(sigmas, dtype=torch.float64))  # fmt: skip
    assert (naive.float() - ref).abs().max() > 0.1
    (tmp_path / STATS_FILE).unlink()  # a skipping list without its statistics: one clear error
    with pytest.raises(NoisecraftError, match="no data statistics"):
        generate(data, sch, (6,), seeds, sampler="unipc", steps=4, spacing=f"optimised:{tmp_path}")


def test_gauss_pc_with_the_data_statistics_draws_exact_samples_of_gaussian_data_in_three_steps():
    mean, cov = gaussian(seed=2)
    data, stats, sch = GaussianData(mean, cov), GaussianStart.from_covariance(mean, cov), make_schedule("cosine")
    seeds = list(range(16))
    out = generate(data, sch, (6,), seeds, sampler="gauss_pc", steps=3, knobs={"stats": stats})
    eps = randn((16, 6), per_sample_generators(seeds), torch.float64, "cpu")
    last = float(step_sigmas(sch, 3, sampler="gauss_pc")[-2])  # the list's last level; then one denoising call
    exact = stats.denoise(stats.flow(sch.sigma_max * eps, sch.sigma_max, last), last)  # exact PF-ODE, then D
    assert (out - exact.float()).abs().max() < 1e-3
    plain = generate(data, sch, (6,), seeds, sampler="gauss_pc", steps=3)  # no statistics: not exact
    assert (plain - exact.float()).abs().max() > 0.05


def test_the_cli_fits_with_the_analytic_start_and_samples_with_gauss_pc(tmp_path, capsys):
    """A toy run: `samplers --fit` computes the training data's statistics once (their mean is the data's), records
    whether a list skips, and `sample --sampler gauss_pc` uses them."""
    from noisecraft.data.builtin import ToyDataset
    from noisecraft.data.config import DataConfig

    run = tmp_path / "run"
    quiet = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
    assert main(["train", "--data", "toy:moons", "--steps", "20", "--batch-size", "32", "--out", str(run), *quiet]) == 0
    assert main(["samplers", "--fit", str(run), "--steps", "4", "--calibration", "16", "--sampler", "gauss_pc"]) == 0
    printed = capsys.readouterr().out
    assert f"training items of toy:moons → {run / STATS_FILE}" in printed
    stats = load_stats(run / STATS_FILE)
    ds = ToyDataset(DataConfig(source="toy:moons"))
    pts = torch.stack([torch.as_tensor(ds[i]["x"]) for i in range(len(ds))]).double()
    assert torch.allclose(stats.mean, pts.mean(0), atol=0.05) and stats.shape == (2,)
    assert abs(stats.scale**2 - float(pts.var(0).mean())) < 0.05
    saved = json.loads((run / OPTIMISED_FILE).read_text())
    skips = saved["schedules"]["4"][0] < saved["sigma_max"] * (1 - 1e-9)
    assert saved.get("analytic_start") == (STATS_FILE if skips else None)
    out = tmp_path / "samples"
    argv = ["sample", str(run), "--sampler", "gauss_pc", "--steps", "4", "--schedule", f"optimised:{run}"]
    assert main([*argv, "--num", "6", "--out", str(out)]) == 0
    x = np.load(out / "samples.npy")
    assert x.shape == (6, 2) and np.isfinite(x).all() and np.abs(x).max() < 10
    assert main(["samplers", "--fit", str(tmp_path / "nowhere"), "--sampler", "gauss_pc"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_the_jump_and_gauss_pc_stay_on_the_model_device(tmp_path):
    """A meta-device model with CPU statistics: any CPU tensor mixed in on the way would fail, as on CUDA."""
    from noisecraft.models.factory import ModelConfig, build_denoiser

    net = {"block_out_channels": [8, 8, 8], "norm_num_groups": 4}
    cfg = ModelConfig(arch="unet", preset="tiny", channels=1, resolution=8, schedule="linear",
                      parameterisation="eps", net_kwargs=net)  # fmt: skip
    den, sch = build_denoiser(cfg)
    den = den.to("meta").eval().requires_grad_(False)
    stats = GaussianStart.from_samples(torch.randn(32, 1, 8, 8), rank=8)
    write_fit(tmp_path, [5.0, 1.0, 0.2, 0.0], sch)
    save_stats(tmp_path / STATS_FILE, stats)
    for sampler, knobs in (("unipc", None), ("gauss_pc", {"stats": stats})):
        out = generate(den, sch, (1, 8, 8), [0, 1], sampler=sampler, steps=3, spacing=f"optimised:{tmp_path}",
                       knobs=knobs, to_cpu=False)  # fmt: skip
        assert out.device.type == "meta" and out.shape == (2, 1, 8, 8)


def test_eval_scores_the_images_sample_draws_with_gauss_pc(tmp_path, capsys):
    """`eval RUN --sampler gauss_pc` and `sample` then `eval --samples-dir` score the same 8-bit images (both use
    the run's statistics); damaged statistics are one clear error."""
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.loop import train

    run = tmp_path / "mlp"
    cfg = {
        "data": {"source": "digits", "resolution": 8},
        "model": {"arch": "mlp", "preset": "tiny", "channels": 1, "resolution": 8, "schedule": "edm"},
        "trackers": [], "sample_every": 0, "steps": 4, "batch_size": 16, "checkpoint_every": 4, "out_dir": str(run),
    }  # fmt: skip
    train(TrainConfig.from_dict(cfg), progress=False)
    common = ["--sampler", "gauss_pc", "--steps", "3", "--num", "24"]
    fd = {}
    for name, argv in {
        "eval": ["eval", str(run), *common, "--no-floor", "--out", str(tmp_path / "a.json")],
        "sample": ["sample", str(run), *common, "--out", str(tmp_path / "png")],
        "folder": ["eval", "--samples-dir", str(tmp_path / "png"), "--dataset", "digits", "--no-floor",
                   "--out", str(tmp_path / "b.json")],
    }.items():  # fmt: skip
        assert main(argv) == 0, name
        if name != "sample":
            fd[name] = json.loads((tmp_path / f"{'a' if name == 'eval' else 'b'}.json").read_text())["scores"]["fd"]
    assert (run / STATS_FILE).is_file() and fd["eval"] == pytest.approx(fd["folder"], rel=1e-9), fd
    (run / STATS_FILE).write_bytes(b"")  # damaged statistics: one clear error, no traceback
    assert main(["eval", str(run), *common, "--no-floor"]) == 2
    assert "data-statistics file" in capsys.readouterr().err
