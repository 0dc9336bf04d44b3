"""Generative adversarial networks for chapter 11: toy data, losses, metrics, DCGAN and a 2-D GAN lab.

What the chapter builds on, in the order it teaches it:

- **2-D data sets** for the GAN lab, each ``f(n, ..., generator)`` -> float32 ``(n, 2)``:
  :func:`ring_of_gaussians` (centres at angles ``2 pi k / K``, :func:`ring_centres`),
  :func:`grid_of_gaussians` (:func:`grid_centres`), :func:`single_gaussian`, :func:`two_moons`, all
  drawn by :func:`sample_mixture` where they are mixtures.
- **Mode coverage** (:func:`mode_coverage`), the VEEGAN/PacGAN metric: modes covered, the fraction of
  high-quality samples and the KL divergence of the per-mode histogram from uniform.
- **Small networks**: :func:`mlp_generator`, :func:`mlp_discriminator` (optionally spectrally
  normalised) for 2-D data; DCGAN's :func:`dcgan_generator` and :func:`dcgan_discriminator` for 28x28
  images with :func:`dcgan_init_`; the class-conditional :class:`ConditionalGenerator` and
  :class:`ConditionalDiscriminator` (built by :func:`conditional_generator`,
  :func:`conditional_discriminator`). Every discriminator returns one logit (or critic score) per
  example, shape ``(n,)``.
- **Losses** on logits or critic scores: :func:`discriminator_loss`, :func:`generator_loss`
  (``'minimax'`` or ``'non_saturating'``), :func:`wasserstein_critic_loss`,
  :func:`wasserstein_generator_loss`, :func:`gradient_penalty` (WGAN-GP).
- **Why GANs are hard**: :func:`kl_divergence`, :func:`js_divergence` (discrete distributions on a
  grid) and :func:`wasserstein_1d` (equal-size samples).
- **Spectral normalisation from scratch**: :func:`power_iteration`, the same update as
  ``torch.nn.utils.parametrizations.spectral_norm``.
- **Evaluation**: :func:`feature_statistics` and :func:`frechet_distance` (FID's formula, without
  SciPy), :func:`inception_score`, :func:`class_histogram`, :func:`class_entropy`.
- **CycleGAN's losses** (chapter 11b): :func:`lsgan_discriminator_loss`, :func:`lsgan_generator_loss`,
  :func:`cycle_consistency_loss`, :func:`identity_loss`.
- **The GAN lab's trainer**: :class:`GAN2D` (G, D, their Adam optimizers, a fixed noise batch;
  ``train(num_steps)``, ``samples()``, ``decision_surface(xs, ys)``; a nan or inf loss stops it
  with :class:`GANDivergenceError`, a ``ValueError``).

Model code only: no widgets, no ``matplotlib.pyplot``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from helpers.training import DivergenceError, make_optimizer, model_device, training_device

__all__ = [
    "GAN_LOSSES",
    "GENERATOR_LOSS_KINDS",
    "ConditionalDiscriminator",
    "ConditionalGenerator",
    "GAN2D",
    "GANDivergenceError",
    "class_entropy",
    "class_histogram",
    "conditional_discriminator",
    "conditional_generator",
    "cycle_consistency_loss",
    "dcgan_discriminator",
    "dcgan_generator",
    "dcgan_init_",
    "discriminator_loss",
    "feature_statistics",
    "frechet_distance",
    "generator_loss",
    "gradient_penalty",
    "grid_centres",
    "grid_of_gaussians",
    "identity_loss",
    "inception_score",
    "js_divergence",
    "kl_divergence",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mlp_discriminator",
    "mlp_generator",
    "mode_coverage",
    "power_iteration",
    "ring_centres",
    "ring_of_gaussians",
    "sample_mixture",
    "single_gaussian",
    "two_moons",
    "wasserstein_1d",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
]

GENERATOR_LOSS_KINDS = ("minimax", "non_saturating")
"""The generator losses of the original GAN: minimise ``log(1 - D(G(z)))`` (the minimax game) or
``-log D(G(z))`` (the non-saturating loss Goodfellow et al. use in practice)."""
GAN_LOSSES = ("minimax", "non_saturating", "wgan-gp")
"""The losses :class:`GAN2D` trains with."""


# =============================================================================================
# 2-D data sets
# =============================================================================================


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A seed becomes a fresh CPU generator; a generator (or None: torch's global one) is kept."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}.")
    return torch.Generator().manual_seed(generator)


def _check_count(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name} must be a non-negative int (the number of samples), got {n!r}.")
    return n


def _check_std(std: float, name: str = "std") -> float:
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {std!r}.")
    return float(std)


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The ``(num_modes, 2)`` centres of the ring: angle ``2 pi k / num_modes``, ``k = 0..num_modes-1``.

    Not ``linspace(0, 2 pi, num_modes)``, which ends at ``2 pi`` and so repeats the first centre
    (7 distinct modes for 8).
    """
    if isinstance(num_modes, bool) or not isinstance(num_modes, int) or num_modes < 1:
        raise ValueError(f"num_modes must be a positive int, got {num_modes!r}.")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}.")
    angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_centres(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """``side x side`` centres ``spacing`` apart, centred on the origin: ``(side**2, 2)``, row by row.

    The default is PacGAN's grid of 25 modes at ``{-4, -2, 0, 2, 4}^2``.
    """
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise ValueError(f"side must be a positive int, got {side!r}.")
    if not spacing > 0:
        raise ValueError(f"spacing must be positive, got {spacing!r}.")
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def sample_mixture(centres: torch.Tensor, n: int, std: float,
                   generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` points from an equal-weight mixture of isotropic Gaussians (``std``) at ``centres`` (m, d).

    Each point picks a centre uniformly at random, then adds ``std`` times standard normal noise.
    """
    centres = torch.as_tensor(centres, dtype=torch.float32)
    if centres.ndim != 2 or len(centres) == 0:
        raise ValueError("centres must be a non-empty (num_modes, dim) tensor, got shape "
                         f"{tuple(centres.shape)}.")
    n, std, generator = _check_count(n), _check_std(std), _generator(generator)
    which = torch.randint(len(centres), (n,), generator=generator)
    return centres[which] + std * torch.randn(n, centres.shape[1], generator=generator)


def ring_of_gaussians(n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.02,
                      generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` points from the ring of ``num_modes`` Gaussians (the classic mode-collapse benchmark)."""
    return sample_mixture(ring_centres(num_modes, radius), n, std, generator)


def grid_of_gaussians(n: int, side: int = 5, spacing: float = 2.0, std: float = 0.05,
                      generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` points from the ``side x side`` grid of Gaussians (PacGAN's 25 modes, std 0.05)."""
    return sample_mixture(grid_centres(side, spacing), n, std, generator)


def single_gaussian(n: int, mean: Sequence[float] = (0.0, 0.0), std: float = 1.0,
                    generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` points from one isotropic Gaussian: the easiest target, where a GAN can be watched converging."""
    mean = torch.as_tensor(mean, dtype=torch.float32)
    if mean.shape != (2,):
        raise ValueError(f"mean must be two numbers (x, y), got {mean.tolist()}.")
    return sample_mixture(mean[None], n, std, generator)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` points on two interleaving half circles (scikit-learn's ``make_moons`` shape, but random).

    Each point picks a moon with probability 1/2 and an angle ``t ~ U[0, pi]``: the upper moon is
    ``(cos t, sin t)``, the lower ``(1 - cos t, 0.5 - sin t)``; then Gaussian noise of std ``noise``.
    """
    n, noise, generator = _check_count(n), _check_std(noise, "noise"), _generator(generator)
    t = math.pi * torch.rand(n, generator=generator)
    lower = torch.rand(n, generator=generator) < 0.5
    upper_points = torch.stack([t.cos(), t.sin()], dim=1)
    lower_points = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    points = torch.where(lower[:, None], lower_points, upper_points)
    return points + noise * torch.randn(n, 2, generator=generator)


# =============================================================================================
# Mode coverage
# =============================================================================================


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float, num_std: float = 3.0) -> dict:
    """How well ``samples`` cover the modes at ``centres`` (VEEGAN's and PacGAN's metric).

    A sample is *high quality* when it lies within ``num_std * std`` of its nearest centre; a mode is
    *covered* when at least one high-quality sample is nearest to it. Returns a dict:

    - ``modes_covered`` (int) and ``num_modes`` (int);
    - ``high_quality_fraction`` (float): the share of all samples that are high quality;
    - ``per_mode_counts`` (int64 tensor ``(num_modes,)``): high-quality samples per mode;
    - ``kl_from_uniform`` (float, nats): ``KL(h || uniform)`` of the normalised histogram ``h`` of
      the high-quality samples over the modes: 0 when they spread evenly, ``log(num_modes)`` when they
      all fall on one mode. With no high-quality sample at all the histogram is undefined; we then
      report ``log(num_modes)``, the worst value (a generator that hits no mode is no better than
      one that collapsed onto one), so the number stays finite for plots.
    """
    samples = torch.as_tensor(samples).detach().cpu().float()
    centres = torch.as_tensor(centres).detach().cpu().float()
    if samples.ndim != 2 or centres.ndim != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(f"samples (n, d) and centres (num_modes, d) must be 2-D with the same d, got shapes "
                         f"{tuple(samples.shape)} and {tuple(centres.shape)}.")
    if len(samples) == 0 or len(centres) == 0:
        raise ValueError("mode_coverage needs at least one sample and one centre.")
    if not (std > 0 and num_std > 0):
        raise ValueError(f"std and num_std must be positive, got std={std!r}, num_std={num_std!r}.")
    distances = torch.cdist(samples, centres)
    nearest_distance, nearest = distances.min(dim=1)
    high = nearest_distance <= num_std * std
    num_modes = len(centres)
    counts = torch.bincount(nearest[high], minlength=num_modes)
    total = int(counts.sum())
    if total == 0:
        kl = math.log(num_modes)
    else:
        kl = kl_divergence(counts.double(), torch.ones(num_modes, dtype=torch.float64))
    return {"modes_covered": int((counts > 0).sum()), "num_modes": num_modes,
            "high_quality_fraction": total / len(samples), "per_mode_counts": counts, "kl_from_uniform": kl}


# =============================================================================================
# Small networks for 2-D data
# =============================================================================================


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def mlp_generator(latent_dim: int = 2, hidden: int = 64, depth: int = 3, out_dim: int = 2) -> nn.Sequential:
    """G for 2-D data: ``depth`` hidden layers (Linear + ReLU, ``hidden`` wide), then a linear output.

    Maps noise ``(n, latent_dim)`` to points ``(n, out_dim)``; the output is unbounded (no tanh), so
    any data range can be reached.
    """
    sizes = {"latent_dim": latent_dim, "hidden": hidden, "depth": depth, "out_dim": out_dim}
    for name, value in sizes.items():
        _check_positive_int(value, name)
    layers: list[nn.Module] = []
    width = latent_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def mlp_discriminator(in_dim: int = 2, hidden: int = 64, depth: int = 3, spectral_norm: bool = False
                      ) -> nn.Sequential:
    """D (or a WGAN critic) for 2-D data: ``depth`` hidden layers (Linear + LeakyReLU 0.2), then one logit.

    Returns one logit (or critic score) per example, shape ``(n,)`` (the final ``nn.Flatten(0)``), as
    the loss functions of this module expect. No batch norm: it would make one example's score depend
    on the others in its batch, which breaks the per-example gradient penalty of WGAN-GP. With
    ``spectral_norm=True`` every linear layer's weight is divided by its largest singular value
    (``torch.nn.utils.parametrizations.spectral_norm``; SN-GAN), so D is at most 1-Lipschitz per layer.
    """
    for value, name in ((in_dim, "in_dim"), (hidden, "hidden"), (depth, "depth")):
        _check_positive_int(value, name)
    wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [wrap(nn.Linear(width, hidden)), nn.LeakyReLU(0.2)]
        width = hidden
    layers += [wrap(nn.Linear(width, 1)), nn.Flatten(0)]
    return nn.Sequential(*layers)


# =============================================================================================
# Losses
# =============================================================================================


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's binary cross-entropy: real examples labelled 1, generated ones 0, from logits.

    ``BCE(real, 1) + BCE(fake, 0)`` (each a mean), i.e. minus the GAN value function
    ``E log D(x) + E log(1 - D(G(z)))``; at the optimum of an even game it is ``2 log 2``.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G's loss from D's logits on generated examples, computed stably with softplus.

    ``'minimax'``: minimise ``log(1 - D(G(z))) = -softplus(l)``; its gradient vanishes exactly when
    D confidently rejects the fakes (early in training). ``'non_saturating'``: minimise
    ``-log D(G(z)) = softplus(-l)``, same fixed point, strong gradients when the fakes are bad.
    """
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"Unknown generator loss kind {kind!r}; choose one of {GENERATOR_LOSS_KINDS}.")


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN critic's loss ``mean(fake) - mean(real)``: minus its estimate of the Wasserstein-1
    distance."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator's loss ``-mean(fake)``: raise the critic's scores of the generated examples."""
    return -fake_scores.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | int | None = None) -> torch.Tensor:
    """WGAN-GP's penalty ``mean((||grad_x critic(x_hat)||_2 - 1)^2)`` (Gulrajani et al. 2017).

    ``x_hat = e real + (1 - e) fake`` with one ``e ~ U[0, 1]`` per example (drawn on the CPU from
    ``generator``, then moved to the data's device): points between the two distributions, where the
    optimal critic has gradient norm 1. The gradient is taken with ``create_graph=True``, so the
    penalty is differentiable with respect to the critic's parameters (the critic step backpropagates
    through it). ``real`` and ``fake`` are treated as constants (``fake`` should be detached from G).
    Multiply by lambda (10 in the paper) and add to :func:`wasserstein_critic_loss`.
    """
    if real.shape != fake.shape or real.ndim < 1 or len(real) == 0:
        raise ValueError("real and fake must be non-empty batches of the same shape, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}.")
    e_shape = (len(real),) + (1,) * (real.ndim - 1)
    e = torch.rand(e_shape, generator=_generator(generator), dtype=real.dtype).to(real.device)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = torch.linalg.vector_norm(grads.reshape(len(real), -1), dim=1)
    return ((norms - 1) ** 2).mean()


# =============================================================================================
# Divergences (why GANs are hard)
# =============================================================================================


def _distribution(p, name: str) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64).detach().cpu()
    if p.numel() == 0 or not torch.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{name} must be non-negative finite weights with a positive sum (a histogram or a "
                         "density on a grid).")
    return p / p.sum()


def _two_distributions(p, q) -> tuple[torch.Tensor, torch.Tensor]:
    p, q = _distribution(p, "p"), _distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must be given on the same grid, got shapes {tuple(p.shape)} and "
                         f"{tuple(q.shape)}.")
    return p, q


