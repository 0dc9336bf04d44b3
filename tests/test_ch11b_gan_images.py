"""Chapter 11b's code, imported from the notebook: DCGAN and the conditional models against helpers.gan,
the scores and the Fréchet distance against helpers and SciPy, CycleGAN's losses against PyTorch, the
training loops on a few steps, and the latent explorer."""

import functools
import math

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import scipy.linalg
import torch
from torch import nn
from torch.nn import functional as F

from helpers import gan, widgets
from notebook_code import load_notebook

ch = load_notebook("11b_gan_images")


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("latent_dim, width", [(64, 32), (16, 8)])
def test_dcgan_networks_equal_the_helpers(latent_dim, width):
    torch.manual_seed(0)
    G, D = ch.dcgan_generator(latent_dim, width), ch.dcgan_discriminator(width)
    torch.manual_seed(0)
    G_ref, D_ref = gan.dcgan_generator(latent_dim, width), gan.dcgan_discriminator(width)
    for ours, theirs in ((G, G_ref), (D, D_ref)):
        assert [type(m) for m in ours] == [type(m) for m in theirs]
        assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters(), strict=True))
    z = torch.randn(5, latent_dim, generator=gen(1))
    images = G(z)
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
    assert torch.allclose(images, G_ref(z))
    assert D(images).shape == (5,) and torch.allclose(D(images), D_ref(images))


def test_dcgan_follows_the_guidelines():
    G, D = ch.dcgan_generator(64, 32), ch.dcgan_discriminator(32)
    assert isinstance(G[-1], nn.Tanh) and not isinstance(G[-2], nn.BatchNorm2d)  # no batch norm at G's output
    assert isinstance(D[0], nn.Conv2d) and isinstance(D[1], nn.LeakyReLU)  # none at D's input
    assert D[1].negative_slope == 0.2
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in [*G, *D])
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)]).detach()
    assert abs(scales.mean() - 1) < 0.01 and 0.015 < scales.std() < 0.025
    convs = torch.cat([m.weight.flatten() for m in D.modules() if isinstance(m, nn.Conv2d)]).detach()
    assert abs(convs.std() - 0.02) < 0.002


def test_class_entropy_and_inception_score_equal_the_helpers():
    probs = F.softmax(2 * torch.randn(300, 10, generator=gen(2)), dim=1)
    probs[0] = F.one_hot(torch.tensor(3), 10).float()  # exact zeros: 0 log 0 = 0
    labels = torch.randint(10, (300,), generator=gen(3))
    assert ch.inception_score(probs) == pytest.approx(gan.inception_score(probs), rel=1e-12)
    assert ch.class_entropy(labels, 10) == pytest.approx(gan.class_entropy(labels, 10), rel=1e-12)
    assert ch.class_entropy(torch.arange(100) % 10, 10) == pytest.approx(math.log(10))
    assert ch.class_entropy(torch.full((7,), 2), 10) == 0.0
    even = F.one_hot(torch.arange(100) % 10, 10).float()
    assert ch.inception_score(even) == pytest.approx(10.0)
    assert ch.inception_score(even[:1].repeat(20, 1)) == pytest.approx(1.0)


def test_feature_statistics_equal_the_helpers():
    X = torch.randn(200, 6, generator=gen(4)) * torch.arange(1.0, 7.0) + 3
    mu, sigma = ch.feature_statistics(X)
    mu_ref, sigma_ref = gan.feature_statistics(X)
    assert mu.dtype == sigma.dtype == torch.float64
    assert torch.allclose(mu, mu_ref) and torch.allclose(sigma, sigma_ref)
    assert torch.allclose(sigma, torch.from_numpy(__import__("numpy").cov(X.double().numpy(), rowvar=False)))


def scipy_frechet_distance(mu1, sigma1, mu2, sigma2):
    """The FID paper's computation: sqrtm of the product, real part."""
    mu1, sigma1, mu2, sigma2 = (t.numpy() for t in (mu1, sigma1, mu2, sigma2))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * covmean.trace())


@pytest.mark.parametrize("seed, dim", [(0, 4), (1, 16), (2, 64)])
def test_frechet_distance_equals_scipy_and_the_helper_on_random_gaussians(seed, dim):
    g = gen(seed)
    stats = []
    for shift in (0.0, 0.5):
        A = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        samples = torch.randn(5 * dim, dim, generator=g, dtype=torch.float64) @ A + shift
        stats.append(ch.feature_statistics(samples))
    ours = ch.frechet_distance(*stats[0], *stats[1])
    assert ours == pytest.approx(scipy_frechet_distance(*stats[0], *stats[1]), rel=1e-6)
    assert ours == pytest.approx(gan.frechet_distance(*stats[0], *stats[1]), rel=1e-6)
    scale = stats[0][1].trace().item()
    assert ch.frechet_distance(*stats[0], *stats[0]) == pytest.approx(0.0, abs=1e-6 * scale)


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([2.0, -1.0], dtype=torch.float64)
    std1, std2 = torch.tensor([1.0, 3.0], dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64)
    exact = float((mu1 - mu2).square().sum() + (std1 - std2).square().sum())
    assert ch.frechet_distance(mu1, torch.diag(std1**2), mu2, torch.diag(std2**2)) == pytest.approx(exact)


