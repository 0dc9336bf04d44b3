"""Average precision (AP) for object detection, written out: COCO's mAP@[.5:.95], AP@0.5 and AP@0.75.

A detector returns, for every image, boxes with a class label and a confidence score. AP scores
one class: rank all its detections (over all images) by score, decide which are correct, and
summarise the precision-recall curve that the ranking traces into one number. The pieces:

- :func:`match_detections` decides, in one image and for one class, which detections are true
  positives: each detection in turn, highest score first, takes the still unmatched ground-truth
  box it overlaps most, if that IoU is at least the threshold; every other detection (a duplicate,
  a box in the wrong place) is a false positive;
- :func:`precision_recall` ranks a class's detections over all images and returns the precision
  and recall after each one;
- :func:`average_precision` turns that curve into AP: COCO's 101-point interpolation, PASCAL VOC
  2007's 11 points, or VOC 2010's area under the curve;
- :func:`mean_average_precision` averages AP over classes and IoU thresholds (COCO's "mAP");
- :func:`plot_precision_recall` draws the curves.

The input format is torchmetrics' ``MeanAveragePrecision`` one, so the numbers can be compared:
``preds`` is a list with one dict per image, ``{"boxes": (N, 4), "scores": (N,), "labels": (N,)}``,
and ``targets`` a list of the same length of ``{"boxes": (M, 4), "labels": (M,)}``. Boxes are
corners ``(x1, y1, x2, y2)`` in any unit, the same for predictions and targets.

The conventions are COCO's, as pycocotools' ``COCOeval`` implements them (the tests compare the
results with it): IoU thresholds 0.50:0.05:0.95; 101 recall points; at most 100 detections per
image; stable sorts, so equal scores keep the order in which the detections were given (image by
image); classes without ground truth left out of the mean. Only the "all areas" numbers are
reported (COCO's small/medium/large bands are not), and there are no crowd or ignored boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from helpers.boxes import box_iou

# The same floats as pycocotools' (np.linspace), so a threshold compares with an IoU exactly as there.
COCO_IOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
COCO_RECALL_POINTS = 101
COCO_MAX_DETECTIONS = 100

_PRED_FORMAT = "{'boxes': (N, 4), 'scores': (N,), 'labels': (N,)}"
_TARGET_FORMAT = "{'boxes': (M, 4), 'labels': (M,)}"


# ----------------------------------------------------------------------------- checking the input


def _check_threshold(value, name: str = "iou_threshold") -> float:
    """``value`` as a float, or a ValueError if it is not an IoU threshold in [0, 1]."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between 0 and 1 (e.g. 0.5), got {value!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (an IoU), e.g. 0.5; got {value}.")
    return value


def _check_max_detections(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"max_detections must be a positive integer (COCO uses 100), got {value!r}.")
    return int(value)


def _check_boxes(boxes, name: str) -> torch.Tensor:
    """Boxes as a float64 CPU tensor of shape (N, 4) with x2 >= x1 and y2 >= y1, or a ValueError."""
    boxes = torch.as_tensor(boxes).detach().cpu()
    if boxes.numel() == 0:
        return torch.zeros((0, 4), dtype=torch.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), one (x1, y1, x2, y2) row per box; "
                         f"got shape {tuple(boxes.shape)}.")
    boxes = boxes.to(torch.float64)
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} contains nan or inf; remove those boxes.")
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1: boxes must be corners (x1, y1, x2, y2) "
                         "(convert (x, y, w, h) or (cx, cy, w, h) boxes first).")
    return boxes


def _check_vector(values, length: int, name: str, boxes_name: str) -> torch.Tensor:
    """A 1-D CPU tensor with one entry per box, or a ValueError naming both lengths."""
    values = torch.as_tensor(values).detach().cpu()
    if values.numel() == 0 and length == 0:
        return values.reshape(0)
    if values.ndim != 1 or len(values) != length:
        raise ValueError(f"{name} must have shape ({length},), one entry per row of {boxes_name}; "
                         f"got shape {tuple(values.shape)}.")
    return values