def kl_divergence(p, q) -> float:
    """``KL(p || q) = sum p log(p / q)`` in nats, for two distributions on the same grid.

    Both are normalised to sum to 1 first (so histograms or densities evaluated on a grid can be
    passed as they are). Terms with ``p = 0`` count 0; if ``p > 0`` somewhere ``q = 0``, the result is
    ``inf``: KL punishes a model that puts no mass where the data are.
    """
    p, q = _two_distributions(p, q)
    support = p > 0
    if (q[support] == 0).any():
        return math.inf
    return float((p[support] * (p[support] / q[support]).log()).sum())


def js_divergence(p, q) -> float:
    """The Jensen-Shannon divergence ``KL(p || m)/2 + KL(q || m)/2``, ``m = (p + q)/2``, in nats.

    Symmetric and at most ``log 2``, which it reaches whenever the supports do not overlap, however
    far apart they are: the original GAN's D then gives G no useful gradient.
    """
    p, q = _two_distributions(p, q)
    m = (p + q) / 2
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def _samples_1d(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of samples, got shape {tuple(x.shape)}.")
    return x


def wasserstein_1d(samples_p, samples_q) -> float:
    """The Wasserstein-1 (earth mover's) distance between two equal-size 1-D samples.

    In one dimension the optimal transport matches the sorted samples in order, so the distance is
    ``mean |sort(p) - sort(q)|``. It grows smoothly with the shift between two distributions even when
    their supports do not overlap, which is why WGAN uses it.
    """
    p, q = _samples_1d(samples_p, "samples_p"), _samples_1d(samples_q, "samples_q")
    if len(p) != len(q):
        raise ValueError(f"wasserstein_1d needs samples of equal size, got {len(p)} and {len(q)}; draw as "
                         "many of each.")
    return float((p.sort().values - q.sort().values).abs().mean())


# =============================================================================================
# Spectral normalisation from scratch
# =============================================================================================


def power_iteration(W: torch.Tensor, u: torch.Tensor | None = None, num_iters: int = 1, eps: float = 1e-12,
                    generator: torch.Generator | int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimate the largest singular value ``sigma`` of ``W`` by power iteration: ``(sigma, u, v)``.

    ``W`` is a weight matrix ``(out, in)``; a convolution's ``(out, in, kh, kw)`` is reshaped to
    ``(out, -1)``. Starting from ``u`` (``(out,)``; random from ``generator`` if None), ``v`` is
    first ``normalize(W^T u)``; then each of the ``num_iters`` iterations does
    ``u = normalize(W v)``, ``v = normalize(W^T u)``, and ``sigma = u^T W v``. This is exactly
    ``torch.nn.utils.parametrizations.spectral_norm``'s update (its buffers ``_u``, ``_v`` always
    satisfy ``_v = normalize(W^T _u)``, since each of its iterations ends with that), so one
    iteration from its ``_u`` reproduces one training-mode forward. ``u`` and ``v`` are computed
    without gradient (they are constants in SN-GAN); ``sigma`` carries the gradient with respect to
    ``W``, so ``W / sigma`` can be trained. Pass the returned ``u`` back in to continue.
    """
    if W.ndim < 2:
        raise ValueError("power_iteration needs a weight with at least 2 dimensions, got shape "
                         f"{tuple(W.shape)}.")
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative int, got {num_iters!r}.")
    W_mat = W.reshape(W.shape[0], -1)
    with torch.no_grad():
        if u is None:
            u = torch.randn(W_mat.shape[0], generator=_generator(generator), dtype=W.dtype).to(W.device)
        if u.shape != (W_mat.shape[0],):
            raise ValueError(f"u must have shape ({W_mat.shape[0]},) (one entry per output row of W), got "
                             f"{tuple(u.shape)}.")
        u = F.normalize(u, dim=0, eps=eps)
        v = F.normalize(torch.mv(W_mat.T, u), dim=0, eps=eps)
        for _ in range(num_iters):
            u = F.normalize(torch.mv(W_mat, v), dim=0, eps=eps)
            v = F.normalize(torch.mv(W_mat.T, u), dim=0, eps=eps)
    sigma = torch.dot(u, torch.mv(W_mat, v))
    return sigma, u, v


# =============================================================================================
# Frechet distance (FID) and classifier-based scores
# =============================================================================================


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean ``(d,)`` and covariance ``(d, d)`` (divided by ``n - 1``) of ``features`` ``(n, d)``.

    In float64 on the CPU (covariances of thousands of samples lose digits in float32, and FID
    subtracts nearly equal numbers).
    """
    X = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"features must be (n, d) with n >= 2 samples, got shape {tuple(X.shape)}.")
    mu = X.mean(dim=0)
    centred = X - mu
    return mu, centred.T @ centred / (len(X) - 1)


