"""Boxes for object detection (chapter 9): IoU, anchors, labelling anchors, NMS and RoI pooling.

Conventions, shared with ``torchvision.ops``:

- A box is ``[x1, y1, x2, y2]``: its upper-left and lower-right corners in continuous coordinates
  (no ``+ 1``), so ``x2 - x1`` is its width. The centre form is ``(cx, cy, w, h)``.
- Anchors live in normalised image coordinates, ``[0, 1]`` along each side, like d2l's; ground-truth
  boxes given to :func:`multibox_target` must use the same units.
- Everything is pure torch and vectorised over boxes and anchors (a loop runs only over the images
  of a batch, the ground-truth boxes of an image, or the boxes NMS keeps), and every tensor is
  created on the device of the input.

Each function is checked against ``torchvision.ops`` or d2l 1.0.3 in ``tests/test_boxes.py``.
Decisions a notebook must know:

- **Degenerate boxes.** :func:`box_iou` returns 0, not torchvision's ``nan``, where the union is 0
  (two zero-area boxes); :func:`generalized_box_iou` then gives ``0 - C / C = -1`` when their
  enclosing box has an area ``C > 0`` and 0 when it has none. Everywhere else both equal
  torchvision's. Boxes with ``x2 < x1`` or ``y2 < y1`` are refused with a ``ValueError``.
- **Ties in NMS.** :func:`nms` sorts the scores with a *stable* sort, so of two boxes with the same
  score the one with the smaller index is visited first and wins; torchvision's sort is not stable
  and may keep either. Without ties the keep lists are identical.
- **Anchor widths.** :func:`anchor_boxes` follows the formula of d2l's text (an anchor is
  ``w s sqrt(r)`` pixels wide for an image ``w`` pixels wide); d2l 1.0.3's ``multibox_prior``
  computes the width from the image *height*. They agree on square images only.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import torch

__all__ = [
    "anchor_boxes",
    "assign_anchors",
    "batched_nms",
    "box_area",
    "box_iou",
    "center_to_corner",
    "corner_to_center",
    "detections_to_list",
    "generalized_box_iou",
    "multibox_detection",
    "multibox_target",
    "nms",
    "offset_boxes",
    "offset_inverse",
    "roi_align",
    "roi_pool",
]

XY_SCALE = 10.0  # offsets of the centre are multiplied by 1 / sigma_xy = 1 / 0.1 (as in d2l and SSD)
WH_SCALE = 5.0  # log-ratios of width and height are multiplied by 1 / sigma_wh = 1 / 0.2


# --------------------------------------------------------------------------------------------
# Input checks: each raises a ValueError that says what to pass instead
# --------------------------------------------------------------------------------------------


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def _check_last_dim(boxes, name: str, size: int = 4, what: str = "[x1, y1, x2, y2]") -> None:
    """Refuse anything that is not a tensor whose last dimension holds ``size`` numbers."""
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (..., {size}), got {type(boxes).__name__}; "
                         f"wrap it with torch.tensor(...).")
    if boxes.dim() == 0 or boxes.shape[-1] != size:
        raise ValueError(f"{name} must have {size} numbers {what} in its last dimension, "
                         f"got shape {_shape(boxes)}.")


def _check_boxes(boxes, name: str, min_rank: int = 2) -> None:
    """Check a tensor of corner boxes (..., N, 4) with x1 <= x2 and y1 <= y2."""
    _check_last_dim(boxes, name)
    if boxes.dim() < min_rank:
        raise ValueError(f"{name} must have shape (N, 4) (a row per box), got shape {_shape(boxes)}; "
                         f"use {name}.reshape(-1, 4) for a single box.")
    if not boxes.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {boxes.dtype}; use {name}.float().")
    bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if bad.any():
        row = bad.nonzero()[0].tolist()
        where = f"{name}[{', '.join(map(str, row))}]" if row else name
        raise ValueError(
            f"{where} = {boxes[tuple(row)].tolist()} has x2 < x1 or y2 < y1: boxes must be corners "
            "[x1, y1, x2, y2] with x1 <= x2 and y1 <= y2 (convert (cx, cy, w, h) boxes with "
            "center_to_corner).")


def _check_threshold(value, name: str) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")


def _squeeze_anchors(anchors, name: str = "anchors") -> torch.Tensor:
    """Accept anchors of shape (A, 4) or d2l's (1, A, 4); return (A, 4)."""
    _check_last_dim(anchors, name)
    if anchors.dim() == 3 and anchors.shape[0] == 1:
        anchors = anchors[0]
    if anchors.dim() != 2:
        raise ValueError(f"{name} must have shape (A, 4) or (1, A, 4), got {_shape(anchors)}.")
    _check_boxes(anchors, name)
    return anchors


