"""The first vertical slice: a few seconds of training on 2-D data give samples close to the data.

The distance threshold is set from the exact denoiser of the same distribution, sampled with the same
sampler, steps and seeds: the trained model must close at least 75% of the gap between a moment-matched
Gaussian and the exact model, in sliced Wasserstein distance and in MMD.
"""

import subprocess
import sys

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.data.toys import EXACT, toy_data
from noisecraft.evaluation.distances import mmd_rbf, sliced_wasserstein
from noisecraft.sampling.registry import get_sampler
from noisecraft.sampling.steps import step_sigmas
from noisecraft.training.toy import ToyConfig, train_toy


def _ddpm(denoiser, n=2000, steps=100):
    sig = step_sigmas(make_schedule("linear"), steps, "linspace").float()
    g = torch.Generator().manual_seed(1)
    return get_sampler("ddpm")(denoiser, sig[0] * torch.randn(n, 2, generator=g), sig, generator=g)


def test_trained_toy_model_samples_are_close_to_data():
    cfg = ToyConfig(dataset="gmm", iterations=1200, batch=256)
    model, history = train_toy(cfg, progress=False)
    assert sum(history[-100:]) < sum(history[:100]), "the loss must fall"
    data = toy_data("gmm", 2000, seed=5)
    ours, exact = _ddpm(model), _ddpm(EXACT["gmm"]())
    gauss = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2)) * data.std(0) + data.mean(0)
    for dist in (sliced_wasserstein, mmd_rbf):
        d_ours, d_exact, d_gauss = dist(ours, data), dist(exact, data), dist(gauss, data)
        assert d_exact < 0.3 * d_gauss, "sanity: the exact model is far better than a Gaussian"
        assert d_ours < d_exact + 0.25 * (d_gauss - d_exact), (dist.__name__, d_ours, d_exact, d_gauss)


def test_demo_command_writes_picture_and_summary(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "noisecraft.cli.main", "demo", "--iterations", "50", "--steps", "10"]
    r = subprocess.run([*cmd, "--samples", "200", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "overview.png").stat().st_size > 1000
    assert (out / "summary.json").exists()


def test_demo_bad_input_is_one_line_error(tmp_path):
    cmd = [sys.executable, "-m", "noisecraft.cli.main", "demo", "--dataset", "spiral", "--out", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown toy dataset 'spiral'" in lines[0] and "swissroll" in lines[0]
