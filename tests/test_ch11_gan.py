"""Chapter 11's from-scratch code, imported from the notebook, against PyTorch, SciPy and helpers.gan."""

import functools
import math

import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from helpers import gan
from notebook_code import load_notebook

ch = load_notebook("11_gan")


# --------------------------------------------------------------------------------------------
# 11.1 and 11.2: the game
# --------------------------------------------------------------------------------------------


def test_circle_pairs_lie_on_the_circle_with_both_signs():
    x, y = ch.circle_pairs(1000, 2.0, torch.Generator().manual_seed(0))
    assert torch.allclose(x**2 + y**2, torch.full((1000,), 4.0), atol=1e-5)
    assert (x.abs() <= 2).all() and 0.4 < (y > 0).float().mean() < 0.6


@pytest.mark.parametrize("scale", [0.1, 5.0, 40.0])
def test_discriminator_loss_is_the_binary_cross_entropy(scale):
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(50, generator=gen) * scale, torch.randn(50, generator=gen) * scale
    expected = (F.binary_cross_entropy_with_logits(real, torch.ones(50))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros(50)))
    assert torch.allclose(ch.discriminator_loss(real, fake), expected, rtol=1e-5)
    assert torch.isfinite(ch.discriminator_loss(real, fake))  # no overflow at large logits


def test_generator_losses_match_their_formulas_and_helpers():
    logits = torch.linspace(-6, 6, 25)
    d = torch.sigmoid(logits)
    assert torch.allclose(ch.generator_loss(logits, "minimax"), torch.log(1 - d).mean(), atol=1e-5)
    assert torch.allclose(ch.generator_loss(logits, "non_saturating"), -torch.log(d).mean(), atol=1e-5)
    for kind in ("minimax", "non_saturating"):
        assert torch.allclose(ch.generator_loss(logits, kind), gan.generator_loss(logits, kind), atol=1e-6)
    with pytest.raises(ValueError, match="minimax"):
        ch.generator_loss(logits, "hinge")


def test_normal_density_matches_torch_distributions():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = torch.distributions.Normal(0.5, 0.7).log_prob(x).exp()
    assert torch.allclose(ch.normal_density(x, 0.5, 0.7), expected)


def test_kl_and_js_match_scipy_and_helpers():
    gen = torch.Generator().manual_seed(2)
    p, q = torch.rand(2, 20, generator=gen, dtype=torch.float64)
    p_n, q_n = (p / p.sum()).numpy(), (q / q.sum()).numpy()
    assert ch.kl_divergence(p, q) == pytest.approx(stats.entropy(p_n, q_n), rel=1e-10)
    m = (p_n + q_n) / 2
    js = 0.5 * stats.entropy(p_n, m) + 0.5 * stats.entropy(q_n, m)
    assert ch.js_divergence(p, q) == pytest.approx(js, rel=1e-10)
    assert ch.js_divergence(p, q) == pytest.approx(gan.js_divergence(p, q), rel=1e-10)
    assert ch.kl_divergence(p, q) == pytest.approx(gan.kl_divergence(p, q), rel=1e-10)


def test_disjoint_supports_give_infinite_kl_and_js_of_log_2():
    p = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    assert ch.kl_divergence(p, q) == math.inf
    assert ch.js_divergence(p, q) == pytest.approx(math.log(2))
    assert ch.js_divergence(p, p) == 0.0


def test_train_discriminator_approaches_the_optimal_discriminator():
    torch.manual_seed(0)
    D = gan.mlp_discriminator(in_dim=1, hidden=16, depth=2)

    def real(n, g):
        return torch.randn(n, 1, generator=g)

    def fake(n, g):
        return 2 + torch.randn(n, 1, generator=g)

    ch.train_discriminator(D, real, fake, num_steps=400, batch_size=256, lr=3e-3,
                           generator=torch.Generator().manual_seed(1))
    x = torch.linspace(-1, 3, 41, dtype=torch.float64)
    p_real, p_fake = ch.normal_density(x, 0.0, 1.0), ch.normal_density(x, 2.0, 1.0)
    d_star = p_real / (p_real + p_fake)
    with torch.no_grad():
        d = torch.sigmoid(D(x[:, None].float())).double()
    assert (d - d_star).abs().max() < 0.1


