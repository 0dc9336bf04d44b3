"""Chapter 8's from-scratch code, imported from the notebook, against PyTorch.

Every optimizer and scheduler is compared with torch.optim / torch.optim.lr_scheduler over at least
50 steps on the same model and data (to 1e-6 in float64; float32 is checked more loosely, since its
rounding differences grow where the adaptive methods divide tiny gradients by their own size).
"""

import copy
import math

import pytest
import torch
from torch import nn

from helpers import optimization
from notebook_code import load_notebook

ch8 = load_notebook("08_optimization")
L = torch.optim.lr_scheduler
NUM_STEPS = 60
BATCH_SIZE = 8


@pytest.fixture(scope="module")
def problem():
    """A small MLP and random 28 x 28 'images': NUM_STEPS minibatches of BATCH_SIZE."""
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(NUM_STEPS * BATCH_SIZE, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (NUM_STEPS * BATCH_SIZE,), generator=gen)
    torch.manual_seed(0)
    return ch8.make_mlp(num_hiddens=16), X, y


OPTIMIZER_PAIRS = {
    "momentum": (lambda p: ch8.Momentum(p, lr=0.05, momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "momentum 0.5": (lambda p: ch8.Momentum(p, lr=0.1, momentum=0.5),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5)),
    "nesterov": (lambda p: ch8.Nesterov(p, lr=0.05, momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (lambda p: ch8.AdaGrad(p, lr=0.05), lambda p: torch.optim.Adagrad(p, lr=0.05)),
    "rmsprop": (lambda p: ch8.RMSProp(p, lr=0.001), lambda p: torch.optim.RMSprop(p, lr=0.001)),
    "rmsprop alpha 0.9": (lambda p: ch8.RMSProp(p, lr=0.003, alpha=0.9, eps=1e-6),
                          lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-6)),
    "adam": (lambda p: ch8.Adam(p, lr=0.002), lambda p: torch.optim.Adam(p, lr=0.002)),
    "adam betas": (lambda p: ch8.Adam(p, lr=0.01, betas=(0.5, 0.9), eps=1e-6),
                   lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.5, 0.9), eps=1e-6)),
}


@pytest.mark.parametrize("name", OPTIMIZER_PAIRS)
def test_optimizer_matches_torch_over_60_steps_in_float64(problem, name):
    net, X, y = problem
    ours, theirs = OPTIMIZER_PAIRS[name]
    net = copy.deepcopy(net).double()
    gap = ch8.max_parameter_gap(ours, theirs, net, X.double(), y, batch_size=BATCH_SIZE)
    assert gap < 1e-6, gap
    moved = (ch8.parameters_after_training(ours, net, X.double(), y, batch_size=BATCH_SIZE)
             - torch.cat([p.detach().reshape(-1) for p in net.parameters()])).abs().max()
    assert moved > 1e-3, "the comparison must actually train"


@pytest.mark.parametrize("name", OPTIMIZER_PAIRS)
def test_optimizer_matches_torch_in_float32_up_to_rounding(problem, name):
    net, X, y = problem
    ours, theirs = OPTIMIZER_PAIRS[name]
    assert ch8.max_parameter_gap(ours, theirs, net, X, y, batch_size=BATCH_SIZE) < 1e-4


def test_parameters_after_training_leaves_the_network_untouched(problem):
    net, X, y = problem
    before = [p.detach().clone() for p in net.parameters()]
    ch8.parameters_after_training(lambda p: ch8.Adam(p, lr=0.01), net, X, y, batch_size=BATCH_SIZE)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_scratch_optimizers_skip_parameters_without_gradients_and_train_with_fit():
    used, unused = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    optimizer = ch8.Adam([used, unused], lr=0.1)
    (used**2).sum().backward()
    optimizer.step()
    assert torch.equal(unused, torch.ones(3)) and (used < 1).all()
    assert issubclass(ch8.Momentum, ch8.ScratchOptimizer)
    assert issubclass(ch8.ScratchOptimizer, torch.optim.Optimizer)


SCHEDULE_PAIRS = {
    "step": (lambda t: ch8.step_lr(t, 0.1, step_size=7, gamma=0.3),
             lambda o: L.StepLR(o, step_size=7, gamma=0.3)),
    "exponential": (lambda t: ch8.exponential_lr(t, 0.1, gamma=0.93),
                    lambda o: L.ExponentialLR(o, gamma=0.93)),
    "cosine": (lambda t: ch8.cosine_lr(t, 0.1, total_steps=80), lambda o: L.CosineAnnealingLR(o, T_max=80)),
    "cosine min": (lambda t: ch8.cosine_lr(t, 0.1, total_steps=50, min_lr=0.01),
                   lambda o: L.CosineAnnealingLR(o, T_max=50, eta_min=0.01)),
    "warm-up + cosine": (
        lambda t: ch8.warmup_cosine_lr(t, 0.1, warmup_steps=5, total_steps=70, start_factor=0.1,
                                       min_lr=0.002),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, total_iters=5),
                                     L.CosineAnnealingLR(o, T_max=65, eta_min=0.002)], milestones=[5])),
}