# --------------------------------------------------------------------------------------------
# Box formats, areas, IoU
# --------------------------------------------------------------------------------------------


def corner_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """Turn corner boxes ``(..., 4)`` ``[x1, y1, x2, y2]`` into ``(cx, cy, w, h)``.

    The centre form is what anchor offsets are measured in (:func:`offset_boxes`).
    """
    _check_last_dim(boxes, "boxes")
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """Turn centre boxes ``(..., 4)`` ``(cx, cy, w, h)`` into corners ``[x1, y1, x2, y2]``.

    The inverse of :func:`corner_to_center` (up to rounding).
    """
    _check_last_dim(boxes, "boxes", what="(cx, cy, w, h)")
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area ``(x2 - x1) (y2 - y1)`` of each box ``(..., 4)``, shape ``(...)``.

    Boxes with ``x2 < x1`` or ``y2 < y1`` are refused: their "area" would be negative or a product of
    two negative sides.
    """
    _check_boxes(boxes, "boxes", min_rank=1)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _inter_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise intersection and union areas, (..., N, M), with torchvision's order of operations.

    Working on the four coordinates as separate (..., N, 1) and (..., 1, M) tensors is several
    times faster than broadcasting (..., N, 1, 2) against (..., 1, M, 2) pairs of corners.
    """
    x1, y1, x2, y2 = boxes1[..., :, None, :].unbind(-1)
    u1, v1, u2, v2 = boxes2[..., None, :, :].unbind(-1)
    width = (torch.min(x2, u2) - torch.max(x1, u1)).clamp(min=0)
    height = (torch.min(y2, v2) - torch.max(y1, v1)).clamp(min=0)
    inter = width * height
    union = _area(boxes1)[..., :, None] + _area(boxes2)[..., None, :] - inter
    return inter, union


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 0 where the denominator is 0 (there the numerator is 0 too).

    Dividing by 1 instead of masking a ``nan`` afterwards keeps the gradient finite.
    """
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    inter, union = _inter_union(boxes1, boxes2)
    return _safe_ratio(inter, union)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in ``boxes1`` (N, 4) with every box in ``boxes2`` (M, 4).

    Returns (N, M); batches ``(..., N, 4)`` and ``(..., M, 4)`` give ``(..., N, M)``. IoU measures how
    well a prediction or an anchor covers a box: 1 for identical boxes, 0 for disjoint ones.

    Equal to ``torchvision.ops.box_iou`` except where the union is 0 (two zero-area boxes):
    torchvision returns ``0 / 0 = nan`` there, this function returns 0 (they do not overlap).
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return _iou(boxes1, boxes2)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU ``IoU - (C - union) / C`` (N, M), C the area of the smallest enclosing box.

    Unlike IoU it still says how far apart two disjoint boxes are (it falls towards -1), which makes
    it usable as a loss. Equal to ``torchvision.ops.generalized_box_iou`` wherever torchvision's is
    defined; where it is ``nan`` (two zero-area boxes) this function gives ``0 - C / C = -1`` if the
    enclosing box has an area ``C > 0``, and 0 if ``C = 0`` (both boxes on one line: no penalty).
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1[..., :, None, :].unbind(-1)
    u1, v1, u2, v2 = boxes2[..., None, :, :].unbind(-1)
    width = (torch.max(x2, u2) - torch.min(x1, u1)).clamp(min=0)
    height = (torch.max(y2, v2) - torch.min(y1, v1)).clamp(min=0)
    enclosing = width * height
    return _safe_ratio(inter, union) - _safe_ratio(enclosing - union, enclosing)


# --------------------------------------------------------------------------------------------
# Anchor boxes and labelling them with ground truth
# --------------------------------------------------------------------------------------------


def _positive_numbers(values, name: str) -> list[float]:
    if hasattr(values, "tolist"):  # a tensor or a NumPy array
        values = values.tolist()
    if isinstance(values, (int, float)):
        values = [values]
    if not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {values!r}.")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"every one of {name} must be a number > 0, got {list(values)!r}.")
    return [float(v) for v in values]


def anchor_boxes(height: int, width: int, sizes, ratios, device=None) -> torch.Tensor:
    """Anchors centred on every pixel of a ``height`` x ``width`` map, ``(height * width * (n + m - 1), 4)``.

    For ``n`` sizes and ``m`` ratios each pixel gets the anchors (s_i, r_1) for every size, then
    (s_1, r_j) for j >= 2: n + m - 1 shapes instead of all n m, as in SSD and d2l. An anchor of size
    s and ratio r is ``w s sqrt(r)`` pixels wide and ``h s / sqrt(r)`` high on a ``w`` x ``h`` image,
    so in normalised coordinates its sides are ``s sqrt(r)`` and ``s / sqrt(r)``; its centre is
    ``((col + 0.5) / width, (row + 0.5) / height)``. Rows are pixels in row-major order.

    d2l 1.0.3's ``multibox_prior`` computes the width from the image height instead
    (``height * s * sqrt(r) / width``), which keeps ratio-1 anchors square in pixels; both agree on
    square images. Sizes above 1 (anchors larger than the image) are allowed.
    """
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int (pixels of the feature map), got {value!r}.")
    sizes = torch.tensor(_positive_numbers(sizes, "sizes"), device=device)
    ratios = torch.tensor(_positive_numbers(ratios, "ratios"), device=device)
    shape_sizes = torch.cat((sizes, sizes[:1].expand(len(ratios) - 1)))
    shape_ratios = torch.cat((ratios[:1].expand(len(sizes)), ratios[1:]))
    half_w = shape_sizes * shape_ratios.sqrt() / 2
    half_h = shape_sizes / shape_ratios.sqrt() / 2
    center_y = (torch.arange(height, device=device) + 0.5) / height
    center_x = (torch.arange(width, device=device) + 0.5) / width
    cy, cx = torch.meshgrid(center_y, center_x, indexing="ij")
    centers = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
    half_sides = torch.stack((-half_w, -half_h, half_w, half_h), dim=-1)
    return (centers + half_sides).reshape(-1, 4)


def _assign(iou: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The greedy assignment of :func:`assign_anchors` for a batch: iou (B, A, G), valid (B, G) -> (B, A)."""
    batch, num_anchors, num_boxes = iou.shape
    assigned = torch.full((batch, num_anchors), -1, dtype=torch.long, device=iou.device)
    if num_boxes == 0 or num_anchors == 0:
        return assigned
    free = iou.masked_fill(~valid[:, None, :], -1.0)  # padding rows are never chosen
    best_iou, best_box = free.max(dim=2)
    assigned = torch.where(best_iou >= iou_threshold, best_box, assigned)
    # free: the IoUs still available; taken anchors (rows) and boxes (columns) become -1
    images = torch.arange(batch, device=iou.device)
    for _ in range(num_boxes):  # one box per image per round: the largest IoU left
        flat = free.flatten(1).argmax(dim=1)  # first maximum, row-major, like d2l
        anchor, box = flat // num_boxes, flat % num_boxes
        found = free[images, anchor, box] >= 0
        image, anchor, box = images[found], anchor[found], box[found]
        assigned[image, anchor] = box
        free[image, anchor, :] = -1.0
        free[image, :, box] = -1.0
    return assigned


