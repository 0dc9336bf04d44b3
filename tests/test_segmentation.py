"""Tests of helpers.segmentation: the bilinear kernel against F.interpolate and d2l's definition,
the FCN's shapes, the metrics on hand-made and random masks, and a few training steps."""

import math

import pytest
import torch
from torch.nn import functional as F

from helpers import datasets as D
from helpers import segmentation as S

# ---------------------------------------------------------------------------------------------
# bilinear_kernel
# ---------------------------------------------------------------------------------------------


def upsample(X, factor):
    """Transposed convolution with the bilinear kernel: kernel 2s, stride s, padding s/2."""
    channels = X.shape[1]
    weight = S.bilinear_kernel(channels, channels, 2 * factor)
    return F.conv_transpose2d(X, weight, stride=factor, padding=factor // 2)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_kernel_is_bilinear_interpolation_away_from_the_border(factor):
    X = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(factor)) + 0.5
    ours = upsample(X, factor)
    theirs = F.interpolate(X, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == theirs.shape == (2, 3, 7 * factor, 9 * factor)
    inner = slice(factor // 2, -(factor // 2))  # all but the outermost s/2 rows and columns
    assert torch.allclose(ours[..., inner, inner], theirs[..., inner, inner], atol=1e-5)
    # the border differs: F.interpolate repeats the edge pixel, the transposed convolution sees 0
    assert (ours[..., : factor // 2, :] < theirs[..., : factor // 2, :]).all()
    assert (ours[..., :, -(factor // 2) :] < theirs[..., :, -(factor // 2) :]).all()


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_kernel_border_gets_a_part_of_the_edge_pixel(factor):
    """On an all-ones image, output pixel o (o < s/2) from the edge gets (o + 1/2) / s + 1/2 per axis."""
    ours = upsample(torch.ones(1, 1, 5, 5), factor)[0, 0]
    half = factor // 2
    edge = torch.tensor([(o + 0.5) / factor + 0.5 for o in range(half)])
    profile = torch.cat([edge, torch.ones(5 * factor - 2 * half), edge.flip(0)])
    assert torch.allclose(ours, torch.outer(profile, profile), atol=1e-6)
    assert torch.equal(F.interpolate(torch.ones(1, 1, 5, 5), scale_factor=factor, mode="bilinear"),
                       torch.ones(1, 1, 5 * factor, 5 * factor))


# d2l's bilinear_kernel (section "Fully Convolutional Networks" of the book) is defined in the book's
# text only; the d2l 1.0.3 package does not ship it. Its formula, factor = (k + 1) // 2, centre
# factor - 1 (k odd) or factor - 0.5 (k even), filter (1 - |i - centre| / factor)(1 - |j - centre|
# / factor) on the diagonal in -> out, gives these 1-D profiles, worked out by hand:
D2L_PROFILES = {
    3: [1 / 2, 1, 1 / 2],
    4: [1 / 4, 3 / 4, 3 / 4, 1 / 4],  # also chapter 4's kernel (notebooks/04_cnn.ipynb)
    5: [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3],
    8: [1 / 8, 3 / 8, 5 / 8, 7 / 8, 7 / 8, 5 / 8, 3 / 8, 1 / 8],
    16: [(2 * i + 1) / 16 for i in range(8)] + [(15 - 2 * i) / 16 for i in range(8)],
}


@pytest.mark.parametrize("kernel_size", sorted(D2L_PROFILES))
def test_bilinear_kernel_equals_d2ls(kernel_size):
    profile = torch.tensor(D2L_PROFILES[kernel_size])
    weight = S.bilinear_kernel(3, 3, kernel_size)
    assert weight.shape == (3, 3, kernel_size, kernel_size) and weight.dtype == torch.float32
    for i in range(3):
        for j in range(3):
            expected = torch.outer(profile, profile) if i == j else torch.zeros(kernel_size, kernel_size)
            assert torch.allclose(weight[i, j], expected, atol=1e-7)


def test_bilinear_kernel_errors():
    with pytest.raises(ValueError, match="must be equal"):
        S.bilinear_kernel(3, 4, 4)
    with pytest.raises(ValueError, match="kernel_size must be a positive integer"):
        S.bilinear_kernel(3, 3, 0)


# ---------------------------------------------------------------------------------------------
# FCN
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "sizes"), [((8, 16), [(16, 16), (32, 48), (128, 128)]),
                                                 ((8, 8, 8), [(8, 8), (24, 40), (64, 64)])])
def test_fcn_output_has_the_input_size(channels, sizes):
    torch.manual_seed(0)
    net = S.FCN(4, channels, convs_per_stage=1).eval()
    assert net.total_stride == 2 ** len(channels)
    for h, w in sizes:
        assert net(torch.rand(2, 3, h, w)).shape == (2, 4, h, w)


def test_fcn_rejects_a_size_that_is_not_a_multiple_of_the_stride():
    net = S.FCN(4, (8, 8, 8), convs_per_stage=1)
    with pytest.raises(ValueError, match=r"30x32 .* total stride is 8: .* multiples of 8 .* 24x32"):
        net(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="batch of images"):
        net(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="at least 2"):
        S.FCN(1)


def test_fcn_upsampling_starts_bilinear_and_is_learned():
    net = S.FCN(4, (8, 8), convs_per_stage=1)
    layer = net.upsample
    assert (layer.kernel_size, layer.stride, layer.padding) == ((8, 8), (4, 4), (2, 2))
    assert torch.equal(layer.weight, S.bilinear_kernel(4, 4, 8)) and layer.weight.requires_grad
    scores = torch.rand(1, 4, 6, 6)
    inner = slice(2, -2)
    bilinear = F.interpolate(scores, scale_factor=4, mode="bilinear")
    assert torch.allclose(layer(scores)[..., inner, inner], bilinear[..., inner, inner], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

MASK = torch.tensor([[0, 0, 1, 1],
                     [0, 0, 1, 1],
                     [0, 2, 2, 0],
                     [0, 2, 2, 0]])
PRED = torch.tensor([[0, 1, 1, 1],
                     [0, 0, 1, 0],
                     [0, 2, 0, 0],
                     [2, 2, 2, 0]])


def test_perfect_prediction_scores_one_and_absent_classes_are_left_out():
    acc = S.pixel_accuracy(MASK, MASK)
    miou, per_class = S.mean_iou(MASK, MASK, num_classes=4)
    assert acc == 1.0 and miou == 1.0
    assert per_class[:3].tolist() == [1.0, 1.0, 1.0] and math.isnan(per_class[3])  # class 3: nowhere


def test_known_confusion_gives_hand_computed_iou():
    # rows: true class, columns: predicted; each class is 8, 4 and 4 pixels in both mask and pred
    confusion = S.segmentation_confusion(PRED, MASK, 3)
    assert confusion.tolist() == [[6, 1, 1], [1, 3, 0], [1, 0, 3]]
    miou, per_class = S.mean_iou(PRED, MASK, 3)
    expected = [6 / (8 + 8 - 6), 3 / (4 + 4 - 3), 3 / (4 + 4 - 3)]  # intersection / union
    assert per_class.tolist() == pytest.approx(expected)
    assert miou == pytest.approx((0.6 + 0.6 + 0.6) / 3)
    assert S.pixel_accuracy(PRED, MASK) == pytest.approx(12 / 16)


def test_a_class_in_only_one_of_pred_and_mask_scores_zero_and_counts():
    mask = torch.zeros(2, 3, dtype=torch.long)
    pred = mask.clone()
    pred[0, 0] = 2  # class 2 predicted once, never true; class 1 nowhere
    miou, per_class = S.mean_iou(pred, mask, 3)
    assert per_class[0] == pytest.approx(5 / 6) and math.isnan(per_class[1]) and per_class[2] == 0
    assert miou == pytest.approx((5 / 6 + 0) / 2)


def test_metric_errors():
    with pytest.raises(ValueError, match="same shape.*argmax"):
        S.mean_iou(torch.rand(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="integers"):
        S.pixel_accuracy(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="No pixels"):
        S.mean_iou(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="0..2"):
        S.mean_iou(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long), 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_iou_against_an_independent_computation_on_random_masks(seed):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 4, (3, 20, 30), generator=gen, dtype=torch.uint8)
    pred = torch.where(torch.rand(3, 20, 30, generator=gen) < 0.7, mask.long(),
                       torch.randint(0, 5, (3, 20, 30), generator=gen))
    ious = []
    for k in range(5):
        union = ((pred == k) | (mask == k)).sum().item()
        ious.append(((pred == k) & (mask == k)).sum().item() / union if union else math.nan)
    miou, per_class = S.mean_iou(pred, mask, 5)
    assert torch.allclose(per_class, torch.tensor(ious, dtype=torch.float64), equal_nan=True)
    present = [v for v in ious if not math.isnan(v)]
    assert miou == pytest.approx(sum(present) / len(present))
    assert S.pixel_accuracy(pred, mask) == pytest.approx((pred == mask).float().mean().item())
    parts = sum(S.segmentation_confusion(pred[i], mask[i], 5) for i in range(3))  # confusions add up
    assert torch.equal(parts, S.segmentation_confusion(pred, mask, 5))


def test_class_weights():
    masks = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    assert torch.allclose(S.class_weights(masks, 3, power=0), torch.ones(3))
    weights = S.class_weights(masks, 4, power=1)
    freq = torch.tensor([0.9, 0.09, 0.01])
    assert torch.allclose(weights[:3] * freq, (weights[:3] * freq)[0].expand(3))  # equal total weight
    assert (weights[:3] * freq).sum() == pytest.approx(1) and weights[3] == weights.max()


# ---------------------------------------------------------------------------------------------
# Data, prediction, training, pictures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_shapes():
    """Eight training and four validation images of the shapes set at 32x32."""
    images, _, masks = D.shapes_tensors("train", num_images=8)
    val_images, _, val_masks = D.shapes_tensors("val", num_images=4)
    small, small_val = S.resize_shapes(images, masks, 32), S.resize_shapes(val_images, val_masks, 32)
    return small, small_val, (val_images, val_masks)


def test_resize_shapes_keeps_classes_and_takes_the_nearest_pixel(tiny_shapes):
    (images, masks), _, _ = tiny_shapes
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8
    assert masks.shape == (8, 32, 32) and masks.dtype == torch.uint8
    big, _, big_masks = D.shapes_tensors("train", num_images=8)
    assert torch.equal(masks, big_masks[:, 4::8, 4::8])  # nearest-exact: the pixel under the centre
    means, big_means = images.float().mean(dim=(2, 3)), big.float().mean(dim=(2, 3))
    assert torch.allclose(means, big_means, atol=1.0)  # antialiased: every pixel counts
    with pytest.raises(ValueError, match="their masks"):
        S.resize_shapes(big, big_masks[:4], 32)
    for size in (96, 100):  # also for sizes that do not divide 256
        _, small = S.resize_shapes(big[:2], big_masks[:2], size)
        nearest = F.interpolate(big_masks[:2, None].float(), size=(size, size), mode="nearest-exact")
        assert torch.equal(small, nearest[:, 0].to(torch.uint8))


def test_a_few_training_steps_decrease_the_loss_and_record_the_metrics(tiny_shapes):
    train, val, _ = tiny_shapes
    torch.manual_seed(0)
    net = S.FCN(S.SHAPES_NUM_CLASSES, (8, 8), convs_per_stage=1)
    history = S.train_fcn(net, train, val, num_epochs=6, lr=0.02, batch_size=4, live=False,
                          progress=False, verbose=False)
    losses = history["train_loss"]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses  # every epoch
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(0 <= v <= 1 for v in history["val_miou"] + history["val_pixel_acc"])
    scores = S.evaluate_segmentation(net, *val)
    pred = S.predict_masks(net, val[0])
    assert scores["miou"] == pytest.approx(S.mean_iou(pred, val[1], 4)[0])
    assert scores["pixel_acc"] == pytest.approx(S.pixel_accuracy(pred, val[1]))


def test_predict_masks_at_the_images_size_and_draw_them(tiny_shapes):
    _, _, (images, masks) = tiny_shapes
    torch.manual_seed(0)
    net = S.FCN(4, (8, 8), convs_per_stage=1)
    pred = S.predict_masks(net, images, input_size=32)  # runs at 32x32, masks at 256x256
    assert pred.shape == (4, 256, 256) and pred.dtype == torch.int64 and 0 <= pred.min() <= pred.max() < 4
    assert torch.equal(S.predict_masks(net, images[1], input_size=32), pred[1])
    full = S.evaluate_segmentation(net, images, masks, input_size=32)
    assert full["miou"] == pytest.approx(S.mean_iou(pred, masks, 4)[0])
    picture = S.draw_segmentation(images, masks, pred, ncols=2, tile=40)
    assert picture.size == (80, 4 * 40)  # two pairs of rows: true masks, then predicted
    assert S.draw_segmentation(images, None, pred, ncols=4, tile=40).size == (160, 40)
