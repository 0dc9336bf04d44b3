"""Chapter 4b's from-scratch code (batch norm, residual block, augmentation, transfer), against PyTorch."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from helpers import vision, widgets
from notebook_code import load_notebook

ch = load_notebook("04b_modern_cnn")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5), (2, 4, 1, 3)])
def test_batch_norm_function_equals_f_batch_norm_in_both_modes(shape):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(shape, generator=gen) * 2 + 1
    c = shape[1]
    gamma, beta = torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen)
    mean0, var0 = torch.randn(c, generator=gen), torch.rand(c, generator=gen) + 0.5
    Y, mean, var = ch.batch_norm(X, gamma, beta, mean0.clone(), var0.clone(), training=True, momentum=0.2)
    torch_mean, torch_var = mean0.clone(), var0.clone()
    expected = F.batch_norm(X, torch_mean, torch_var, gamma, beta, training=True, momentum=0.2)
    assert torch.allclose(Y, expected, atol=1e-5)
    assert torch.allclose(mean, torch_mean, atol=1e-6) and torch.allclose(var, torch_var, atol=1e-5)
    Y_eval, mean_eval, var_eval = ch.batch_norm(X, gamma, beta, mean0, var0, training=False)
    assert torch.allclose(Y_eval, F.batch_norm(X, mean0, var0, gamma, beta, training=False), atol=1e-5)
    assert mean_eval is mean0 and var_eval is var0


def test_batch_norm_layer_equals_pytorch_layers_via_the_notebook_check():
    ch.compare_with_pytorch(nn.BatchNorm2d(5), (6, 5, 4, 3), num_steps=4, seed=1)
    ch.compare_with_pytorch(nn.BatchNorm1d(7), (9, 7), num_steps=4, seed=2)


def test_batch_norm_layer_state_dict_and_modes():
    bn = ch.BatchNorm(3)
    assert set(bn.state_dict()) == {"gamma", "beta", "running_mean", "running_var"}
    bn(torch.randn(8, 3, 2, 2) + 5)
    assert (bn.running_mean > 0.3).all()
    bn.eval()
    x = torch.randn(1, 3, 2, 2)
    assert torch.equal(bn(x), bn(x))


def test_batch_norm_explains_bad_inputs():
    gamma, beta, mean, var = torch.ones(2), torch.zeros(2), torch.zeros(2), torch.ones(2)
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
        ch.batch_norm(torch.zeros(2, 2, 3), gamma, beta, mean, var, True)
    with pytest.raises(ValueError, match="batch of at least 2"):
        ch.batch_norm(torch.zeros(1, 2), gamma, beta, mean, var, True)
    Y, _, _ = ch.batch_norm(torch.zeros(1, 2), gamma, beta, mean, var, False)  # evaluation mode is fine
    assert Y.shape == (1, 2)


@pytest.mark.parametrize("in_channels,out_channels,stride", [(4, 4, 1), (4, 8, 2), (4, 8, 1), (6, 6, 2)])
def test_residual_equals_torchvision_basic_block(in_channels, out_channels, stride):
    torch.manual_seed(0)
    block = ch.Residual(in_channels, out_channels, stride)
    assert (block.shortcut is None) == (stride == 1 and in_channels == out_channels)
    theirs = ch.as_torchvision_block(block, in_channels, out_channels, stride)
    X = torch.randn(3, in_channels, 9, 9)
    assert torch.allclose(block(X), theirs(X), atol=1e-5)
    block.eval()
    theirs.eval()
    assert torch.allclose(block(X), theirs(X), atol=1e-5)
    assert block(X).shape == (3, out_channels, (9 + 2 - 3) // stride + 1, (9 + 2 - 3) // stride + 1)


def test_residual_with_zero_correction_is_relu_of_its_input():
    block = ch.Residual(3, 3)
    nn.init.zeros_(block.bn2.weight)  # g(x) = 0
    X = torch.randn(2, 3, 5, 5)
    assert torch.allclose(block(X), F.relu(X))


def test_bn_cnn_shapes_and_parameters():
    net = ch.bn_cnn()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert vision.count_parameters(net) == 104_426
    assert ch.bn_cnn(num_classes=5, channels=(8, 16, 32))(torch.zeros(1, 1, 28, 28)).shape == (1, 5)


def test_small_resnet_shapes_blocks_and_modes():
    torch.manual_seed(0)
    net = ch.small_resnet()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    blocks = [m for m in net if isinstance(m, ch.Residual)]
    assert [b.shortcut is None for b in blocks] == [True, False, False]  # 1x1 shortcut iff shape changes
    rows = vision.layer_summary(net, torch.zeros(1, 1, 28, 28), verbose=False)
    assert [shape for _, shape, _ in rows[4:7]] == [(1, 32, 14, 14), (1, 64, 7, 7), (1, 128, 4, 4)]
    small = ch.small_resnet(num_classes=5, channels=(4, 8, 8))
    X = torch.randn(3, 1, 28, 28)
    assert small(X).shape == (3, 5)
    small.eval()
    assert torch.allclose(small(X[:1]), small(X)[:1], atol=1e-5)  # eval: batch-independent


def test_architecture_tour_shapes_and_parameter_counts():
    with torch.device("meta"):
        X = torch.zeros(1, 3, 224, 224)
        for make in (ch.alexnet, ch.vgg, ch.nin, ch.googlenet):
            assert make()(X).shape == (1, 1000)
        assert vision.count_parameters(ch.vgg()) == vision.count_parameters(torchvision.models.vgg11())
        vgg16 = ch.vgg(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)))
        assert vision.count_parameters(vgg16) == vision.count_parameters(torchvision.models.vgg16())
        assert vision.count_parameters(ch.alexnet()) == 50_844_008
        assert ch.resnet()(X).shape == (1, 1000)
        assert vision.count_parameters(ch.resnet()) == vision.count_parameters(torchvision.models.resnet18())
        resnet34 = ch.resnet(((64, 3), (128, 4), (256, 6), (512, 3)))
        assert vision.count_parameters(resnet34) == vision.count_parameters(torchvision.models.resnet34())
    inception = ch.Inception(16, 4, (6, 8), (2, 3), 5)
    assert inception(torch.zeros(2, 16, 7, 7)).shape == (2, 4 + 8 + 3 + 5, 7, 7)


def test_multiply_adds_counts_convolutions_and_linear_layers():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    expected = 3 * 4 * 4 * (2 * 3 * 3) + 48 * 5
    assert ch.multiply_adds(net, torch.zeros(1, 2, 4, 4)) == expected
    with torch.device("meta"):
        assert ch.multiply_adds(ch.vgg(), torch.zeros(1, 3, 224, 224)) == 7_609_090_048


def test_flip_shift_matches_torchvision_and_is_random_per_example():
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(5, 2, 8, 9, generator=gen)
    offsets = torch.tensor([[0, 1, 2, 3, 4], [4, 0, 2, 1, 3]])
    shifted = ch.FlipShift(max_shift=2, p_flip=0.0)(X, offsets)
    for i in range(5):
        expected = v2.functional.crop(F.pad(X[i], (2, 2, 2, 2)), int(offsets[0, i]), int(offsets[1, i]), 8, 9)
        assert torch.equal(shifted[i], expected)
    assert torch.equal(ch.FlipShift(max_shift=0, p_flip=1.0)(X), v2.functional.horizontal_flip(X))
    assert torch.equal(ch.FlipShift(max_shift=0, p_flip=0.0)(X), X)
    assert torch.equal(ch.FlipShift().eval()(X), X)
    torch.manual_seed(0)
    same = ch.FlipShift(max_shift=2)(X[:1].repeat(64, 1, 1, 1))
    assert same.shape == (64, 2, 8, 9)
    assert len({tuple(img.flatten().tolist()) for img in same}) > 8  # different flips/shifts per example


def test_class_subset_relabels_and_samples_per_class():
    X = torch.arange(40.0).reshape(40, 1)
    y = torch.arange(40) % 4
    X_sub, y_sub = ch.class_subset(X, y, [1, 3])
    assert len(y_sub) == 20 and set(y_sub.tolist()) == {0, 1}
    assert torch.equal(y_sub, (X_sub[:, 0].long() % 4 == 3).long())
    X_few, y_few = ch.class_subset(X, y, [2, 0], per_class=3, seed=1)
    assert torch.bincount(y_few).tolist() == [3, 3] and (X_few[y_few == 0, 0].long() % 4 == 2).all()
    assert not torch.equal(ch.class_subset(X, y, [2], per_class=3, seed=2)[0], X_few[y_few == 0])
    with pytest.raises(ValueError, match="fewer than per_class=11"):
        ch.class_subset(X, y, [0], per_class=11)


def test_with_new_head_and_train_on_target_only_train_what_they_should():
    torch.manual_seed(0)
    base = nn.Sequential(ch.FlipShift(), *ch.bn_cnn(num_classes=5, channels=(4, 8, 8)))
    copy = ch.with_new_head(base, 3)
    assert copy[-1].out_features == 3 and base[-1].out_features == 5
    assert torch.equal(copy[1].weight, base[1].weight) and copy[1].weight is not base[1].weight
    gen = torch.Generator().manual_seed(0)
    train = (torch.rand(20, 1, 28, 28, generator=gen), torch.randint(0, 3, (20,), generator=gen))
    body_before = copy[1].weight.detach().clone()
    head_before = copy[-1].weight.detach().clone()
    acc = ch.train_on_target(copy, copy[-1].parameters(), train, train, lr=0.05, num_epochs=3)
    assert 0.0 <= acc <= 1.0
    assert torch.equal(copy[1].weight, body_before) and not torch.equal(copy[-1].weight, head_before)


def test_draw_augmentations_and_its_explorer():
    fig, message = ch.draw_augmentations("chelsea", True, 0.3, 0.2, 0.2, 0.2, 0.1, seed=0)
    assert len([ax for ax in fig.axes if ax.images]) == 10 and message.startswith("chelsea: flip on")
    with pytest.raises(ValueError, match=r"minimum crop area must be in \(0, 1\]"):
        ch.draw_augmentations("chelsea", True, 0.0, 0.2, 0.2, 0.2, 0.1, seed=0)
    explorer = widgets.PlotExplorer(
        {"image": w.Dropdown(options=["cat1", "rocket"], value="cat1"), "flip": w.Checkbox(value=True),
         "min_crop": w.FloatSlider(value=0.3, min=0.05, max=1.0), "brightness": w.FloatSlider(value=0.3),
         "contrast": w.FloatSlider(value=0.3), "saturation": w.FloatSlider(value=0.3),
         "hue": w.FloatSlider(value=0.05, max=0.5), "seed": w.IntSlider(value=0)},
        ch.draw_augmentations)
    explorer.controls["hue"].value = 0.5
    explorer.controls["min_crop"].value = 0.05
    explorer.controls["brightness"].value = 1.0
    explorer.controls["image"].value = "rocket"
    assert explorer.message.startswith("rocket") and "hue 0.5" in explorer.message
    assert explorer.image.value[:4] == b"\x89PNG"


def test_small_photo_is_rgb_at_the_requested_height():
    for name in ("cat1", "camera"):  # a grayscale image is converted to RGB as well
        assert ch.small_photo(name).shape[:2] == (3, 96)
    assert ch.small_photo("horse", height=40).shape[1] == 40


SIZES = [(1, 1, 2, 2), (2, 3, 5, 7), (3, 1, 8, 4), (1, 2, 16, 16), (2, 1, 9, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_by_hand_equals_f_affine_grid(align_corners, dtype):
    gen = torch.Generator().manual_seed(0)
    for size in SIZES:
        for scale in (0.1, 1.0, 3.0):
            theta = (scale * torch.randn(size[0], 2, 3, generator=gen)).to(dtype)
            ours = ch.affine_grid_by_hand(theta, size, align_corners)
            expected = F.affine_grid(theta, size, align_corners=align_corners)
            assert ours.shape == expected.shape == (size[0], size[2], size[3], 2) and ours.dtype == dtype
            assert torch.allclose(ours, expected, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_affine_grid_by_hand_on_single_pixel_rows_and_columns():
    # align_corners=False only: with True, PyTorch warns that unit-size grids are no intended use
    theta = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(1))
    for size in [(2, 1, 1, 5), (2, 1, 6, 1), (2, 3, 1, 1)]:
        expected = F.affine_grid(theta, size, align_corners=False)
        assert torch.allclose(ch.affine_grid_by_hand(theta, size), expected, atol=1e-6)


def test_normalized_coordinates_put_the_edges_or_the_centres_at_plus_minus_one():
    assert torch.allclose(ch.normalized_coordinates(4), torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(ch.normalized_coordinates(3, align_corners=True), torch.tensor([-1.0, 0.0, 1.0]))
    assert ch.normalized_coordinates(1).tolist() == [0.0]
    assert ch.normalized_coordinates(1, align_corners=True).tolist() == [0.0]
    assert ch.normalized_coordinates(5, dtype=torch.float64).dtype == torch.float64


def test_affine_grid_by_hand_explains_a_wrong_theta():
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 2, 3\)"):
        ch.affine_grid_by_hand(torch.eye(2, 3), (1, 1, 4, 4))  # no batch axis
    with pytest.raises(ValueError, match="N = size\\[0\\] = 3"):
        ch.affine_grid_by_hand(torch.eye(2, 3)[None], (3, 1, 4, 4))


def test_transform_images_identity_rotation_zoom_and_shift():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 8, generator=gen)
    identity = torch.eye(2, 3).expand(2, 2, 3)
    for align_corners in (False, True):
        assert torch.allclose(ch.transform_images(images, identity, align_corners), images, atol=1e-6)
    dot = torch.zeros(1, 1, 21, 21)
    dot[0, 0, 10, 15] = 1.0  # right of the centre
    turned = ch.transform_images(dot, ch.affine_theta(angle=90)[None])
    assert (turned[0, 0] > 0.5).nonzero().tolist() == [[5, 10]]  # counterclockwise: now above the centre
    shifted = ch.transform_images(dot, ch.affine_theta(shift=(-10 / 21 * 2, 0.0))[None])
    assert (shifted[0, 0] > 0.5).nonzero().tolist() == [[10, 5]]  # moved 10 pixels to the left
    ramp = torch.arange(21.0).expand(1, 1, 21, 21)  # value = column; the centre is column 10
    columns = torch.arange(5, 16.0)
    shrunk = ch.transform_images(ramp, ch.affine_theta(zoom=0.5)[None])
    assert torch.allclose(shrunk[0, 0, 10, 5:16], 10 + 2 * (columns - 10), atol=1e-4)  # twice as far out
    magnified = ch.transform_images(ramp, ch.affine_theta(zoom=2.0)[None])
    assert torch.allclose(magnified[0, 0, 10, 5:16], 10 + (columns - 10) / 2, atol=1e-4)
    # theta of the inverse motion undoes the motion (a rotation about the centre)
    assert torch.allclose(ch.affine_theta(angle=-30)[:, :2] @ ch.affine_theta(angle=30)[:, :2], torch.eye(2),
                          atol=1e-6)
    theta = ch.affine_theta(angle=20, zoom=1.3, shift=(0.2, -0.1))
    assert torch.allclose(theta[:, :2].det(), torch.tensor(1 / 1.3**2))


def test_transform_images_is_differentiable_with_respect_to_theta():
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    noise = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)
    theta = torch.eye(2, 3, dtype=torch.float64) + 0.2 * noise
    assert torch.autograd.gradcheck(lambda t: ch.transform_images(images, t), (theta.requires_grad_(),))
    ours = ch.transform_images(images, theta.detach(), align_corners=True)
    grid = F.affine_grid(theta.detach(), images.shape, align_corners=True)
    assert torch.allclose(ours, F.grid_sample(images, grid, align_corners=True))


def test_undo_by_gradient_descent_recovers_a_rotation():
    n = 32
    y, x = torch.meshgrid(ch.normalized_coordinates(n), ch.normalized_coordinates(n), indexing="ij")
    def blob(cx, cy, width):
        return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / width)

    channels = [blob(0.4, 0.0, 0.05) + blob(0.0, -0.3, 0.1), blob(-0.3, 0.3, 0.08)]
    blobs = torch.stack(channels)[None]  # (1, 2, n, n)
    turned = ch.transform_images(blobs, ch.affine_theta(angle=25)[None])
    inside = (x**2 + y**2 < 1).float()
    theta, loss = ch.undo_by_gradient_descent(turned, blobs, inside, num_steps=300, lr=0.02)
    assert theta.shape == (1, 2, 3) and not theta.requires_grad and loss < 1e-3
    assert (theta[0] - ch.affine_theta(angle=-25)).abs().max() < 0.03