def assign_anchors(ground_truth: torch.Tensor, anchors: torch.Tensor,
                   iou_threshold: float = 0.5) -> torch.Tensor:
    """Index of the ground-truth box (G, 4) assigned to each anchor (A, 4), or -1: a LongTensor (A,).

    Greedy, as d2l's ``assign_anchor_to_bbox``: take the largest entry of the anchor-box IoU matrix,
    assign that anchor to that box, discard its row and column, and repeat until every box has an
    anchor (so every object gets at least one anchor to learn from, however poorly anchors fit it).
    Then every anchor still unassigned whose best IoU is ``>= iou_threshold`` gets its best box.
    Ties go to the smaller anchor index, then the smaller box index.
    """
    _check_boxes(ground_truth, "ground_truth")
    anchors = _squeeze_anchors(anchors)
    _check_threshold(iou_threshold, "iou_threshold")
    if ground_truth.dim() != 2:
        raise ValueError(f"ground_truth must have shape (G, 4), got {_shape(ground_truth)}.")
    valid = torch.ones(1, ground_truth.shape[0], dtype=torch.bool, device=anchors.device)
    return _assign(_iou(anchors, ground_truth)[None], valid, iou_threshold)[0]


def offset_boxes(anchors: torch.Tensor, assigned_boxes: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Offsets (..., 4) that move each anchor onto its assigned box: what the detector learns to predict.

    ``(10 (cx_b - cx_a) / w_a, 10 (cy_b - cy_a) / h_a, 5 log(eps + w_b / w_a), 5 log(eps + h_b / h_a))``:
    centre shifts in units of the anchor's size and log-ratios of the sides, scaled (sigma 0.1 and
    0.2, as d2l and SSD) so that typical offsets are of order 1. ``eps`` keeps the log finite for a
    zero-width box. :func:`offset_inverse` undoes it.
    """
    _check_last_dim(anchors, "anchors")
    _check_last_dim(assigned_boxes, "assigned_boxes")
    anchor, box = corner_to_center(anchors), corner_to_center(assigned_boxes)
    xy = XY_SCALE * (box[..., :2] - anchor[..., :2]) / anchor[..., 2:]
    wh = WH_SCALE * torch.log(eps + box[..., 2:] / anchor[..., 2:])
    return torch.cat((xy, wh), dim=-1)


def offset_inverse(anchors: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Corner boxes (..., 4) from applying ``offsets`` (..., 4) to ``anchors``: :func:`offset_boxes` undone.

    This is how a detector's predicted offsets become boxes (:func:`multibox_detection`).
    """
    _check_last_dim(anchors, "anchors")
    _check_last_dim(offsets, "offsets", what="(dx, dy, dw, dh)")
    anchor = corner_to_center(anchors)
    xy = offsets[..., :2] * anchor[..., 2:] / XY_SCALE + anchor[..., :2]
    wh = torch.exp(offsets[..., 2:] / WH_SCALE) * anchor[..., 2:]
    return center_to_corner(torch.cat((xy, wh), dim=-1))


