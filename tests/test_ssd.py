"""Tests of helpers.ssd: the detector's shapes and anchors, the loss on hand-made cases, labelling a
data set once (equal to labelling per batch, flips exact), detection and evaluation formats on a
detector with known outputs, clear errors, and a few training steps that lower the loss. Small
inputs only: the whole file runs in a few seconds."""

import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from helpers import boxes, ssd
from helpers import datasets as D


@pytest.fixture(scope="module")
def bananas():
    """The first 16 training images of the banana set and their targets (generated, cached)."""
    return D.detection_tensors("train", num_images=16)


@pytest.fixture(scope="module")
def shapes():
    images, targets, _ = D.shapes_tensors("train", num_images=8)
    return images, targets


# --------------------------------------------------------------------------------- the network


@pytest.mark.parametrize(("size", "maps"), [(128, [(16, 16), (8, 8), (4, 4)]),
                                           (256, [(32, 32), (16, 16), (8, 8)])])
def test_output_shapes_and_anchor_counts(size, maps):
    torch.manual_seed(0)
    net = ssd.TinySSD(num_classes=3, image_size=size)
    assert net.feature_sizes() == maps and net.anchors_per_pixel == (4, 4, 4)
    num_anchors = sum(h * w * 4 for h, w in maps)
    assert net.num_anchors() == num_anchors == {128: 1344, 256: 5376}[size]
    anchors, cls_logits, box_offsets = net(torch.rand(2, 3, size, size))
    assert anchors.shape == (num_anchors, 4)
    assert cls_logits.shape == (2, num_anchors, 4) and box_offsets.shape == (2, num_anchors * 4)
    expected = torch.cat([boxes.anchor_boxes(h, w, s, r)
                          for (h, w), s, r in zip(maps, ssd.DEFAULT_SIZES, ssd.DEFAULT_RATIOS, strict=True)])
    assert torch.equal(anchors, expected) and torch.equal(net.anchors(), expected)


def test_feature_sizes_match_the_layers_for_odd_sizes():
    net = ssd.TinySSD(1, sizes=[[0.2], [0.4]], ratios=[[1.0], [1.0, 2.0]], channels=16,
                      base_channels=(4, 8, 8))
    assert net.anchors_per_pixel == (1, 2) and net.min_image_size == 9
    for size in [(9, 9), (50, 37), (100, 70)]:
        anchors, cls_logits, _ = net.eval()(torch.rand(1, 3, *size))
        (h1, w1), (h2, w2) = net.feature_sizes(size)
        assert len(anchors) == cls_logits.shape[1] == h1 * w1 + 2 * h2 * w2 == net.num_anchors(size)
    with pytest.raises(ValueError, match="at least 9 pixels"):
        net(torch.rand(1, 3, 8, 40))


def test_the_background_prior_sets_the_first_probabilities():
    torch.manual_seed(0)
    _, cls_logits, _ = ssd.TinySSD(3, background_prior=0.99).eval()(torch.zeros(1, 3, 64, 64))
    background = cls_logits.softmax(-1)[..., 0]
    assert torch.allclose(background, torch.full_like(background, 0.99), atol=0.02)