def _check_labels(labels, length: int, name: str, boxes_name: str) -> np.ndarray:
    """Class labels as int64 (float labels, as in d2l's banana set, are fine if they are whole)."""
    labels = _check_vector(labels, length, name, boxes_name)
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"{name} must hold whole class numbers (e.g. 0, 1, 2), got {labels.tolist()}.")
    return labels.to(torch.int64).numpy()


def _check_scores(scores, length: int, name: str, boxes_name: str) -> np.ndarray:
    scores = _check_vector(scores, length, name, boxes_name).to(torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name} contains nan or inf; every detection needs a finite score.")
    return scores.numpy()


def _get(entry, key: str, name: str, expected: str):
    if not isinstance(entry, Mapping) or key not in entry:
        found = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
        raise ValueError(f"{name} must be a dict {expected}; it lacks {key!r} (found {found}).")
    return entry[key]


def _cap_per_class(order: np.ndarray, labels: np.ndarray, max_detections: int) -> np.ndarray:
    """The ranked indices ``order`` without those beyond the first ``max_detections`` of their class."""
    ranked_labels = labels[order]
    rank_in_class = np.zeros(len(order), dtype=np.int64)
    for label in np.unique(ranked_labels):
        in_class = ranked_labels == label
        rank_in_class[in_class] = np.arange(in_class.sum())
    return order[rank_in_class < max_detections]


def _check_inputs(preds, targets, max_detections: int) -> tuple[list[dict], list[dict]]:
    """Check ``preds`` and ``targets`` and return them cleaned, each image's detections ranked.

    A cleaned prediction keeps, for each class, the image's ``max_detections`` highest-scoring
    detections of that class (pycocotools' rule), highest score first (stable sort), as float64
    boxes and numpy scores/labels.
    """
    for name, value in (("preds", preds), ("targets", targets)):
        if isinstance(value, Mapping) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a list with one dict per image, got {type(value).__name__}.")
    if len(preds) != len(targets):
        raise ValueError(f"preds has {len(preds)} images but targets has {len(targets)}; "
                         "give one prediction dict and one target dict per image, in the same order.")
    clean_preds, clean_targets = [], []
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        boxes = _check_boxes(_get(pred, "boxes", f"preds[{i}]", _PRED_FORMAT), f"preds[{i}]['boxes']")
        n = len(boxes)
        scores = _check_scores(_get(pred, "scores", f"preds[{i}]", _PRED_FORMAT), n,
                               f"preds[{i}]['scores']", f"preds[{i}]['boxes']")
        labels = _check_labels(_get(pred, "labels", f"preds[{i}]", _PRED_FORMAT), n,
                               f"preds[{i}]['labels']", f"preds[{i}]['boxes']")
        keep = _cap_per_class(_ranking(scores), labels, max_detections)
        clean_preds.append({"boxes": boxes[torch.from_numpy(keep)], "scores": scores[keep],
                            "labels": labels[keep]})
        gt_boxes = _check_boxes(_get(target, "boxes", f"targets[{i}]", _TARGET_FORMAT),
                                f"targets[{i}]['boxes']")
        gt_labels = _check_labels(_get(target, "labels", f"targets[{i}]", _TARGET_FORMAT), len(gt_boxes),
                                  f"targets[{i}]['labels']", f"targets[{i}]['boxes']")
        clean_targets.append({"boxes": gt_boxes, "labels": gt_labels})
    return clean_preds, clean_targets


# ----------------------------------------------------------------------------- matching


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores`` from highest to lowest; equal scores keep their order."""
    return np.argsort(-scores, kind="stable")


def _iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor) -> np.ndarray:
    """IoU of every pair of float64 boxes as an (N, M) array (0 where a union is empty)."""
    return box_iou(boxes1, boxes2).numpy()


def _greedy_match(ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which detections are true positives, given their IoUs (D, G) with rows ranked by score.

    Each detection in turn takes the unmatched ground truth with the highest IoU if that IoU is
    >= ``iou_threshold``. On equal IoUs the ground truth listed last wins, as in pycocotools.
    """
    num_dets, num_gts = ious.shape
    is_tp = np.zeros(num_dets, dtype=bool)
    if num_gts == 0:
        return is_tp
    matched = np.zeros(num_gts, dtype=bool)
    for d in np.flatnonzero((ious >= iou_threshold).any(axis=1)):  # only these can match at all
        free_ious = np.where(matched, -1.0, ious[d])
        best = num_gts - 1 - int(np.argmax(free_ious[::-1]))  # argmax gives the first of equal values
        if free_ious[best] >= iou_threshold:
            is_tp[d] = matched[best] = True
            if matched.all():
                break
    return is_tp


