"""Screened validation (sampling/screened.py) and its use in fit_steps.

Oracles: the stratified estimate is unbiased for the pool mean and its reported standard error matches the spread
of the estimate over redraws of the sampled stratum; on a mixture where a plain 512-path validation batch keeps a
named spacing twice as bad on new noise as another one, the screened decision does not.
"""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.sampling.fit import NAMED, _named, _Problem, _rows, _tile_cond, choose, fit_steps
from noisecraft.sampling.screened import Design, screen, spread


def rare_disagreements(pool: int = 8192, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-path errors of two candidates: a smooth bulk where b is 10 % better, and 0.6 % of paths where one of
    them ends in another mode (error 1): a carries 40 of them, b 8."""
    g = torch.Generator().manual_seed(seed)
    bulk = 1e-3 * torch.rand(pool, generator=g, dtype=torch.float64)
    a, b = bulk.clone(), 0.9 * bulk
    rare = torch.randperm(pool, generator=g)[:48]
    a[rare[:40]] += 1.0
    b[rare[40:]] += 1.0
    return a, b


def test_the_stratified_estimate_is_unbiased_and_its_standard_error_is_honest():
    a, b = rare_disagreements()
    d = b - a
    means, ses = [], []
    for seed in range(300):
        design = screen([d.abs()], 512, torch.Generator().manual_seed(seed))
        assert len(design.index) == 512 and len(set(design.index.tolist())) == 512
        assert float(design.weight.sum()) == pytest.approx(8192)
        means.append(design.mean(d[design.index]))
        ses.append(design.standard_error(d[design.index]))
    means = torch.tensor(means, dtype=torch.float64)
    pool_mean = float(d.mean())
    assert abs(float(means.mean()) - pool_mean) < 4 * float(means.std()) / math.sqrt(len(means))  # unbiased
    # every disagreement is enumerated: the estimate's only spread is the bulk's sampling
    assert float(means.std()) < 0.02 * abs(pool_mean)
    # the reported error = the pool's own (var/P) + stratum B's; the latter matches the redraw spread
    pool_part = float(d.var()) / len(d)
    b_part = torch.tensor(ses).pow(2).mean() - pool_part
    assert float(b_part.sqrt()) == pytest.approx(float(means.std()), rel=0.3)


def test_the_screened_decision_sees_what_a_plain_batch_of_the_same_size_misses():
    """The same 512 reference solves: drawn at random, they hold about 3 of the 48 deciding paths and b's win is
    rarely beyond two standard errors; screened, it is every time."""
    a, b = rare_disagreements()
    plain_wins, screened_wins = 0, 0
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(8192, generator=g)[:512]
        plain_wins += choose({"named:a": a[rows], "refined": b[rows]})[0] == "refined"
        design = screen([(b - a).abs()], 512, g)
        screened_wins += choose({"named:a": a[design.index], "refined": b[design.index]}, design=design)[0] == "refined"
    assert screened_wins == 40
    assert plain_wins < 20  # negative control


def test_a_plain_design_is_the_ordinary_paired_test():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(256, generator=g, dtype=torch.float64)
    fitted = base - 0.05 + 0.1 * torch.rand(256, generator=g, dtype=torch.float64)
    d = fitted - base
    design = Design.plain(256)
    assert design.mean(d) == pytest.approx(float(d.mean()))
    assert design.standard_error(d) == pytest.approx(float(d.std()) / 16)
    assert (
        choose({"named:x": base, "refined": fitted})[1] == choose({"named:x": base, "refined": fitted}, 2.0, design)[1]
    )
    assert screen([d.abs()], 256, g).pool == 256  # a pool no larger than the batch is taken whole


def test_spread_is_the_largest_distance_from_the_first_list():
    outs = {0: torch.zeros(4, 3), 1: torch.tensor([[0.0] * 3, [1.0] * 3, [0.0] * 3, [2.0] * 3]), 2: torch.ones(4, 3)}
    got = spread(lambda s: outs[int(s[0])], [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0])])
    assert torch.equal(got, torch.tensor([1.0, 1.0, 1.0, 4.0], dtype=torch.float64))


def test_pool_rows_take_the_cyclic_conditioning_rows():
    labels = torch.arange(8) % 6
    rows = torch.tensor([0, 9, 17, 3])
    got = _rows({"class_labels": labels, "scale": 2.0, "fixed": torch.ones(1, 5)}, 8, rows)
    tiled = _tile_cond({"class_labels": labels}, 8, 20)
    assert torch.equal(got["class_labels"], tiled["class_labels"][rows]) and got["scale"] == 2.0
    assert got["fixed"].shape == (1, 5)


def mixture(dim: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(10, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.01 + 0.2 * torch.rand(10, dim, generator=g, dtype=torch.float64))


def test_fit_with_a_screened_pool_is_not_fooled_where_a_plain_batch_was():
    """24-D mixture under DDPM cosine, DPM++3M at 20 steps (the samplers benchmark's second held-out problem): the
    fit's plain 512-path validation batch ranks the default spacing first, while powerlog has about half its
    error on new noise. Judged on 4096 new paths against 256-step UniPC-3 solves."""
    gm, sch = mixture(24, 11), make_schedule("cosine")
    kw = dict(shape=(24,), sampler="dpmpp_3m", n=128, n_val=512, seed=123, dtype=torch.float64, sweeps=1)
    plain = fit_steps(gm, sch, (20,), pool=512, **kw)
    screened = fit_steps(gm, sch, (20,), **kw)
    x = sch.sigma_max * torch.randn(4096, 24, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    new = _Problem(gm, sch, x, None, "dpmpp_3m", {}, 256)
    named = {k: new.err(s) for k in NAMED if (s := _named(sch, 20, k)) is not None}
    best = min(named.values())
    assert new.err(plain.sigmas[20]) > 1.5 * best, (plain.chosen, named)  # the plain batch was fooled
    assert new.err(screened.sigmas[20]) <= 1.02 * best, (screened.chosen, screened.validation, named)


def test_paths_cut_from_the_enumerated_stratum_can_still_be_drawn():
    """More decisions than the batch can enumerate (5 spreads, 4 rows): the paths cut from stratum A go back to
    the sampled stratum, so every pool path can be drawn and the estimate stays unbiased."""
    g = torch.Generator().manual_seed(4)
    spreads = [torch.rand(50, generator=g, dtype=torch.float64) for _ in range(5)]
    v = torch.rand(50, generator=g, dtype=torch.float64)
    seen, means = set(), []
    for seed in range(4000):
        design = screen(spreads, 4, torch.Generator().manual_seed(seed))
        assert float(design.weight.sum()) == pytest.approx(50) and int((~design.sampled).sum()) == 3
        seen.update(design.index.tolist())
        means.append(design.mean(v[design.index]))
    assert len(seen) == 50
    means = torch.tensor(means, dtype=torch.float64)
    assert abs(float(means.mean() - v.mean())) < 4 * float(means.std()) / math.sqrt(len(means))