def test_clear_errors_for_bad_input():
    net = ssd.TinySSD(1)
    with pytest.raises(ValueError, match=r"image\[None\]"):
        net(torch.rand(3, 128, 128))
    with pytest.raises(ValueError, match="batch, 3, height, width"):
        net(torch.rand(2, 1, 128, 128))
    with pytest.raises(ValueError, match="float images"):
        net(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        ssd.TinySSD(0)
    with pytest.raises(ValueError, match="one list of anchor sizes and one of ratios"):
        ssd.TinySSD(1, sizes=[[0.1], [0.2]], ratios=[[1.0]])


def test_training_a_model_without_parameters_is_refused(bananas):
    net = ssd.TinySSD(1, image_size=32, channels=8, base_channels=(4, 4, 8))
    data = ssd.prepare_ssd_data(net, *bananas)
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ssd.train_ssd(net, data, num_epochs=1, lr=1e-3, verbose=False)
    with pytest.raises(ValueError, match="for this net"):
        ssd.train_ssd(ssd.TinySSD(1), data, num_epochs=1, verbose=False)  # data made for 32x32 images
    with pytest.raises(ValueError, match="val_data must be a pair"):
        ssd.train_ssd(ssd.TinySSD(1, image_size=32), data, (*bananas, bananas[1]), verbose=False)
    with pytest.raises(ValueError, match="SSDData"):
        ssd.train_ssd(ssd.TinySSD(1), bananas, num_epochs=1, lr=1e-3, verbose=False)
    with pytest.raises(ValueError, match="TinySSD"):
        ssd.detect(nn.Identity(), bananas[0][:1])


# --------------------------------------------------------------------------------- the loss


def _one_hot_logits(labels: torch.Tensor, num_classes: int, scale: float = 50.0) -> torch.Tensor:
    return nn.functional.one_hot(labels, num_classes + 1).float() * scale


def test_a_perfect_prediction_has_almost_no_loss():
    labels = torch.tensor([[0, 1, 0, 2, 0, 0]])
    offsets = torch.randn(1, 24) * (labels > 0).repeat_interleave(4, dim=1)
    mask = (labels > 0).float().repeat_interleave(4, dim=1)
    total, parts = ssd.ssd_loss(_one_hot_logits(labels, 2), offsets.clone(), labels, offsets, mask)
    assert parts["box"].item() == 0.0 and parts["cls"].item() < 1e-6 and total.item() < 1e-6
    # offsets off by 0.5 on the two positive anchors' x: smooth L1 0.5 * 0.5^2 each, per positive anchor
    moved = offsets.clone()
    moved[0, 4] += 0.5
    moved[0, 12] += 0.5
    moved[0, 0] += 7.0  # a background anchor's offsets do not count
    _, parts = ssd.ssd_loss(_one_hot_logits(labels, 2), moved, labels, offsets, mask)
    assert parts["box"].item() == pytest.approx(0.125)


def test_the_loss_is_per_positive_anchor_and_mines_hard_negatives():
    labels = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0]])
    logits = torch.zeros(1, 8, 2)  # every anchor: cross-entropy log 2, except the ones set below
    logits[0, 0] = torch.tensor([0.0, 30.0])  # the positive anchor: right, loss ~0
    logits[0, 1:4, 1] = torch.tensor([3.0, 2.0, 1.0])  # three background anchors that look like objects
    ce = nn.functional.cross_entropy(logits[0], labels[0], reduction="none")
    zeros = torch.zeros(1, 32)
    _, parts = ssd.ssd_loss(logits, zeros, labels, zeros, zeros)  # all anchors
    assert parts["cls"].item() == pytest.approx(ce.sum().item(), rel=1e-6)
    _, parts = ssd.ssd_loss(logits, zeros, labels, zeros, zeros, negative_ratio=3)  # the 3 hardest negatives
    assert parts["cls"].item() == pytest.approx(ce[:4].sum().item(), rel=1e-6)
    assert parts["box"].item() == 0.0


def test_background_only_targets():
    labels = torch.zeros(2, 5, dtype=torch.long)
    logits = torch.zeros(2, 5, 3)
    logits[0, 2, 1] = 4.0  # one anchor of image 0 looks like an object
    zeros = torch.zeros(2, 20)
    total, parts = ssd.ssd_loss(logits, torch.randn(2, 20), labels, zeros, zeros)
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    assert parts["box"].item() == 0.0  # no positive anchor: nothing to regress
    assert parts["cls"].item() == pytest.approx(ce.sum().item())  # divided by max(1, positives) = 1
    _, parts = ssd.ssd_loss(logits, zeros, labels, zeros, zeros, negative_ratio=1)  # 1 negative per image
    assert parts["cls"].item() == pytest.approx((ce[2] + ce[5]).item())
    assert torch.isfinite(total)
    with pytest.raises(ValueError, match="anchors \\* 4"):
        ssd.ssd_loss(logits, torch.zeros(2, 5), labels, zeros, zeros)


