"""Built-in feature networks: deterministic training, shipped weights verified by checksum, reference splits."""

from __future__ import annotations

import pytest
import torch

from noisecraft.errors import NoisecraftError
from noisecraft.evaluation import features
from noisecraft.evaluation.reference import reference_images


def test_digits_reference_splits_are_fixed_and_disjoint():
    tr, ytr = reference_images("digits", "train")
    te, yte = reference_images("digits", "test")
    assert tr.shape[1:] == (1, 8, 8) and len(tr) + len(te) == 1797 and len(te) == 359
    assert tr.min() >= -1 and tr.max() <= 1
    assert torch.equal(reference_images("digits", "test")[0], te)  # the same split every time
    assert set(ytr.tolist()) == set(yte.tolist()) == set(range(10))


def test_feature_net_training_is_deterministic():
    a, _ = features.train_feature_net("digits", epochs=1, limit=256)
    b, _ = features.train_feature_net("digits", epochs=1, limit=256)
    c, _ = features.train_feature_net("digits", epochs=1, seed=1, limit=256)
    ca, cb, cc = (features.weights_checksum(n.state_dict()) for n in (a, b, c))
    assert ca == cb and ca != cc


def test_builtin_features_ship_in_the_package_and_are_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "train_feature_net", lambda *a, **k: pytest.fail("must load, never train"))
    f = features.BuiltinFeatures("digits")
    assert f.path.parent == features.WEIGHTS_DIR and f.path.is_file()
    assert f.checksum == features.WEIGHTS_SHA256["digits"][:16] == features.file_sha256(f.path)[:16]
    assert f.test_accuracy is not None and f.test_accuracy > 0.9  # the recipe's network, not a random one
    x = torch.rand(5, 1, 32, 32) * 2 - 1  # any resolution and RGB are accepted
    feats = f(x)
    assert feats.shape == (5, 128) and feats.dtype == torch.float64
    assert f(x.expand(-1, 3, -1, -1)).allclose(feats, atol=1e-6)
    # a damaged or replaced weight file is refused, never used silently
    bad = tmp_path / "weights"
    bad.mkdir()
    data = bytearray(f.path.read_bytes())
    data[-1] ^= 1
    (bad / f.path.name).write_bytes(bytes(data))
    monkeypatch.setattr(features, "WEIGHTS_DIR", bad)
    with pytest.raises(NoisecraftError, match="SHA-256.*reinstall"):
        features.BuiltinFeatures("digits")
    (bad / f.path.name).unlink()
    with pytest.raises(NoisecraftError, match="missing from the installation"):
        features.BuiltinFeatures("digits")


def test_shipped_weights_are_package_data():
    """pyproject ships the weight files with the package (an sdist/wheel without them would fail to load)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["noisecraft"]
    shipped = {p.relative_to(root / "src" / "noisecraft").as_posix() for p in features.WEIGHTS_DIR.glob("*")}
    assert "evaluation/weights/*.safetensors" in data
    assert {f"evaluation/weights/{features.weights_path(d).name}" for d in features.WEIGHTS_SHA256} <= shipped


def test_rgb_features_see_colour():
    rgb = features.get_extractor("rgb")
    grey = torch.rand(6, 1, 16, 16) * 2 - 1
    red = torch.cat([grey, -torch.ones_like(grey), -torch.ones_like(grey)], dim=1)
    blue = red.flip(1)
    assert rgb(grey).shape == (6, 384)
    assert torch.equal(rgb(grey), rgb(grey.expand(-1, 3, -1, -1)))  # grey and its RGB copy agree
    assert not torch.allclose(rgb(red), rgb(blue))  # the grey-averaging network could not tell these apart
    base = features.get_extractor("fashion-mnist")
    assert torch.allclose(base(red), base(blue))


def test_inception_needs_a_local_file(tmp_path):
    with pytest.raises(NoisecraftError, match="inception-2015-12-05"):
        features.get_extractor("inception")
    with pytest.raises(NoisecraftError, match="not found"):
        features.InceptionFeatures(tmp_path / "missing.pt")
    with pytest.raises(NoisecraftError, match="valid choices"):
        features.get_extractor("imagenet")
