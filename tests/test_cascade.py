"""The cascade's super-resolution stage (models/upsampler.py): the augmentation at level 0 is the identity, the
sampling path gives the exact conditional answer of Gaussian data, a trained upsampler's conditioning path
carries the high-resolution answer, and the CLI chains base → upsampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.core.schedules import make_schedule
from noisecraft.models.upsampler import SRNet, augment, build_sr_unet, downsample, training_condition, upscale

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]


class GaussianUpsampler:
    """The exact super-resolution denoiser of Gaussian data x ~ N(μ, Σ) (d = C·H·W) observed through
    z = A·x + s·ε (A: area averaging to low_res, s the augmentation level): x | z ~ N(m, S) with
    m = μ + ΣAᵀ(AΣAᵀ + s²I)⁻¹(z − Aμ), S = Σ − ΣAᵀ(AΣAᵀ + s²I)⁻¹AΣ, and D(x; σ) = m + S(S + σ²I)⁻¹(x − m)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, shape: tuple[int, int, int], low_res: int):
        self.mean, self.cov, self.shape = mean.double(), cov.double(), shape
        self.low_res, self.high_res = low_res, shape[-1]
        eye = torch.eye(mean.numel(), dtype=torch.float64).reshape(-1, *shape)
        self.A = downsample(eye, low_res).reshape(mean.numel(), -1).T  # (d_low, d)

    def __call__(self, x, sigma, low=None, aug_sigma=0.0):
        b, d = x.shape[0], self.mean.numel()
        xf, zf = x.reshape(b, -1).double(), low.reshape(b, -1).double()
        s = torch.as_tensor(aug_sigma, dtype=torch.float64).reshape(-1).expand(b)
        assert bool((s == s[0]).all())  # one level for the batch, as upscale gives
        sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(b)
        A, mu, cov = self.A, self.mean, self.cov
        k = cov @ A.T @ torch.linalg.inv(A @ cov @ A.T + s[0] ** 2 * torch.eye(len(A), dtype=torch.float64))
        m, S = mu + (zf - A @ mu) @ k.T, cov - k @ A @ cov  # (B, d), (d, d)
        eye = torch.eye(d, dtype=torch.float64)
        sol = torch.linalg.solve(S + sig[:, None, None] ** 2 * eye, (xf - m)[..., None])[..., 0]  # (B, d)
        return (m + sol @ S.T).reshape(x.shape).to(x.dtype)