# --------------------------------------------------------------------------------- the data


def test_labelling_once_equals_labelling_each_batch(shapes):
    images, targets = shapes
    net = ssd.TinySSD(3)
    data = ssd.prepare_ssd_data(net, images, targets, flip=False)
    assert data.images.shape == (8, 3, 128, 128) and data.images.dtype == torch.float32
    assert data.class_labels.shape == (8, 1344) and data.bbox_offsets.shape == (8, 1344 * 4)
    anchors = net.anchors()
    batches = list(data.batches(3))  # in order: no generator
    for k, (X, labels, offsets, mask) in enumerate(batches):
        expected = boxes.multibox_target(anchors, targets[3 * k:3 * k + 3], ssd.IOU_THRESHOLD)
        assert torch.equal(offsets, expected[0]) and torch.equal(mask, expected[1])
        assert torch.equal(labels, expected[2])
        assert torch.equal(X, ssd.resize_images(images[3 * k:3 * k + 3], 128))
    assert [len(b[0]) for b in batches] == [3, 3, 2]
    with pytest.raises(ValueError, match="flip=True"):
        next(data.batches(4, flip=True))


def test_flip_augmentation_flips_boxes_exactly(shapes):
    images, targets = shapes
    flipped = ssd.flip_targets(targets)
    real = targets[..., 0] >= 0
    assert torch.equal(flipped[real][:, [0, 2, 4]], targets[real][:, [0, 2, 4]])
    assert torch.equal(flipped[real][:, 1], 1 - targets[real][:, 3])
    assert torch.equal(flipped[real][:, 3], 1 - targets[real][:, 1])
    assert torch.equal(flipped[~real], targets[~real])  # padding rows untouched
    assert torch.equal(ssd.flip_targets(flipped), targets)
    net = ssd.TinySSD(3)
    data = ssd.prepare_ssd_data(net, images, targets, flip=True)
    anchors = net.anchors()
    expected = boxes.multibox_target(anchors, flipped, ssd.IOU_THRESHOLD)
    assert torch.equal(data.flipped[0], expected[2]) and torch.equal(data.flipped[1], expected[0])
    # every positive anchor's offsets lead to its (flipped) object's box
    labels, offsets = data.flipped
    for i in range(len(images)):
        positive = labels[i] > 0
        decoded = boxes.offset_inverse(anchors[positive], offsets[i].view(-1, 4)[positive])
        truth = flipped[i][flipped[i, :, 0] >= 0, 1:]
        best_iou = boxes.box_iou(decoded, truth).max(dim=1).values
        assert torch.allclose(best_iou, torch.ones(len(decoded)), atol=1e-4)
    # a shuffled, flipped epoch: the flipped images come with the flipped labels
    generator = torch.Generator().manual_seed(0)
    X, labels, offsets, _ = next(data.batches(8, generator, flip=True))
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(8, generator=generator)
    flips = torch.rand(8, generator=generator) < 0.5
    assert 0 < flips.sum() < 8
    for j, (i, f) in enumerate(zip(order.tolist(), flips.tolist(), strict=True)):
        source = data.images[i].flip(-1) if f else data.images[i]
        assert torch.equal(X[j], source)
        assert torch.equal(labels[j], (data.flipped[0] if f else data.class_labels)[i])
        assert torch.equal(offsets[j], (data.flipped[1] if f else data.bbox_offsets)[i])


def test_resize_images_accepts_uint8_and_floats():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    small = ssd.resize_images(images, 16)
    assert small.shape == (2, 3, 16, 16) and small.dtype == torch.float32
    assert 0 <= small.min() <= small.max() <= 1
    from_floats = ssd.resize_images(images.float() / 255, 16)
    assert (small - from_floats).abs().max() <= 1 / 255 + 1e-6  # uint8 resizing rounds to whole levels
    flat = torch.full((1, 3, 32, 32), 100, dtype=torch.uint8)
    assert torch.allclose(ssd.resize_images(flat, 8), torch.full((1, 3, 8, 8), 100 / 255))
    with pytest.raises(ValueError, match="N, 3, height, width"):
        ssd.resize_images(images[0], 16)