def _check_statistics(mu: torch.Tensor, sigma: torch.Tensor, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.as_tensor(mu).detach().to("cpu", torch.float64)
    sigma = torch.as_tensor(sigma).detach().to("cpu", torch.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"mu{which} must be (d,) and sigma{which} (d, d), got shapes {tuple(mu.shape)} and "
                         f"{tuple(sigma.shape)}; compute them with feature_statistics(features).")
    return mu, (sigma + sigma.T) / 2


def _sqrt_psd(S: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clamped at 0)."""
    eigenvalues, vectors = torch.linalg.eigh(S)
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
                     ) -> float:
    """The Fréchet distance between Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (FID's formula).

    ``||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrtm(S1 S2))``, in float64 without SciPy:
    ``S1 S2`` has the same eigenvalues as the symmetric ``sqrt(S1) S2 sqrt(S1)`` (all >= 0), and
    ``Tr(sqrtm(S1 S2))`` is the sum of their square roots. Symmetric ``eigh`` decompositions are
    stable even when a covariance is singular (fewer samples than features), where ``sqrtm`` of the
    non-symmetric product needs the FID code's ``1e-6`` diagonal offset. The result is clamped at
    0 (rounding can make identical statistics give ``-1e-13``).
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, "1")
    mu2, sigma2 = _check_statistics(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"The two sets of statistics have different feature sizes ({len(mu1)} and "
                         f"{len(mu2)}); compute both with the same feature extractor.")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)


