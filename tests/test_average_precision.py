"""helpers.average_precision: matching, precision-recall, AP and mAP, checked against pycocotools' COCOeval.

pycocotools is the reference (the `reference` extra), not a dependency of the notebooks; the tests
that need it are skipped where it is missing.
"""

import contextlib
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers.average_precision import (
    COCO_IOU_THRESHOLDS,
    average_precision,
    match_detections,
    mean_average_precision,
    plot_precision_recall,
    precision_recall,
)
from helpers.boxes import box_iou
from helpers.plotting import PALETTE


def pred(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels)}


def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}


# ----------------------------------------------------------------------------- pycocotools as reference


def coco_eval(preds, targets, iou_thresholds=None):
    """Run pycocotools' COCOeval on our format (labels c -> category c + 1); return the evaluator.

    Both sides are built in memory (COCO's loadRes cannot take an empty result list): boxes become
    [x, y, w, h], annotation ids start at 1 (0 means "unmatched" inside COCOeval), every box has
    its area and iscrowd 0. Boxes inside a 256x256 image all fall into the "all" area range.
    """
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")

    def annotations(entries, with_scores):
        out = []
        for image_id, entry in enumerate(entries, start=1):
            for k, (x1, y1, x2, y2) in enumerate(entry["boxes"].double().tolist()):
                w, h = x2 - x1, y2 - y1
                ann = {"id": len(out) + 1, "image_id": image_id, "category_id": int(entry["labels"][k]) + 1,
                       "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0}
                if with_scores:
                    ann["score"] = float(entry["scores"][k])
                out.append(ann)
        return out

    labels = {int(c) for e in preds + targets for c in e["labels"]}
    images = [{"id": i, "width": 256, "height": 256} for i in range(1, len(targets) + 1)]
    categories = [{"id": c + 1, "name": str(c)} for c in sorted(labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt, dt = coco.COCO(), coco.COCO()
        gt.dataset = {"images": images, "categories": categories, "annotations": annotations(targets, False)}
        dt.dataset = {"images": images, "categories": categories, "annotations": annotations(preds, True)}
        gt.createIndex()
        dt.createIndex()
        evaluator = cocoeval.COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = [image["id"] for image in images]
        evaluator.params.catIds = [c["id"] for c in categories]
        evaluator.params.maxDets = [1, 10, 100]
        if iou_thresholds is not None:
            evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=float)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_per_class(evaluator, t=slice(None), m=2):
    """{label: AP} from COCOeval's precision array (area "all", maxDets index m), classes with GT only."""
    precision = evaluator.eval["precision"]
    out = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[t, :, k, 0, m]
        if (values > -1).all():
            out[category - 1] = float(values.mean())
    return out


def jitter(rng, box, scale):
    """``box`` with each corner moved by noise proportional to its size (corners kept ordered)."""
    w, h = box[2] - box[0], box[3] - box[1]
    moved = box + rng.normal(0, scale, 4) * np.array([w, h, w, h])
    return np.array([min(moved[0], moved[2]), min(moved[1], moved[3]),
                     max(moved[0], moved[2]), max(moved[1], moved[3])])


def random_scene(seed, num_images=10, num_classes=None, ties=False, false_positives=(0, 4)):
    """Random ground truth and detections: found boxes (jittered, so their IoUs spread from about
    0.3 to 1), duplicates, boxes of the wrong class and false positives, with random scores."""
    rng = np.random.default_rng(seed)
    num_classes = num_classes or int(rng.integers(1, 4))
    preds, targets = [], []
    for _ in range(num_images):
        num_gt = int(rng.integers(0, 7))
        corner = rng.uniform(0, 200, (num_gt, 2))
        gt_boxes = np.concatenate([corner, corner + rng.uniform(6, 56, (num_gt, 2))], axis=1)
        gt_labels = rng.integers(0, num_classes, num_gt)
        boxes, labels = [], []
        for box, label in zip(gt_boxes, gt_labels, strict=True):
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):  # missed, found, found twice or three times
                boxes.append(jitter(rng, box, rng.uniform(0.005, 0.15)))
                labels.append(label if rng.random() < 0.9 else rng.integers(0, num_classes))
        for _ in range(int(rng.integers(*false_positives))):
            corner = rng.uniform(0, 220, 2)
            boxes.append(np.concatenate([corner, corner + rng.uniform(6, 60, 2)]))
            labels.append(rng.integers(0, num_classes))
        scores = rng.integers(1, 6, len(boxes)) / 5 if ties else rng.uniform(0.01, 1, len(boxes))
        preds.append({"boxes": torch.tensor(np.array(boxes).reshape(-1, 4)), "scores": torch.tensor(scores),
                      "labels": torch.tensor(np.array(labels, dtype=np.int64))})
        targets.append({"boxes": torch.tensor(gt_boxes), "labels": torch.tensor(gt_labels)})
    return preds, targets


# ----------------------------------------------------------------------------- the worked example


def test_torchmetrics_worked_example():
    """torchmetrics' documented example: IoU 0.776 passes 6 of the 10 thresholds."""
    preds = [pred([[258.0, 41.0, 606.0, 285.0]], [0.536], [0])]
    targets = [target([[214.0, 41.0, 562.0, 285.0]], [0])]
    result = mean_average_precision(preds, targets)
    assert result["map"] == pytest.approx(0.6)
    assert result["map_50"] == 1.0 and result["map_75"] == 1.0
    assert result["per_class"] == {0: pytest.approx(0.6)} and result["per_class_50"] == {0: 1.0}


# ----------------------------------------------------------------------------- against pycocotools

SEEDS = range(20)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct-scores", "tied-scores"])
def test_map_agrees_with_pycocotools_on_random_scenes(ties):
    """20 random scenes of 10 images each, per kind of scores; also with many tied scores (fifths),
    where both sides sort stably in the same order, so no tolerance for ties is needed."""
    largest = 0.0
    for seed in SEEDS:
        preds, targets = random_scene(seed, ties=ties)
        ours = mean_average_precision(preds, targets)
        evaluator = coco_eval(preds, targets)
        for key, stat in (("map", 0), ("map_50", 1), ("map_75", 2)):
            largest = max(largest, abs(ours[key] - evaluator.stats[stat]))
            assert ours[key] == pytest.approx(evaluator.stats[stat], abs=1e-12), (seed, key)
        assert ours["per_class"] == pytest.approx(coco_per_class(evaluator), abs=1e-12)
        assert ours["per_class_50"] == pytest.approx(coco_per_class(evaluator, t=0), abs=1e-12)
    assert largest < 1e-12


def test_the_scenes_exercise_every_threshold():
    """The random scenes are not trivial: the detections' best IoUs fall between every pair of
    neighbouring thresholds (so every threshold decides some matches), and some images have no
    ground truth."""
    best_ious, empty_images = [], 0
    for seed in SEEDS:
        preds, targets = random_scene(seed)
        for p, t in zip(preds, targets, strict=True):
            empty_images += len(t["boxes"]) == 0
            if len(p["boxes"]) and len(t["boxes"]):
                best_ious += box_iou(p["boxes"], t["boxes"]).max(dim=1).values.tolist()
    counts, _ = np.histogram(best_ious, bins=[0.3, *COCO_IOU_THRESHOLDS, 1.0 + 1e-9])
    assert counts.min() >= 10, counts
    assert empty_images >= 10


@pytest.mark.parametrize("num_classes", [1, 3])
def test_max_detections_agrees_with_pycocotools(num_classes):
    """Over 140 detections per image, capped at 1, 10 and 100 per class and image, as COCOeval does."""
    preds, targets = random_scene(7, num_images=3, num_classes=num_classes, false_positives=(140, 141))
    assert all(len(p["boxes"]) > 140 for p in preds)
    evaluator = coco_eval(preds, targets)
    for m, cap in enumerate([1, 10, 100]):
        ours = mean_average_precision(preds, targets, max_detections=cap)
        assert ours["per_class"] == pytest.approx(coco_per_class(evaluator, m=m), abs=1e-12)


def test_custom_iou_thresholds_agree_with_pycocotools():
    preds, targets = random_scene(3)
    thresholds = [0.3, 0.5, 0.75]
    ours = mean_average_precision(preds, targets, iou_thresholds=thresholds)
    reference = coco_per_class(coco_eval(preds, targets, thresholds))
    assert ours["per_class"] == pytest.approx(reference, abs=1e-12)


def test_equal_ious_go_to_the_ground_truth_listed_last_as_in_pycocotools():
    """The first detection overlaps both ground truths with IoU exactly 1/3; taking the second one
    (pycocotools' rule) leaves the first for the second detection, which fits it exactly."""
    gt_boxes = [[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]]
    det_boxes = [[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0]]
    is_tp = match_detections(torch.tensor(det_boxes), torch.tensor([0.9, 0.8]), torch.tensor(gt_boxes), 0.3)
    assert is_tp.tolist() == [True, True]
    preds, targets = [pred(det_boxes, [0.9, 0.8], [0, 0])], [target(gt_boxes, [0, 0])]
    ours = mean_average_precision(preds, targets, iou_thresholds=[0.3])
    assert ours["map"] == 1.0 == coco_per_class(coco_eval(preds, targets, [0.3]))[0]


# ----------------------------------------------------------------------------- matching


def test_match_detections_returns_input_order_and_counts_duplicates_as_false_positives():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    dets = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    # The exact box has the highest score, so it takes the ground truth; the near copy is a duplicate.
    assert match_detections(dets, torch.tensor([0.5, 0.9, 0.7]), gt).tolist() == [False, True, False]
    assert match_detections(dets, torch.tensor([0.9, 0.5, 0.7]), gt).tolist() == [True, False, False]
    # The higher-scoring detection wins even with the lower IoU, if that IoU passes the threshold.
    assert match_detections(dets, torch.tensor([0.9, 0.5, 0.7]), gt, 0.95).tolist() == [False, True, False]


def test_match_detections_equal_scores_keep_the_given_order():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    dets = torch.tensor([[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 10.0, 10.0]])
    assert match_detections(dets, torch.tensor([0.5, 0.5]), gt).tolist() == [True, False]


def test_match_detections_takes_the_best_free_ground_truth():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    dets = torch.tensor([[2.0, 0.0, 12.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    # The first takes its exact twin (the second gt); the second gets the first gt (IoU 9/11).
    assert match_detections(dets, torch.tensor([0.9, 0.8]), gts).tolist() == [True, True]
    assert match_detections(dets, torch.tensor([0.9, 0.8]), gts[:0]).tolist() == [False, False]
    assert match_detections(dets[:0], torch.tensor([]), gts).tolist() == []


# ----------------------------------------------------------------------------- AP of hand-made curves


def test_duplicate_between_two_hits():
    """Ranked: hit, duplicate, hit on 2 ground truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1."""
    boxes = [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
    preds = [pred(boxes, [0.9, 0.8, 0.7], [0, 0, 0])]
    targets = [target([boxes[0], boxes[2]], [0, 0])]
    precision, recall, scores = precision_recall(preds, targets, label=0)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7])
    # 51 recall points up to 0.5 read 1, the 50 above read the envelope's 2/3.
    assert average_precision(precision, recall) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert average_precision(precision, recall, recall_points=None) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(precision, recall, recall_points=11) == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert mean_average_precision(preds, targets)["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_recall_never_reaching_one():
    """One of two objects found, perfectly: precision 1 up to recall 0.5, nothing beyond."""
    preds = [pred([[0.0, 0.0, 10.0, 10.0]], [0.9], [0])]
    targets = [target([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]], [0, 0])]
    precision, recall, _ = precision_recall(preds, targets, label=0)
    assert average_precision(precision, recall) == pytest.approx(51 / 101)
    assert average_precision(precision, recall, recall_points=None) == pytest.approx(0.5)
    assert mean_average_precision(preds, targets)["map"] == pytest.approx(51 / 101)


def test_empty_curve_has_ap_zero():
    assert average_precision([], []) == 0.0
    assert average_precision(np.array([]), np.array([]), recall_points=None) == 0.0


def test_precision_recall_gives_the_per_class_ap_of_mean_average_precision():
    preds, targets = random_scene(5, num_classes=2)
    result = mean_average_precision(preds, targets)
    for label, ap50 in result["per_class_50"].items():
        precision, recall, scores = precision_recall(preds, targets, label, 0.5)
        assert np.all(np.diff(scores) <= 0) and np.all(np.diff(recall) >= 0)
        assert average_precision(precision, recall) == ap50
        curves = [precision_recall(preds, targets, label, t) for t in COCO_IOU_THRESHOLDS]
        aps = [average_precision(precision, recall) for precision, recall, _ in curves]
        assert np.mean(aps) == pytest.approx(result["per_class"][label], abs=1e-15)


# ----------------------------------------------------------------------------- edge cases of mAP


def test_no_detections_score_zero():
    targets = [target([[0.0, 0.0, 10.0, 10.0]], [0]), target([], [])]
    preds = [pred([], [], []), pred([], [], [])]
    result = mean_average_precision(preds, targets)
    assert result == {"map": 0.0, "map_50": 0.0, "map_75": 0.0,
                      "per_class": {0: 0.0}, "per_class_50": {0: 0.0}}


def test_perfect_detections_score_one():
    preds, targets = random_scene(2, num_classes=3)
    perfect = [{"boxes": t["boxes"], "scores": torch.linspace(1, 0.5, len(t["boxes"])), "labels": t["labels"]}
               for t in targets]
    result = mean_average_precision(perfect, targets)
    assert result["map"] == result["map_50"] == result["map_75"] == 1.0
    assert set(result["per_class"].values()) == {1.0}


def test_a_class_without_ground_truth_is_left_out():
    box = [[0.0, 0.0, 10.0, 10.0]]
    preds = [pred(box + [[50.0, 50.0, 60.0, 60.0]], [0.9, 0.8], [0, 1])]
    targets = [target(box, [0])]
    result = mean_average_precision(preds, targets)
    assert result["per_class"] == {0: 1.0} and result["map"] == 1.0
    # A class with ground truth but no detections is not left out: it scores 0.
    targets = [target(box + [[80.0, 80.0, 90.0, 90.0]], [0, 2])]
    result = mean_average_precision(preds, targets)
    assert result["per_class"] == {0: 1.0, 2: 0.0} and result["map"] == 0.5


def test_without_any_ground_truth_the_means_are_minus_one_as_in_pycocotools():
    result = mean_average_precision([pred([[0.0, 0.0, 1.0, 1.0]], [0.5], [0])], [target([], [])])
    assert result == {"map": -1.0, "map_50": -1.0, "map_75": -1.0, "per_class": {}, "per_class_50": {}}


def test_max_detections_is_per_class_and_image_as_in_pycocotools():
    box = [[0.0, 0.0, 10.0, 10.0]]
    # A higher-scoring class-1 false positive does not push the class-0 detection out of a cap of 1.
    preds = [pred(box + [[50.0, 50.0, 60.0, 60.0]], [0.8, 0.9], [0, 1])]
    targets = [target(box, [0])]
    assert mean_average_precision(preds, targets, max_detections=1)["map"] == 1.0
    # Within a class the cap keeps the best-scoring detection: here the false one.
    preds = [pred(box + [[50.0, 50.0, 60.0, 60.0]], [0.8, 0.9], [0, 0])]
    assert mean_average_precision(preds, targets, max_detections=1)["map"] == 0.0
    assert mean_average_precision(preds, targets, max_detections=2)["map_50"] == 0.5  # 1/2 at recall 1


def test_inputs_may_be_lists_float_labels_and_any_device_tensors():
    """d2l's banana labels are floats; whole numbers are accepted as class numbers."""
    preds = [{"boxes": [[0.0, 0.0, 10.0, 10.0]], "scores": [0.7], "labels": torch.tensor([0.0])}]
    targets = [{"boxes": np.array([[0.0, 0.0, 10.0, 10.0]]), "labels": [0]}]
    assert mean_average_precision(preds, targets)["map"] == 1.0


# ----------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    "preds, targets, match",
    [
        ([], [target([], [])], r"preds has 0 images but targets has 1"),
        ({"boxes": []}, [], r"preds must be a list with one dict per image"),
        ([pred([[0, 0, 1, 1]], [0.5], [0])], [{"boxes": torch.zeros(1, 4)}],
         r"targets\[0\] .* lacks 'labels'"),
        ([{"boxes": torch.zeros(1, 5), "scores": [0.5], "labels": [0]}], [target([], [])],
         r"preds\[0\]\['boxes'\] must have shape \(N, 4\).*got shape \(1, 5\)"),
        ([pred([[0, 0, 1, 1]] * 2, [0.5], [0, 0])], [target([], [])],
         r"preds\[0\]\['scores'\] must have shape \(2,\), one entry per row of preds\[0\]\['boxes'\]"),
        ([pred([[0, 0, 1, 1]], [0.5], [0])], [target([[0, 0, 1, 1]], [0, 1])],
         r"targets\[0\]\['labels'\] must have shape \(1,\)"),
        ([pred([[5, 0, 1, 1]], [0.5], [0])], [target([], [])], r"x2 < x1 or y2 < y1.*corners"),
        ([pred([[0, 0, 1, 1]], [float("nan")], [0])], [target([], [])], r"finite score"),
        ([pred([[0, 0, 1, 1]], [0.5], [0])], [target([[0, 0, 1, 1]], [0.5])], r"whole class numbers"),
    ],
)
def test_bad_inputs_say_what_to_change(preds, targets, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(preds, targets)


def test_bad_settings_say_what_to_change():
    preds, targets = [pred([[0, 0, 1, 1]], [0.5], [0])], [target([[0, 0, 1, 1]], [0])]
    with pytest.raises(ValueError, match=r"iou_threshold must be between 0 and 1.*got -0.5"):
        match_detections(torch.zeros(1, 4), torch.ones(1), torch.zeros(1, 4), iou_threshold=-0.5)
    with pytest.raises(ValueError, match=r"iou_threshold must be between 0 and 1"):
        precision_recall(preds, targets, 0, iou_threshold=1.5)
    with pytest.raises(ValueError, match=r"every entry of iou_thresholds must be between 0 and 1"):
        mean_average_precision(preds, targets, iou_thresholds=[0.5, -0.1])
    with pytest.raises(ValueError, match=r"iou_thresholds is empty"):
        mean_average_precision(preds, targets, iou_thresholds=[])
    with pytest.raises(ValueError, match=r"max_detections must be a positive integer"):
        mean_average_precision(preds, targets, max_detections=0)
    with pytest.raises(ValueError, match=r"Class 3 has no ground-truth boxes"):
        precision_recall(preds, targets, 3)
    with pytest.raises(ValueError, match=r"pred_scores must have shape \(1,\)"):
        match_detections(torch.zeros(1, 4), torch.ones(2), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"same length"):
        average_precision([1.0, 0.5], [0.5])
    with pytest.raises(ValueError, match=r"recall must not decrease"):
        average_precision([1.0, 0.5], [0.5, 0.25])
    with pytest.raises(ValueError, match=r"recall_points must be an integer >= 2"):
        average_precision([1.0], [1.0], recall_points=1)


# ----------------------------------------------------------------------------- the picture


def test_plot_precision_recall_is_labelled():
    preds, targets = random_scene(1, num_classes=2)
    ax = plot_precision_recall(preds, targets, class_names={0: "banana"})
    try:
        assert ax.get_xlabel() == "recall" and ax.get_ylabel() == "precision"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        result = mean_average_precision(preds, targets)
        assert legend[0] == f"banana, IoU 0.50: AP {result['per_class_50'][0]:.3f}"
        assert len(legend) == 2 * len(result["per_class"]) and legend[2].startswith("class 1, IoU 0.50")
        assert ax.lines[1].get_color() == PALETTE[0] and ax.lines[-1].get_color() == PALETTE[1]
    finally:
        plt.close(ax.figure)