# --------------------------------------------------------------------------------- detection


class FixedDetector(nn.Module):
    """A detector with known outputs: two anchors, one class; anchor 0 is an object (probability
    0.9), anchor 1 background; offsets all 0 (the predicted boxes are the anchors)."""

    image_size = 64

    def __init__(self, anchors=((0.25, 0.25, 0.75, 0.5), (0.0, 0.0, 1.0, 1.0)), object_prob=0.9):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.fixed_anchors = torch.tensor(anchors)
        self.object_prob = object_prob
        self.seen = []

    def forward(self, images):
        self.seen.append(tuple(images.shape))
        batch = len(images)
        probs = torch.tensor([[1 - self.object_prob, self.object_prob], [0.95, 0.05]])
        logits = probs.log().expand(batch, -1, -1) + self.weight
        return self.fixed_anchors, logits, torch.zeros(batch, 8)


def test_detect_returns_boxes_in_pixels():
    net = FixedDetector()
    images = torch.zeros(2, 3, 200, 100, dtype=torch.uint8)
    found = ssd.detect(net, images, pos_threshold=0.5)
    assert net.seen == [(2, 3, 64, 64)]  # resized to the detector's size
    assert len(found) == 2 and set(found[0]) == {"boxes", "scores", "labels"}
    assert torch.allclose(found[0]["boxes"], torch.tensor([[25.0, 50.0, 75.0, 100.0]]))  # x * 100, y * 200
    assert torch.allclose(found[0]["scores"], torch.tensor([0.9])) and found[0]["labels"].tolist() == [0]
    assert found[0]["labels"].dtype == torch.long
    found = ssd.detect(net, images, pos_threshold=0.01, image_size=256)  # the whole-image box too, in 256x256
    assert torch.allclose(found[1]["boxes"], torch.tensor([[64.0, 64.0, 192.0, 128.0], [0, 0, 256, 256]]))
    assert torch.allclose(found[1]["scores"], torch.tensor([0.9, 0.05]))
    assert ssd.detect(net, images, pos_threshold=0.95)[0]["boxes"].shape == (0, 4)
    raw = ssd.raw_outputs(net, images)
    assert raw["cls_probs"].shape == (2, 2, 2) and raw["offset_preds"].shape == (2, 8)
    assert torch.allclose(raw["boxes"][0], net.fixed_anchors) and raw["image_size"] == (200, 100)
    with pytest.raises(ValueError, match="pos_threshold"):
        ssd.detections_from_raw(raw, pos_threshold=1.5)


def test_nms_can_be_rerun_cheaply_on_raw_outputs(bananas):
    torch.manual_seed(0)
    net = ssd.TinySSD(1, background_prior=None)  # untrained: every anchor is a candidate
    raw = ssd.raw_outputs(net, bananas[0][:1])
    assert raw["boxes"].shape == (1, 1344, 4)
    start = time.perf_counter()
    for threshold in (0.1, 0.3, 0.5, 0.7, 0.9):
        found = ssd.detections_from_raw(raw, pos_threshold=0.0, nms_threshold=threshold, max_candidates=200)
        assert 0 < len(found[0]["boxes"]) <= 200
        assert torch.all(found[0]["scores"][:-1] >= found[0]["scores"][1:])
    assert (time.perf_counter() - start) / 5 < 0.3