def _check_labels(labels, anchors: torch.Tensor) -> None:
    _check_last_dim(labels, "labels", size=5, what="[class, x1, y1, x2, y2]")
    if labels.dim() != 3:
        raise ValueError(f"labels must have shape (batch, boxes per image, 5), got {_shape(labels)}; "
                         "for one image use labels[None].")
    if not labels.is_floating_point():
        raise ValueError(f"labels must be a floating-point tensor, got {labels.dtype}; use labels.float().")
    if labels.device != anchors.device:
        raise ValueError(f"labels are on {labels.device} but anchors on {anchors.device}; move one of them.")
    boxes, real = labels[..., 1:], labels[..., 0] >= 0
    bad = real & ((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1]))
    if bad.any():
        image, row = bad.nonzero()[0].tolist()
        raise ValueError(f"labels[{image}, {row}] = {labels[image, row].tolist()} has x2 < x1 or y2 < y1: "
                         "rows must be [class, x1, y1, x2, y2] (padding rows need a class < 0).")


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor, iou_threshold: float = 0.5):
    """Training targets for every anchor of every image, from the ground truth ``labels``.

    ``anchors`` (A, 4) or (1, A, 4); ``labels`` (B, G, 5), rows ``[class, x1, y1, x2, y2]`` in the
    anchors' units, padding rows with a class < 0 (ignored). Anchors are assigned to boxes with
    :func:`assign_anchors`. Returns, as d2l's ``multibox_target``:

    - ``bbox_offset`` (B, A * 4): :func:`offset_boxes` of each assigned anchor, 0 elsewhere;
    - ``bbox_mask`` (B, A * 4): 1 for the four offsets of an assigned anchor, 0 for background, so
      the box loss counts only anchors that cover an object;
    - ``class_labels`` (B, A) long: 0 for background, ``c + 1`` for an anchor assigned to class c.

    All images are labelled at once (one loop round per ground-truth row), so labelling a whole
    data set before training takes a fraction of a second.
    """
    anchors = _squeeze_anchors(anchors)
    _check_labels(labels, anchors)
    _check_threshold(iou_threshold, "iou_threshold")
    classes, boxes = labels[..., 0], labels[..., 1:]
    assigned = _assign(_iou(anchors, boxes), classes >= 0, iou_threshold)  # IoU (B, A, G)
    image, anchor = (assigned >= 0).nonzero(as_tuple=True)  # only the few positive anchors
    box = assigned[image, anchor]
    offsets = torch.zeros(*assigned.shape, 4, dtype=boxes.dtype, device=boxes.device)
    offsets[image, anchor] = offset_boxes(anchors[anchor], boxes[image, box])
    mask = torch.zeros_like(offsets)
    mask[image, anchor] = 1.0
    class_labels = torch.zeros_like(assigned)
    class_labels[image, anchor] = classes[image, box].long() + 1
    return offsets.flatten(1), mask.flatten(1), class_labels


