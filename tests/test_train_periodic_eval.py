"""Periodic evaluation during training: labelled records in eval.jsonl, and the run's weights are untouched."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from noisecraft.errors import NoisecraftError
from noisecraft.training import checkpoint as ckpt
from noisecraft.training.config import TrainConfig
from noisecraft.training.loop import train


def digits_cfg(out, **top) -> TrainConfig:
    d = {
        "data": {"source": "digits", "resolution": 8},
        "model": {
            "arch": "mlp",
            "preset": "tiny",
            "channels": 1,
            "resolution": 8,
            "schedule": "edm",
            "parameterisation": "edm",
        },
        "trackers": [],
        "sample_every": 0,
        "steps": 6,
        "batch_size": 16,
        "checkpoint_every": 6,
        "sample_steps": 4,
        "out_dir": str(out),
        **top,
    }
    return TrainConfig.from_dict(d)


def _weights(run):
    return load_file(str(ckpt.latest_checkpoint(run) / "model.safetensors"))


def test_periodic_eval_is_logged_labelled_and_leaves_training_unchanged(tmp_path):
    plain = tmp_path / "plain"
    evald = tmp_path / "eval"
    train(digits_cfg(plain), progress=False)
    train(digits_cfg(evald, eval_every=3, eval_count=24), progress=False)
    recs = [json.loads(line) for line in (evald / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [3, 6]
    for r in recs:
        assert r["protocol"]["num_samples"] == 24 and r["protocol"]["label"].startswith("periodic")
        assert r["scores"]["fd"] >= 0
    a, b = _weights(plain), _weights(evald)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_periodic_eval_needs_a_builtin_dataset(tmp_path):
    with pytest.raises(NoisecraftError, match="eval_every needs a built-in dataset"):
        TrainConfig.from_dict({"data": {"source": "toy:moons"}, "eval_every": 10, "out_dir": str(tmp_path)})