def test_classifier_outputs_features_before_the_last_relu_and_probabilities():
    torch.manual_seed(0)
    net = ch.FashionClassifier()
    images = torch.rand(7, 1, 28, 28, generator=gen(5)) * 2 - 1
    features, probs = ch.classifier_outputs(net, images, batch_size=3)
    assert features.shape == (7, 128) and probs.shape == (7, 10)
    assert (features < 0).any()  # taken before the ReLU
    assert torch.allclose(probs.sum(dim=1), torch.ones(7))
    assert torch.allclose(probs, F.softmax(net(images), dim=1), atol=1e-6)
    scores = ch.image_scores(net, torch.cat([images] * 3), ch.feature_statistics(features.repeat(3, 1)))
    assert scores["fid"] == pytest.approx(0.0, abs=1e-6)
    assert set(scores) == {"fid", "is", "entropy", "confidence"}


def test_blur_keeps_the_mean_and_smooths():
    images = torch.rand(2, 1, 28, 28, generator=gen(6))
    blurred = ch.blur(images, 1.0)
    assert blurred.shape == images.shape
    inner = (slice(None), slice(None), slice(5, -5), slice(5, -5))
    assert blurred[inner].std() < images[inner].std()
    assert torch.allclose(ch.blur(torch.ones(1, 1, 28, 28), 2.0), torch.ones(1, 1, 28, 28), atol=1e-5)


def test_interpolate_runs_from_z0_to_z1():
    z0, z1 = torch.randn(8, generator=gen(7)), torch.randn(8, generator=gen(8))
    path = ch.interpolate(z0, z1, 5)
    assert path.shape == (5, 8)
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1)
    assert torch.allclose(path[2], (z0 + z1) / 2)


def test_conditional_models_equal_the_helpers():
    labels = torch.tensor([0, 3, 9, 3])
    z = torch.randn(4, 64, generator=gen(9))
    for ours_cls, theirs_cls in ((ch.ConditionalGenerator, gan.ConditionalGenerator),
                                 (ch.ConditionalDiscriminator, gan.ConditionalDiscriminator)):
        torch.manual_seed(0)
        ours = ours_cls(width=8)
        torch.manual_seed(0)
        theirs = theirs_cls(width=8)
        assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters(), strict=True))
        x = z if ours_cls is ch.ConditionalGenerator else torch.rand(4, 1, 28, 28, generator=gen(10))
        assert torch.allclose(ours(x, labels), theirs(x, labels))


def test_cyclegan_losses_equal_pytorch_and_the_helpers():
    g = gen(11)
    real, fake = torch.randn(5, 1, 7, 7, generator=g), torch.randn(5, 1, 7, 7, generator=g)
    x, a, y, b = (torch.randn(3, 1, 28, 28, generator=g) for _ in range(4))
    expected = 0.5 * F.mse_loss(real, torch.ones_like(real)) + 0.5 * F.mse_loss(fake, torch.zeros_like(fake))
    assert torch.allclose(ch.lsgan_discriminator_loss(real, fake), expected)
    assert torch.allclose(ch.lsgan_generator_loss(fake), F.mse_loss(fake, torch.ones_like(fake)))
    assert torch.allclose(ch.cycle_consistency_loss(x, a, y, b), F.l1_loss(a, x) + F.l1_loss(b, y))
    assert torch.allclose(ch.identity_loss(x, a, y, b), F.l1_loss(a, x) + F.l1_loss(b, y))
    assert torch.allclose(ch.lsgan_discriminator_loss(real, fake), gan.lsgan_discriminator_loss(real, fake))
    assert torch.allclose(ch.lsgan_generator_loss(fake), gan.lsgan_generator_loss(fake))
    assert torch.allclose(ch.cycle_consistency_loss(x, a, y, b), gan.cycle_consistency_loss(x, a, y, b))
    assert torch.allclose(ch.identity_loss(x, a, y, b), gan.identity_loss(x, a, y, b))


def test_the_toy_translation_and_its_error():
    x = torch.rand(4, 1, 28, 28, generator=gen(12)) * 2 - 1
    t = ch.upside_down_negative(x)
    assert torch.equal(ch.upside_down_negative(t), x)  # an involution: T is its own inverse
    assert torch.equal(t[:, :, 0], -x[:, :, -1])  # the top row is the negative of the bottom row
    assert ch.mapping_error(t, t) == 0.0
    assert ch.mapping_error(torch.full((1, 1, 2, 2), -1.0), torch.ones(1, 1, 2, 2)) == 1.0  # black vs white
    assert ch.cycle_generator()(x).shape == x.shape
    assert ch.patch_discriminator()(x).shape == (4, 1, 7, 7)


