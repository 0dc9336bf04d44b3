"""Chapter 9's from-scratch code, imported from the notebook, against torchvision, d2l and helpers."""

import pytest
import torch
import torchvision

from helpers import average_precision, boxes
from notebook_code import load_notebook

ch9 = load_notebook("09_object_detection")


def random_boxes(n, gen, max_side=1.0):
    """Random corner boxes: a quarter with zero width or height, some nested, touching or identical."""
    corners = torch.rand(n, 2, generator=gen)
    sides = torch.rand(n, 2, generator=gen) * max_side
    sides[torch.rand(n, generator=gen) < 0.25, int(torch.randint(0, 2, (1,), generator=gen))] = 0
    result = torch.cat((corners, corners + sides), dim=1)
    if n >= 4:
        result[1] = result[0]  # identical
        quarter = (result[0, 2:] - result[0, :2]) / 4
        result[2] = torch.cat((result[0, :2] + quarter, result[0, 2:] - quarter))  # nested
        x2, y1, y2 = result[0, 2:3], result[0, 1:2], result[0, 3:4]
        result[3] = torch.cat((x2, y1, x2 + 0.1, y2))  # touching on the right
    return result


def test_corner_center_round_trip_and_torchvision():
    gen = torch.Generator().manual_seed(0)
    b = random_boxes(1000, gen)
    assert torch.allclose(ch9.center_to_corner(ch9.corner_to_center(b)), b, atol=1e-6)
    assert torch.allclose(ch9.corner_to_center(b), torchvision.ops.box_convert(b, "xyxy", "cxcywh"),
                          atol=1e-6)
    assert torch.allclose(ch9.corner_to_center(b), boxes.corner_to_center(b))
    assert torch.allclose(ch9.center_to_corner(b), boxes.center_to_corner(b))


