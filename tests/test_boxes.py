"""helpers.boxes against torchvision.ops and d2l 1.0.3: IoU and GIoU, anchors, labelling anchors,
offsets, NMS, detection, RoI pooling and RoI Align; the decisions where we differ (degenerate boxes,
score ties, anchor widths on non-square images); and the error messages for bad input.

Random cases come from seeded generators that mix continuous boxes with boxes on a small integer
grid, so that identical, nested and touching boxes and IoUs exactly at a threshold all occur.
"""

import ast
import inspect
import math

import pytest
import torch
from torchvision import ops

from helpers import boxes as B

CAT_DOG_LABELS = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
CAT_DOG_ANCHORS = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                                [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])


@pytest.fixture(scope="module")
def d2l():
    """d2l 1.0.3, the reference (``make env`` installs it into the test environment)."""
    from d2l import torch as d2l

    return d2l


def sorted_corners(raw: torch.Tensor) -> torch.Tensor:
    """Corner boxes from any four numbers per row: x1 <= x2 and y1 <= y2."""
    low, high = torch.minimum(raw[..., :2], raw[..., 2:]), torch.maximum(raw[..., :2], raw[..., 2:])
    return torch.cat((low, high), dim=-1)


def random_boxes(n: int, gen: torch.Generator, grid: bool = False, scale: float = 10.0) -> torch.Tensor:
    """n boxes in [0, scale]^2: continuous, or on an integer grid; about 1 in 8 has zero area."""
    if grid:
        raw = torch.randint(0, 7, (n, 4), generator=gen).float()
    else:
        raw = torch.rand(n, 4, generator=gen) * scale
    boxes = sorted_corners(raw)
    flat = torch.rand(n, generator=gen) < 0.125
    boxes[flat, 2] = boxes[flat, 0]
    return boxes