@pytest.mark.parametrize("name", SCHEDULE_PAIRS)
def test_schedule_matches_torch_lr_scheduler(name):
    schedule, make_torch_scheduler = SCHEDULE_PAIRS[name]
    num_steps = 50 if name == "cosine min" else 70
    ours = ch8.lr_sequence(lambda opt: ch8.Scheduler(opt, schedule), num_steps)
    theirs = ch8.lr_sequence(make_torch_scheduler, num_steps)
    assert len(ours) == num_steps >= 50
    assert (ours - theirs).abs().max() < 1e-6
    by_formula = torch.tensor([schedule(t) for t in range(num_steps)], dtype=torch.float64)
    assert (ours - by_formula).abs().max() < 1e-15


def test_warmup_cosine_without_warmup_is_cosine_and_warms_up_linearly():
    for t in range(60):
        assert ch8.warmup_cosine_lr(t, 0.2, 0, 60) == pytest.approx(ch8.cosine_lr(t, 0.2, 60))
    warm = [ch8.warmup_cosine_lr(t, 1.0, 10, 100, start_factor=0.0) for t in range(11)]
    assert warm == pytest.approx([t / 10 for t in range(11)])


def test_scheduler_with_adam_matches_torch_end_to_end(problem):
    net, X, y = problem
    schedule, make_torch_scheduler = SCHEDULE_PAIRS["warm-up + cosine"]
    kwargs = {"num_epochs": 60, "batch_size": BATCH_SIZE}
    net = copy.deepcopy(net).double()
    ours = ch8.parameters_after_training(lambda p: ch8.Adam(p, lr=0.1), net, X[:BATCH_SIZE].double(),
                                         y[:BATCH_SIZE], make_scheduler=lambda o: ch8.Scheduler(o, schedule),
                                         **kwargs)
    theirs = ch8.parameters_after_training(lambda p: torch.optim.Adam(p, lr=0.1), net,
                                           X[:BATCH_SIZE].double(), y[:BATCH_SIZE],
                                           make_scheduler=make_torch_scheduler, **kwargs)
    assert (ours - theirs).abs().max() < 1e-6


def test_classify_critical_points_of_the_cubic_surface_and_the_tiny_network():
    kinds = {(1, 1): "local minimum", (-1, -1): "local maximum",
             (1, -1): "saddle point", (-1, 1): "saddle point"}
    for point, kind in kinds.items():
        found, eigenvalues = ch8.classify_critical_point(ch8.cubic_surface, point)
        assert found == kind
        by_hand = torch.tensor([6.0 * point[0], 6.0 * point[1]], dtype=torch.float64).sort().values
        assert torch.allclose(eigenvalues, by_hand)
    one = torch.ones(1, dtype=torch.float64)
    tiny = lambda theta: ch8.tiny_net_loss(theta, one, one)  # noqa: E731
    kind, eigenvalues = ch8.classify_critical_point(tiny, (0.0, 0.0))
    assert kind == "saddle point" and torch.allclose(eigenvalues, torch.tensor([-2.0, 2.0]).double())
    kind, eigenvalues = ch8.classify_critical_point(tiny, (2.0, 0.5))
    assert kind.startswith("undecided") and eigenvalues[1] > 0
    with pytest.raises(ValueError, match="Not a critical point"):
        ch8.classify_critical_point(ch8.cubic_surface, (0.0, 0.0))


def test_gradient_descent_and_newton_on_the_quadratic():
    quadratic = lambda p: 0.1 * p[0] ** 2 + 2 * p[1] ** 2  # noqa: E731
    path = ch8.gradient_descent(quadratic, (-4.0, 1.0), lr=0.3, num_steps=50)
    k = torch.arange(51, dtype=torch.float64)
    assert torch.allclose(path, torch.stack([-4.0 * 0.94**k, 1.0 * (-0.2) ** k], dim=1), atol=1e-12)
    assert torch.allclose(ch8.newton(quadratic, (-4.0, 1.0), 1)[-1], torch.zeros(2, dtype=torch.float64))
    rosenbrock = lambda p: optimization.rosenbrock(p[0], p[1])  # noqa: E731
    assert torch.allclose(ch8.newton(rosenbrock, (-1.2, 1.0), 8)[-1], torch.ones(2, dtype=torch.float64))
    gradient = ch8.gradient_at(rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64))
    assert torch.allclose(gradient, torch.tensor([-215.6, -88.0], dtype=torch.float64))