def test_evaluate_reports_ap_and_d2l_metrics_on_a_hand_made_case():
    net = FixedDetector()
    images = torch.zeros(2, 3, 64, 64)
    # image 0: the object is anchor 0's box exactly; image 1: the object is elsewhere
    targets = torch.tensor([[[0, 0.25, 0.25, 0.75, 0.5]], [[0, 0.0, 0.6, 0.2, 0.9]]])
    result = ssd.evaluate_ssd(net, images, targets)
    # both anchors' boxes survive NMS in both images (IoU 0.125 < 0.5); ranked over the images the
    # first detection (image 0, score 0.9) is right, the other three wrong: precision 1 up to
    # recall 1/2, and recall 1 is never reached, so AP@0.5 = 51 / 101 of COCO's recall points
    assert result["map_50"] == pytest.approx(51 / 101)
    assert set(result["per_class_50"]) == {0}
    # d2l's metrics over the 2 x 2 anchors: labels image 0: [1, 0]; image 1: the greedy assignment
    # gives the object its best anchor, the whole image (IoU 0.06) -> [0, 1]
    offsets, mask, labels = boxes.multibox_target(net.fixed_anchors, targets, ssd.IOU_THRESHOLD)
    assert labels.tolist() == [[1, 0], [0, 1]]
    assert result["class_err"] == pytest.approx(0.5)  # predicted [1, 0] for both images: image 1 all wrong
    assert result["background_class_err"] == pytest.approx(0.5)  # half the anchors are objects
    expected_mae = (offsets * mask).abs().sum().item() / 16  # predicted offsets are 0
    assert result["bbox_mae"] == pytest.approx(expected_mae) == pytest.approx(result["background_bbox_mae"])
    assert result["bbox_mae"] > 0
    with pytest.raises(ValueError, match="targets"):
        ssd.evaluate_ssd(net, images, targets[0])


# --------------------------------------------------------------------------------- training


def test_a_short_training_run_lowers_the_loss(bananas):
    torch.manual_seed(0)
    net = ssd.TinySSD(1, image_size=64, channels=32, base_channels=(8, 16, 32))
    data = ssd.prepare_ssd_data(net, *bananas)
    history = ssd.train_ssd(net, data, (bananas[0][:4], bananas[1][:4]), num_epochs=4, lr=5e-3, batch_size=4,
                            warmup_steps=2, verbose=False)
    assert history.num_epochs == 4 and not history.stopped_early
    assert set(history.keys()) == {"train_loss", "train_cls_loss", "train_box_loss", "val_ap50", "val_ap"}
    losses = history["train_loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert all(0 <= v <= 1 for v in history["val_ap50"])
    # the same seeds repeat the run exactly
    torch.manual_seed(0)
    again = ssd.TinySSD(1, image_size=64, channels=32, base_channels=(8, 16, 32))
    repeat = ssd.train_ssd(again, data, (bananas[0][:4], bananas[1][:4]), num_epochs=4, lr=5e-3, batch_size=4,
                           warmup_steps=2, verbose=False)
    assert repeat.values == history.values


def test_a_time_budget_stops_the_run_cleanly(bananas):
    torch.manual_seed(0)
    net = ssd.TinySSD(1, image_size=32, channels=8, base_channels=(4, 4, 8))
    data = ssd.prepare_ssd_data(net, *bananas)
    history = ssd.train_ssd(net, data, num_epochs=50, lr=1e-3, batch_size=4, budget_s=1e-6, verbose=False)
    assert history.num_epochs == 1 and history.stopped_early
    with pytest.raises(ValueError, match="budget_s"):
        ssd.train_ssd(net, data, num_epochs=1, lr=1e-3, budget_s=0, verbose=False)


def test_the_module_imports_no_plotting_or_widget_code():
    code = ("import sys, helpers.ssd; "
            "print([m for m in ('matplotlib.pyplot', 'ipywidgets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_targets_to_list_drops_padding_and_scales_to_pixels():
    from helpers.ssd import targets_to_list

    targets = torch.tensor([[[0, 0.1, 0.2, 0.3, 0.4], [-1, -1, -1, -1, -1]],
                            [[2, 0.5, 0.5, 1.0, 1.0], [1, 0.0, 0.0, 0.25, 0.5]]])
    truth = targets_to_list(targets, height=100, width=200)
    assert [t["labels"].tolist() for t in truth] == [[0], [2, 1]]
    assert torch.allclose(truth[0]["boxes"], torch.tensor([[20.0, 20.0, 60.0, 40.0]]))
    assert torch.allclose(truth[1]["boxes"][1], torch.tensor([0.0, 0.0, 50.0, 50.0]))