# --------------------------------------------------------------------------------------------
# Non-maximum suppression and detection
# --------------------------------------------------------------------------------------------


def _above(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """``values > threshold`` decided as torchvision's C++ kernels do, in double precision.

    A float32 tensor compared with a Python float compares with the threshold rounded to float32,
    which differs when ``values`` equals that rounded number exactly; adjusting the comparison in
    Python avoids needing float64 on the device.
    """
    rounded = _rounded(float(threshold), values.dtype)
    return values >= rounded if rounded > threshold else values > rounded


@functools.lru_cache(maxsize=64)
def _rounded(threshold: float, dtype: torch.dtype) -> float:
    return torch.tensor(threshold, dtype=dtype).item()


def _check_nms_input(boxes, scores, iou_threshold, classes=None) -> None:
    _check_boxes(boxes, "boxes")
    if boxes.dim() != 2:
        raise ValueError(f"boxes must have shape (N, 4), got {_shape(boxes)}.")
    if not isinstance(scores, torch.Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape (N,), one score per box: got boxes {_shape(boxes)} "
                         f"and scores {_shape(scores)}.")
    if classes is not None and (not isinstance(classes, torch.Tensor) or classes.shape != boxes.shape[:1]):
        raise ValueError(f"classes must have shape (N,), one class per box: got boxes {_shape(boxes)} "
                         f"and classes {_shape(classes)}.")
    _check_threshold(iou_threshold, "iou_threshold")


_TABLE_LIMIT = 1024  # up to this many boxes NMS computes all pairwise IoUs at once (N^2 memory)


def _greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, classes=None):
    """Visit boxes by decreasing score; keep each one not yet suppressed and suppress the rest it overlaps.

    For a few boxes one IoU matrix is cheaper than a small IoU computation per kept box; for
    thousands (the anchors of a detector) the matrix would cost N^2, so each round computes only
    the IoU of the kept box with the boxes still in play.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    classes = None if classes is None else classes[order]

    def overlaps(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:  # bool (len(rows), len(cols))
        over = _above(_iou(boxes[rows], boxes[cols]), iou_threshold)
        if classes is not None:
            over &= classes[rows, None] == classes[None, cols]
        return over

    remaining = torch.arange(len(order), device=boxes.device)
    table = overlaps(remaining, remaining) if len(order) <= _TABLE_LIMIT else None
    keep = []
    while remaining.numel() > 0:  # one round per kept box
        best, rest = remaining[:1], remaining[1:]
        keep.append(best)
        over = table[best[0], rest] if table is not None else overlaps(best, rest)[0]
        remaining = rest[~over]
    kept = torch.cat(keep) if keep else remaining
    return order[kept]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Non-maximum suppression: indices (int64) of the boxes kept, by decreasing score.

    Greedy: the highest-scoring box is kept and every box whose IoU with it is strictly greater than
    ``iou_threshold`` is dropped; repeat with the best box left. This leaves one detection per object
    instead of a cluster of near-duplicates. Identical keep lists to ``torchvision.ops.nms`` when the
    scores have no ties. With ties the sort is stable: the box with the smaller index comes first
    (and wins); torchvision's sort is not stable and may keep either. Zero-area boxes overlap nothing
    (IoU 0), so they never suppress or get suppressed.
    """
    _check_nms_input(boxes, scores, iou_threshold)
    return _greedy_nms(boxes, scores, iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float):
    """NMS within each class: a box suppresses only boxes of its own class; int64 indices by decreasing score.

    Same result as ``torchvision.ops.batched_nms`` (without score ties; ties as in :func:`nms`).
    Used for class-aware detection, where a dog box must not remove a cat box that overlaps it.
    """
    _check_nms_input(boxes, scores, iou_threshold, classes)
    return _greedy_nms(boxes, scores, iou_threshold, classes)


