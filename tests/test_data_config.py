"""DataConfig: validation gives one-line NoisecraftErrors; the config round-trips through JSON."""

from __future__ import annotations

import json

import pytest

from noisecraft.data.config import DataConfig
from noisecraft.errors import NoisecraftError


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": ""}, "non-empty"),
        ({"source": "toy:spiral"}, "valid choices"),
        ({"source": "hf:"}, "dataset name or path"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": 8.5}, "resolution"),
        ({"channels": 2}, "channels must be 1"),
        ({"crop": "left"}, "center, random"),
        ({"resize_filter": "magic"}, "lanczos"),
        ({"max_bad_fraction": 1.5}, "max_bad_fraction"),
        ({"flip": "yes"}, "flip must be true or false"),
        ({"captions": True}, "captions=True needs a folder or hf source"),
        ({"source": "toy:moons", "labels": True}, "8gaussians"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(NoisecraftError, match=match) as e:
        DataConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_round_trip_and_unknown_keys() -> None:
    cfg = DataConfig(source="digits", resolution=16, labels=True, flip=True, extra={"note": 1})
    assert DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(NoisecraftError, match="unknown data config key.*resolutoin.*valid keys: source"):
        DataConfig.from_dict({"resolutoin": 16})
    assert DataConfig(source="some/folder").kind == "folder" and DataConfig(source="hf:a/b").kind == "hf"