@pytest.mark.parametrize("seed", range(5))
def test_iou_and_giou_equal_torchvision_including_degenerate_boxes(seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = random_boxes(250, gen), random_boxes(200, gen)  # 50,000 pairs per seed
    ours, theirs = ch9.box_iou(a, b), torchvision.ops.box_iou(a, b)
    defined = ~theirs.isnan()
    assert torch.allclose(ours[defined], theirs[defined], atol=1e-6)
    assert (ours[~defined] == 0).all()
    giou, giou_tv = ch9.generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(a, b)
    defined = ~giou_tv.isnan()
    assert torch.allclose(giou[defined], giou_tv[defined], atol=1e-6)
    assert torch.allclose(giou, boxes.generalized_box_iou(a, b), atol=1e-6)
    assert ((giou >= -1 - 1e-6) & (giou <= 1 + 1e-6)).all()


def test_iou_of_touching_nested_and_disjoint_boxes():
    ref = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    others = torch.tensor([[2.0, 0.0, 3.0, 2.0], [0.5, 0.5, 1.5, 1.5],
                           [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    assert ch9.box_iou(ref, others)[0].tolist() == [0.0, 0.25, 0.0, 1.0]


def test_anchor_boxes_follow_the_formula_and_match_d2l_on_square_images():
    from d2l import torch as d2l

    ours = ch9.anchor_boxes(8, 8, [0.75, 0.5, 0.25], [1, 2, 0.5])
    theirs = d2l.multibox_prior(torch.zeros(1, 3, 8, 8), sizes=[0.75, 0.5, 0.25], ratios=[1, 2, 0.5])[0]
    assert ours.shape == (8 * 8 * 5, 4)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(ours, boxes.anchor_boxes(8, 8, [0.75, 0.5, 0.25], [1, 2, 0.5]), atol=1e-6)
    wide = ch9.anchor_boxes(4, 6, [0.5], [1, 4])  # not square: d2l's width differs, ours is s * sqrt(r)
    sides = ch9.corner_to_center(wide)[:2, 2:]
    assert torch.allclose(sides, torch.tensor([[0.5, 0.5], [1.0, 0.25]]))
    d2l_wide = d2l.multibox_prior(torch.zeros(1, 3, 4, 6), sizes=[0.5], ratios=[1, 4])[0]
    assert not torch.allclose(wide, d2l_wide)


def test_labelling_the_five_cat_dog_anchors_matches_d2l():
    from d2l import torch as d2l

    ground_truth = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
    anchors = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                            [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])
    ours = ch9.multibox_target(anchors, ground_truth[None])
    theirs = d2l.multibox_target(anchors[None], ground_truth[None])
    for o, t in zip(ours, theirs, strict=True):
        assert torch.allclose(o.float(), t.float(), atol=1e-5)
    assert ours[2][0].tolist() == [0, 1, 2, 0, 2]


@pytest.mark.parametrize("seed", range(3))
def test_multibox_target_on_random_batches_equals_helpers_and_d2l(seed):
    from d2l import torch as d2l

    gen = torch.Generator().manual_seed(seed)
    anchors = boxes.anchor_boxes(6, 6, [0.2, 0.4], [1, 2, 0.5])
    labels = torch.full((4, 3, 5), -1.0)
    for i in range(4):
        n = i % 3 + 1
        b = random_boxes(n, gen, max_side=0.5)
        b[:, 2:] += 0.05
        labels[i, :n, 0] = torch.randint(0, 2, (n,), generator=gen).float()
        labels[i, :n, 1:] = b
    ours = ch9.multibox_target(anchors, labels)
    for o, h in zip(ours, boxes.multibox_target(anchors, labels), strict=True):
        assert torch.allclose(o.float(), h.float(), atol=1e-5)
    full = labels[:1, :1]  # d2l cannot skip padding rows: compare on images without padding
    theirs = d2l.multibox_target(anchors[None], full)
    for o, t in zip(ch9.multibox_target(anchors, full), theirs, strict=True):
        assert torch.allclose(o.float(), t.float(), atol=1e-5)


def test_offsets_round_trip():
    gen = torch.Generator().manual_seed(3)
    a, b = random_boxes(500, gen), random_boxes(500, gen)
    a[:, 2:] += 0.01
    b[:, 2:] += 0.01
    assert torch.allclose(ch9.offset_inverse(a, ch9.offset_boxes(a, b)), b, atol=1e-4)
    assert torch.allclose(ch9.offset_boxes(a, b), boxes.offset_boxes(a, b), atol=1e-5)


def test_nms_and_batched_nms_keep_what_torchvision_keeps_on_1000_cases():
    gen = torch.Generator().manual_seed(4)
    for _ in range(1000):
        n = int(torch.randint(0, 30, (1,), generator=gen))
        b = random_boxes(n, gen, max_side=0.5)
        scores = torch.randperm(10 * n + 1, generator=gen)[:n].float() / (10 * n + 1)
        classes = torch.randint(0, 3, (n,), generator=gen)
        t = float(torch.rand(1, generator=gen))
        assert torch.equal(ch9.nms(b, scores, t), torchvision.ops.nms(b, scores, t))
        assert torch.equal(ch9.batched_nms(b, scores, classes, t),
                           torchvision.ops.batched_nms(b, scores, classes, t))


def test_nms_ties_keep_the_earlier_box():
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert ch9.nms(b, torch.tensor([0.5, 0.5]), 0.5).tolist() == [0]


def test_multibox_detection_matches_d2l_and_helpers():
    from d2l import torch as d2l

    anchors = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                            [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
    probs = torch.tensor([[[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]]])
    ours = ch9.multibox_detection(probs, torch.zeros(1, 16), anchors)
    assert torch.allclose(ours, d2l.multibox_detection(probs, torch.zeros(1, 16), anchors[None]), atol=1e-6)
    gen = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(2, 3, 40, generator=gen) * 3, dim=1)
    offsets = torch.randn(2, 160, generator=gen) * 0.5
    random_anchors = random_boxes(40, gen, max_side=0.5)
    random_anchors[:, 2:] += 0.05
    ours = ch9.multibox_detection(probs, offsets, random_anchors, pos_threshold=0.4)
    assert torch.allclose(ours, boxes.multibox_detection(probs, offsets, random_anchors, pos_threshold=0.4),
                          atol=1e-5)


def test_average_precision_matches_helpers_on_random_scenes():
    for seed in range(5):
        preds, targets = ch9.random_scene(10, torch.Generator().manual_seed(seed))
        reference = average_precision.mean_average_precision(preds, targets)
        for label, ap in reference["per_class_50"].items():
            assert abs(ch9.class_average_precision(preds, targets, label, 0.5) - ap) < 1e-9
        for label, ap in reference["per_class"].items():
            thresholds = [0.5 + 0.05 * i for i in range(10)]
            ours = sum(ch9.class_average_precision(preds, targets, label, t) for t in thresholds) / 10
            assert abs(ours - ap) < 1e-9


def test_average_precision_of_the_documented_example():
    pred = [{"boxes": torch.tensor([[258.0, 41.0, 606.0, 285.0]]), "scores": torch.tensor([0.536]),
             "labels": torch.tensor([0])}]
    target = [{"boxes": torch.tensor([[214.0, 41.0, 562.0, 285.0]]), "labels": torch.tensor([0])}]
    aps = [ch9.class_average_precision(pred, target, 0, 0.5 + 0.05 * i) for i in range(10)]
    assert aps == [1.0] * 6 + [0.0] * 4
    assert ch9.average_precision([], []) == 0.0


def test_predictors_and_concat_preds_give_one_row_per_image_in_anchor_order():
    big = ch9.cls_predictor(8, 4, 2)(torch.zeros(2, 8, 6, 6))
    small = ch9.box_predictor(8, 4)(torch.zeros(2, 8, 3, 3))
    assert big.shape == (2, 4 * 3, 6, 6) and small.shape == (2, 16, 3, 3)
    rows = ch9.concat_preds([big, small])
    assert rows.shape == (2, 6 * 6 * 12 + 3 * 3 * 16)
    # cell (row 1, col 2) of the big map: its 12 channels follow 1 * 6 + 2 earlier cells
    assert torch.equal(rows[:, (1 * 6 + 2) * 12:(1 * 6 + 3) * 12], big[:, :, 1, 2])


@pytest.mark.parametrize("negative_ratio", [None, 3.0, 1.0])
def test_ssd_loss_equals_helpers(negative_ratio):
    from helpers import ssd

    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 50, 4, generator=gen)
    offsets = torch.randn(3, 200, generator=gen)
    labels = torch.randint(0, 4, (3, 50), generator=gen) * (torch.rand(3, 50, generator=gen) < 0.1)
    labels[2] = 0  # an image without objects
    target_offsets = torch.randn(3, 200, generator=gen)
    mask = (labels > 0).float().repeat_interleave(4, dim=1)
    ours, parts = ch9.ssd_loss(logits, offsets, labels, target_offsets, mask, negative_ratio)
    theirs, their_parts = ssd.ssd_loss(logits, offsets, labels, target_offsets, mask, negative_ratio)
    assert torch.allclose(ours, theirs) and torch.allclose(parts["box"], their_parts["box"])