def test_losses_of_the_convexity_section_equal_torch_modules():
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 4, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    linear = nn.Linear(4, 3)
    theta = torch.cat([linear.weight.detach().T.reshape(-1), linear.bias.detach()])
    expected = nn.functional.cross_entropy(linear(X), y)
    assert torch.allclose(ch8.softmax_regression_loss(theta, X, y), expected)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    theta = torch.cat([net[0].weight.detach().T.reshape(-1), net[0].bias.detach(),
                       net[2].weight.detach().T.reshape(-1), net[2].bias.detach()])
    assert torch.allclose(ch8.mlp_loss(theta, X, y, 5), nn.functional.cross_entropy(net(X), y))
    swapped = ch8.swap_hidden_units(theta, 4, 3, 5, 1, 3)
    assert not torch.equal(swapped, theta)
    assert torch.allclose(ch8.mlp_loss(swapped, X, y, 5), ch8.mlp_loss(theta, X, y, 5))
    ts, values, gap = ch8.chord_gap(lambda v: (v**2).sum(), torch.zeros(3), torch.ones(3))
    assert torch.allclose(values, 3 * ts**2) and gap.max() <= 0 and gap[0] == gap[-1] == 0


def test_bounded_loss_and_targets():
    gen = torch.Generator().manual_seed(0)
    y = ch8.sample_targets(1000, gen)
    assert y.shape == (1000,) and -1.0 < y.mean() < 1.0
    losses = ch8.bounded_loss(torch.tensor([0.0, 100.0]), torch.tensor([0.0, 1.0]))
    assert losses.shape == (2, 2) and losses[0, 0] == 0 and torch.allclose(losses[1], torch.ones(2))


def test_time_to_accuracy_reports_throughput_and_the_time_to_target():
    gen = torch.Generator().manual_seed(0)
    X, y = torch.rand(300, 1, 28, 28, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    val = (X[:50], y[:50])
    result = ch8.time_to_accuracy(32, 0.1, (X, y), val, target=0.0, max_seconds=5.0, eval_every=64)
    assert result["seconds_to_target"] is not None and result["examples_to_target"] == 64
    assert result["examples_per_second"] > 0 and len(result["curve"]) == 1
    result = ch8.time_to_accuracy(32, 0.1, (X, y), val, target=1.01, max_seconds=0.2, eval_every=64)
    assert result["seconds_to_target"] is None and result["examples_to_target"] is None
    result = ch8.time_to_accuracy(32, 0.1, (X, y), val, target=1.01, max_seconds=60.0, max_examples=128,
                                  eval_every=64)
    assert result["seconds_to_target"] is None and [c[1] for c in result["curve"]] == [64, 128]


def test_loss_along_gradient_restores_the_network():
    torch.manual_seed(0)
    net = ch8.make_mlp(num_hiddens=8, batch_norm=True, num_layers=2)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 2
    X, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    before = [p.detach().clone() for p in net.parameters()]
    losses = ch8.loss_along_gradient(net, X, y, [0.0, 0.01, 100.0])
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert losses[0] == pytest.approx(nn.functional.cross_entropy(net(X), y).item(), rel=1e-6)
    assert losses[1] < losses[0] < losses[2]


def test_adam_scale_quantiles_narrow_with_time():
    quantiles = ch8.adam_scale_quantiles(200, num_runs=2000)
    assert quantiles.shape == (200, 3)
    assert (quantiles[:, 0] <= quantiles[:, 1]).all() and (quantiles[:, 1] <= quantiles[:, 2]).all()
    spread = quantiles[:, 2] / quantiles[:, 0]
    assert spread[0] > 10 > 2 > spread[-1]
    # At step 1, 1/sqrt(v_hat) = 1/|g|: its median is 1 / 0.6745 (the median of |g| for g ~ N(0, 1)).
    assert quantiles[0, 1] == pytest.approx(1 / 0.6745, rel=0.05)


def test_exercise_solutions():
    assert ch8.momentum_final_value(0.97 * 2 * 1.9 / 4, 0.9) < 1e-2
    assert ch8.momentum_final_value(1.03 * 2 * 1.9 / 4, 0.9) > 1e2
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = ch8.AdamNoCorrection([w], lr=0.01)
    (w * torch.tensor([3.0, -1.0], dtype=torch.float64)).sum().backward()
    optimizer.step()
    first_step = torch.full((2,), 0.01 * 0.1 / math.sqrt(0.001), dtype=torch.float64)
    assert torch.allclose(w.detach().abs(), first_step, rtol=1e-4)
