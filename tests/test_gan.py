"""helpers.gan: the 2-D data sets and mode coverage, the networks, the losses against their formulas,
the divergences against SciPy, power iteration against ``torch.nn.utils.parametrizations.spectral_norm``,
the Fréchet distance against SciPy's ``sqrtm`` (as in the FID paper's code), the classifier-based
scores, DCGAN's shapes and initialisation, and the GAN lab's trainer.

Statistical checks use tolerances of 5 standard deviations, computed from the sample sizes in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import torch
from torch import nn
from torch.nn import functional as F

from helpers import gan

SIGMAS = 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_names_exist():
    assert all(hasattr(gan, name) for name in gan.__all__)


# =============================================================================================
# 2-D data sets
# =============================================================================================


def test_ring_centres_are_eight_distinct_points_on_the_circle():
    centres = gan.ring_centres(8, radius=2.0)
    assert centres.shape == (8, 2) and centres.dtype == torch.float32
    distances = torch.cdist(centres, centres) + 10 * torch.eye(8)
    assert distances.min() > 1.5  # neighbours are 2 * 2 * sin(pi / 8) = 1.53 apart: 8 distinct modes
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(centres[:, 1].double(), centres[:, 0].double()) % (2 * math.pi)
    assert torch.allclose(angles, 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8, atol=1e-6)
    # the mistake it avoids: linspace(0, 2 pi, 8) ends where it starts, so it has only 7 distinct modes
    wrong = torch.linspace(0, 2 * math.pi, 8)
    wrong = torch.stack([wrong.cos(), wrong.sin()], dim=1)
    assert len(torch.unique(wrong.round(decimals=4), dim=0)) == 7
    assert len(torch.unique(centres.round(decimals=4), dim=0)) == 8


def test_grid_centres_are_centred_on_zero():
    centres = gan.grid_centres(5, spacing=2.0)
    assert centres.shape == (25, 2)
    assert torch.equal(centres.mean(dim=0), torch.zeros(2))
    assert sorted(set(centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len(torch.unique(centres, dim=0)) == 25
    expected = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])  # row by row
    assert torch.equal(gan.grid_centres(2, 1.0), expected)


def test_sample_mixture_has_equal_weights_and_is_reproducible():
    centres = gan.ring_centres(4, radius=3.0)
    n = 8000
    X = gan.sample_mixture(centres, n, std=0.1, generator=0)
    assert X.shape == (n, 2) and X.dtype == torch.float32
    assert torch.equal(X, gan.sample_mixture(centres, n, std=0.1, generator=gen(0)))  # a seed is a generator
    nearest = torch.cdist(X, centres).argmin(dim=1)
    shares = torch.bincount(nearest, minlength=4).double() / n
    assert (shares - 0.25).abs().max() < SIGMAS * math.sqrt(0.25 * 0.75 / n)
    offsets = X - centres[nearest]
    assert abs(offsets.std().item() - 0.1) < 0.005
    exact = gan.sample_mixture(centres, 5, std=0.0, generator=1)  # std 0: every point is a centre
    assert torch.cdist(exact, centres).min(dim=1).values.max() == 0
    assert gan.sample_mixture(centres, 0, 0.1).shape == (0, 2)


def test_ring_and_grid_samples_lie_near_their_modes():
    ring = gan.ring_of_gaussians(1000, generator=0)
    assert ring.shape == (1000, 2)
    assert ((ring.norm(dim=1) - 2.0).abs() < SIGMAS * 0.02).all()
    grid = gan.grid_of_gaussians(1000, generator=0)
    assert (torch.cdist(grid, gan.grid_centres()).min(dim=1).values < SIGMAS * 0.05 * math.sqrt(2)).all()


def test_single_gaussian_and_two_moons():
    X = gan.single_gaussian(20000, mean=(2.0, -1.0), std=0.5, generator=0)
    assert torch.allclose(X.mean(dim=0), torch.tensor([2.0, -1.0]), atol=SIGMAS * 0.5 / math.sqrt(20000))
    assert torch.allclose(X.std(dim=0), torch.tensor([0.5, 0.5]), atol=0.02)
    moons = gan.two_moons(2000, noise=0.0, generator=0)
    upper = (moons.norm(dim=1) - 1).abs() < 1e-5
    lower = ((moons - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() < 1e-5
    assert (upper | lower).all()
    assert abs(upper.double().mean().item() - 0.5) < SIGMAS * math.sqrt(0.25 / 2000)
    assert (moons[upper, 1] >= 0).all() and (moons[lower & ~upper, 1] <= 0.5).all()
    assert gan.two_moons(10, generator=1).shape == (10, 2)


def test_data_set_errors():
    with pytest.raises(ValueError, match="num_modes must be a positive int"):
        gan.ring_centres(0)
    with pytest.raises(ValueError, match="radius must be positive"):
        gan.ring_centres(8, radius=-1.0)
    with pytest.raises(ValueError, match="side must be a positive int"):
        gan.grid_centres(0)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        gan.ring_of_gaussians(-5)
    with pytest.raises(ValueError, match="std must be a non-negative number"):
        gan.ring_of_gaussians(5, std=-0.1)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        gan.two_moons(5, generator="seed")
    with pytest.raises(ValueError, match="mean must be two numbers"):
        gan.single_gaussian(5, mean=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="centres must be a non-empty"):
        gan.sample_mixture(torch.zeros(3), 5, 0.1)


# =============================================================================================
# Mode coverage
# =============================================================================================


def test_mode_coverage_of_perfect_and_collapsed_samples():
    centres = gan.ring_centres()
    perfect = gan.mode_coverage(centres.repeat(10, 1), centres, std=0.02)
    assert perfect["modes_covered"] == 8 and perfect["num_modes"] == 8
    assert perfect["high_quality_fraction"] == 1.0
    assert torch.equal(perfect["per_mode_counts"], torch.full((8,), 10))
    assert perfect["kl_from_uniform"] == pytest.approx(0.0, abs=1e-12)
    collapsed = gan.mode_coverage(centres[3].repeat(50, 1), centres, std=0.02)
    assert collapsed["modes_covered"] == 1
    assert collapsed["per_mode_counts"].tolist() == [0, 0, 0, 50, 0, 0, 0, 0]
    assert collapsed["kl_from_uniform"] == pytest.approx(math.log(8))


def test_mode_coverage_counts_only_high_quality_samples():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = torch.tensor([[0.0, 0.29], [0.0, 0.31],  # 2.9 and 3.1 std from centre 0: only the first counts
                            [10.0, 0.0], [10.1, 0.0], [5.0, 5.0]])  # two at centre 1; one far from all
    result = gan.mode_coverage(samples, centres, std=0.1)
    assert result["per_mode_counts"].tolist() == [1, 2, 0, 0]
    assert result["modes_covered"] == 2
    assert result["high_quality_fraction"] == pytest.approx(3 / 5)
    h = np.array([1 / 3, 2 / 3])
    assert result["kl_from_uniform"] == pytest.approx(float((h * np.log(h * 4)).sum()), rel=1e-12)
    wider = gan.mode_coverage(samples, centres, std=0.1, num_std=4.0)
    assert wider["per_mode_counts"].tolist() == [2, 2, 0, 0]


def test_mode_coverage_with_no_high_quality_sample_reports_log_num_modes():
    result = gan.mode_coverage(torch.full((20, 2), 50.0), gan.ring_centres(), std=0.02)
    assert result["modes_covered"] == 0 and result["high_quality_fraction"] == 0.0
    assert result["kl_from_uniform"] == pytest.approx(math.log(8))


def test_mode_coverage_errors():
    with pytest.raises(ValueError, match="same d"):
        gan.mode_coverage(torch.zeros(5, 3), gan.ring_centres(), std=0.02)
    with pytest.raises(ValueError, match="at least one sample"):
        gan.mode_coverage(torch.zeros(0, 2), gan.ring_centres(), std=0.02)
    with pytest.raises(ValueError, match="std and num_std must be positive"):
        gan.mode_coverage(torch.zeros(5, 2), gan.ring_centres(), std=0.0)


# =============================================================================================
# Networks for 2-D data
# =============================================================================================


def test_mlp_generator_and_discriminator_shapes():
    G = gan.mlp_generator(latent_dim=3, hidden=16, depth=2, out_dim=2)
    assert G(torch.randn(7, 3)).shape == (7, 2)
    assert sum(isinstance(m, nn.Linear) for m in G) == 3  # depth hidden layers + the output
    D = gan.mlp_discriminator(in_dim=2, hidden=16, depth=3)
    assert D(torch.randn(7, 2)).shape == (7,)  # one logit per example
    assert sum(isinstance(m, nn.Linear) for m in D) == 4
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    with pytest.raises(ValueError, match="depth must be a positive int"):
        gan.mlp_generator(depth=0)
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        gan.mlp_discriminator(hidden=0)


def test_spectrally_normalised_discriminator_has_unit_spectral_norms():
    torch.manual_seed(0)
    D = gan.mlp_discriminator(hidden=32, depth=2, spectral_norm=True).train()
    for _ in range(30):  # each training-mode forward runs one more power iteration
        D(torch.randn(4, 2))
    linears = [m for m in D if isinstance(m, nn.Linear)]
    assert all(nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    norms = torch.stack([torch.linalg.matrix_norm(m.weight.detach(), ord=2) for m in linears])
    assert torch.allclose(norms, torch.ones(len(linears)), atol=1e-3)


# =============================================================================================
# Losses
# =============================================================================================


def test_discriminator_and_generator_losses_match_their_formulas():
    torch.manual_seed(0)
    real, fake = torch.randn(50) * 2, torch.randn(50) * 2
    d = gan.discriminator_loss(real, fake)
    expected = -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean())
    assert torch.allclose(d, expected, atol=1e-6)
    assert gan.discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2))
    minimax = gan.generator_loss(fake, "minimax")
    assert torch.allclose(minimax, (1 - torch.sigmoid(fake)).log().mean(), atol=1e-6)
    ns = gan.generator_loss(fake, "non_saturating")
    assert torch.allclose(ns, -torch.sigmoid(fake).log().mean(), atol=1e-6)
    assert torch.equal(gan.generator_loss(fake), ns)  # the default


def test_generator_losses_are_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0])
    assert torch.allclose(gan.generator_loss(logits, "non_saturating"), torch.tensor(100.0))  # (200 + 0) / 2
    assert torch.allclose(gan.generator_loss(logits, "minimax"), torch.tensor(-100.0))
    assert torch.isfinite(gan.discriminator_loss(logits, logits))


def test_minimax_gradient_vanishes_when_d_rejects_the_fakes():
    """Early in training D confidently rejects the fakes (logit -10): the minimax loss gives G almost no
    gradient, the non-saturating loss a gradient of about 1 per example."""
    grads = {}
    for kind in gan.GENERATOR_LOSS_KINDS:
        logits = torch.full((4,), -10.0, requires_grad=True)
        gan.generator_loss(logits, kind).backward()
        grads[kind] = logits.grad.abs().sum().item()
    assert grads["minimax"] == pytest.approx(torch.sigmoid(torch.tensor(-10.0)).item(), rel=1e-4)
    assert grads["non_saturating"] == pytest.approx(1.0, abs=1e-4)


def test_unknown_generator_loss_kind():
    with pytest.raises(ValueError, match="choose one of .*non_saturating"):
        gan.generator_loss(torch.zeros(3), "hinge")


def test_wasserstein_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert gan.wasserstein_critic_loss(real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert gan.wasserstein_generator_loss(fake).item() == pytest.approx(0.5)


def test_gradient_penalty_of_a_linear_critic_and_its_gradient():
    """A linear critic x -> x . w has gradient w everywhere: the penalty is (||w|| - 1)^2, and since it is
    built with create_graph=True its own gradient with respect to w is 2 (||w|| - 1) w / ||w||."""
    w = torch.tensor([[3.0], [4.0]], requires_grad=True)
    critic = lambda x: (x @ w).reshape(-1)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = gan.gradient_penalty(critic, real, fake, generator=0)
    assert gp.item() == pytest.approx(16.0)
    gp.backward()
    assert torch.allclose(w.grad, 2 * (5 - 1) * w.detach() / 5)
    unit = torch.tensor([[0.6], [0.8]])
    gp_unit = gan.gradient_penalty(lambda x: (x @ unit).reshape(-1), real, fake)
    assert gp_unit.item() == pytest.approx(0, abs=1e-12)


def test_gradient_penalty_interpolates_with_one_weight_per_example():
    """For critic(x) = ||x||^2 / 2 the gradient is x_hat itself, so the penalty reveals the x_hat used."""
    real, fake = torch.randn(5, 1, 2, 2, generator=gen(1)), torch.randn(5, 1, 2, 2, generator=gen(2))
    gp = gan.gradient_penalty(lambda x: 0.5 * x.square().flatten(1).sum(dim=1), real, fake, generator=gen(7))
    e = torch.rand(5, 1, 1, 1, generator=gen(7))
    x_hat = e * real + (1 - e) * fake
    assert torch.allclose(gp, ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean())
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(lambda x: x.sum(dim=1), torch.zeros(4, 2), torch.zeros(3, 2))


# =============================================================================================
# Divergences
# =============================================================================================


def test_kl_divergence():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1])
    assert gan.kl_divergence(p, q) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert gan.kl_divergence(2 * p, 10 * q) == pytest.approx(gan.kl_divergence(p, q))  # normalised first
    assert gan.kl_divergence(p, p) == 0.0
    assert gan.kl_divergence(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])) == pytest.approx(math.log(2))
    assert gan.kl_divergence(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])) == math.inf
    rng = np.random.default_rng(0)
    a, b = rng.random(20), rng.random(20)
    assert gan.kl_divergence(a, b) == pytest.approx(scipy.stats.entropy(a, b), rel=1e-12)


def test_js_divergence_saturates_where_wasserstein_keeps_growing():
    """Two narrow bumps moved apart on a grid: JS is log 2 as soon as they stop overlapping, however far
    apart they are; the Wasserstein distance between samples grows with the shift."""
    grid = torch.arange(100)
    bump = lambda c: ((grid - c).abs() <= 2).double()
    assert gan.js_divergence(bump(20), bump(20)) == pytest.approx(0.0, abs=1e-12)
    for shift in (10, 30, 60):
        assert gan.js_divergence(bump(20), bump(20 + shift)) == pytest.approx(math.log(2))
    x = torch.randn(500, generator=gen(0))
    assert [gan.wasserstein_1d(x, x + s) for s in (10, 30, 60)] == pytest.approx([10, 30, 60])
    rng = np.random.default_rng(1)
    a, b = rng.random(30), rng.random(30)
    expected = scipy.spatial.distance.jensenshannon(a, b) ** 2  # natural log by default
    assert gan.js_divergence(a, b) == pytest.approx(expected, rel=1e-9)
    assert gan.js_divergence(a, b) == pytest.approx(gan.js_divergence(b, a), rel=1e-12)


def test_wasserstein_1d_against_scipy():
    x, y = torch.randn(300, generator=gen(0)), 2 * torch.rand(300, generator=gen(1))
    assert gan.wasserstein_1d(x, y) == pytest.approx(scipy.stats.wasserstein_distance(x.numpy(), y.numpy()),
                                                     rel=1e-6)
    assert gan.wasserstein_1d(x[:, None], y[:, None]) == pytest.approx(gan.wasserstein_1d(x, y))
    with pytest.raises(ValueError, match="equal size"):
        gan.wasserstein_1d(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="1-D tensor of samples"):
        gan.wasserstein_1d(torch.zeros(3, 2), torch.zeros(3, 2))


def test_divergence_errors():
    with pytest.raises(ValueError, match="same grid"):
        gan.kl_divergence(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="non-negative finite weights"):
        gan.js_divergence(torch.tensor([0.5, -0.5]), torch.ones(2))
    with pytest.raises(ValueError, match="positive sum"):
        gan.kl_divergence(torch.zeros(3), torch.ones(3))


# =============================================================================================
# Spectral normalisation
# =============================================================================================


def test_power_iteration_converges_to_the_spectral_norm():
    for W in (torch.randn(20, 30, generator=gen(0)), torch.randn(8, 3, 3, 3, generator=gen(1))):
        sigma, u, v = gan.power_iteration(W, num_iters=500, generator=0)
        exact = torch.linalg.matrix_norm(W.reshape(len(W), -1), ord=2)
        assert abs(sigma.item() - exact.item()) / exact.item() < 1e-3
        assert u.shape == (W.shape[0],) and v.shape == (W[0].numel(),)
        assert u.norm().item() == pytest.approx(1.0) and v.norm().item() == pytest.approx(1.0)


@pytest.mark.parametrize("layer, num_iters", [(nn.Linear(30, 20), 1), (nn.Linear(12, 9), 3),
                                              (nn.Conv2d(3, 8, 3), 1)])
def test_power_iteration_matches_torch_spectral_norm(layer, num_iters):
    """From the library's buffer ``_u``, our iteration gives its new ``_u``, ``_v`` and normalised weight
    after one training-mode forward."""
    torch.manual_seed(0)
    layer = nn.utils.parametrizations.spectral_norm(layer, n_power_iterations=num_iters).train()
    sn = layer.parametrizations.weight[0]
    u0, v0 = sn._u.clone(), sn._v.clone()
    W = layer.parametrizations.weight.original.detach().clone()
    W_mat = W.reshape(len(W), -1)
    assert torch.allclose(v0, F.normalize(W_mat.T @ u0, dim=0), atol=1e-6)  # what lets us start from u alone
    library_weight = layer.weight.detach()  # one forward of the parametrization: num_iters updates in place
    sigma, u, v = gan.power_iteration(W, u0, num_iters=num_iters)
    assert torch.allclose(u, sn._u, atol=1e-6) and torch.allclose(v, sn._v, atol=1e-6)
    assert torch.allclose(W / sigma, library_weight, rtol=1e-5, atol=1e-7)


def test_power_iteration_sigma_carries_the_gradient():
    W = torch.randn(5, 4, generator=gen(0), requires_grad=True)
    sigma, u, v = gan.power_iteration(W, num_iters=50, generator=0)
    sigma.backward()
    assert not u.requires_grad and torch.allclose(W.grad, torch.outer(u, v), atol=1e-6)  # d(u^T W v)/dW


def test_power_iteration_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        gan.power_iteration(torch.ones(3))
    with pytest.raises(ValueError, match=r"u must have shape \(4,\)"):
        gan.power_iteration(torch.ones(4, 3), torch.ones(3))
    with pytest.raises(ValueError, match="num_iters must be a non-negative int"):
        gan.power_iteration(torch.ones(4, 3), num_iters=-1)


# =============================================================================================
# Fréchet distance
# =============================================================================================


def scipy_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The FID paper's computation (TTUR code): sqrtm of the product, offset if singular, real part."""
    mu1, mu2, sigma1, sigma2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, sigma1, sigma2))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = gen(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ A + shift


def test_feature_statistics():
    X = torch.randn(100, 5, generator=gen(0))
    mu, sigma = gan.feature_statistics(X)
    assert mu.dtype == sigma.dtype == torch.float64 and sigma.shape == (5, 5)
    assert torch.allclose(mu, X.double().mean(dim=0))
    assert torch.allclose(sigma, torch.from_numpy(np.cov(X.double().numpy(), rowvar=False)))
    with pytest.raises(ValueError, match="n >= 2"):
        gan.feature_statistics(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"features must be \(n, d\)"):
        gan.feature_statistics(torch.zeros(10))


@pytest.mark.parametrize("seed, shift", [(0, 0.0), (1, 0.1), (2, 1.0)])
def test_frechet_distance_matches_scipy(seed, shift):
    stats1 = gan.feature_statistics(gaussian_features(2000, 64, seed))
    stats2 = gan.feature_statistics(gaussian_features(2000, 64, seed + 100, shift))
    ours = gan.frechet_distance(*stats1, *stats2)
    assert ours == pytest.approx(scipy_frechet_distance(*stats1, *stats2), rel=1e-6)
    assert ours == pytest.approx(gan.frechet_distance(*stats2, *stats1), rel=1e-9)  # symmetric


def test_frechet_distance_of_singular_covariances_is_finite():
    """Fewer samples than features: both covariances are singular; eigh copes without an offset."""
    stats1 = gan.feature_statistics(gaussian_features(20, 64, 0))
    stats2 = gan.feature_statistics(gaussian_features(20, 64, 1, shift=0.5))
    ours = gan.frechet_distance(*stats1, *stats2)
    assert math.isfinite(ours) and ours > 0
    assert ours == pytest.approx(scipy_frechet_distance(*stats1, *stats2), rel=1e-3)


def test_frechet_distance_special_cases():
    mu, sigma = gan.feature_statistics(gaussian_features(500, 16, 3))
    assert gan.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    for (m1, s1), (m2, s2) in [((0.0, 1.0), (3.0, 2.0)), ((-1.0, 0.5), (0.5, 0.1)), ((2.0, 1.5), (2.0, 1.5))]:
        as64 = lambda x: torch.tensor(x, dtype=torch.float64)
        d = gan.frechet_distance(as64([m1]), as64([[s1**2]]), as64([m2]), as64([[s2**2]]))
        assert d == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, abs=1e-12)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match=r"sigma1 \(d, d\)"):
        gan.frechet_distance(torch.zeros(3), torch.eye(4), torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="different feature sizes"):
        gan.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))