def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold: float = 0.5) -> torch.Tensor:
    """Which detections of one image and one class are true positives at ``iou_threshold``.

    Greedy, as COCO: the detections are taken by score, highest first (a stable sort, so of equal
    scores the one given first goes first); each takes the still unmatched ground-truth box with
    the highest IoU, if that IoU is at least ``iou_threshold``. A detection that finds none (a
    duplicate of a box already found, or a box in the wrong place) is a false positive. Of two
    ground truths with exactly the same IoU the one listed last is taken, as in pycocotools.

    Returns a bool tensor in the order of ``pred_boxes`` (not ranked), so ``pred_boxes[is_tp]``
    are the correct detections. Filter both sides to one class before calling.
    """
    pred_boxes = _check_boxes(pred_boxes, "pred_boxes")
    scores = _check_scores(pred_scores, len(pred_boxes), "pred_scores", "pred_boxes")
    gt_boxes = _check_boxes(gt_boxes, "gt_boxes")
    iou_threshold = _check_threshold(iou_threshold)
    order = _ranking(scores)
    ranked_is_tp = _greedy_match(_iou_matrix(pred_boxes[torch.from_numpy(order)], gt_boxes), iou_threshold)
    is_tp = np.zeros(len(order), dtype=bool)
    is_tp[order] = ranked_is_tp
    return torch.from_numpy(is_tp)


# ----------------------------------------------------------------------------- precision and recall