def _check_probabilities(probs: torch.Tensor) -> torch.Tensor:
    probs = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if probs.ndim != 2 or probs.numel() == 0:
        raise ValueError("probs must be (n, num_classes) class probabilities, got shape "
                         f"{tuple(probs.shape)}.")
    if (probs < 0).any() or not torch.allclose(probs.sum(dim=1), torch.ones(len(probs), dtype=torch.float64),
                                               atol=1e-3):
        raise ValueError("Each row of probs must be a probability distribution (non-negative, summing to 1): "
                         "pass softmax(logits, dim=1), not logits.")
    return probs


def inception_score(probs: torch.Tensor) -> float:
    """``exp(mean_x KL(p(y|x) || p(y)))`` for a classifier's probabilities ``probs`` ``(n, num_classes)``.

    ``p(y)`` is the mean of the rows. High when each sample is classified confidently (sharp
    ``p(y|x)``) and the classes are used evenly (flat ``p(y)``): between 1 (every row the same) and
    ``num_classes`` (one-hot rows spread evenly over the classes). The paper averages it over 10
    splits of 5,000 samples; here it is computed on all of ``probs`` at once.
    """
    probs = _check_probabilities(probs)
    marginal = probs.mean(dim=0, keepdim=True)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, marginal.expand_as(probs))).sum(dim=1)
    return math.exp(float(kl.mean()))


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """How many of ``labels`` (int, ``(n,)``) fall in each class: int64 ``(num_classes,)``.

    Applied to a classifier's predictions on generated images, it shows which classes (modes) a
    generator produces and which it dropped.
    """
    _check_positive_int(num_classes, "num_classes")
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1)
    if labels.is_floating_point():
        raise ValueError("labels must be integer class indices (e.g. probs.argmax(dim=1)), not floats.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got values from {int(labels.min())} to "
                         f"{int(labels.max())}; check num_classes.")
    return torch.bincount(labels.long(), minlength=num_classes)