def _check_detection_input(cls_probs, offset_preds, anchors) -> None:
    if not isinstance(cls_probs, torch.Tensor) or cls_probs.dim() != 3:
        raise ValueError("cls_probs must have shape (batch, classes + 1, anchors) with the background "
                         f"first, got {_shape(cls_probs)}.")
    if cls_probs.shape[1] < 2:
        raise ValueError("cls_probs needs the background and at least one class in dim 1, "
                         f"got {_shape(cls_probs)}.")
    batch, _, num_anchors = cls_probs.shape
    if anchors.shape[0] != num_anchors:
        raise ValueError(f"cls_probs has {num_anchors} anchors in its last dimension but there are "
                         f"{anchors.shape[0]} anchors.")
    if not isinstance(offset_preds, torch.Tensor) or offset_preds.shape != (batch, num_anchors * 4):
        raise ValueError(f"offset_preds must have shape (batch, anchors * 4) = {(batch, num_anchors * 4)}, "
                         f"got {_shape(offset_preds)}.")


def multibox_detection(cls_probs, offset_preds, anchors, nms_threshold: float = 0.5,
                       pos_threshold: float = 0.009, class_aware: bool = False) -> torch.Tensor:
    """Turn a detector's outputs into boxes: (B, A, 6) rows ``[class, score, x1, y1, x2, y2]``.

    ``cls_probs`` (B, C + 1, A): class probabilities, background first; ``offset_preds`` (B, A * 4);
    ``anchors`` (A, 4) or (1, A, 4). Each anchor predicts its most likely object class with that
    probability as score, and the box :func:`offset_inverse` gives. NMS (:func:`nms`, or
    :func:`batched_nms` within each class when ``class_aware``) decides which boxes are kept.
    As d2l's ``multibox_detection``: the kept rows come first, by decreasing score, then the
    suppressed ones in anchor order with class -1; a row whose score is below ``pos_threshold`` gets
    class -1 and score ``1 - score`` (wherever it is). Rows with class >= 0 are the detections
    (:func:`detections_to_list` extracts them). d2l's default ``pos_threshold`` is 0.009999999.
    """
    anchors = _squeeze_anchors(anchors)
    _check_detection_input(cls_probs, offset_preds, anchors)
    _check_threshold(nms_threshold, "nms_threshold")
    _check_threshold(pos_threshold, "pos_threshold")
    out = []
    for probs, offsets in zip(cls_probs, offset_preds, strict=True):  # one image at a time
        score, label = probs[1:].max(dim=0)
        boxes = offset_inverse(anchors, offsets.reshape(-1, 4))
        if class_aware:
            keep = batched_nms(boxes, score, label, nms_threshold)
        else:
            keep = nms(boxes, score, nms_threshold)
        kept = torch.zeros_like(label, dtype=torch.bool)
        kept[keep] = True
        order = torch.cat((keep, (~kept).nonzero()[:, 0]))
        low = score < pos_threshold
        label = torch.where(kept & ~low, label, torch.full_like(label, -1))
        score = torch.where(low, 1 - score, score)
        rows = torch.cat((label[:, None].to(boxes.dtype), score[:, None].to(boxes.dtype), boxes), dim=1)
        out.append(rows[order])
    return torch.stack(out)