def _rank_class(preds: list[dict], targets: list[dict], label: int,
                iou_thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """One class over all (cleaned) images: ``is_tp`` (T, D) and scores (D,), ranked, and #GT.

    Each image is matched on its own; the detections of all images are then sorted by score
    (stable: equal scores keep the image order), as COCO accumulates them.
    """
    is_tp, scores, num_gt = [], [], 0
    for pred, target in zip(preds, targets, strict=True):
        in_class = pred["labels"] == label
        gt_boxes = target["boxes"][torch.from_numpy(target["labels"] == label)]
        num_gt += len(gt_boxes)
        ious = _iou_matrix(pred["boxes"][torch.from_numpy(in_class)], gt_boxes)  # rows ranked already
        matches = [_greedy_match(ious, t) for t in iou_thresholds]
        is_tp.append(np.stack(matches).reshape(len(iou_thresholds), -1))
        scores.append(pred["scores"][in_class])
    is_tp = np.concatenate(is_tp, axis=1) if is_tp else np.zeros((len(iou_thresholds), 0), dtype=bool)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    order = _ranking(scores)
    return is_tp[:, order], scores[order], num_gt


def _curve(is_tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each ranked detection, from its true-positive flags."""
    true_positives = np.cumsum(is_tp, dtype=np.float64)
    precision = true_positives / np.arange(1, len(is_tp) + 1)
    return precision, true_positives / num_gt


def precision_recall(preds, targets, label: int, iou_threshold: float = 0.5,
                     max_detections: int = COCO_MAX_DETECTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of class ``label`` after each of its detections, ranked over all images.

    Every image keeps its ``max_detections`` highest-scoring detections of the class (as in
    :func:`mean_average_precision`); they are matched image by image
    (:func:`match_detections`) and then ranked by score over all images. After the k-th detection,
    precision = TP / k and recall = TP / (ground-truth boxes of the class). Returns the three numpy
    arrays ``(precision, recall, scores)``, one entry per ranked detection (empty if the class has
    no detections); feed the first two to :func:`average_precision`.
    """
    iou_threshold = _check_threshold(iou_threshold)
    preds, targets = _check_inputs(preds, targets, _check_max_detections(max_detections))
    is_tp, scores, num_gt = _rank_class(preds, targets, int(label), [iou_threshold])
    if num_gt == 0:
        raise ValueError(f"Class {label} has no ground-truth boxes in targets, so its recall (and AP) is "
                         "undefined; choose a label that occurs in targets.")
    precision, recall = _curve(is_tp[0], num_gt)
    return precision, recall, scores


def _check_curve(precision, recall) -> tuple[np.ndarray, np.ndarray]:
    precision = np.asarray(torch.as_tensor(precision).detach().cpu(), dtype=np.float64)
    recall = np.asarray(torch.as_tensor(recall).detach().cpu(), dtype=np.float64)
    if precision.ndim != 1 or recall.shape != precision.shape:
        raise ValueError("precision and recall must be 1-D and of the same length (one entry per ranked "
                         f"detection), got shapes {precision.shape} and {recall.shape}.")
    for name, values in (("precision", precision), ("recall", recall)):
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"{name} values must lie in [0, 1] (and not be nan).")
    if np.any(np.diff(recall) < 0):
        raise ValueError("recall must not decrease along the ranking; pass the curve in ranked order, "
                         "as precision_recall returns it.")
    return precision, recall


def average_precision(precision, recall, recall_points: int | None = COCO_RECALL_POINTS) -> float:
    """The area under a precision-recall curve, summarised the COCO way (or PASCAL VOC's).

    First the precision is made non-increasing from the right (each value becomes the best
    precision reached at this recall or beyond), which removes the curve's zigzag. Then:

    - ``recall_points=101`` (COCO): read that precision at each recall level 0, 0.01, ..., 1, at the
      first detection whose recall reaches it (0 if the recall never does), and average the 101
      values; ``recall_points=11`` gives PASCAL VOC 2007's 11-point AP;
    - ``recall_points=None`` (PASCAL VOC 2010 and later): the exact area under that curve, the sum
      of precision times the recall gained at each detection.

    ``precision`` and ``recall`` are ranked curves as :func:`precision_recall` returns them; an
    empty curve (no detections) has AP 0.
    """
    precision, recall = _check_curve(precision, recall)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if recall_points is None:
        return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
    is_int = isinstance(recall_points, int | np.integer) and not isinstance(recall_points, bool)
    if not is_int or recall_points < 2:
        raise ValueError("recall_points must be an integer >= 2 (101 for COCO, 11 for VOC 2007) or None "
                         f"(the area under the curve, VOC 2010+); got {recall_points!r}.")
    levels = np.linspace(0.0, 1.0, recall_points)  # the same floats as pycocotools' recThrs for 101
    first = np.searchsorted(recall, levels, side="left")
    reached = first < len(recall)
    values = np.zeros(recall_points)
    values[reached] = envelope[first[reached]]
    return float(values.mean())


# ----------------------------------------------------------------------------- mean average precision


def _check_thresholds(iou_thresholds) -> tuple[float, ...]:
    if iou_thresholds is None:
        return COCO_IOU_THRESHOLDS
    thresholds = np.atleast_1d(np.asarray(iou_thresholds, dtype=object))
    if len(thresholds) == 0:
        raise ValueError("iou_thresholds is empty; give at least one, e.g. [0.5], or None for COCO's ten.")
    return tuple(_check_threshold(t, "every entry of iou_thresholds") for t in thresholds)


def mean_average_precision(preds, targets, iou_thresholds: Sequence[float] | None = None,
                           max_detections: int = COCO_MAX_DETECTIONS) -> dict:
    """COCO's detection scores: AP averaged over classes and IoU thresholds, and at IoU 0.5 and 0.75.

    ``preds`` and ``targets`` are lists with one dict per image (see the module docstring).
    Each image keeps its ``max_detections`` highest-scoring detections of each class (COCO's "at
    most 100 detections per image", applied per class as pycocotools' ``COCOeval`` does). For
    every class that has ground truth and every threshold, AP is :func:`average_precision` with
    101 recall points; a class with ground truth and no
    detections scores 0, a class without ground truth is left out (also of ``per_class``).

    Returns a dict of floats:

    - ``"map"``: the mean AP over the classes and ``iou_thresholds`` (default 0.50:0.05:0.95: COCO's
      "AP", mAP@[.5:.95]);
    - ``"map_50"``, ``"map_75"``: the mean AP over the classes at IoU 0.5 (PASCAL VOC's criterion,
      with COCO's 101-point AP) and at 0.75;
    - ``"per_class"`` and ``"per_class_50"``: ``{label: AP}`` over the thresholds and at 0.5.

    The numbers are for all box sizes (COCO's small/medium/large bands are not computed). If no
    class has ground truth, every mean is -1, as in pycocotools and torchmetrics.
    """
    thresholds = _check_thresholds(iou_thresholds)
    preds, targets = _check_inputs(preds, targets, _check_max_detections(max_detections))
    extra = [t for t in (0.5, 0.75) if t not in thresholds]
    all_thresholds = thresholds + tuple(extra)
    labels = sorted({int(c) for target in targets for c in target["labels"]})
    ap = np.zeros((len(labels), len(all_thresholds)))  # (class, threshold)
    for k, label in enumerate(labels):
        is_tp, _, num_gt = _rank_class(preds, targets, label, all_thresholds)
        for t in range(len(all_thresholds)):
            ap[k, t] = average_precision(*_curve(is_tp[t], num_gt))
    column = {t: i for i, t in enumerate(all_thresholds)}
    chosen = ap[:, : len(thresholds)]
    return {
        "map": float(chosen.mean()) if labels else -1.0,
        "map_50": float(ap[:, column[0.5]].mean()) if labels else -1.0,
        "map_75": float(ap[:, column[0.75]].mean()) if labels else -1.0,
        "per_class": {label: float(v) for label, v in zip(labels, chosen.mean(axis=1), strict=True)},
        "per_class_50": {label: float(v) for label, v in zip(labels, ap[:, column[0.5]], strict=True)},
    }


# ----------------------------------------------------------------------------- plotting


def plot_precision_recall(preds, targets, labels: Sequence[int] | None = None,
                          iou_thresholds: Sequence[float] = (0.5, 0.75),
                          class_names: Mapping | Sequence[str] | None = None,
                          max_detections: int = COCO_MAX_DETECTIONS, ax=None):
    """Draw precision against recall for each class in ``labels`` at each IoU threshold.

    The thin line is the raw curve (it zigzags: precision falls at each false positive and climbs
    at each true positive); the thick step line is the non-increasing version that AP averages
    (COCO, 101 points), whose value is in the legend. ``labels`` defaults to every class with
    ground truth; ``class_names`` maps a label to a name for the legend (a dict, or a list indexed
    by label). One colour per class, one line style per threshold. Returns the axes.
    """
    import matplotlib.pyplot as plt

    from helpers.plotting import LINESTYLES, PALETTE

    iou_thresholds = _check_thresholds(iou_thresholds)
    if labels is None:
        labels = sorted({int(c) for target in targets for c in torch.as_tensor(target["labels"]).tolist()})
    if len(labels) == 0:
        raise ValueError("There is no class to plot: targets has no ground-truth boxes.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    for k, label in enumerate(labels):
        colour = PALETTE[k % len(PALETTE)]
        names = dict(enumerate(class_names)) if isinstance(class_names, Sequence) else (class_names or {})
        name = names.get(label, f"class {label}")
        for j, threshold in enumerate(iou_thresholds):
            precision, recall, _ = precision_recall(preds, targets, label, threshold, max_detections)
            ap = average_precision(precision, recall)
            style = LINESTYLES[j % len(LINESTYLES)]
            ax.plot(recall, precision, color=colour, linestyle=style, linewidth=0.8, alpha=0.45)
            # Over (recall[i-1], recall[i]] the interpolated precision is envelope[i]; 0 beyond the last.
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            x = np.concatenate([[0.0], recall, recall[-1:]])
            y = np.concatenate([envelope[:1], envelope, [0.0]])
            ax.step(x, y, where="pre", color=colour, linestyle=style, linewidth=2,
                    label=f"{name}, IoU {threshold:.2f}: AP {ap:.3f}")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall (at most {max_detections} detections per image)")
    ax.legend(loc="lower left", fontsize=8)
    return ax