# =============================================================================================
# Classifier-based scores
# =============================================================================================


def test_inception_score_extremes_and_formula():
    one_hot = torch.eye(10).repeat(5, 1)
    assert gan.inception_score(one_hot) == pytest.approx(10.0)
    assert gan.inception_score(torch.eye(10)[[3] * 50]) == pytest.approx(1.0)  # all confident, one class
    assert gan.inception_score(torch.full((8, 10), 0.1)) == pytest.approx(1.0)  # all uncertain
    probs = torch.softmax(torch.randn(40, 10, generator=gen(0)) * 3, dim=1).double()
    marginal = probs.mean(dim=0)
    expected = math.exp((probs * (probs / marginal).log()).sum(dim=1).mean().item())
    assert gan.inception_score(probs) == pytest.approx(expected, rel=1e-12)
    assert 1.0 < gan.inception_score(probs) < 10.0
    with pytest.raises(ValueError, match="not logits"):
        gan.inception_score(torch.randn(4, 10))
    with pytest.raises(ValueError, match=r"\(n, num_classes\)"):
        gan.inception_score(torch.ones(10) / 10)


def test_class_histogram_and_entropy():
    labels = torch.tensor([0, 2, 2, 9])
    assert gan.class_histogram(labels, 10).tolist() == [1, 0, 2, 0, 0, 0, 0, 0, 0, 1]
    assert gan.class_entropy(torch.full((30,), 4), 10) == 0.0
    assert gan.class_entropy(torch.arange(10).repeat(3), 10) == pytest.approx(math.log(10))
    assert gan.class_entropy(labels, 10) == pytest.approx(-(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)))
    with pytest.raises(ValueError, match="lie in 0..9"):
        gan.class_histogram(torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match="not floats"):
        gan.class_histogram(torch.tensor([0.0, 1.0]), 10)
    with pytest.raises(ValueError, match="at least one label"):
        gan.class_entropy(torch.zeros(0, dtype=torch.long), 10)