def detections_to_list(detections: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Per image, a dict ``{"boxes" (K, 4), "scores" (K,), "labels" (K,) long}`` of the detections.

    Takes the (B, A, 6) output of :func:`multibox_detection` and keeps the rows with class >= 0, in
    their order (decreasing score). Labels are object classes 0..C-1 (no background): the format
    ``helpers.average_precision`` reads.
    """
    _check_last_dim(detections, "detections", size=6, what="[class, score, x1, y1, x2, y2]")
    if detections.dim() != 3:
        raise ValueError(f"detections must have shape (batch, anchors, 6), got {_shape(detections)}.")
    result = []
    for rows in detections:
        rows = rows[rows[:, 0] >= 0]
        result.append({"boxes": rows[:, 2:], "scores": rows[:, 1], "labels": rows[:, 0].long()})
    return result


# --------------------------------------------------------------------------------------------
# Region-of-interest pooling (R-CNN family)
# --------------------------------------------------------------------------------------------


def _roi_table(features, rois, output_size, spatial_scale) -> tuple[torch.Tensor, tuple[int, int]]:
    """Check the inputs of roi_pool / roi_align; return rois as (K, 5) in the features' dtype and (h, w)."""
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError(f"features must have shape (N, C, H, W), got {_shape(features)}.")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got {features.dtype}; "
                         "use features.float().")
    if isinstance(rois, (list, tuple)) and all(isinstance(r, torch.Tensor) for r in rois) and len(rois) > 0:
        for i, per_image in enumerate(rois):
            if per_image.dim() != 2 or per_image.shape[1] != 4:
                raise ValueError(f"rois[{i}] must have shape (L, 4) [x1, y1, x2, y2], "
                                 f"got {_shape(per_image)}.")
        index = [torch.full((len(r), 1), i, device=r.device, dtype=r.dtype) for i, r in enumerate(rois)]
        rois = torch.cat((torch.cat(index), torch.cat(list(rois))), dim=1)
    rois = torch.as_tensor(rois, dtype=features.dtype, device=features.device)
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be a tensor (K, 5) of rows [batch index, x1, y1, x2, y2] or a list with "
                         f"one (L, 4) tensor per image, got shape {_shape(rois)}.")
    batch_index = rois[:, 0].long()
    if ((batch_index < 0) | (batch_index >= features.shape[0])).any():
        raise ValueError(f"the first column of rois is the image's index in the batch: it must be in "
                         f"[0, {features.shape[0] - 1}], got {rois[:, 0].unique().tolist()}.")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (height, width), "
                         f"got {output_size!r}.")
    if not isinstance(spatial_scale, (int, float)) or spatial_scale <= 0:
        raise ValueError("spatial_scale must be a number > 0 (feature-map pixels per box unit), "
                         f"got {spatial_scale!r}.")
    return rois, size


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, halves away from zero (C's ``round``; torch.round goes to even)."""
    rounded = torch.round(x)
    half = (x - x.trunc()).abs() == 0.5
    return torch.where(half, x.trunc() + x.sign(), rounded)


def _bin_ranges(start: torch.Tensor, roi_size: torch.Tensor, bins: int, limit: int):
    """Integer ranges [lo, hi) of each of the ``bins`` bins of each RoI along one axis, clipped to the map."""
    bin_size = roi_size / bins  # (K,)
    p = torch.arange(bins, device=start.device, dtype=roi_size.dtype)
    lo = torch.floor(p * bin_size[:, None]).long() + start[:, None]
    hi = torch.ceil((p + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, limit), hi.clamp(0, limit)  # (K, bins) each


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the last dimension of the entries where ``mask`` is True (-inf where none)."""
    return torch.where(mask, values, torch.full_like(values, -math.inf)).amax(dim=-1)


def roi_pool(features: torch.Tensor, rois, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """Max-pool each region of interest into a fixed ``output_size`` grid (Fast R-CNN): (K, C, h, w).

    ``features`` (N, C, H, W); ``rois`` a tensor (K, 5) of rows ``[batch index, x1, y1, x2, y2]`` or a
    list with one (L, 4) tensor of boxes per image; ``spatial_scale`` maps box coordinates onto the
    feature map (0.5 for boxes on an image twice the map's size). As ``torchvision.ops.roi_pool``:
    corners are rounded to whole pixels (halves away from zero), the RoI covers ``end - start + 1``
    pixels (at least 1), bin ``p`` covers ``[floor(p * bin), ceil((p + 1) * bin))`` from the start,
    clipped to the map, and a bin with no pixel gives 0. Memory grows as K C H W max(h, w): meant
    for the small maps of the chapter.
    """
    rois, (out_h, out_w) = _roi_table(features, rois, output_size, spatial_scale)
    _, _, height, width = features.shape
    corners = _round_half_away(rois[:, 1:] * spatial_scale).long()
    x1, y1, x2, y2 = corners.unbind(1)
    rows_lo, rows_hi = _bin_ranges(y1, (y2 - y1 + 1).clamp(min=1).to(rois.dtype), out_h, height)
    cols_lo, cols_hi = _bin_ranges(x1, (x2 - x1 + 1).clamp(min=1).to(rois.dtype), out_w, width)
    h = torch.arange(height, device=features.device)
    w = torch.arange(width, device=features.device)
    in_row_bin = (h >= rows_lo[..., None]) & (h < rows_hi[..., None])  # (K, out_h, H)
    in_col_bin = (w >= cols_lo[..., None]) & (w < cols_hi[..., None])  # (K, out_w, W)
    maps = features[rois[:, 0].long()]  # (K, C, H, W)
    col_max = _masked_max(maps[:, :, :, None, :], in_col_bin[:, None, None])  # (K, C, H, out_w)
    pooled = _masked_max(col_max.transpose(2, 3)[:, :, None], in_row_bin[:, None, :, None])  # (K, C, h, w)
    empty = (rows_hi <= rows_lo)[:, :, None] | (cols_hi <= cols_lo)[:, None, :]  # (K, out_h, out_w)
    return pooled.masked_fill(empty[:, None], 0.0)


def _sample_weights(start, roi_size, grid, bins: int, limit: int) -> torch.Tensor:
    """Bilinear weights (K, bins, limit) of the map's rows (or columns), summed over each bin's samples.

    Bilinear interpolation is a product of a weight along y and one along x, and so is torchvision's
    rule that a sample beyond [-1, limit] contributes nothing: RoI Align is therefore
    ``weights_y @ map @ weights_x^T`` per RoI, without materialising every sample point.
    """
    bin_size = roi_size / bins
    num_samples = max(int(grid.max()), 0) if grid.numel() else 0
    p = torch.arange(bins, device=start.device, dtype=start.dtype)[None, :, None]
    i = torch.arange(num_samples, device=start.device, dtype=start.dtype)[None, None, :]
    k = (slice(None), None, None)  # (K,) -> (K, 1, 1)
    samples_per_bin = grid.clamp(min=1).to(start.dtype)[k]
    coord = start[k] + p * bin_size[k] + (i + 0.5) * bin_size[k] / samples_per_bin  # (K, bins, samples)
    used = (i < grid[k]) & (coord >= -1) & (coord <= limit)
    coord = torch.where(used, coord, torch.zeros_like(coord)).clamp(min=0)
    low = coord.long()
    at_edge = low >= limit - 1
    low = low.clamp(max=limit - 1)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coord), coord - low)
    weights = torch.zeros(len(start), bins, limit, device=start.device, dtype=start.dtype)
    weights.scatter_add_(2, low, (1 - frac) * used)
    weights.scatter_add_(2, high, frac * used)
    return weights


def roi_align(features: torch.Tensor, rois, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """Average bilinear samples of each region of interest into ``output_size`` bins: (K, C, h, w).

    Unlike :func:`roi_pool` nothing is rounded, so a box that moves by a fraction of a pixel moves
    its features too. Arguments as :func:`roi_pool`, plus: ``sampling_ratio`` samples per bin along
    each axis (``<= 0``: ``ceil(roi size / bins)``, per RoI); ``aligned=True`` shifts the box by
    -0.5 pixel so that pixel centres sit at half-integers (Detectron2); ``aligned=False`` (the
    legacy default) makes RoIs at least 1 x 1. Equal to ``torchvision.ops.roi_align``: a sample
    outside ``[-1, size]`` counts as 0, samples in ``[-1, 0]`` are clamped to the border. (A box
    with x2 < x1 under ``aligned=True`` and adaptive sampling gives 0 here; torchvision fails.)
    """
    rois, (out_h, out_w) = _roi_table(features, rois, output_size, spatial_scale)
    if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
        raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}.")
    _, _, height, width = features.shape
    corners = rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)
    x1, y1, x2, y2 = corners.unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(x1, sampling_ratio, dtype=torch.long)
    else:
        grid_h, grid_w = torch.ceil(roi_h / out_h).long(), torch.ceil(roi_w / out_w).long()
    weights_y = _sample_weights(y1, roi_h, grid_h, out_h, height)  # (K, out_h, H)
    weights_x = _sample_weights(x1, roi_w, grid_w, out_w, width)  # (K, out_w, W)
    maps = features[rois[:, 0].long()]
    total = torch.einsum("kph,kchw,kqw->kcpq", weights_y, maps, weights_x)
    count = (grid_h * grid_w).clamp(min=1).to(features.dtype)
    return total / count[:, None, None, None]
