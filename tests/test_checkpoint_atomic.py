"""Checkpoints: atomic (half-written folders are never picked up), pruned to the last K, pickle-free state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from noisecraft.errors import NoisecraftError
from noisecraft.training import checkpoint as ckpt


def _write(out, step, model, opt, keep=2):
    tmp = ckpt.prepare_checkpoint(out, step)
    ckpt.write_rank_state(tmp, 0, None)
    ckpt.write_main_state(tmp, model=model, ema_model=model, optimizer=opt, state={"step": step}, config={})
    return tmp


def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.SiLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 3)).square().mean().backward()
    opt.step()
    return model, opt


def test_partial_checkpoint_is_never_picked_up(tmp_path):
    model, opt = _model_and_opt()
    ckpt.commit_checkpoint(_write(tmp_path, 10, model, opt), keep_last=2)
    # a write killed before its rename: complete files, but still under the temporary name
    _write(tmp_path, 20, model, opt)
    # a folder with a checkpoint name but no state.json (e.g. copied by hand, interrupted)
    (ckpt.checkpoint_dir(tmp_path) / "step-00000030").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000010"
    assert ckpt.resolve_checkpoint(tmp_path).name == "step-00000010"
    # the next good checkpoint cleans the stale temporary folder up
    ckpt.commit_checkpoint(_write(tmp_path, 40, model, opt), keep_last=2)
    assert not list(ckpt.checkpoint_dir(tmp_path).glob(".tmp-*"))


def test_keep_last_prunes_oldest(tmp_path):
    model, opt = _model_and_opt()
    for step in (1, 2, 3, 4):
        ckpt.commit_checkpoint(_write(tmp_path, step, model, opt), keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]


def test_optimizer_and_rng_round_trip_without_pickle(tmp_path):
    model, opt = _model_and_opt()
    g = torch.Generator().manual_seed(3)
    torch.rand(7, generator=g)
    random.seed(5)
    np.random.seed(6)  # noqa: NPY002
    torch.manual_seed(7)
    tmp = ckpt.prepare_checkpoint(tmp_path, 1)
    ckpt.write_rank_state(tmp, 0, g)
    ckpt.write_main_state(tmp, model=model, ema_model=model, optimizer=opt, state={"step": 1}, config={})
    path = ckpt.commit_checkpoint(tmp, keep_last=1)
    expect = (torch.rand(4), torch.rand(4, generator=g), random.random(), np.random.rand())  # noqa: NPY002
    torch.manual_seed(99)
    random.seed(99)
    ckpt.restore_rank_state(path, 0, g)
    got = (torch.rand(4), torch.rand(4, generator=g), random.random(), np.random.rand())  # noqa: NPY002
    assert torch.equal(expect[0], got[0]) and torch.equal(expect[1], got[1]) and expect[2:] == got[2:]
    model2, opt2 = _model_and_opt()
    for p in model2.parameters():
        p.data.zero_()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=5.0)
    ckpt.optimizer_from_files(
        opt2, ckpt.load_tensors(path / "optimizer.safetensors"), ckpt.read_state(path)["optimizer"]
    )
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])
    with pytest.raises(NoisecraftError, match="process 1"):
        ckpt.restore_rank_state(path, 1, g)


def test_resolve_checkpoint_error_is_a_clear_message(tmp_path):
    with pytest.raises(NoisecraftError, match="no checkpoint"):
        ckpt.resolve_checkpoint(tmp_path)
