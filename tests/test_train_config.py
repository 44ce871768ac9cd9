"""TrainConfig: JSON round trip, --set overrides, and one-line errors naming the bad key."""

from __future__ import annotations

import json

import pytest

from noisecraft.errors import NoisecraftError
from noisecraft.training.config import TrainConfig, apply_overrides


def toy_dict(**top) -> dict:
    return {"data": {"source": "toy:moons"}, "model": {"arch": "mlp", "channels": 2, "resolution": 1}, **top}


def test_round_trip_through_json_is_exact():
    cfg = TrainConfig.from_dict(
        toy_dict(steps=7, optim={"lr": 3e-4, "betas": [0.8, 0.95]}, ema={"half_life_images": 500})
    )
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    assert again.optim.betas == (0.8, 0.95) and again.ema.half_life_images == 500.0
    assert again.data.source == "toy:moons" and again.model.arch == "mlp"


def test_overrides_parse_json_values_and_text():
    cfg = apply_overrides(
        TrainConfig.from_dict(toy_dict()),
        [
            "optim.lr=0.0003",
            "ema.half_life_images=null",
            "data.source=toy:swissroll",
            "trackers=[]",
            "cache_data=false",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.ema.half_life_images is None and cfg.data.source == "toy:swissroll"
    assert cfg.trackers == [] and cfg.cache_data is False


@pytest.mark.parametrize(
    ("d", "needle"),
    [
        (toy_dict(stepz=3), "stepz"),
        (toy_dict(optim={"lrr": 1}), "lrr"),
        (toy_dict(steps=0), "steps"),
        (toy_dict(steps="ten"), "steps"),
        (toy_dict(steps=1.5), "steps"),
        (toy_dict(optim={"lr": -1.0}), "optim.lr"),
        (toy_dict(optim={"betas": [0.9]}), "optim.betas"),
        (toy_dict(mixed_precision="fp8"), "mixed_precision"),
        (toy_dict(loss={"weighting": "nope"}), "loss.weighting"),
        (toy_dict(label_dropout=0.1), "num_classes"),
        (toy_dict(ema={"decay": 1.5}), "ema.decay"),
        ({"data": {"source": "toy:nope"}}, "toy dataset"),
        ({"model": {"arch": "resnet"}}, "arch"),
        (toy_dict(trackers=["wandb"]), "trackers"),
    ],
)
def test_bad_values_raise_one_line_errors_naming_the_key(d, needle):
    with pytest.raises(NoisecraftError) as e:
        TrainConfig.from_dict(d)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("item", ["optim.nope=1", "nosep", "optim.lr.x=1", "steps=-3"])
def test_bad_overrides(item):
    with pytest.raises(NoisecraftError):
        apply_overrides(TrainConfig.from_dict(toy_dict()), [item])
