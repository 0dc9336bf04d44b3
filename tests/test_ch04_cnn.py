"""Chapter 4's from-scratch operators, imported from the notebook, against PyTorch."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import vision
from notebook_code import load_notebook

ch4 = load_notebook("04_cnn")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_corr2d_equals_conv2d_for_several_shapes(gen):
    for (h, w), (kh, kw) in (((5, 5), (2, 2)), ((7, 9), (3, 4)), ((4, 6), (1, 1)), ((3, 3), (3, 3))):
        X, K = torch.randn(h, w, generator=gen), torch.randn(kh, kw, generator=gen)
        assert torch.allclose(ch4.corr2d(X, K), F.conv2d(X[None, None], K[None, None])[0, 0], atol=1e-5)


def test_corr2d_small_example_by_hand():
    Y = ch4.corr2d(torch.arange(9.0).reshape(3, 3), torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    assert Y.tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_convolve2d_modes_match_numpy_and_pytorch(gen):
    x = torch.randn(1, 12, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    for mode in ("full", "same", "valid"):
        assert np.allclose(ch4.convolve2d(x, k, mode).numpy()[0], np.convolve(x[0], k[0], mode))
    X, K = torch.randn(6, 8, generator=gen), torch.randn(3, 5, generator=gen)
    full = F.conv_transpose2d(X[None, None], K[None, None])[0, 0]
    assert torch.allclose(ch4.convolve2d(X, K, "full"), full, atol=1e-5)
    assert torch.allclose(ch4.convolve2d(X, K, "same"),
                          F.conv2d(X[None, None], K.flip(0, 1)[None, None], padding="same")[0, 0], atol=1e-5)
    with pytest.raises(ValueError, match="odd kernel size"):
        ch4.convolve2d(X, torch.ones(2, 2), "same")
    with pytest.raises(ValueError, match="'full', 'same' or 'valid'"):
        ch4.convolve2d(X, K, "circular")


@pytest.mark.parametrize("padding", [0, 1, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_corr2d_general_equals_conv2d(padding, stride, dilation, gen):
    X, K = torch.randn(12, 10, generator=gen), torch.randn(3, 2, generator=gen)
    ours = ch4.corr2d_general(X, K, padding, stride, dilation)
    theirs = F.conv2d(X[None, None], K[None, None], padding=padding, stride=stride, dilation=dilation)[0, 0]
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)
    assert ch4.output_size(12, 3, padding, stride, dilation) == theirs.shape[0]
    helper = vision.conv_output_size(12, 3, padding, stride, dilation)
    assert ch4.output_size(12, 3, padding, stride, dilation) == helper


def test_multi_channel_and_1x1_equal_conv2d(gen):
    X, K = torch.randn(3, 8, 9, generator=gen), torch.randn(5, 3, 3, 2, generator=gen)
    assert torch.allclose(ch4.corr2d_multi_in(X, K[0]), F.conv2d(X[None], K[:1])[0, 0], atol=1e-5)
    assert torch.allclose(ch4.corr2d_multi_in_out(X, K, padding=1, stride=2),
                          F.conv2d(X[None], K, padding=1, stride=2)[0], atol=1e-5)
    K1 = torch.randn(4, 3, 1, 1, generator=gen)
    assert torch.allclose(ch4.corr2d_1x1(X, K1), F.conv2d(X[None], K1)[0], atol=1e-5)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 0), (2, 1), (3, 1), (3, 2)])
def test_trans_conv2d_equals_conv_transpose2d(stride, padding, gen):
    X, K = torch.randn(4, 5, generator=gen), torch.randn(3, 4, generator=gen)
    ours = ch4.trans_conv2d(X, K, stride, padding)
    theirs = F.conv_transpose2d(X[None, None], K[None, None], stride=stride, padding=padding)[0, 0]
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)


def test_trans_conv2d_is_the_transpose_of_corr2d(gen):
    K = torch.randn(3, 3, generator=gen)
    W = torch.stack([ch4.corr2d(e.reshape(5, 5), K).reshape(-1) for e in torch.eye(25)], dim=1)
    Y = torch.randn(3, 3, generator=gen)
    assert torch.allclose(ch4.trans_conv2d(Y, K).reshape(-1), W.T @ Y.reshape(-1), atol=1e-5)


@pytest.mark.parametrize("size,stride,padding",
                         [((2, 2), None, 0), ((3, 3), 2, 1), ((3, 2), 1, 1), ((2, 3), 3, 0)])
def test_pool2d_equals_pytorch(size, stride, padding, gen):
    X = torch.randn(10, 11, generator=gen)
    torch_stride = stride or size
    assert torch.allclose(ch4.pool2d(X, size, "max", stride, padding),
                          F.max_pool2d(X[None, None], size, torch_stride, padding)[0, 0])
    assert torch.allclose(ch4.pool2d(X, size, "avg", stride, padding),
                          F.avg_pool2d(X[None, None], size, torch_stride, padding)[0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="'max' or 'avg'"):
        ch4.pool2d(X, size, "median", stride, padding)


def test_learn_kernel_recovers_a_kernel_from_noise():
    X = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    K_true = vision.kernel_preset("sharpen") / 5
    K, losses = ch4.learn_kernel(X, F.conv2d(X, K_true[None, None]), lr=0.3, num_steps=300)
    assert (K - K_true).abs().max() < 1e-3 and losses[-1] < losses[0] * 1e-6


def test_receptive_field_of_dilated_stacks():
    assert ch4.receptive_field((1,)) == 3
    assert ch4.receptive_field((1, 1, 1)) == 7
    assert ch4.receptive_field((1, 2, 4)) == 15


def test_shift_right_and_pooling_robustness():
    X = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert ch4.shift_right(X, 1)[0, 0, 0].tolist() == [0.0, 0.0, 1.0, 2.0]
    X_img = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    unpooled = ch4.relative_change_under_shift(X_img, 1, 2)
    pooled = ch4.relative_change_under_shift(X_img, 4, 2)
    assert unpooled[0] == pooled[0] == 0 and pooled[1] < unpooled[1]


def test_lenet_shapes_parameters_and_bad_activation():
    for activation, pool in (("sigmoid", nn.AvgPool2d), ("relu", nn.MaxPool2d)):
        net = ch4.lenet(activation)
        assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        assert vision.count_parameters(net) == 61_706
        assert isinstance(net[2], pool)
    with pytest.raises(ValueError, match="'sigmoid' or 'relu'"):
        ch4.lenet("tanh")