def test_dcgan_loop_trains_and_keeps_snapshots():
    torch.manual_seed(0)
    G, D = ch.dcgan_generator(8, 4), ch.dcgan_discriminator(4)
    images = torch.rand(64, 1, 28, 28, generator=gen(13)) * 2 - 1
    before = [p.detach().clone() for p in G.parameters()]
    calls = []

    def evaluate(G):
        calls.append(1)
        return {"val_fid": 1.0}

    history, snapshots = ch.train_dcgan(G, D, images, 2, 16, 2e-4, 8, torch.randn(3, 8), evaluate=evaluate,
                                        device="cpu")
    assert snapshots.shape == (2, 3, 1, 28, 28) and len(calls) == 2
    assert history["val_fid"] == [1.0, 1.0] and len(history["train_d_loss"]) == 2
    assert all(math.isfinite(v) for v in history["train_g_loss"])
    assert any(not torch.equal(p, q) for p, q in zip(before, G.parameters(), strict=True))


def test_conditional_and_cycle_loops_run_a_few_steps():
    torch.manual_seed(0)
    images = torch.rand(48, 1, 28, 28, generator=gen(14)) * 2 - 1
    labels = torch.arange(48) % 10
    G, D = ch.ConditionalGenerator(latent_dim=8, width=4, embed_dim=4), ch.ConditionalDiscriminator(width=4)
    history = ch.train_conditional_gan(G, D, images, labels, 1, 16, 2e-4, device="cpu")
    assert math.isfinite(history["train_g_loss"][0]) and not G.training
    nets = [ch.cycle_generator(4, 8), ch.cycle_generator(4, 8), ch.patch_discriminator(4),
            ch.patch_discriminator(4)]
    domain_y = ch.upside_down_negative(images[24:])
    history = ch.train_cyclegan(*nets, images[:24], domain_y, 1, 8, 2e-4, device="cpu")
    expected = {"train_gan_loss", "train_cycle_loss", "train_identity_loss", "train_d_loss"}
    assert expected <= set(history.keys())
    assert all(math.isfinite(history[k][0]) for k in history.keys())


def test_generator_scores_and_conditional_accuracy():
    torch.manual_seed(0)
    classifier = ch.FashionClassifier().eval()
    G = ch.dcgan_generator(8, 4)
    reference = ch.feature_statistics(torch.randn(50, 128, generator=gen(15)))
    scores = ch.generator_scores(G, classifier, reference, torch.randn(40, 8, generator=gen(16)))
    assert set(scores) == {"val_fid", "val_entropy"} and scores["val_fid"] > 0
    assert 0 <= scores["val_entropy"] <= math.log(10) + 1e-9
    cG = ch.ConditionalGenerator(latent_dim=8, width=4, embed_dim=4)
    accuracy = ch.conditional_accuracy(cG, classifier, 5, gen(17))
    assert accuracy.shape == (10,) and ((accuracy >= 0) & (accuracy <= 1)).all()


@pytest.fixture(scope="module")
def explorer_parts():
    torch.manual_seed(0)
    return ch.ConditionalGenerator(latent_dim=8, width=4, embed_dim=4).eval(), ch.FashionClassifier().eval()


def test_latent_explorer_draws_and_explains(explorer_parts):
    G, classifier = explorer_parts
    classes = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    fig, message = ch.draw_latent_explorer("c", 0, 1, 0.5, G, classifier, classes)
    assert fig is not None and "c, t = 0.50" in message and "the judge says" in message
    plt.close(fig)
    fig, message = ch.draw_latent_explorer("c", 4, 4, 0.3, G, classifier, classes)
    assert "seed A = seed B" in message
    plt.close(fig)
    for bad in ({"t": 1.5}, {"t": -0.1}, {"seed_a": -1}, {"class_name": "hat"}):
        values = {"class_name": "c", "seed_a": 0, "seed_b": 1, "t": 0.5, **bad}
        with pytest.raises(ValueError):
            ch.draw_latent_explorer(**values, generator=G, classifier=classifier, classes=classes)


def test_latent_explorer_through_the_widget(explorer_parts):
    G, classifier = explorer_parts
    classes = list(ch.datasets.FASHION_MNIST_CLASSES)
    explorer = widgets.PlotExplorer(
        {"class_name": w.Dropdown(options=classes, value="Bag"), "seed_a": w.IntText(value=0),
         "seed_b": w.IntText(value=1), "t": w.FloatSlider(value=0.5, min=-1, max=2)},
        functools.partial(ch.draw_latent_explorer, generator=G, classifier=classifier, classes=classes),
        tight=False)
    assert explorer.message.startswith("Bag, t = 0.50")
    explorer.controls["t"].value = 1.5  # beyond the notebook's slider: a warning line, not a traceback
    assert "t must lie in [0, 1]" in explorer.message
    explorer.controls["t"].value = 1.0
    explorer.controls["seed_b"].value = 0
    assert "seed A = seed B" in explorer.message
    plt.close("all")
