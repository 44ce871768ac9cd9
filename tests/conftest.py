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
    """A small stand-in for the Fashion-MNIST IDX files (tiny_models.write_fake_fashion_mnist: train 8 items per
    class, test 4); $NOISECRAFT_FASHION_MNIST points at it."""
    from tiny_models import write_fake_fashion_mnist

    root = write_fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))
    monkeypatch.setenv("NOISECRAFT_FASHION_MNIST", str(root))
    return root


@pytest.fixture
def one_second_steps(monkeypatch):
    """The shared training core's clock, advanced by exactly 1 s per optimiser step (for --minutes plans)."""
    from noisecraft.training import core

    now, real = [0.0], core.apply_update

    def update(*a, **k):
        now[0] += 1.0
        return real(*a, **k)

    monkeypatch.setattr(core, "clock", lambda: now[0])
    monkeypatch.setattr(core, "apply_update", update)