def class_entropy(labels: torch.Tensor, num_classes: int) -> float:
    """The entropy (nats) of the class histogram of ``labels``: 0 if all are one class, ``log(num_classes)``
    if the classes are used evenly; a low value on generated images is a sign of mode collapse."""
    counts = class_histogram(labels, num_classes).double()
    if counts.sum() == 0:
        raise ValueError("class_entropy needs at least one label.")
    p = counts / counts.sum()
    return float(-torch.xlogy(p, p).sum())


# =============================================================================================
# DCGAN for 28x28 images
# =============================================================================================


def dcgan_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN's initialisation, in place: weights ``N(0, std)``, batch-norm weights ``N(1, std)``, biases 0.

    Applies to every (transposed) convolution, linear and batch-norm layer in ``module``; returns
    ``module``. (d2l draws the batch-norm weights from ``N(0, 0.02)`` too, which starts every
    normalised activation near 0, not near the unit scale batch norm is meant to give.) Embeddings
    keep torch's ``N(0, 1)``: in the conditional models they play the role of extra noise coordinates.
    """
    conv_like = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.Linear)
    for m in module.modules():
        if isinstance(m, conv_like):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return module


def dcgan_generator(latent_dim: int = 64, width: int = 64, out_channels: int = 1) -> nn.Sequential:
    """DCGAN's generator for 28x28 images: noise ``(n, latent_dim)`` -> ``(n, out_channels, 28, 28)``.

    A linear projection to ``2 width x 7 x 7``, then two stride-2 transposed convolutions (7 -> 14 ->
    28); batch norm and ReLU after every layer but the last, which ends in tanh (so scale the real
    images to [-1, 1]). Initialised with :func:`dcgan_init_`. A noise of shape
    ``(n, latent_dim, 1, 1)`` is accepted too.
    """
    _check_positive_int(latent_dim, "latent_dim")
    _check_positive_int(width, "width")
    _check_positive_int(out_channels, "out_channels")
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False), nn.Unflatten(1, (2 * width, 7, 7)),
        nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, kernel_size=4, stride=2, padding=1, bias=False),  # 7 -> 14
        nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, out_channels, kernel_size=4, stride=2, padding=1),  # 14 -> 28
        nn.Tanh())
    return dcgan_init_(net)


def dcgan_discriminator(width: int = 64, in_channels: int = 1) -> nn.Sequential:
    """DCGAN's discriminator for 28x28 images: ``(n, in_channels, 28, 28)`` -> one logit per image ``(n,)``.

    A stride-2 convolution (28 -> 14, no batch norm on the input layer), LeakyReLU 0.2, a stride-2
    convolution (14 -> 7) with batch norm and LeakyReLU, then a linear layer to one logit.
    Initialised with :func:`dcgan_init_`. For WGAN-GP build a critic without batch norm instead.
    """
    _check_positive_int(width, "width")
    _check_positive_int(in_channels, "in_channels")
    net = nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 28 -> 14
        nn.Conv2d(width, 2 * width, kernel_size=4, stride=2, padding=1, bias=False),  # 14 -> 7
        nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * width * 7 * 7, 1), nn.Flatten(0))
    return dcgan_init_(net)


def _check_labels(labels: torch.Tensor, n: int, num_classes: int) -> None:
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"labels must be int class indices of shape ({n},) (one per example), got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}.")
    if ((labels < 0) | (labels >= num_classes)).any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1}; this model was built for {num_classes} "
                         "classes.")


class ConditionalGenerator(nn.Module):
    """A class-conditional DCGAN generator: ``forward(z, labels)`` -> ``(n, out_channels, 28, 28)``.

    The label's learned embedding (``embed_dim`` numbers) is concatenated to the noise ``z``
    ``(n, latent_dim)``, and :func:`dcgan_generator` (built for ``latent_dim + embed_dim``) does the
    rest, so the same ``z`` with another label draws another class in the same style.
    """

    def __init__(self, num_classes: int = 10, latent_dim: int = 64, width: int = 64, embed_dim: int = 16,
                 out_channels: int = 1) -> None:
        super().__init__()
        self.num_classes = _check_positive_int(num_classes, "num_classes")
        self.latent_dim = _check_positive_int(latent_dim, "latent_dim")
        self.embedding = nn.Embedding(num_classes, _check_positive_int(embed_dim, "embed_dim"))
        self.net = dcgan_generator(latent_dim + embed_dim, width, out_channels)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = z.reshape(len(z), -1)
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (n, {self.latent_dim}), got shape {tuple(z.shape)}.")
        _check_labels(labels, len(z), self.num_classes)
        return self.net(torch.cat([z, self.embedding(labels)], dim=1))


class ConditionalDiscriminator(nn.Module):
    """A class-conditional DCGAN discriminator: ``forward(images, labels)`` -> one logit per image ``(n,)``.

    Each label has a learned 28x28 map (an embedding of ``28 * 28`` numbers) that is stacked onto the
    image as extra channels, so the very first convolution sees the image together with its claimed
    class and D can reject a good image of the wrong class.
    """

    def __init__(self, num_classes: int = 10, width: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        self.num_classes = _check_positive_int(num_classes, "num_classes")
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.embedding = nn.Embedding(num_classes, 28 * 28)
        self.net = dcgan_discriminator(width, in_channels + 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.shape[1:] != (self.in_channels, 28, 28):
            raise ValueError(f"images must be (n, {self.in_channels}, 28, 28), got shape "
                             f"{tuple(images.shape)}.")
        _check_labels(labels, len(images), self.num_classes)
        label_maps = self.embedding(labels).reshape(len(images), 1, 28, 28)
        return self.net(torch.cat([images, label_maps], dim=1))


def conditional_generator(num_classes: int = 10, latent_dim: int = 64, width: int = 64, embed_dim: int = 16,
                          out_channels: int = 1) -> ConditionalGenerator:
    """A :class:`ConditionalGenerator` (DCGAN-initialised; the label embedding concatenated to ``z``)."""
    return ConditionalGenerator(num_classes, latent_dim, width, embed_dim, out_channels)


def conditional_discriminator(num_classes: int = 10, width: int = 64, in_channels: int = 1
                              ) -> ConditionalDiscriminator:
    """A :class:`ConditionalDiscriminator` (DCGAN-initialised; a label map as an extra input channel)."""
    return ConditionalDiscriminator(num_classes, width, in_channels)


# =============================================================================================
# The GAN lab's trainer
# =============================================================================================


class GANDivergenceError(DivergenceError, ValueError):
    """A GAN loss became nan or inf. Both a :class:`helpers.training.DivergenceError` (as ``fit``
    raises) and a ``ValueError`` (a bad setting), so a widget shows it as a warning line."""


def _check_lr(lr, name: str) -> float:
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= 1):
        raise ValueError(f"{name} must be a number in (0, 1], got {lr!r}: Adam usually works with 1e-4 to "
                         "1e-2 (try 1e-3).")
    return float(lr)


class GAN2D:
    """A small stateful GAN trainer for 2-D data: the model behind the chapter's GAN lab.

    ``data`` is a function called as ``data(n, generator=g)`` that returns ``(n, 2)`` points (any data
    set of this module, or a ``functools.partial`` of one), or a tensor ``(N, 2)`` from which each batch
    draws ``batch_size`` rows with replacement. ``loss`` is one of :data:`GAN_LOSSES`:
    ``'minimax'`` and ``'non_saturating'`` train D with :func:`discriminator_loss` and G with
    :func:`generator_loss`, Adam betas (0.5, 0.999) as in DCGAN; ``'wgan-gp'`` trains a critic with
    :func:`wasserstein_critic_loss` plus ``gp_weight`` times :func:`gradient_penalty` and G with
    :func:`wasserstein_generator_loss`, Adam betas (0, 0.9) as in the WGAN-GP paper. ``d_steps``
    discriminator steps precede every generator step (default: 5 for ``'wgan-gp'``, as in the paper,
    1 otherwise, as in the original GAN).

    G is :func:`mlp_generator` (``latent_dim``-dimensional Gaussian noise) and D
    :func:`mlp_discriminator`, both ``hidden`` wide and ``depth`` hidden layers deep, built from
    ``seed`` (without touching torch's global random state); data, noise and the penalty's mixing
    weights come from the CPU generator ``self.generator`` (seeded with ``seed``), so a run is
    reproducible. The models and batches live on ``training_device(device)``.

    :meth:`train` runs generator steps and appends to ``self.history`` (``'d_loss'`` (the mean over
    the step's D steps) and ``'g_loss'``; for ``'wgan-gp'`` also ``'wasserstein'``, the critic's
    estimate ``mean(real) - mean(fake)`` of the Wasserstein-1 distance). If a loss becomes nan or
    inf, training stops *before* that update (the networks keep their last finite weights) and
    :class:`GANDivergenceError` (a ``ValueError``) says "training diverged at step k: lower the
    learning rate". ``self.fixed_noise`` is a fixed batch, so :meth:`samples` shows the same points
    moving from step to step.
    """

    def __init__(self, data: Callable[..., torch.Tensor] | torch.Tensor, loss: str = "non_saturating",
                 lr_g: float = 1e-3, lr_d: float = 1e-3, d_steps: int | None = None, batch_size: int = 256,
                 latent_dim: int = 2, hidden: int = 64, depth: int = 3, seed: int = 0,
                 gp_weight: float = 10.0, num_fixed: int = 512, device: torch.device | str | None = None
                 ) -> None:
        if loss not in GAN_LOSSES:
            raise ValueError(f"Unknown loss {loss!r}; choose one of {GAN_LOSSES}.")
        d_steps = (5 if loss == "wgan-gp" else 1) if d_steps is None else d_steps
        if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
            raise ValueError("d_steps must be an int >= 1 (discriminator steps per generator step), got "
                             f"{d_steps!r}.")
        if not (isinstance(gp_weight, (int, float)) and math.isfinite(gp_weight) and gp_weight >= 0):
            raise ValueError("gp_weight must be a non-negative number (the paper uses 10), got "
                             f"{gp_weight!r}.")
        self.loss, self.d_steps, self.gp_weight = loss, d_steps, float(gp_weight)
        self.lr_g, self.lr_d = _check_lr(lr_g, "lr_g"), _check_lr(lr_d, "lr_d")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.latent_dim = _check_positive_int(latent_dim, "latent_dim")
        self.device = training_device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self._sample_generator = torch.Generator().manual_seed(seed + 1)
        self.data = self._check_data(data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = mlp_generator(latent_dim, hidden, depth, self.data_dim).to(self.device)
            self.D = mlp_discriminator(self.data_dim, hidden, depth).to(self.device)
        betas = (0.0, 0.9) if loss == "wgan-gp" else (0.5, 0.999)
        self.opt_g = make_optimizer("adam", self.G.parameters(), self.lr_g, betas=betas)
        self.opt_d = make_optimizer("adam", self.D.parameters(), self.lr_d, betas=betas)
        self.fixed_noise = self._noise(_check_positive_int(num_fixed, "num_fixed"), self._sample_generator)
        self.step = 0
        self.history: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        if loss == "wgan-gp":
            self.history["wasserstein"] = []

    def _check_data(self, data):
        if isinstance(data, torch.Tensor):
            if data.ndim != 2 or len(data) == 0:
                raise ValueError(f"A data tensor must be (N, dim) points, got shape {tuple(data.shape)}.")
            self.data_dim = data.shape[1]
            return data.detach().float().to(self.device)
        if not callable(data):
            raise ValueError("data must be a tensor of points or a function data(n, generator=g), e.g. "
                             "ring_of_gaussians.")
        try:
            batch = data(self.batch_size, generator=self.generator)
        except TypeError as error:
            raise ValueError(f"data must accept data(n, generator=g) ({error}); wrap it, e.g. "
                             "lambda n, generator=None: my_points(n).") from error
        if not isinstance(batch, torch.Tensor) or batch.ndim != 2 or len(batch) != self.batch_size:
            raise ValueError(f"data(n, generator=g) must return an (n, dim) tensor; for n={self.batch_size} "
                             f"it returned {getattr(batch, 'shape', type(batch))}.")
        self.data_dim = batch.shape[1]
        return data

    def _real_batch(self) -> torch.Tensor:
        if isinstance(self.data, torch.Tensor):
            rows = torch.randint(len(self.data), (self.batch_size,), generator=self.generator)
            return self.data[rows.to(self.device)]
        return self.data(self.batch_size, generator=self.generator).float().to(self.device)

    def _noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        generator = self.generator if generator is None else generator
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def _check_finite(self, loss: torch.Tensor, name: str) -> None:
        if not torch.isfinite(loss):
            raise GANDivergenceError(
                f"training diverged at step {self.step + 1}: {name} became {loss.item()}; lower the learning "
                f"rate (lr_g={self.lr_g:g}, lr_d={self.lr_d:g}; try {min(self.lr_g, self.lr_d) / 10:g}).")

    def _d_step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        real = self._real_batch()
        with torch.no_grad():
            fake = self.G(self._noise(self.batch_size))
        real_scores, fake_scores = self.D(real), self.D(fake)
        estimate = None
        if self.loss == "wgan-gp":
            critic_loss = wasserstein_critic_loss(real_scores, fake_scores)
            estimate = -critic_loss.detach()
            loss = critic_loss + self.gp_weight * gradient_penalty(self.D, real, fake, self.generator)
        else:
            loss = discriminator_loss(real_scores, fake_scores)
        self._check_finite(loss, "the discriminator's loss")
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.detach(), estimate

    def _g_step(self) -> torch.Tensor:
        scores = self.D(self.G(self._noise(self.batch_size)))
        if self.loss == "wgan-gp":
            loss = wasserstein_generator_loss(scores)
        else:
            loss = generator_loss(scores, self.loss)
        self._check_finite(loss, "the generator's loss")
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.G.parameters()))  # D's weights get no gradient from G's step
        self.opt_g.step()
        return loss.detach()

    def train(self, num_steps: int = 1) -> GAN2D:
        """Run ``num_steps`` generator steps, each after ``d_steps`` discriminator steps; returns self."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be a non-negative int, got {num_steps!r}.")
        for _ in range(num_steps):
            d_results = [self._d_step() for _ in range(self.d_steps)]
            g_loss = self._g_step()
            self.step += 1
            self.history["d_loss"].append(torch.stack([d for d, _ in d_results]).mean().item())
            self.history["g_loss"].append(g_loss.item())
            if self.loss == "wgan-gp":
                self.history["wasserstein"].append(d_results[-1][1].item())
        return self

    @torch.no_grad()
    def samples(self, n: int | None = None) -> torch.Tensor:
        """Generated points ``(n, dim)`` on the CPU: G applied to the fixed noise batch (``n=None``, or its
        first ``n`` rows), or to fresh noise when ``n`` is larger (from a generator of its own, so
        sampling never changes the training run)."""
        if n is None:
            z = self.fixed_noise
        elif _check_count(n) <= len(self.fixed_noise):
            z = self.fixed_noise[:n]
        else:
            z = self._noise(n, self._sample_generator)
        return self.G(z).cpu()

    @torch.no_grad()
    def decision_surface(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """D on the grid of points ``(xs[j], ys[i])``: a ``(len(ys), len(xs))`` CPU tensor (rows follow y, as
        ``imshow``/``contourf`` expect). ``D(x)`` = sigmoid of the logit, the probability "real"; for
        ``'wgan-gp'`` the critic's raw score (it has no probability meaning). Needs 2-D data."""
        if self.data_dim != 2:
            raise ValueError(f"decision_surface needs 2-D data; this GAN's data have {self.data_dim} "
                             "dimensions.")
        xs = torch.as_tensor(xs, dtype=torch.float32).reshape(-1)
        ys = torch.as_tensor(ys, dtype=torch.float32).reshape(-1)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1).to(model_device(self.D))
        scores = self.D(points)
        if self.loss != "wgan-gp":
            scores = torch.sigmoid(scores)
        return scores.reshape(len(ys), len(xs)).cpu()


# =============================================================================================
# CycleGAN's losses (chapter 11b)
# =============================================================================================


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The least-squares GAN loss of a discriminator (LSGAN, Mao et al. 2017), as CycleGAN uses it.

    ``0.5 mean((real - 1)^2) + 0.5 mean(fake^2)``: D's scores (one per example, or a PatchGAN's grid
    of scores) are pushed to 1 on real examples and to 0 on generated ones; the factor 1/2 slows D
    relative to G, as in the CycleGAN paper.
    """
    return 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The least-squares GAN loss of a generator: ``mean((D(G(z)) - 1)^2)``, D's scores of its examples
    pushed to the "real" target 1. Unlike the cross-entropy loss it still has a gradient for examples
    that D already accepts, which pulls them towards the real data."""
    return (fake_scores - 1).square().mean()


