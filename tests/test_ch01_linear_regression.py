"""Chapter 1's from-scratch code, imported from the notebook, against PyTorch."""

import pytest
import torch
from torch.nn import functional as F

from helpers import regression
from helpers.data import synthetic_regression
from notebook_code import load_notebook

ch1 = load_notebook("01_linear_regression")


@pytest.fixture(scope="module")
def regression_data():
    return synthetic_regression([2.0, -3.4], 4.2, num_examples=300, noise=0.01, seed=0)


def test_losses_equal_pytorch_including_large_residuals():
    gen = torch.Generator().manual_seed(1)
    y_hat, y = torch.randn(200, generator=gen) * 10, torch.randn(200, generator=gen)
    assert torch.allclose(ch1.mse(y_hat, y), F.mse_loss(y_hat, y))
    assert torch.allclose(ch1.mae(y_hat, y), F.l1_loss(y_hat, y))
    for delta in (0.1, 1.0, 5.0):
        assert torch.allclose(ch1.huber(y_hat, y, delta), F.huber_loss(y_hat, y, delta=delta))


def test_hand_derived_gradients_equal_autograd(regression_data):
    X, y = regression_data
    w = torch.tensor([[0.5], [-1.0]], requires_grad=True)
    b = torch.tensor([0.3], requires_grad=True)
    ch1.mse(ch1.linreg(X, w, b), y).backward()
    grad_w, grad_b = ch1.mse_gradients(X, y, w.detach(), b.detach())
    assert torch.allclose(grad_w, w.grad, atol=1e-6)
    assert torch.allclose(grad_b, b.grad, atol=1e-6)


def test_huber_gradient_solution_equals_autograd():
    r = torch.linspace(-4, 4, 81, requires_grad=True)
    (expected,) = torch.autograd.grad(F.huber_loss(r, torch.zeros(81), reduction="sum"), r)
    assert torch.allclose(ch1.huber_grad(r.detach()), expected)


def test_manual_autograd_and_torch_sgd_reach_the_same_parameters(regression_data):
    X, y = regression_data
    w0, b0 = torch.tensor([[0.01], [-0.02]]), torch.zeros(1)
    w_manual, b_manual, losses = ch1.train_manual(X, y, 0.03, 10, 3, w0, b0)
    w_auto, b_auto = ch1.train_autograd(X, y, 0.03, 10, 3, w0, b0)
    w_torch, b_torch = ch1.train_concise(X, y, 0.03, 10, 3, w0, b0)
    assert torch.allclose(w_manual, w_auto, atol=1e-6) and torch.allclose(b_manual, b_auto, atol=1e-6)
    assert torch.allclose(w_manual, w_torch, atol=1e-5) and torch.allclose(b_manual, b_torch, atol=1e-5)
    assert losses[-1] < 1e-3 and len(losses) == 3
    assert torch.equal(w0, torch.tensor([[0.01], [-0.02]])), "training must not modify the start point"


# ---- 1.6 a sum of sigmoids -------------------------------------------------------------------


def test_sum_of_sigmoids_vector_form_equals_the_explicit_sum():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(40, 3, generator=gen)
    W, b_pieces, c, b = (torch.randn(7, 3, generator=gen), torch.randn(7, generator=gen),
                         torch.randn(7, generator=gen), torch.randn(1, generator=gen))
    y_hat = ch1.sum_of_sigmoids(X, W, b_pieces, c, b)
    assert y_hat.shape == (40, 1)
    assert torch.allclose(y_hat, ch1.sum_of_sigmoids_loop(X, W, b_pieces, c, b), atol=1e-6)
    by_hand = b + sum(c[i] * torch.sigmoid(b_pieces[i] + W[i] @ X[5]) for i in range(7))
    assert torch.allclose(y_hat[5], by_hand, atol=1e-6)


def test_sum_of_sigmoids_computes_what_the_helpers_piecewise_model_computes_from_the_same_start():
    x, _ = regression.curve_data(num_examples=30, seed=3)
    for num_pieces in (1, 4, 12):
        torch.manual_seed(num_pieces)
        model = regression.PiecewiseModel(num_pieces, "sigmoid")
        W, b_pieces, c, b = ch1.init_pieces(num_pieces)
        assert torch.allclose(W, model.hidden.weight) and torch.allclose(b_pieces, model.hidden.bias)
        assert torch.equal(c, torch.zeros(num_pieces)) and torch.equal(b, torch.zeros(1))
        with torch.no_grad():
            params = (model.hidden.weight, model.hidden.bias, model.out.weight.reshape(-1), model.out.bias)
            assert torch.allclose(ch1.sum_of_sigmoids(x, *params), model(x), atol=1e-6)


def test_train_sgd_fits_a_sum_of_sigmoids_and_retraces_train_autograd(regression_data):
    x, y = regression.curve_data(num_examples=40, noise=0.05, seed=1)
    start = ch1.init_pieces(5)
    start_copy = [p.clone() for p in start]
    params, losses = ch1.train_sgd(ch1.sum_of_sigmoids, start, x, y, lr=0.1, batch_size=10, num_epochs=30)
    initial = ch1.mse(ch1.sum_of_sigmoids(x, *start), y).item()
    assert len(losses) == 30 and losses[-1] < 0.5 * initial and losses[-1] < losses[0]
    assert torch.allclose(ch1.mse(ch1.sum_of_sigmoids(x, *params), y), torch.tensor(losses[-1]))
    unchanged = all(torch.equal(p, q) for p, q in zip(start, start_copy, strict=True))
    assert unchanged, "training must not modify the start point"
    X, y = regression_data
    w0, b0 = torch.tensor([[0.01], [-0.02]]), torch.zeros(1)
    (w_sgd, b_sgd), _ = ch1.train_sgd(ch1.linreg, (w0, b0), X, y, 0.03, 10, 2)
    w_auto, b_auto = ch1.train_autograd(X, y, 0.03, 10, 2, w0, b0)
    assert torch.allclose(w_sgd, w_auto, atol=1e-7) and torch.allclose(b_sgd, b_auto, atol=1e-7)
