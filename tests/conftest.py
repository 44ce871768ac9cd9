"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The suite's models are tiny: one thread is fastest, and immune to OpenMP spin-waiting on a busy machine
    (measured up to 100x slower with two threads while other processes ran)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fake_fashion_mnist(tmp_path_factory, monkeypatch):
    """A small stand-in for the Fashion-MNIST IDX files (train: 8 items per class, test: 4), each class a bar of
    its own width, so tests never need the real files; $NOISECRAFT_FASHION_MNIST points at it."""
    import gzip

    import numpy as np

    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for split, per in (("train", 8), ("t10k", 4)):
        labels = np.repeat(np.arange(10), per).astype(np.uint8)
        images = np.zeros((len(labels), 28, 28), np.uint8)
        for i, k in enumerate(labels):
            images[i, 4:24, 12 - k : 14 + k] = rng.integers(150, 256)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(root / f"{split}-{kind}.gz", "wb") as f:
                f.write(header + arr.tobytes())
    monkeypatch.setenv("NOISECRAFT_FASHION_MNIST", str(root))
    return root
