"""Exact denoisers: Tweedie consistency with the exact log-density, sampling moments, limits."""

import torch

from noisecraft.core.oracles import EmpiricalDenoiser, GaussianData, GaussianMixture
from noisecraft.data.toys import gmm_mixture


def test_mixture_denoiser_equals_tweedie_from_log_density():
    gm = gmm_mixture()
    x = torch.randn(64, 2, dtype=torch.float64, requires_grad=True)
    for sigma in (0.05, 0.5, 3.0):
        (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(gm(x.detach(), sigma), x.detach() + sigma**2 * grad)


def test_gaussian_denoiser_closed_form():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    mean = torch.tensor([1.0, -1.0], dtype=torch.float64)
    data = GaussianData(mean, cov)
    x = torch.randn(10, 2, dtype=torch.float64)
    s = 0.7
    ref = mean + (cov @ torch.linalg.inv(cov + s**2 * torch.eye(2, dtype=torch.float64)) @ (x - mean).T).T
    torch.testing.assert_close(data(x, s), ref)


def test_mixture_samples_have_the_exact_moments():
    gm = gmm_mixture()
    n = 200000
    x, labels = gm.sample(n, torch.Generator().manual_seed(0))
    assert x.shape == (n, 2) and labels.shape == (n,)
    torch.testing.assert_close(x.mean(0), gm.mean(), atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gm.covariance(), atol=0.02, rtol=0)
    freq = torch.bincount(labels, minlength=3).double() / n
    torch.testing.assert_close(freq, gm.weights, atol=0.005, rtol=0)


def test_class_posterior_and_conditional_denoiser():
    gm = gmm_mixture()
    x = gm.means.clone()  # each point sits at a component mean
    post = gm.class_posterior(x, 0.01)
    assert (post.argmax(1) == torch.arange(3)).all()
    labels = torch.tensor([2, 2, 2])
    torch.testing.assert_close(gm(x, 0.3, class_labels=labels), gm.component(2)(x, 0.3))


def test_image_shaped_mixture_keeps_shape():
    gm = GaussianMixture(torch.randn(2, 64, dtype=torch.float64), 0.1, shape=(1, 8, 8))
    x, _ = gm.sample(5)
    assert x.shape == (5, 1, 8, 8)
    assert gm(x.float(), torch.full((5,), 0.5)).shape == (5, 1, 8, 8)


def test_empirical_denoiser_limits():
    data = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    d = EmpiricalDenoiser(data)
    x = torch.tensor([[3.5, 0.2], [0.1, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(d(x, 0.05), data[[1, 0]])
    torch.testing.assert_close(d(x, 1e4), data.mean(0).expand(2, 2), atol=1e-3, rtol=0)