# --------------------------------------------------------------------------------------------
# The 2-D training loop
# --------------------------------------------------------------------------------------------


def test_set_learning_rates_and_the_decay_reach_zero():
    model = gan.GAN2D(gan.ring_of_gaussians, seed=0)
    ch.set_learning_rates(model, 0.25, 0.5)
    assert [g["lr"] for g in model.opt_g.param_groups] == [0.25]
    assert [g["lr"] for g in model.opt_d.param_groups] == [0.5]
    model = gan.GAN2D(gan.ring_of_gaussians, seed=0, lr_g=2e-3, lr_d=1e-3)
    history = ch.fit_gan_2d(model, 2, 5, decay=True, live=False, progress=False, verbose=False)
    assert model.step == 10 and len(history["train_d_loss"]) == 2
    assert model.opt_g.param_groups[0]["lr"] == pytest.approx(2e-3 / 10)  # the last step's: 1/10 of the start
    assert model.opt_d.param_groups[0]["lr"] == pytest.approx(1e-3 / 10)


def test_fit_gan_2d_records_the_measurements_per_round():
    model = gan.GAN2D(functools.partial(gan.single_gaussian, mean=(1.0, 1.0), std=0.5), seed=0)
    measure = functools.partial(ch.gaussian_fit, mean=(1.0, 1.0), std=0.5)
    history = ch.fit_gan_2d(model, 3, 20, measure=measure, live=False, progress=False, verbose=False)
    assert len(history["mean_error"]) == 3 and len(history["std_x"]) == 3
    assert history["mean_error"][-1] == pytest.approx(measure(model)["mean_error"], abs=0.05)  # fresh samples


def test_gaussian_fit_of_exact_samples_is_small():
    class Exact:
        def samples(self, n):
            return 1.0 + 0.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(0))

    fit = ch.gaussian_fit(Exact(), (1.0, 1.0), 0.5, num_samples=20_000)
    assert fit["mean_error"] < 0.02 and abs(fit["std_x"] - 0.5) < 0.01 and abs(fit["std_y"] - 0.5) < 0.01


# --------------------------------------------------------------------------------------------
# 11.3: divergences and the generator's gradient
# --------------------------------------------------------------------------------------------


def test_wasserstein_1d_matches_scipy_and_rejects_unequal_sizes():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(500, generator=gen, dtype=torch.float64)
    b = 2 * torch.rand(500, generator=gen, dtype=torch.float64)
    expected = stats.wasserstein_distance(a.numpy(), b.numpy())
    assert ch.wasserstein_1d(a, b) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="equal size"):
        ch.wasserstein_1d(a, b[:10])


def test_slide_divergences_of_two_uniforms():
    grid = torch.arange(-1, 4, 0.001, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(5000, generator=gen, dtype=torch.float64)
    rows = ch.slide_divergences([0.0, 0.5, 1.5, 2.5], grid, a, a.clone())
    kl, js, w1 = zip(*rows, strict=True)
    assert kl[0] == 0 and all(k == math.inf for k in kl[1:])
    assert js[0] == pytest.approx(0, abs=1e-12) and js[1] == pytest.approx(0.5 * math.log(2), abs=0.01)
    assert js[2] == pytest.approx(math.log(2)) and js[3] == pytest.approx(math.log(2))
    assert w1 == pytest.approx((0.0, 0.5, 1.5, 2.5), abs=1e-9)


def test_the_minimax_gradient_fades_as_d_trains_and_the_wgan_gp_gradient_does_not():
    minimax = [ch.generator_gradient_after(k, 3.0, "minimax") for k in (30, 1000)]
    wgan = [ch.generator_gradient_after(k, 3.0, "wgan-gp") for k in (100, 300)]
    assert minimax[1] < 0.05 * minimax[0]
    assert all(0.5 < g < 1.5 for g in wgan)


# --------------------------------------------------------------------------------------------
# 11.4: the Wasserstein GAN
# --------------------------------------------------------------------------------------------


def test_clip_weights_clamps_every_parameter_in_place():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))
    before = [p.detach().clone() for p in critic.parameters()]
    assert ch.clip_weights_(critic, 0.05) is critic
    for p, old in zip(critic.parameters(), before, strict=True):
        assert torch.equal(p.detach(), old.clamp(-0.05, 0.05))


