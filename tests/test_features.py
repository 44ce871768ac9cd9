"""Built-in feature networks: deterministic training, checksums, caching, reference splits."""

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


def test_builtin_features_cache_and_identity(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "train_feature_net", lambda ds: (features.FeatureCNN(8), 0.1))
    f1 = features.BuiltinFeatures("digits", cache=tmp_path)
    assert f1.path.exists()
    monkeypatch.setattr(features, "train_feature_net", lambda ds: pytest.fail("should load from the cache"))
    f2 = features.BuiltinFeatures("digits", cache=tmp_path)
    assert f1.checksum == f2.checksum and f2.test_accuracy == 0.1
    x = torch.rand(5, 1, 32, 32) * 2 - 1  # any resolution and RGB are accepted
    feats = f2(x)
    assert feats.shape == (5, 128) and feats.dtype == torch.float64
    assert f2(x.expand(-1, 3, -1, -1)).allclose(feats, atol=1e-6)


def test_inception_needs_a_local_file(tmp_path):
    with pytest.raises(NoisecraftError, match="inception-2015-12-05"):
        features.get_extractor("inception")
    with pytest.raises(NoisecraftError, match="not found"):
        features.InceptionFeatures(tmp_path / "missing.pt")
    with pytest.raises(NoisecraftError, match="valid choices"):
        features.get_extractor("imagenet")