def nms_case(case: int, gen: torch.Generator):
    """Boxes (with copies, nested and zero-area ones), distinct scores and a threshold."""
    n = int(torch.randint(0, 30, (1,), generator=gen))
    boxes = random_boxes(n, gen, grid=case % 2 == 0)
    if n and case % 3 == 0:  # identical copies
        boxes = torch.cat((boxes, boxes[: n // 2 + 1]))
    if n and case % 4 == 1:  # nested: shrunk copies
        middle = (boxes[:, :2] + boxes[:, 2:]) / 2
        boxes = torch.cat((boxes, torch.cat((middle - 0.3 * (middle - boxes[:, :2]),
                                             middle + 0.3 * (boxes[:, 2:] - middle)), 1)))
    scores = torch.randperm(len(boxes), generator=gen).float() / max(len(boxes), 1) + 0.01
    threshold = [0.0, 0.3, 0.5, 0.7, 1.0, float(torch.rand(1, generator=gen))][case % 6]
    return boxes, scores, threshold


# --------------------------------------------------------------------------------------------
# Formats, areas, IoU, GIoU
# --------------------------------------------------------------------------------------------


def test_corner_center_round_trip_and_d2l(d2l):
    gen = torch.Generator().manual_seed(0)
    boxes = sorted_corners(torch.rand(3, 5, 4, generator=gen))
    center = B.corner_to_center(boxes)
    assert center.shape == (3, 5, 4)
    assert torch.allclose(B.center_to_corner(center), boxes, atol=1e-7)
    assert torch.equal(center[0], d2l.box_corner_to_center(boxes[0]))
    assert torch.equal(B.center_to_corner(center[1]), d2l.box_center_to_corner(center[1]))
    assert B.corner_to_center(torch.tensor([1.0, 2.0, 5.0, 4.0])).tolist() == [3.0, 3.0, 4.0, 2.0]


def test_box_iou_and_giou_equal_torchvision_where_it_is_defined():
    gen = torch.Generator().manual_seed(1)
    for case in range(20):  # 20 x 60 x 50 = 60,000 pairs
        boxes1 = random_boxes(60, gen, grid=case % 2 == 0)
        boxes2 = random_boxes(50, gen, grid=case % 3 == 0)
        assert torch.allclose(B.box_area(boxes1), ops.box_area(boxes1))
        iou, theirs = B.box_iou(boxes1, boxes2), ops.box_iou(boxes1, boxes2)
        defined = ~theirs.isnan()
        assert torch.allclose(iou[defined], theirs[defined], atol=1e-6, rtol=0)
        assert iou[~defined].eq(0).all()  # both boxes have zero area
        giou, theirs = B.generalized_box_iou(boxes1, boxes2), ops.generalized_box_iou(boxes1, boxes2)
        defined = ~theirs.isnan()
        assert torch.allclose(giou[defined], theirs[defined], atol=1e-6, rtol=0)
        assert giou.ge(-1).all() and giou.le(1).all()
    batch1, batch2 = random_boxes(12, gen).reshape(3, 4, 4), random_boxes(15, gen).reshape(3, 5, 4)
    assert torch.allclose(B.box_iou(batch1, batch2), ops.box_iou(batch1, batch2).nan_to_num(0.0), atol=1e-6)


def test_box_iou_equals_d2l(d2l):
    gen = torch.Generator().manual_seed(2)
    boxes1 = sorted_corners(torch.rand(40, 4, generator=gen))
    boxes2 = sorted_corners(torch.rand(30, 4, generator=gen))
    assert torch.equal(B.box_iou(boxes1, boxes2), d2l.box_iou(boxes1, boxes2))


def test_degenerate_boxes_give_iou_0_not_nan_and_a_documented_giou():
    point, other_point = torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[3.0, 2.0, 3.0, 2.0]])
    segment, square = torch.tensor([[0.0, 1.0, 2.0, 1.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert ops.box_iou(point, point).isnan().all()  # what torchvision does
    assert B.box_iou(point, point).item() == 0 and B.generalized_box_iou(point, point).item() == 0
    assert B.box_iou(point, other_point).item() == 0
    assert B.generalized_box_iou(point, other_point).item() == -1  # enclosing box of area 2, no union
    assert B.generalized_box_iou(point, segment).item() == 0  # one line: no enclosing area, no penalty
    assert B.box_iou(segment, square).item() == 0 == ops.box_iou(segment, square).item()
    assert B.box_iou(square, square).item() == 1


def test_iou_gradient_stays_finite_for_zero_area_boxes():
    boxes = torch.tensor([[1.0, 1, 1, 1], [0, 0, 2, 2], [2, 2, 2, 3]], requires_grad=True)
    (B.box_iou(boxes, boxes).sum() + B.generalized_box_iou(boxes, boxes).sum()).backward()
    assert boxes.grad.isfinite().all()


# --------------------------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "sizes", "ratios"),
    [(1, 1, [0.5], [1]), (2, 3, [0.75, 0.5, 0.25], [1, 2, 0.5]), (4, 4, [0.2, 0.272], [1, 2, 0.5]),
     (3, 5, [0.3], [1, 2, 3, 0.5]), (5, 2, [1.2, 0.1, 0.4, 0.9], [0.7])],
)
def test_anchor_count_layout_and_shapes(height, width, sizes, ratios):
    anchors = B.anchor_boxes(height, width, sizes, ratios)
    per_pixel = len(sizes) + len(ratios) - 1
    assert anchors.shape == (height * width * per_pixel, 4) and anchors.dtype == torch.float32
    center = B.corner_to_center(anchors).reshape(height, width, per_pixel, 4)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    assert torch.allclose(center[..., 0], ((cols + 0.5) / width)[..., None].expand(-1, -1, per_pixel))
    assert torch.allclose(center[..., 1], ((rows + 0.5) / height)[..., None].expand(-1, -1, per_pixel))
    shapes = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    expected_w = torch.tensor([s * math.sqrt(r) for s, r in shapes])
    expected_h = torch.tensor([s / math.sqrt(r) for s, r in shapes])
    assert torch.allclose(center[..., 2], expected_w.expand(height, width, -1))
    assert torch.allclose(center[..., 3], expected_h.expand(height, width, -1))


def test_anchors_equal_d2l_on_square_images(d2l):
    for side, sizes, ratios in [(4, [0.75, 0.5, 0.25], [1, 2, 0.5]), (7, [0.2, 0.272], [1, 2, 0.5])]:
        ours = B.anchor_boxes(side, side, sizes, ratios)
        theirs = d2l.multibox_prior(torch.zeros(1, 3, side, side), sizes, ratios)
        assert theirs.shape == (1, *ours.shape)
        assert torch.allclose(ours, theirs[0], atol=1e-6)


def test_anchor_widths_differ_from_d2l_on_non_square_images(d2l):
    sizes, ratios = [0.75, 0.5, 0.25], [1, 2, 0.5]
    assert B.anchor_boxes(561, 728, sizes, ratios).shape == (2042040, 4)  # the cat/dog photo of d2l
    ours = B.corner_to_center(B.anchor_boxes(6, 9, sizes, ratios))
    theirs = B.corner_to_center(d2l.multibox_prior(torch.zeros(1, 3, 6, 9), sizes, ratios)[0])
    assert torch.allclose(ours[:, [0, 1, 3]], theirs[:, [0, 1, 3]], atol=1e-6)  # centres and heights
    assert torch.allclose(theirs[:, 2], ours[:, 2] * 6 / 9, atol=1e-6)  # d2l: width from the height


# --------------------------------------------------------------------------------------------
# Labelling anchors: assignment, offsets, multibox_target
# --------------------------------------------------------------------------------------------


def random_labels(batch: int, num_boxes: int, gen: torch.Generator, num_classes: int = 3) -> torch.Tensor:
    boxes = sorted_corners(torch.rand(batch, num_boxes, 4, generator=gen))
    classes = torch.randint(0, num_classes, (batch, num_boxes, 1), generator=gen).float()
    return torch.cat((classes, boxes), dim=-1)


def test_assign_anchors_cat_dog_example_and_random_cases_equal_d2l(d2l):
    assigned = B.assign_anchors(CAT_DOG_LABELS[:, 1:], CAT_DOG_ANCHORS)
    assert assigned.tolist() == [-1, 0, 1, -1, 1] and assigned.dtype == torch.long
    gen = torch.Generator().manual_seed(3)
    anchors = B.anchor_boxes(4, 4, [0.75, 0.5, 0.25], [1, 2, 0.5])
    for case in range(30):
        truth = random_labels(1, 1 + case % 6, gen)[0, :, 1:]
        threshold = [0.5, 0.3, 0.7][case % 3]
        expected = d2l.assign_anchor_to_bbox(truth, anchors, "cpu", iou_threshold=threshold)
        assert torch.equal(B.assign_anchors(truth, anchors, threshold), expected)


def test_every_box_gets_an_anchor_even_below_the_threshold():
    anchors = torch.tensor([[0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6], [0.9, 0.9, 1.0, 1.0]])
    truth = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.45, 0.45, 1.0, 1.0]])  # IoUs 0.04 and below
    assert B.assign_anchors(truth, anchors).tolist() == [0, 1, -1]
    assert B.assign_anchors(truth[:0], anchors).tolist() == [-1, -1, -1]