def _check_pairs(**pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    for name, (a, b) in pairs.items():
        if a.shape != b.shape:
            raise ValueError(f"{name} must have the same shapes, got {tuple(a.shape)} and {tuple(b.shape)}.")


def cycle_consistency_loss(x: torch.Tensor, x_cycled: torch.Tensor, y: torch.Tensor, y_cycled: torch.Tensor
                           ) -> torch.Tensor:
    """CycleGAN's cycle-consistency loss ``mean |F(G(x)) - x| + mean |G(F(y)) - y|`` (L1, each a mean).

    ``x_cycled = F(G(x))`` and ``y_cycled = G(F(y))`` are the round trips of the two domains; the loss
    ties every translation to its input, which the GAN losses alone do not. The paper weights it by 10.
    """
    _check_pairs(**{"x and x_cycled": (x, x_cycled), "y and y_cycled": (y, y_cycled)})
    return (x_cycled - x).abs().mean() + (y_cycled - y).abs().mean()


def identity_loss(x: torch.Tensor, F_of_x: torch.Tensor, y: torch.Tensor, G_of_y: torch.Tensor
                  ) -> torch.Tensor:
    """CycleGAN's identity loss ``mean |F(x) - x| + mean |G(y) - y|`` (``G: X -> Y``, ``F: Y -> X``).

    An image already in a generator's target domain should pass unchanged (the paper uses it to keep
    the colours of paintings and photos, weighted by 0.5 x 10).
    """
    _check_pairs(**{"x and F_of_x": (x, F_of_x), "y and G_of_y": (y, G_of_y)})
    return (F_of_x - x).abs().mean() + (G_of_y - y).abs().mean()

