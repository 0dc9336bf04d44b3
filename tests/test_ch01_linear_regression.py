"""Chapter 1's from-scratch code, imported from the notebook, against PyTorch."""

import pytest
import torch
from torch.nn import functional as F

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