def test_offsets_round_trip_and_equal_d2l(d2l):
    gen = torch.Generator().manual_seed(4)
    anchors = B.anchor_boxes(3, 3, [0.5, 0.25], [1, 2])
    boxes = sorted_corners(torch.rand(len(anchors), 4, generator=gen))
    offsets = B.offset_boxes(anchors, boxes)
    assert torch.allclose(offsets, d2l.offset_boxes(anchors, boxes), atol=1e-6)
    assert torch.allclose(B.offset_inverse(anchors, offsets), boxes, atol=1e-5)
    predictions = torch.randn(len(anchors), 4, generator=gen)
    assert torch.allclose(B.offset_inverse(anchors, predictions), d2l.offset_inverse(anchors, predictions))
    round_trip = B.offset_boxes(anchors, B.offset_inverse(anchors, predictions))
    assert torch.allclose(round_trip, predictions, atol=1e-4)


def test_multibox_target_cat_dog_example_equals_d2l(d2l):
    offsets, mask, classes = B.multibox_target(CAT_DOG_ANCHORS[None], CAT_DOG_LABELS[None])
    assert classes.tolist() == [[0, 1, 2, 0, 2]]
    assert mask.tolist() == [[0] * 4 + [1] * 8 + [0] * 4 + [1] * 4]
    ref = d2l.multibox_target(CAT_DOG_ANCHORS[None], CAT_DOG_LABELS[None])
    assert torch.allclose(offsets, ref[0], atol=1e-6)
    assert torch.equal(mask, ref[1]) and torch.equal(classes, ref[2])


