"""EMA: the lerp update, warm-up, and the half-life counted in images."""

import pytest
import torch
from torch import nn

from noisecraft.core.ema import EMA
from noisecraft.errors import NoisecraftError


def _model(value: float) -> nn.Module:
    m = nn.Linear(2, 1, bias=False)
    nn.init.constant_(m.weight, value)
    return m


def test_half_life_in_images():
    ema = EMA(_model(0.0), half_life_images=1000, rampup=None)
    model = _model(1.0)
    for _ in range(10):
        ema.update(model, batch_size=100)  # 1000 images: the initial weight has halved
    assert ema.model.weight.mean().item() == pytest.approx(0.5, rel=1e-6)
    assert ema.images == 1000 and ema.steps == 10


def test_warmup_decay_and_cap():
    ema = EMA(_model(0.0), decay=0.99)
    assert ema.beta(1) == 0.0  # first update copies the model
    ema.steps = 10
    assert ema.beta(1) == pytest.approx(1 - 11 ** (-2 / 3))
    ema.steps = 10**9
    assert ema.beta(1) == 0.99


def test_update_is_a_lerp_and_state_round_trips():
    ema = EMA(_model(0.0), decay=0.9)
    ema.steps = 1000  # past warm-up
    ema.update(_model(1.0))
    assert ema.model.weight.mean().item() == pytest.approx(0.1)
    other = EMA(_model(5.0))
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.model.weight, ema.model.weight)
    assert other.steps == ema.steps


def test_ema_bad_input():
    with pytest.raises(NoisecraftError, match="decay"):
        EMA(_model(0.0), decay=1.5)
    with pytest.raises(NoisecraftError, match="half_life_images"):
        EMA(_model(0.0), half_life_images=-1)