# =============================================================================================
# DCGAN
# =============================================================================================


def test_dcgan_generator_follows_the_guidelines():
    torch.manual_seed(0)
    G = gan.dcgan_generator(latent_dim=16, width=8)
    z = torch.randn(3, 16)
    images = G(z)
    assert images.shape == (3, 1, 28, 28) and images.abs().max() <= 1
    assert torch.equal(G(z.reshape(3, 16, 1, 1)), G(z))
    layers = list(G)
    assert isinstance(layers[-1], nn.Tanh) and isinstance(layers[-2], nn.ConvTranspose2d)  # no BN
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == 2
    assert all(isinstance(m, nn.ReLU) for m in layers if isinstance(m, (nn.ReLU, nn.LeakyReLU)))


def test_dcgan_discriminator_follows_the_guidelines():
    torch.manual_seed(0)
    D = gan.dcgan_discriminator(width=8)
    logits = D(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3,)
    layers = list(D)
    assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.LeakyReLU)  # no BN on the input
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))
    assert [m.stride for m in layers if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == 1
    logits.sum().backward()
    assert all(p.grad is not None for p in D.parameters())


def test_dcgan_init_draws_batch_norm_weights_around_one():
    torch.manual_seed(0)
    n = 20000
    model = nn.Sequential(nn.Conv2d(50, 40, 10), nn.BatchNorm2d(n), nn.Linear(10, 10))
    gan.dcgan_init_(model)
    conv, bn = model[0], model[1]
    assert abs(bn.weight.mean().item() - 1.0) < SIGMAS * 0.02 / math.sqrt(n)
    assert abs(bn.weight.std().item() - 0.02) < SIGMAS * 0.02 / math.sqrt(2 * n)
    assert abs(conv.weight.mean().item()) < SIGMAS * 0.02 / math.sqrt(conv.weight.numel())
    assert abs(conv.weight.std().item() - 0.02) < SIGMAS * 0.02 / math.sqrt(2 * conv.weight.numel())
    assert all(torch.equal(b, torch.zeros_like(b)) for b in (conv.bias, bn.bias, model[2].bias))
    assert gan.dcgan_init_(model) is model


def test_conditional_models():
    torch.manual_seed(0)
    G = gan.conditional_generator(num_classes=10, latent_dim=16, width=8, embed_dim=4).eval()
    D = gan.conditional_discriminator(num_classes=10, width=8).eval()
    z, labels = torch.randn(4, 16), torch.tensor([0, 3, 3, 9])
    images = G(z, labels)
    assert images.shape == (4, 1, 28, 28)
    assert not torch.allclose(G(z, labels), G(z, torch.tensor([1, 3, 3, 9])))  # the label changes the image
    assert D(images, labels).shape == (4,)
    assert D.net[0].in_channels == 2  # the label map is an extra input channel
    with pytest.raises(ValueError, match="lie in 0..9"):
        G(z, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        D(images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"images must be \(n, 1, 28, 28\)"):
        D(torch.zeros(4, 1, 32, 32), labels)
    with pytest.raises(ValueError, match=r"z must be \(n, 16\)"):
        G(torch.zeros(4, 8), labels)


# =============================================================================================
# The GAN lab's trainer
# =============================================================================================


def test_non_saturating_gan_moves_towards_a_single_gaussian():
    """The generated mean starts about 2.2 from the data's mean and approaches it. A GAN circles around
    its equilibrium rather than descending to it, so the test averages the distance over the last 5 of
    10 checkpoints (20 steps apart); seeds 0-4 all end at 0.45 or less of the start."""
    target = torch.tensor([2.0, -1.0])
    data = lambda n, generator=None: gan.single_gaussian(n, mean=(2.0, -1.0), std=0.5, generator=generator)
    lab = gan.GAN2D(data, loss="non_saturating", lr_g=2e-3, lr_d=2e-3, batch_size=128, hidden=32, seed=0)
    distance = lambda: (lab.samples().mean(dim=0) - target).norm().item()
    before = distance()
    distances = []
    for _ in range(10):
        assert lab.train(20) is lab
        distances.append(distance())
    assert sum(distances[5:]) / 5 < 0.5 * before, (before, distances)
    assert len(lab.history["d_loss"]) == len(lab.history["g_loss"]) == 200 and lab.step == 200


def test_wgan_gp_trains_with_finite_critic_loss():
    lab = gan.GAN2D(gan.ring_of_gaussians, loss="wgan-gp", batch_size=64, hidden=32, seed=0)
    assert lab.d_steps == 5  # the paper's critic steps per generator step
    assert lab.opt_d.param_groups[0]["betas"] == (0.0, 0.9)
    lab.train(10)
    assert set(lab.history) == {"d_loss", "g_loss", "wasserstein"}
    assert all(math.isfinite(v) for values in lab.history.values() for v in values)
    assert len(lab.history["wasserstein"]) == 10


def test_gan2d_is_reproducible_and_sampling_does_not_change_training():
    a = gan.GAN2D(gan.two_moons, batch_size=32, hidden=16, seed=3).train(5)
    b = gan.GAN2D(gan.two_moons, batch_size=32, hidden=16, seed=3)
    b.train(2)
    assert b.samples(2000).shape == (2000, 2)  # fresh noise from its own generator
    b.train(3)
    assert a.history == b.history
    assert torch.equal(a.samples(), b.samples())
    assert a.opt_g.param_groups[0]["betas"] == (0.5, 0.999) and a.d_steps == 1
    assert a.samples().shape == (512, 2) and a.samples().device.type == "cpu"
    assert torch.equal(a.samples(10), a.samples()[:10])  # the first rows of the fixed batch
    assert a.train(0).step == 5


def test_gan2d_accepts_a_data_tensor():
    points = gan.ring_of_gaussians(300, generator=0)
    lab = gan.GAN2D(points, loss="minimax", batch_size=32, hidden=16).train(3)
    assert len(lab.history["g_loss"]) == 3
    with pytest.raises(ValueError, match=r"\(N, dim\) points"):
        gan.GAN2D(torch.zeros(10))


def test_decision_surface_orientation_and_range():
    lab = gan.GAN2D(gan.ring_of_gaussians, batch_size=32, hidden=16).train(2)
    xs, ys = torch.linspace(-3, 3, 5), torch.linspace(-2, 2, 4)
    surface = lab.decision_surface(xs, ys)
    assert surface.shape == (4, 5)
    assert ((surface > 0) & (surface < 1)).all()
    with torch.no_grad():
        expected = torch.sigmoid(lab.D(torch.tensor([[xs[3], ys[1]]]))).item()
    assert surface[1, 3].item() == pytest.approx(expected)
    critic = gan.GAN2D(gan.ring_of_gaussians, loss="wgan-gp", batch_size=32, hidden=16)
    with torch.no_grad():
        raw = critic.D(torch.tensor([[xs[0], ys[2]]])).item()
    assert critic.decision_surface(xs, ys)[2, 0].item() == pytest.approx(raw)  # raw critic scores


def test_gan2d_validation_messages():
    with pytest.raises(ValueError, match="lr_g must be a number in \\(0, 1\\].*try 1e-3"):
        gan.GAN2D(gan.ring_of_gaussians, lr_g=0.0)
    with pytest.raises(ValueError, match="lr_d must be a number in"):
        gan.GAN2D(gan.ring_of_gaussians, lr_d=5.0)
    with pytest.raises(ValueError, match="d_steps must be an int >= 1"):
        gan.GAN2D(gan.ring_of_gaussians, d_steps=0)
    with pytest.raises(ValueError, match="choose one of .*wgan-gp"):
        gan.GAN2D(gan.ring_of_gaussians, loss="lsgan")
    with pytest.raises(ValueError, match="must return an \\(n, dim\\) tensor"):
        gan.GAN2D(lambda n, generator=None: torch.zeros(n))
    with pytest.raises(ValueError, match="data must accept data\\(n, generator=g\\)"):
        gan.GAN2D(lambda n: torch.zeros(n, 2))
    lab = gan.GAN2D(gan.ring_of_gaussians, batch_size=8, hidden=8)
    with pytest.raises(ValueError, match="num_steps must be a non-negative int"):
        lab.train(-1)


def test_gan2d_divergence_stops_before_the_bad_update():
    calls = []

    def data(n, generator=None):  # real data that turn into inf at the 4th batch (the step-3 D step)
        calls.append(n)
        points = gan.single_gaussian(n, generator=generator)
        return points if len(calls) < 4 else torch.full((n, 2), math.inf)

    lab = gan.GAN2D(data, batch_size=16, hidden=8)  # the constructor draws one batch to check the data
    lab.train(2)
    weights = [p.detach().clone() for p in lab.D.parameters()]
    with pytest.raises(ValueError, match="training diverged at step 3: .* lower the learning rate") as info:
        lab.train(5)
    assert isinstance(info.value, gan.GANDivergenceError)
    assert lab.step == 2 and len(lab.history["d_loss"]) == 2
    assert all(torch.equal(w, p) for w, p in zip(weights, lab.D.parameters(), strict=True))


def test_gan2d_trains_on_the_course_device(monkeypatch):
    """The trainer asks ``training_device`` (the course default unless given a device); ``cpu:0``
    stands in for a GPU, as in tests/test_device.py."""
    from helpers import config

    monkeypatch.setattr(config, "_device", torch.device("cpu", 0))
    lab = gan.GAN2D(gan.ring_of_gaussians, batch_size=8, hidden=8).train(1)
    assert lab.device == torch.device("cpu", 0)
    on_cpu = gan.GAN2D(gan.ring_of_gaussians, batch_size=8, hidden=8, device="cpu")
    assert on_cpu.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            gan.GAN2D(gan.ring_of_gaussians, device="cuda")


# =============================================================================================
# CycleGAN's losses (chapter 11b)
# =============================================================================================


def test_lsgan_losses_match_mse_and_their_optima():
    real, fake = torch.randn(6, 1, 7, 7, generator=gen(40)), torch.randn(6, 1, 7, 7, generator=gen(41))
    expected = 0.5 * F.mse_loss(real, torch.ones_like(real)) + 0.5 * F.mse_loss(fake, torch.zeros_like(fake))
    assert torch.allclose(gan.lsgan_discriminator_loss(real, fake), expected)
    assert torch.allclose(gan.lsgan_generator_loss(fake), F.mse_loss(fake, torch.ones_like(fake)))
    assert gan.lsgan_discriminator_loss(torch.ones(5), torch.zeros(5)).item() == 0.0  # the perfect D
    assert gan.lsgan_generator_loss(torch.ones(5)).item() == 0.0  # D accepts every fake
    # An accepted fake (score 1.5 > 1) still gets a gradient towards the target, unlike with cross-entropy.
    scores = torch.tensor([1.5], requires_grad=True)
    gan.lsgan_generator_loss(scores).backward()
    assert scores.grad.item() == pytest.approx(1.0)


def test_cycle_and_identity_losses_are_sums_of_two_l1_means():
    x, a, y, b = (torch.randn(3, 1, 28, 28, generator=gen(50 + i)) for i in range(4))
    assert torch.allclose(gan.cycle_consistency_loss(x, a, y, b), F.l1_loss(a, x) + F.l1_loss(b, y))
    assert torch.allclose(gan.identity_loss(x, a, y, b), F.l1_loss(a, x) + F.l1_loss(b, y))
    assert gan.cycle_consistency_loss(x, x, y, y).item() == 0.0
    with pytest.raises(ValueError, match="same shapes"):
        gan.cycle_consistency_loss(x, a[:, :, :27], y, b)
    with pytest.raises(ValueError, match="same shapes"):
        gan.identity_loss(x, a, y, b[:2])