def test_multibox_target_equals_d2l_on_random_batches(d2l):
    gen = torch.Generator().manual_seed(5)
    anchors = B.anchor_boxes(5, 5, [0.75, 0.5, 0.25], [1, 2, 0.5])
    for case in range(12):
        labels = random_labels(4, 1 + case % 5, gen)
        ours, theirs = B.multibox_target(anchors, labels), d2l.multibox_target(anchors[None], labels)
        assert torch.allclose(ours[0], theirs[0], atol=1e-5)
        assert torch.equal(ours[1], theirs[1]) and torch.equal(ours[2], theirs[2])


def test_multibox_target_ignores_padding_rows():
    gen = torch.Generator().manual_seed(6)
    anchors = B.anchor_boxes(4, 4, [0.6, 0.3], [1, 2])
    labels = random_labels(3, 3, gen)
    padding = torch.full((3, 2, 5), -1.0)
    padding[1] = torch.tensor([-1.0, 0.9, 0.9, 0.1, 0.1])  # even a box with x2 < x1 is ignored
    padded = torch.cat((labels, padding), dim=1)
    padded[2, 1:, 0] = -1  # the third image has one real box
    batch = B.multibox_target(anchors, padded)
    for image, real in enumerate([3, 3, 1]):
        alone = B.multibox_target(anchors, labels[image : image + 1, :real])
        for a, b in zip(alone, batch, strict=True):
            assert torch.equal(a[0], b[image])
    none = B.multibox_target(anchors, torch.full((2, 2, 5), -1.0))
    assert none[0].eq(0).all() and none[1].eq(0).all() and none[2].eq(0).all()


# --------------------------------------------------------------------------------------------
# NMS, detection
# --------------------------------------------------------------------------------------------


def test_nms_keeps_the_same_boxes_as_torchvision_on_1000_cases(monkeypatch):
    gen = torch.Generator().manual_seed(7)
    for case in range(1000):
        boxes, scores, threshold = nms_case(case, gen)
        # every fifth case without the IoU table, as for more than 1,024 boxes
        monkeypatch.setattr(B, "_TABLE_LIMIT", 0 if case % 5 == 0 else 1024)
        ours = B.nms(boxes, scores, threshold)
        assert ours.dtype == torch.int64
        assert torch.equal(ours, ops.nms(boxes, scores, threshold)), (case, threshold)


def test_batched_nms_keeps_the_same_boxes_as_torchvision():
    gen = torch.Generator().manual_seed(8)
    for case in range(1000):  # few boxes: torchvision offsets the boxes of each class
        boxes, scores, threshold = nms_case(case, gen)
        classes = torch.randint(0, 3, (len(boxes),), generator=gen)
        assert torch.equal(B.batched_nms(boxes, scores, classes, threshold),
                           ops.batched_nms(boxes, scores, classes, threshold)), case
    for num_boxes in (1010, 1100):  # over 1,000 boxes torchvision runs nms once per class
        boxes = random_boxes(num_boxes, gen, grid=num_boxes == 1010, scale=30)
        scores = torch.randperm(num_boxes, generator=gen).float()
        classes = torch.randint(0, 4, (num_boxes,), generator=gen)
        ours = B.batched_nms(boxes, scores, classes, 0.5)
        assert torch.equal(ours, ops.batched_nms(boxes, scores, classes, 0.5))


def test_nms_strictly_greater_than_the_threshold_and_edge_cases():
    boxes = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 1], [2, 0, 4, 2]])  # IoU 0.5; touching
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert B.nms(boxes, scores, 0.5).tolist() == [0, 1, 2] == ops.nms(boxes, scores, 0.5).tolist()
    assert B.nms(boxes, scores, 0.49).tolist() == [0, 2] == ops.nms(boxes, scores, 0.49).tolist()
    assert B.nms(boxes, scores, 0.0).tolist() == [0, 2]  # touching boxes do not overlap
    assert B.nms(boxes[:0], scores[:0], 0.5).tolist() == []
    points = torch.tensor([[1.0, 1.0, 1.0, 1.0]] * 2)
    assert B.nms(points, torch.tensor([0.2, 0.3]), 0.0).tolist() == [1, 0]  # zero area: no overlap


def test_nms_ties_go_to_the_smaller_index():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3 + [[5.0, 5.0, 6.0, 6.0]] * 2)
    scores = torch.tensor([0.5, 0.5, 0.5, 0.7, 0.7])
    assert B.nms(boxes, scores, 0.5).tolist() == [3, 0]  # stable sort: the first of equal scores wins
    assert B.batched_nms(boxes, scores, torch.tensor([0, 1, 1, 0, 0]), 0.5).tolist() == [3, 0, 1]
    theirs = ops.nms(boxes, scores, 0.5)  # torchvision keeps one of each group too, maybe another one
    assert len(theirs) == 2 and theirs[0].item() in (3, 4) and theirs[1].item() in (0, 1, 2)