def test_gradient_penalty_matches_helpers_on_images_and_points():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 1))
    real, fake = torch.randn(6, 1, 6, 6), torch.randn(6, 1, 6, 6)
    ours = ch.gradient_penalty(lambda x: critic(x)[:, 0], real, fake, torch.Generator().manual_seed(5))
    theirs = gan.gradient_penalty(lambda x: critic(x)[:, 0], real, fake, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, theirs)
    ours.backward()  # differentiable with respect to the critic's weights
    assert critic[0].weight.grad.abs().sum() > 0 and critic[3].weight.grad.abs().sum() > 0


def test_gradient_penalty_of_a_linear_critic_and_its_gradient():
    linear = nn.Linear(4, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))  # norm 5
    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    penalty = ch.gradient_penalty(lambda x: linear(x)[:, 0], real, fake)
    assert penalty.item() == pytest.approx(16.0)
    penalty.backward()
    w = torch.tensor([3.0, 0.0, 4.0, 0.0])
    assert torch.allclose(linear.weight.grad[0], 2 * (5 - 1) * w / 5)
    assert linear.bias.grad is None or linear.bias.grad.abs().max() == 0


def test_power_iteration_converges_to_the_spectral_norm_and_matches_helpers():
    gen = torch.Generator().manual_seed(4)
    for shape in ((20, 7), (5, 30), (8, 3, 3, 3)):
        W = torch.randn(*shape, generator=gen, dtype=torch.float64)
        u = torch.randn(shape[0], generator=gen, dtype=torch.float64)
        sigma, u_out, v_out = ch.power_iteration(W, u, 300)
        exact = torch.linalg.matrix_norm(W.reshape(shape[0], -1), ord=2)
        assert abs(sigma - exact) / exact < 1e-6
        theirs = gan.power_iteration(W, u, 300)
        assert torch.allclose(sigma, theirs[0]) and torch.allclose(u_out, theirs[1])


def test_one_power_iteration_reproduces_torch_spectral_norm():
    torch.manual_seed(1)
    layer = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(12, 9))
    for _ in range(3):  # several training-mode forwards, each one iteration from the stored u
        u_before = layer.parametrizations.weight[0]._u.clone()
        W = layer.parametrizations.weight.original.detach()
        sigma, u_after, _ = ch.power_iteration(W, u_before, 1)
        assert torch.allclose(layer.weight, W / sigma, atol=1e-6)
        assert torch.allclose(layer.parametrizations.weight[0]._u, u_after, atol=1e-6)


def test_sigma_carries_the_gradient_with_respect_to_the_weight():
    W = torch.randn(6, 4, requires_grad=True)
    sigma, u, v = ch.power_iteration(W, torch.randn(6), 50)
    sigma.backward()
    assert torch.allclose(W.grad, torch.outer(u, v), atol=1e-6)  # d(u^T W v)/dW with u, v constant


# --------------------------------------------------------------------------------------------
# 11.5: mode collapse on the ring
# --------------------------------------------------------------------------------------------


def test_ring_run_scores_a_short_run():
    model, coverage, seconds = ch.ring_run("non_saturating", 40, 0, True, gan.ring_centres(8, 2.0), 0.02,
                                           num_rounds=2)
    assert model.step == 40 and seconds > 0
    assert set(coverage) >= {"modes_covered", "high_quality_fraction", "kl_from_uniform"}
    assert 0 <= coverage["modes_covered"] <= 8 and 0 <= coverage["high_quality_fraction"] <= 1


def test_the_ring_recipes_are_the_ones_the_text_describes():
    assert ch.RING_RECIPES["GAN"][0] == ch.RING_RECIPES["GAN + lr decay"][0] == "non_saturating"
    assert not ch.RING_RECIPES["GAN"][3] and ch.RING_RECIPES["GAN + lr decay"][3]
    assert ch.RING_RECIPES["WGAN-GP + lr decay"][0] == "wgan-gp"