def _gaussian(shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    m = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return 0.3 * torch.randn(d, generator=g, dtype=torch.float64), 0.2 * (m @ m.T) + 0.01 * torch.eye(d)


def test_augmentation_level_zero_is_the_identity_and_other_levels_add_that_much_noise():
    low = torch.rand(64, 1, 8, 8) * 2 - 1
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    assert augment(low, 0.0, gens) is low and augment(low, torch.zeros(64), torch.Generator()) is low
    z = augment(low, 0.3, [torch.Generator().manual_seed(i) for i in range(64)])
    assert abs(float((z - low).std()) - 0.3) < 0.01
    # the network sees the low image itself at level 0: its conditioning channels are exactly up(low)
    net = build_sr_unet("nano", 16, 1, 8, 0.5, block_out_channels=[8, 8, 8], norm_num_groups=4)
    seen = {}
    real = net.unet.forward

    def spy(inp, t, class_labels=None):
        seen.update(cond=inp[:, 1:].clone(), c_aug=class_labels.clone())
        return real(inp, t, class_labels=class_labels)

    net.unet.forward = spy
    net(torch.zeros(2, 1, 16, 16), torch.zeros(2), low=low[:2], aug_sigma=0.0)
    up = torch.nn.functional.interpolate(low[:2], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(seen["cond"], up) and torch.equal(seen["c_aug"], torch.zeros(2))
    net(torch.zeros(2, 1, 16, 16), torch.zeros(2), low=low[:2], aug_sigma=0.4)
    assert not torch.equal(seen["cond"], up) and bool((seen["c_aug"] > 0).all())


def test_training_condition_is_the_area_downsampled_image_plus_its_level_of_noise():
    x0 = torch.rand(256, 1, 16, 16) * 2 - 1
    c = training_condition(x0, 8, 0.5, torch.Generator().manual_seed(0))
    s = c["aug_sigma"]
    assert c["low"].shape == (256, 1, 8, 8) and s.shape == (256,) and 0 <= s.min() and s.max() <= 0.5
    resid = (c["low"] - torch.nn.functional.avg_pool2d(x0, 2)).flatten(1)
    assert torch.allclose(resid.std(1), s.float(), rtol=0.25, atol=0.01)  # noise of each image's own level


@pytest.mark.parametrize("aug", [0.0, 0.2])
def test_upscale_samples_the_exact_conditional_distribution_of_gaussian_data(aug):
    """The sampling path (augmentation, per-sample conditioning through generate, the sampler) against the
    closed form: at level 0 every sample's area average is the given low image and its mean/covariance are the
    conditional ones; at level s the low image is first noised, so the samples spread by that much more."""
    shape = (1, 4, 4)
    mean, cov = _gaussian(shape)
    oracle = GaussianUpsampler(mean, cov, shape, 2)
    x_true = (mean + torch.linalg.cholesky(cov) @ torch.randn(16, dtype=torch.float64)).reshape(1, *shape)
    low = downsample(x_true, 2).float()  # (1, 1, 2, 2): the exact answer's low image
    n = 600
    x = upscale(oracle, make_schedule("edm"), low.expand(n, -1, -1, -1), list(range(n)), aug_sigma=aug, steps=40)
    ax = downsample(x.double(), 2).reshape(n, -1)
    A = oracle.A
    cond_cov = cov - cov @ A.T @ torch.linalg.inv(A @ cov @ A.T) @ A @ cov
    cond_mean = mean + cov @ A.T @ torch.linalg.solve(A @ cov @ A.T, low.double().reshape(-1) - A @ mean)
    if aug == 0:
        assert (ax - low.double().reshape(1, -1)).abs().max() < 2e-3  # consistent with the given image
        assert (x.double().reshape(n, -1).mean(0) - cond_mean).abs().max() < 4 * cond_cov.diag().max().sqrt() / n**0.5
        emp = torch.cov(x.double().reshape(n, -1).T)
        assert (emp - cond_cov).abs().max() < 0.25 * cond_cov.diag().max()
    else:  # each sample sees its own noisy view z = low + s·ε: with M = AΣAᵀ, K = M(M + s²I)⁻¹,
        # A·x has mean Aμ + K(low − Aμ) and covariance (M − KM) (given z) + s²KKᵀ (over z)
        M = A @ cov @ A.T
        K = M @ torch.linalg.inv(M + aug**2 * torch.eye(4, dtype=torch.float64))
        want_mean = A @ mean + K @ (low.double().reshape(-1) - A @ mean)
        want = M - K @ M + aug**2 * K @ K.T
        got = torch.cov(ax.T)
        assert (got - want).abs().max() < 0.2 * want.diag().max()
        assert (ax.mean(0) - want_mean).abs().max() < 4 * want.diag().max().sqrt() / n**0.5


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    """A small upsampler of digits, 8 → 16 px, trained on the CPU for 100 steps."""
    out = tmp_path_factory.mktemp("sr") / "run"
    argv = ["train", "--data", "digits", "--resolution", "16", "--upsample-from", "8", "--steps", "100",
            "--batch-size", "32", "--model-preset", "nano", "--lr", "2e-3", "--out", str(out), *QUIET,
            "--set", "model.aug_max=0.3"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_a_trained_upsampler_reproduces_the_high_resolution_answer_from_its_low_image(sr_run):
    """At a noise level where x says nearly nothing (σ = 5, 10x the data's scale), x̂0 comes from the
    conditioning path: given the true image's own low image it is close to the true image, given another
    image's low image it is not. Judged on other noise than training drew, over 128 digits."""
    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset
    from noisecraft.training.checkpoint import load_run

    den, _, _ = load_run(sr_run, device="cpu")
    assert isinstance(den.net, SRNet)
    data = make_dataset(DataConfig(source="digits", resolution=16))
    x0 = torch.stack([data[i]["x"] for i in range(0, 1280, 10)])  # (128, 1, 16, 16)
    low = downsample(x0, 8)
    g = torch.Generator().manual_seed(12345)
    x = x0 + 5.0 * torch.randn(x0.shape, generator=g)
    own = den(x, 5.0, low=low, aug_sigma=0.0)
    other = den(x, 5.0, low=low.roll(1, 0), aug_sigma=0.0)
    err_own = (own - x0).square().mean().item()
    err_other = (other - x0).square().mean().item()
    err_bilinear = (torch.nn.functional.interpolate(low, size=16, mode="bilinear") - x0).square().mean().item()
    assert err_own < 0.25 * err_other  # the answer comes through the conditioning path
    assert err_own < 1.5 * err_bilinear  # and is about as good as the low image allows (8 px hold most of it)


def test_upscale_and_sample_chain_the_cascade(sr_run, tmp_path):
    base = tmp_path / "base"
    argv = ["train", "--data", "digits", "--resolution", "8", "--steps", "3", "--batch-size", "8", "--arch", "unet",
            "--model-preset", "nano", "--out", str(base), *QUIET]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "chain"
    assert main(["sample", str(base), "--num", "3", "--steps", "4", "--upscale", str(sr_run), "--aug", "0",
                 "--sampler", "euler", "--out", str(out)]) == 0  # fmt: skip
    chained = np.stack([np.asarray(Image.open(out / f"seed{s:06d}.png")) for s in range(3)])
    assert chained.shape == (3, 16, 16)
    # the same as the two stages by hand: sample the base, then upscale its saved PNGs with the same seeds
    argv = ["sample", str(base), "--num", "3", "--steps", "4", "--sampler", "euler", "--out", str(tmp_path / "low")]
    assert main(argv) == 0
    lows = [str(tmp_path / "low" / f"seed{s:06d}.png") for s in range(3)]
    assert main(["upscale", str(sr_run), *lows, "--steps", "4", "--sampler", "euler", "--aug", "0",
                 "--out", str(tmp_path / "up")]) == 0  # fmt: skip
    by_hand = np.stack([np.asarray(Image.open(tmp_path / "up" / f"seed{s:06d}.png")) for s in range(3)])
    assert np.array_equal(chained, by_hand)
    # refused in one line: a base whose samples do not fit the upsampler, an upsampler given as the base
    assert main(["sample", str(sr_run), "--num", "1"]) == 2
    assert main(["sample", str(base), "--upscale", str(base), "--num", "1"]) == 2


def test_an_interrupted_upsampler_run_resumes_bit_identically(tmp_path, monkeypatch):
    """The augmentation draws come from the run's generator, so a stopped and resumed upsampler run ends at
    the weights of an uninterrupted one."""
    import os
    import signal

    from safetensors.torch import load_file

    from noisecraft.training import loop

    small = 'model.net_kwargs={"block_out_channels": [8, 8], "down_block_types": ["DownBlock2D", "DownBlock2D"], ' \
        '"up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4}'  # fmt: skip
    argv = ["train", "--data", "digits", "--resolution", "8", "--upsample-from", "4", "--steps", "6", "--batch-size",
            "8", "--model-preset", "nano", "--set", small, "--set", "checkpoint_every=2", *QUIET]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    real, calls = loop.apply_update, [0]

    def update(*a, **k):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # step 3 ends, is saved, and the run stops
        return real(*a, **k)

    monkeypatch.setattr(loop, "apply_update", update)
    assert main([*argv, "--out", str(tmp_path / "run")]) == 128 + signal.SIGTERM
    monkeypatch.setattr(loop, "apply_update", real)
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    for name in ("model", "ema", "optimizer"):
        a = load_file(tmp_path / "ref" / "checkpoints" / "step-00000006" / f"{name}.safetensors")
        b = load_file(tmp_path / "run" / "checkpoints" / "step-00000006" / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