def cat_dog_detection_inputs():
    anchors = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95],
                            [0.15, 0.3, 0.62, 0.91], [0.55, 0.2, 0.9, 0.88]])
    cls_probs = torch.tensor([[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
    return cls_probs[None], torch.zeros(1, 16), anchors


def test_multibox_detection_cat_dog_example_equals_d2l(d2l):
    cls_probs, offset_preds, anchors = cat_dog_detection_inputs()
    ours = B.multibox_detection(cls_probs, offset_preds, anchors, nms_threshold=0.5)
    assert torch.allclose(ours[0, :, :2], torch.tensor([[0, 0.9], [1, 0.9], [-1, 0.8], [-1, 0.7]]))
    theirs = d2l.multibox_detection(cls_probs, offset_preds, anchors[None], nms_threshold=0.5)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, B.multibox_detection(cls_probs, offset_preds, anchors[None], class_aware=True))
    detections = B.detections_to_list(ours)
    assert len(detections) == 1 and detections[0]["labels"].tolist() == [0, 1]
    assert detections[0]["scores"].tolist() == pytest.approx([0.9, 0.9])
    assert torch.allclose(detections[0]["boxes"], anchors[[0, 3]])


def test_multibox_detection_equals_d2l_on_random_predictions(d2l):
    gen = torch.Generator().manual_seed(9)
    anchors = B.anchor_boxes(4, 4, [0.6, 0.3], [1, 2, 0.5])
    for case in range(6):
        cls_probs = torch.softmax(3 * torch.randn(2, 4, len(anchors), generator=gen), dim=1)
        offset_preds = 0.5 * torch.randn(2, len(anchors) * 4, generator=gen)
        nms_threshold, pos_threshold = [0.3, 0.5, 0.7][case % 3], [0.009999999, 0.2][case % 2]
        ours = B.multibox_detection(cls_probs, offset_preds, anchors, nms_threshold, pos_threshold)
        theirs = d2l.multibox_detection(cls_probs, offset_preds, anchors[None], nms_threshold, pos_threshold)
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_class_aware_detection_keeps_overlapping_boxes_of_other_classes():
    gen = torch.Generator().manual_seed(10)
    anchors = B.anchor_boxes(3, 3, [0.6, 0.4], [1, 2])
    cls_probs = torch.softmax(2 * torch.randn(2, 3, len(anchors), generator=gen), dim=1)
    offset_preds = 0.3 * torch.randn(2, len(anchors) * 4, generator=gen)
    aware = B.multibox_detection(cls_probs, offset_preds, anchors, 0.5, 0.0, class_aware=True)
    plain = B.multibox_detection(cls_probs, offset_preds, anchors, 0.5, 0.0)
    assert (aware[..., 0] >= 0).sum() > (plain[..., 0] >= 0).sum()
    for image in range(2):
        score, label = cls_probs[image, 1:].max(dim=0)
        boxes = B.offset_inverse(anchors, offset_preds[image].reshape(-1, 4))
        keep = ops.batched_nms(boxes, score, label, 0.5)
        assert torch.equal(aware[image, : len(keep), 0].long(), label[keep])
        assert torch.allclose(aware[image, : len(keep), 2:], boxes[keep])
        assert aware[image, len(keep) :, 0].eq(-1).all()


# --------------------------------------------------------------------------------------------
# RoI pooling and RoI Align
# --------------------------------------------------------------------------------------------


def random_rois(count: int, gen: torch.Generator, batch: int, half_grid: bool = False) -> torch.Tensor:
    """RoIs [index, x1, y1, x2, y2] around a 9 x 11 map: inside, outside, negative, degenerate, flipped."""
    index = torch.randint(0, batch, (count, 1), generator=gen).float()
    if half_grid:  # x.5 corners test the rounding of halves (away from zero, also below 0)
        corners = torch.randint(-12, 30, (count, 4), generator=gen).float() / 2
    else:
        corners = torch.rand(count, 4, generator=gen) * 24 - 6
    corners[: count // 8, 2] = corners[: count // 8, 0]  # zero width
    corners[count // 8 : count // 4, 3] = corners[count // 8 : count // 4, 1]  # zero height
    return torch.cat((index, corners), dim=1)


def test_roi_pool_d2l_golden_example():
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = B.roi_pool(features, [[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], (2, 2), 0.1)
    assert pooled.tolist() == [[[[5.0, 6.0], [9.0, 10.0]]], [[[9.0, 11.0], [13.0, 15.0]]]]


@pytest.mark.parametrize("half_grid", [False, True])
def test_roi_pool_equals_torchvision_on_random_rois(half_grid):
    gen = torch.Generator().manual_seed(11)
    features = torch.randn(3, 4, 9, 11, generator=gen)
    rois = random_rois(1200, gen, batch=3, half_grid=half_grid)
    for output_size, scale in [((2, 2), 1.0), ((3, 2), 0.5), (4, 0.37), ((1, 5), 2.0)]:
        ours = B.roi_pool(features, rois, output_size, scale)
        theirs = ops.roi_pool(features, rois, output_size, scale)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (output_size, scale)


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_equals_torchvision_on_random_rois(aligned):
    gen = torch.Generator().manual_seed(12)
    features = torch.randn(3, 4, 9, 11, generator=gen)
    rois = random_rois(1200, gen, batch=3)
    settings = [((2, 3), 1.0, -1), ((2, 2), 0.5, 0), (3, 0.37, 2), ((1, 4), 1.5, 1)]
    for output_size, scale, sampling_ratio in settings:
        if aligned and sampling_ratio <= 0:  # torchvision fails on x2 < x1 in this mode
            rois = torch.cat((rois[:, :1], sorted_corners(rois[:, 1:])), dim=1)
        ours = B.roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
        theirs = ops.roi_align(features, rois, output_size, scale, sampling_ratio, aligned)
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (output_size, scale, sampling_ratio)


def test_roi_ops_accept_a_list_of_boxes_per_image_and_pass_gradients():
    gen = torch.Generator().manual_seed(13)
    features = torch.randn(2, 3, 8, 8, generator=gen, requires_grad=True)
    per_image = [sorted_corners(torch.rand(n, 4, generator=gen) * 8) for n in (3, 2)]
    for ours, theirs in [(B.roi_pool, ops.roi_pool), (B.roi_align, ops.roi_align)]:
        assert torch.allclose(ours(features, per_image, 2), theirs(features, per_image, 2), atol=1e-5)
    B.roi_align(features, per_image, (2, 2), sampling_ratio=2).sum().backward()
    assert features.grad.abs().sum() > 0
    assert B.roi_pool(features, torch.zeros(0, 5), 2).shape == (0, 3, 2, 2)


# --------------------------------------------------------------------------------------------
# Bad input, device, imports
# --------------------------------------------------------------------------------------------


MAP = torch.zeros(1, 1, 4, 4)  # a feature map for the RoI errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: B.box_iou(torch.zeros(3, 5), torch.zeros(2, 4)), r"4 numbers \[x1, y1, x2, y2\].*\(3, 5\)"),
        (lambda: B.box_iou(torch.zeros(4), torch.zeros(2, 4)), r"shape \(N, 4\).*reshape\(-1, 4\)"),
        (lambda: B.box_iou(torch.tensor([[2.0, 0, 1, 1]]), torch.zeros(1, 4)), r"boxes1\[0\].*x2 < x1"),
        (lambda: B.box_iou([[0, 0, 1, 1]], torch.zeros(1, 4)), "torch.tensor"),
        (lambda: B.box_area(torch.tensor([0, 0, 1, 1])), "floating-point.*float()"),
        (lambda: B.generalized_box_iou(torch.zeros(1, 4), torch.tensor([[0.0, 3, 1, 1]])), r"boxes2\[0\]"),
        (lambda: B.anchor_boxes(4, 4, [0.5, 0], [1]), "sizes must be a number > 0"),
        (lambda: B.anchor_boxes(4, 4, [0.5], []), "ratios must be a non-empty list"),
        (lambda: B.anchor_boxes(0, 4, [0.5], [1]), "height must be a positive int"),
        (lambda: B.assign_anchors(torch.zeros(1, 4), CAT_DOG_ANCHORS, 1.5), r"threshold must be .*\[0, 1\]"),
        (lambda: B.multibox_target(CAT_DOG_ANCHORS, CAT_DOG_LABELS),
         r"\(batch, boxes per image, 5\).*labels\[None\]"),
        (lambda: B.multibox_target(CAT_DOG_ANCHORS, CAT_DOG_LABELS[None, :, 1:]), r"5 numbers \[class"),
        (lambda: B.multibox_target(CAT_DOG_ANCHORS[None, None], CAT_DOG_LABELS[None]), r"\(A, 4\) or \(1, A"),
        (lambda: B.multibox_target(CAT_DOG_ANCHORS, torch.tensor([[[0, 0.5, 0, 0.1, 1]]])), "padding rows"),
        (lambda: B.nms(torch.zeros(3, 4), torch.zeros(2), 0.5), "one score per box"),
        (lambda: B.nms(torch.zeros(3, 4), torch.zeros(3), -0.1), "iou_threshold"),
        (lambda: B.batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), 0.5), "one class per box"),
        (lambda: B.multibox_detection(torch.zeros(1, 3, 4), torch.zeros(1, 12), torch.zeros(4, 4)),
         r"offset_preds must have shape \(batch, anchors \* 4\) = \(1, 16\)"),
        (lambda: B.multibox_detection(torch.zeros(3, 4), torch.zeros(1, 16), torch.zeros(4, 4)),
         r"\(batch, classes \+ 1, anchors\) with the background first"),
        (lambda: B.multibox_detection(torch.zeros(1, 3, 5), torch.zeros(1, 16), torch.zeros(4, 4)),
         "cls_probs has 5 anchors .* there are 4"),
        (lambda: B.roi_pool(MAP, torch.tensor([[1.0, 0, 0, 1, 1]]), 2), r"in \[0, 0\]"),
        (lambda: B.roi_pool(MAP, torch.zeros(2, 4), 2), r"\(K, 5\)"),
        (lambda: B.roi_pool(MAP[0], torch.zeros(2, 5), 2), r"\(N, C, H, W\)"),
        (lambda: B.roi_pool(MAP.long(), torch.zeros(2, 5), 2), "float()"),
        (lambda: B.roi_align(MAP, torch.zeros(2, 5), (2, 0)), "output_size"),
        (lambda: B.roi_align(MAP, torch.zeros(2, 5), 2, spatial_scale=0), "spatial_scale"),
        (lambda: B.roi_align(MAP, [torch.zeros(2, 5)], 2), r"rois\[0\] must have shape \(L, 4\)"),
        (lambda: B.roi_align(MAP, torch.zeros(2, 5), 2, sampling_ratio=1.5), "sampling_ratio must be an int"),
        (lambda: B.detections_to_list(torch.zeros(1, 4, 5)), r"6 numbers \[class, score"),
    ],
)
def test_bad_input_is_explained(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_results_on_cuda_equal_the_cpu_ones():
    gen = torch.Generator().manual_seed(14)
    anchors, labels = B.anchor_boxes(4, 4, [0.6, 0.3], [1, 2]), random_labels(3, 2, gen)
    cpu = B.multibox_target(anchors, labels)
    assert B.anchor_boxes(4, 4, [0.6, 0.3], [1, 2], device="cuda").device.type == "cuda"
    for a, b in zip(cpu, B.multibox_target(anchors.cuda(), labels.cuda()), strict=True):
        assert b.device.type == "cuda" and torch.allclose(a, b.cpu(), atol=1e-6)
    boxes, scores, _ = nms_case(1, gen)
    assert torch.equal(B.nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), B.nms(boxes, scores, 0.5))
    cls_probs, offset_preds, det_anchors = cat_dog_detection_inputs()
    on_gpu = B.multibox_detection(cls_probs.cuda(), offset_preds.cuda(), det_anchors.cuda())
    assert torch.allclose(on_gpu.cpu(), B.multibox_detection(cls_probs, offset_preds, det_anchors))
    features, rois = torch.randn(2, 3, 9, 11, generator=gen), random_rois(50, gen, batch=2)
    for op in (B.roi_pool, B.roi_align):
        assert torch.allclose(op(features.cuda(), rois.cuda(), 2).cpu(), op(features, rois, 2), atol=1e-5)


def test_module_imports_only_torch_and_the_standard_library():
    tree = ast.parse(inspect.getsource(B))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "collections", "functools", "math", "numbers", "torch"}, imported
