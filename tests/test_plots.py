"""Every picture and animation writes a valid PNG/GIF whose content follows its input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.evaluation import animate, plots
from noisecraft.sampling.samplers import get_sampler
from noisecraft.sampling.steps import step_sigmas


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 50 and im.height > 50
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def image_oracle():
    means = torch.stack([torch.linspace(-1, 1, 64), -torch.linspace(-1, 1, 64)])  # two "images" of 8×8
    return GaussianMixture(means, torch.tensor([0.01, 0.01]), shape=(1, 8, 8))


def test_image_grid_layout():
    imgs = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0), torch.zeros(1, 4, 4)])
    g = plots.image_grid(imgs, nrow=2, pad=1)
    assert g.shape == (1 + 2 * 5, 1 + 2 * 5, 1)
    assert g[1, 1, 0] == 0 and g[1, 6, 0] == 255 and g[6, 1, 0] == 128  # black, white, grey in place


def test_schedule_and_forward_pictures(tmp_path):
    _png(plots.plot_schedules(tmp_path / "s.png"))
    img = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    _png(plots.plot_forward_process(img, make_schedule("cosine"), tmp_path / "f.png", fractions=(0, 0.5, 1)))


def test_trajectory_strip_and_gif(tmp_path, image_oracle):
    sched = make_schedule("linear")
    steps = []
    x = sched.sigma_max * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = get_sampler("euler")(image_oracle, x, step_sigmas(sched, 6), callback=steps.append)
    assert len(steps) == 6
    _png(plots.plot_trajectory_strip(steps, tmp_path / "strip.png", frames=4))
    gif = animate.trajectory_gif(steps, tmp_path / "traj.gif", nrow=2)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 6
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("L"))
    # the last frame shows the final samples: compare with a grid rendered directly from them
    want = plots.image_grid(out, 2, scale=8)[..., 0]
    assert np.abs(last[:, : want.shape[1]].astype(int) - want.astype(int)).mean() < 3
    with pytest.raises(NoisecraftError):
        animate.trajectory_gif([], tmp_path / "none.gif")


def test_points_gif_and_score_field(tmp_path):
    gm = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.05)
    traj = torch.randn(5, 20, 2, generator=torch.Generator().manual_seed(0))
    path = animate.points_gif(list(traj), tmp_path / "p.gif", titles=[str(i) for i in range(5)])
    with Image.open(path) as im:
        assert im.n_frames == 5
    _png(plots.plot_score_field(lambda p: gm.score(p, 0.3), tmp_path / "score.png", trajectories=traj))


def test_nfe_sweep_and_interpolation_pictures(tmp_path):
    table = {"euler": [(10, 1.0), (20, 0.5)], "heun": [(10, 0.3), (20, 0.1)]}
    _png(plots.plot_metric_vs_nfe(table, tmp_path / "nfe.png", floor=0.05))
    imgs = torch.rand(2, 3, 1, 8, 8) * 2 - 1
    _png(plots.plot_sweep_grid(imgs, tmp_path / "sweep.png", row_labels=["a", "b"], col_labels=["1", "2", "3"]))
    _png(plots.plot_sweep_grid(torch.randn(1, 2, 50, 2), tmp_path / "sweep2d.png"))
    _png(plots.plot_interpolation(imgs, tmp_path / "interp.png", ts=[0, 0.5, 1]))
    _png(plots.save_image_grid(imgs[0], tmp_path / "grid.png"))


def test_training_curve_from_jsonl(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": i, "loss": 1.0 / (i + 1), "lr": 1e-3}) for i in range(50)]
    (run / "log.jsonl").write_text("\n".join(lines) + '\n{"step": 50, "lo')  # a truncated last line is skipped
    assert len(plots.read_jsonl(run / "log.jsonl")) == 50
    _png(plots.plot_training_curve(run, tmp_path / "curve.png", smooth=5))
    with pytest.raises(NoisecraftError, match="no records"):
        plots.plot_training_curve(run / "log.jsonl", tmp_path / "c2.png", key="fid")
    with pytest.raises(NoisecraftError, match="not found"):
        plots.plot_training_curve(tmp_path / "missing", tmp_path / "c3.png")
