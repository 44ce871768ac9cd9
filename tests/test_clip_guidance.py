"""CLIP guidance (sampling/clip_guidance.py): exact identities (scale 0, outside the interval), the guidance step
against a finite-difference derivative of the CLIP similarity (through x̂0 and through the noisy state), its
composition with CFG, and device placement."""

from __future__ import annotations

import pytest
import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.errors import NoisecraftError
from noisecraft.models.clip import ClipConfig, SmallClip
from noisecraft.sampling.clip_guidance import ClipGuidedDenoiser
from noisecraft.sampling.generate import generate
from noisecraft.sampling.unclip import ZeroCFGDenoiser

SHAPE = (3, 8, 8)


def small_clip(noise_aware: bool = False, dtype=torch.float64) -> SmallClip:
    torch.manual_seed(0)
    cfg = ClipConfig(resolution=8, embed_dim=6, width=8, mult=(1, 2), text_width=16, noise_aware=noise_aware)
    return SmallClip(cfg, text_dim=8).to(dtype).eval().requires_grad_(False)


class ShrinkDenoiser(torch.nn.Module):
    """The exact denoiser of N(m, I) data: D(x; σ) = m + (x − m)/(1 + σ²), with an optional conditioning shift."""

    def __init__(self):
        super().__init__()
        self.m = torch.nn.Parameter(torch.linspace(-0.5, 0.5, 3 * 8 * 8).reshape(SHAPE), requires_grad=False)

    def forward(self, x, sigma, shift=None):
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        out = self.m + (x - self.m) / (1 + s**2)
        return out if shift is None else out + shift.reshape(-1, 1, 1, 1)


def _text(n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, 6, generator=torch.Generator().manual_seed(3), dtype=dtype), dim=-1
    )


def test_scale_zero_and_outside_the_interval_are_exactly_unguided():
    d, sched = ShrinkDenoiser().float(), make_schedule("edm")
    clip = small_clip(dtype=torch.float32)
    t = _text(4, torch.float32)
    plain = generate(d, sched, SHAPE, range(4), steps=6)
    zero = generate(ClipGuidedDenoiser(d, clip, 0.0), sched, SHAPE, range(4), steps=6, cond={"guide_text": t})
    assert torch.equal(plain, zero)
    far = ClipGuidedDenoiser(d, clip, 5.0, interval=(500.0, 1000.0))  # above σ_max = 80: never active
    assert torch.equal(plain, generate(far, sched, SHAPE, range(4), steps=6, cond={"guide_text": t}))
    on = generate(ClipGuidedDenoiser(d, clip, 5.0), sched, SHAPE, range(4), steps=6, cond={"guide_text": t})
    assert not torch.allclose(plain, on)  # and the guidance does act


@pytest.mark.parametrize("through", ["x0", "noisy"])
def test_guidance_step_is_the_similarity_gradient(through):
    """D_s − D = s·σ²·∇_x sim, checked against central differences of sim along random directions; a small step
    along it raises the similarity."""
    clip = small_clip(noise_aware=through == "noisy")
    d = ShrinkDenoiser().double()
    g = ClipGuidedDenoiser(d, clip, scale=2.0, through=through)
    x = torch.randn(3, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    t = _text(3)
    delta = g(x, sigma, guide_text=t) - d(x, sigma)  # (B, C, H, W)

    def sim(xx):
        img = xx if through == "noisy" else d(xx, sigma)
        return g.similarity(img, t, sigma if through == "noisy" else None)  # (B,)

    grad = delta / (2.0 * sigma.reshape(-1, 1, 1, 1) ** 2)
    h = 1e-5
    for seed in range(3):
        v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + seed))
        fd = (sim(x + h * v) - sim(x - h * v)) / (2 * h)  # (B,)
        assert torch.allclose(fd, (grad * v).flatten(1).sum(1), rtol=1e-4, atol=1e-8)
    step = 1e-3 * delta / delta.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    assert (sim(x + step) > sim(x)).all()


def test_composes_with_cfg_and_binds_text():
    """CLIP guidance around CFG: at scale 0 it is CFG exactly; a bound text equals the per-call entry."""
    clip = small_clip(dtype=torch.float32)
    d = ShrinkDenoiser().float()
    cfg = ZeroCFGDenoiser(d, 3.0, ("shift",))
    x, sigma = torch.randn(2, *SHAPE), torch.tensor([1.0, 2.0])
    shift = torch.tensor([0.3, -0.2])
    t = _text(2, torch.float32)
    assert torch.equal(
        ClipGuidedDenoiser(cfg, clip, 0.0)(x, sigma, shift=shift, guide_text=t), cfg(x, sigma, shift=shift)
    )
    want = d(x, sigma) + 3.0 * (d(x, sigma, shift) - d(x, sigma))  # CFG: D(0) + w·(D(c) − D(0))
    assert torch.allclose(cfg(x, sigma, shift=shift), want, atol=1e-6)
    a = ClipGuidedDenoiser(cfg, clip, 2.0)(x, sigma, shift=shift, guide_text=t)
    b = ClipGuidedDenoiser(cfg, clip, 2.0, text=t)(x, sigma, shift=shift)
    assert torch.equal(a, b)


def test_bad_settings_are_one_line_errors():
    clip = small_clip()
    d = ShrinkDenoiser().double()
    with pytest.raises(NoisecraftError, match="noise-aware"):
        ClipGuidedDenoiser(d, clip, 1.0, through="noisy")
    with pytest.raises(NoisecraftError, match="width 5"):
        ClipGuidedDenoiser(d, clip, 1.0, text=torch.zeros(5))
    with pytest.raises(NoisecraftError, match=">= 0"):
        ClipGuidedDenoiser(d, clip, -1.0)
    with pytest.raises(NoisecraftError, match="trained on 3x8x8"):
        clip.image_embeds(torch.zeros(1, 3, 16, 16, dtype=torch.float64))


@pytest.mark.parametrize("through", ["x0", "noisy"])
def test_stays_on_the_model_device(through):
    """Models, CLIP and inputs on `meta`: a CPU tensor created on the way would raise (see test_device_placement)."""
    meta = torch.device("meta")
    clip = small_clip(noise_aware=True, dtype=torch.float32).to(meta)
    d = ShrinkDenoiser().float().to(meta)
    g = ClipGuidedDenoiser(d, clip, 1.0, through=through, interval=(0.1, 50.0))
    x = torch.zeros(2, *SHAPE, device=meta)
    out = g(x, 1.0, guide_text=torch.zeros(2, 6, device=meta))  # samplers pass σ as a CPU scalar
    assert out.device == meta and out.shape == x.shape
