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


# ---- 4.10 dead ReLUs ---------------------------------------------------------------------------


def _relu_outputs(net, X):
    outputs = []
    relus = [m for m in net if isinstance(m, nn.ReLU)]
    hooks = [m.register_forward_hook(lambda m, i, out: outputs.append(out)) for m in relus]
    with torch.no_grad():
        net(X)
    for hook in hooks:
        hook.remove()
    return outputs


def test_count_dead_units_finds_switched_off_channels_and_neurons():
    torch.manual_seed(0)
    net, X = ch4.lenet("relu"), torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net[0].bias[[1, 4]] = -100.0  # two first-layer channels
        net[7].bias[:5] = -1e4  # five neurons of the first dense layer
    counts = ch4.count_dead_units(net, X)
    assert [(name, total) for name, _, total in counts] == [
        ("Conv2d-0", 6), ("Conv2d-3", 16), ("Linear-7", 120), ("Linear-9", 84)]
    expected = [int((out.amax(dim=(0, 2, 3) if out.dim() == 4 else 0) == 0).sum())
                for out in _relu_outputs(net, X)]
    assert [dead for _, dead, _ in counts] == expected
    assert counts[0][1] >= 2 and counts[2][1] >= 5
    with torch.no_grad():
        net[9].bias[:] = -1e4  # the whole second dense layer
    assert ch4.count_dead_units(net, X)[3][1:] == (84, 84)


def test_a_dead_channel_needs_to_be_off_everywhere():
    net = nn.Sequential(nn.Conv2d(1, 2, kernel_size=1), nn.ReLU())
    with torch.no_grad():
        net[0].weight[:] = torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)
        net[0].bias.zero_()
    X = -torch.ones(3, 1, 4, 4)
    X[2, 0, 3, 3] = 1.0  # one positive pixel in one image keeps channel 0 alive
    assert ch4.count_dead_units(net, X) == [("Conv2d-0", 0, 2)]
    assert ch4.count_dead_units(net, X[:2]) == [("Conv2d-0", 1, 2)]


def test_with_leaky_relu_keeps_the_weights_and_passes_negative_inputs():
    torch.manual_seed(0)
    relu_net = ch4.lenet("relu")
    leaky_net = ch4.with_leaky_relu(ch4.lenet("relu"), negative_slope=0.1)
    leaky_net.load_state_dict(relu_net.state_dict())  # no parameters were added or renamed
    assert [type(m) for m in leaky_net].count(nn.LeakyReLU) == 4 and leaky_net[1].negative_slope == 0.1
    X = torch.rand(4, 1, 28, 28)
    manual = X
    for layer in relu_net:
        manual = F.leaky_relu(manual, 0.1) if isinstance(layer, nn.ReLU) else layer(manual)
    assert torch.allclose(leaky_net(X), manual, atol=1e-6)


def test_a_dead_last_hidden_layer_leaves_only_the_output_bias_with_a_gradient():
    torch.manual_seed(0)
    net, X, y = ch4.lenet("relu"), torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    assert len(ch4.parameters_with_gradient(net, X, y)) == 10
    with torch.no_grad():
        net[9].bias[:] = -1e4
    assert ch4.parameters_with_gradient(net, X, y) == ["11.bias"]


def test_train_lenet_keep_returns_the_network_its_history_describes():
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(96, 1, 28, 28, generator=gen), torch.randint(0, 10, (96,), generator=gen))
    val = (torch.rand(40, 1, 28, 28, generator=gen), torch.randint(0, 10, (40,), generator=gen))
    net, history = ch4.train_lenet_keep(0.1, 32, 2, train, val)
    assert not net.training and len(history["val_acc"]) == 2
    assert vision.evaluate_accuracy(net, *val) == pytest.approx(history["val_acc"][-1], abs=1e-6)
    assert history["val_loss"] == ch4.run_lenet(0.1, 32, 2, train, val)["val_loss"]  # the explorer's recipe
    _, other_seed = ch4.train_lenet_keep(0.1, 32, 2, train, val, seed=1)
    assert other_seed["val_loss"] != history["val_loss"]
    make_leaky = lambda: ch4.with_leaky_relu(ch4.lenet("relu"))
    leaky, _ = ch4.train_lenet_keep(0.1, 32, 1, train, val, make_model=make_leaky)
    assert any(isinstance(m, nn.LeakyReLU) for m in leaky)
