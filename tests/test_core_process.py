"""Forward process: the Markov chain reproduces the closed form; the posterior equals Gaussian conditioning."""

import torch

from noisecraft.core.process import (
    add_noise,
    markov_step,
    posterior_ve,
    posterior_vp,
    q_sample,
    ve_to_vp,
    vp_to_ve,
)
from noisecraft.core.schedules import make_schedule


def test_markov_chain_matches_closed_form_moments():
    s = make_schedule("cosine", steps=200)
    n = 40000
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.7, 0.0], dtype=torch.float64)
    x = x0.expand(n, 3).clone()  # (n, 3)
    for t in range(200):
        x = markov_step(x, s.betas[t], torch.randn(x.shape, generator=g, dtype=torch.float64))
        if t in (0, 20, 100, 199):
            ab = s.alphas_cumprod[t]
            mean, var = ab.sqrt() * x0, 1 - ab
            # 5 standard errors of the sample mean and of the sample variance
            assert ((x.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all(), t
            assert ((x.var(0) - var).abs() < 5 * var * (2 / (n - 1)) ** 0.5).all(), t
    # one closed-form jump draws from the same law
    xt = q_sample(x0.expand(n, 3), s.alphas_cumprod[199], torch.randn(n, 3, generator=g, dtype=torch.float64))
    var = 1 - s.alphas_cumprod[199]
    assert ((xt.mean(0) - x.mean(0)).abs() < 5 * (2 * var / n).sqrt()).all()


def test_posterior_equals_brute_force_gaussian_conditioning():
    s = make_schedule("linear")
    for t in (1, 10, 500, 999):
        ab_t, ab_prev, beta = s.alphas_cumprod[t], s.alphas_cumprod[t - 1], s.betas[t]
        x0 = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
        xt = torch.tensor([[0.9], [0.1]], dtype=torch.float64)
        # joint of (x_{t-1}, x_t) given x0: x_{t-1} ~ N(√ᾱ_{t-1} x0, 1-ᾱ_{t-1}); x_t = √(1-β) x_{t-1} + √β ε
        a = 1 - ab_prev
        cov = (1 - beta).sqrt() * a
        var_t = (1 - beta) * a + beta
        mu_prev, mu_t = ab_prev.sqrt() * x0, ab_t.sqrt() * x0
        mean_ref = mu_prev + cov / var_t * (xt - mu_t)
        var_ref = a - cov**2 / var_t
        mean, var = posterior_vp(xt, x0, ab_t, ab_prev)
        torch.testing.assert_close(mean, mean_ref)
        torch.testing.assert_close(var.expand_as(var_ref), var_ref.expand_as(var))


def test_ve_posterior_is_the_vp_posterior_in_ve_coordinates():
    s = make_schedule("scaled_linear")
    t = 400
    sig, sig_prev = s.sigmas[t], s.sigmas[t - 1]
    x0 = torch.randn(5, 4, dtype=torch.float64)
    x = add_noise(x0, sig, torch.randn(5, 4, dtype=torch.float64))
    mean_vp, var_vp = posterior_vp(ve_to_vp(x, sig), x0, s.alphas_cumprod[t], s.alphas_cumprod[t - 1])
    mean_ve, var_ve = posterior_ve(x, x0, sig, sig_prev)
    torch.testing.assert_close(vp_to_ve(mean_vp, sig_prev), mean_ve)
    torch.testing.assert_close(var_vp / s.alphas_cumprod[t - 1], var_ve)


def test_ve_and_vp_forms_are_the_same_process():
    s = make_schedule("cosine")
    x0, eps = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    t = torch.randint(0, 1000, (8,))
    sig = s.sigmas[t]
    torch.testing.assert_close(ve_to_vp(add_noise(x0, sig, eps), sig), q_sample(x0, s.alphas_cumprod[t], eps))
    torch.testing.assert_close(vp_to_ve(ve_to_vp(x0, sig), sig), x0)
