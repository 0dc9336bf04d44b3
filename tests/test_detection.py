"""Tests of helpers.detection: the banana and shapes generators are pure functions of their
arguments, the shapes' boxes and masks describe exactly the visible pixels of each object, the
drawing helpers, and tools/save_detection_samples.py reproducing the shipped previews byte for
byte. (The loaders' splits and fast mode are tested in tests/test_datasets.py.)"""

import importlib.util
import time

import numpy as np
import pytest
import torch

from helpers import datasets as D
from helpers import detection
from helpers import sources as S


def plain_textures():
    """Two synthetic textures: a grey ramp and a blue-green checkerboard (uint8, 300x280)."""
    ramp = np.broadcast_to(np.linspace(0, 255, 280, dtype=np.uint8)[None, :, None], (300, 280, 3))
    checker = ((np.indices((300, 280)).sum(0) // 20) % 2 * 200).astype(np.uint8)
    return [ramp.copy(), np.stack([checker * 0, checker, 255 - checker], axis=-1)]


def test_generator_is_a_pure_function_of_its_arguments():
    textures = plain_textures()
    images, targets = detection.generate_bananas(textures, 6, seed=3, stream=1)
    assert images.shape == (6, 3, 256, 256) and images.dtype == torch.uint8
    assert targets.shape == (6, 1, 5) and targets.dtype == torch.float32
    again = detection.generate_bananas(plain_textures(), 6, seed=3, stream=1)
    assert torch.equal(images, again[0]) and torch.equal(targets, again[1])
    assert torch.equal(images[:2], detection.generate_bananas(textures, 2, seed=3, stream=1)[0])
    assert not torch.equal(targets, detection.generate_bananas(textures, 6, seed=3, stream=0)[1])
    assert not torch.equal(targets, detection.generate_bananas(textures, 6, seed=4, stream=1)[1])
    assert detection.generate_bananas(textures, 0)[0].shape == (0, 3, 256, 256)


def test_the_loader_passes_the_shipped_textures_and_the_split_stream():
    textures = D._textures(D._root_key(None))
    assert [t.dtype for t in textures] == [np.uint8] * 4 and len(textures) == len(D.DETECTION_TEXTURES)
    images, targets = detection.generate_bananas(textures, 5, seed=0, stream=1)  # stream 1: "val"
    loaded = D.detection_tensors("val", num_images=5)
    assert torch.equal(images, loaded[0]) and torch.equal(targets, loaded[1])


@pytest.mark.parametrize(
    ("textures", "message"),
    [
        ([], "at least one background texture"),
        ([np.zeros((300, 300, 3), np.float32)], "uint8 array of shape"),
        ([np.zeros((300, 300), np.uint8)], "uint8 array of shape"),
        ([np.zeros((100, 300, 3), np.uint8)], "at least 256x256"),
    ],
)
def test_bad_textures_are_explained(textures, message):
    with pytest.raises(ValueError, match=message):
        detection.generate_bananas(textures, 1)


def test_draw_detection_grid_size_and_red_boxes():
    images, targets = D.detection_tensors("val", num_images=4)
    grid = detection.draw_detection_grid(images, targets, ncols=2, tile=64)
    assert grid.size == (128, 128)
    as_float = detection.draw_detection_grid(images.float() / 255, targets, ncols=2, tile=64)
    assert np.array_equal(np.asarray(grid), np.asarray(as_float))
    x0, y0 = (targets[0, 0, 1:3] * 64).round().long().tolist()  # the first box's top-left corner
    assert tuple(np.asarray(grid)[y0, x0 + 1]) == (230, 20, 20)


def load_tool():
    script = S.REPO_DATA_DIR.parent / "tools" / "save_detection_samples.py"
    spec = importlib.util.spec_from_file_location("save_detection_samples", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_tool_reproduces_the_shipped_preview_byte_for_byte(tmp_path):
    path = S.REPO_DATA_DIR / "detection_samples.png"
    assert path.is_file() and path.stat().st_size < 150_000
    tool = load_tool()
    assert tool.DEFAULT_OUTPUT == path
    tool.main(["--output", str(tmp_path / "samples.png")])
    written = (tmp_path / "samples.png").read_bytes()
    assert S.sha256_of(written) == S.read_manifest()["detection_samples.png"]


def test_the_tool_reproduces_the_shipped_shapes_preview_byte_for_byte(tmp_path):
    path = S.REPO_DATA_DIR / "shapes_detection_samples.png"
    assert path.is_file() and path.stat().st_size < 150_000
    tool = load_tool()
    assert tool.SHAPES_OUTPUT == path
    tool.main(["--set", "shapes", "--output", str(tmp_path / "shapes.png")])
    written = (tmp_path / "shapes.png").read_bytes()
    assert S.sha256_of(written) == S.read_manifest()["shapes_detection_samples.png"]


# --- the multi-object "shapes" set ------------------------------------------------------------


def test_shapes_generator_is_a_pure_function_of_its_arguments():
    textures = plain_textures()
    images, targets, masks = detection.generate_shapes(textures, 6, seed=3, stream=1)
    assert images.shape == (6, 3, 256, 256) and images.dtype == torch.uint8
    assert targets.shape == (6, detection.MAX_OBJECTS, 5) == (6, 4, 5) and targets.dtype == torch.float32
    assert masks.shape == (6, 256, 256) and masks.dtype == torch.uint8
    again = detection.generate_shapes(plain_textures(), 6, seed=3, stream=1)
    assert all(torch.equal(a, b) for a, b in zip((images, targets, masks), again, strict=True))
    prefix = detection.generate_shapes(textures, 2, seed=3, stream=1)  # image i has its own stream
    assert all(torch.equal(a[:2], b) for a, b in zip((images, targets, masks), prefix, strict=True))
    assert not torch.equal(targets, detection.generate_shapes(textures, 6, seed=3, stream=0)[1])
    assert not torch.equal(targets, detection.generate_shapes(textures, 6, seed=4, stream=1)[1])
    assert [t.shape for t in detection.generate_shapes(textures, 0)] == [(0, 3, 256, 256), (0, 4, 5),
                                                                         (0, 256, 256)]
    assert detection.SHAPE_CLASSES == D.SHAPE_CLASSES == ("banana", "disc", "square")


def test_shapes_boxes_are_the_visible_pixels_and_masks_agree_with_boxes():
    images, targets, masks, instances = detection.generate_shapes(
        plain_textures(), 40, seed=0, stream=5, return_instances=True)
    assert instances.shape == masks.shape and instances.dtype == torch.uint8
    for target, mask, inst in zip(targets, masks, instances, strict=True):
        real = target[:, 0] >= 0
        n = int(real.sum())
        assert 1 <= n <= 4 and real[:n].all() and (target[n:] == -1).all()  # padding rows at the end
        assert set(target[:n, 0].tolist()) <= {0.0, 1.0, 2.0}
        assert set(inst.unique().tolist()) == set(range(n + 1))  # every object is visible
        for k in range(1, n + 1):  # the box of object k is the bounding box of its visible pixels
            rows, cols = (inst == k).nonzero().unbind(1)
            box = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) / 256
            assert torch.equal(target[k - 1, 1:], box.float())
        # the class mask is the instance map with each object's class + 1
        lut = torch.tensor([0, *(target[:n, 0] + 1).tolist()], dtype=torch.uint8)
        assert torch.equal(mask, lut[inst.long()])
        # every pixel of class c lies inside a box of class c
        for c in range(3):
            rows, cols = (mask == c + 1).nonzero().unbind(1)
            inside = torch.zeros(len(rows), dtype=torch.bool)
            for label, x0, y0, x1, y1 in (target[:n] * torch.tensor([1, 256, 256, 256, 256])).tolist():
                if label == c:
                    inside |= (x0 <= cols) & (cols < x1) & (y0 <= rows) & (rows < y1)
            assert inside.all()


def test_shapes_objects_overlap_sometimes_and_keep_half_their_pixels():
    textures = D._textures(D._root_key(None))
    partly_hidden = num_objects = 0
    for i in range(60):
        image, inst, classes, full = detection._shapes_example(textures, np.random.default_rng([0, 9, i]))
        visible = np.bincount(inst.ravel(), minlength=len(classes) + 1)[1:]
        assert (visible >= detection.MIN_VISIBLE * np.array(full)).all() and (visible <= full).all()
        partly_hidden += (visible < np.array(full)).any()
        num_objects += len(classes)
    assert 6 <= partly_hidden <= 40 and 100 <= num_objects <= 200  # about 30% of the images, 2.5 each


def test_the_full_shapes_set_is_quick_and_balanced():
    textures = D._textures(D._root_key(None))
    start = time.perf_counter()
    sets = {split: detection.generate_shapes(textures, D.SHAPES_SIZES[split], 0, D._SHAPES_STREAMS[split])
            for split in ("train", "val")}
    seconds = time.perf_counter() - start
    assert seconds < 30, f"1,200 images took {seconds:.1f} s; about 2 to 3 s is expected"
    for split, (_, targets, masks) in sets.items():
        labels = targets[..., 0][targets[..., 0] >= 0].long()
        counts = torch.bincount(labels, minlength=3)
        per_image = (targets[..., 0] >= 0).sum(1)
        print(f"{split}: {len(targets)} images, class counts {counts.tolist()}, objects per image "
              f"{torch.bincount(per_image, minlength=5).tolist()}")
        assert ((counts / counts.sum() > 0.27) & (counts / counts.sum() < 0.40)).all(), (split, counts)
        assert per_image.min() == 1 and per_image.max() == 4
        assert ((masks > 0).float().mean() > 0.05) and ((masks > 0).float().mean() < 0.3)
    print(f"generated in {seconds:.2f} s")


def test_shapes_generator_checks_its_arguments():
    with pytest.raises(ValueError, match="num_images must be 0 or more"):
        detection.generate_shapes(plain_textures(), -1)
    with pytest.raises(ValueError, match="at least 256x256"):
        detection.generate_shapes([np.zeros((100, 300, 3), np.uint8)], 1)


# --- drawing class-coloured boxes and masks -----------------------------------------------------


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_class_colours_come_from_the_course_palette():
    from helpers.plotting import PALETTE

    assert set(detection.CLASS_COLORS) <= set(PALETTE) and len(set(detection.CLASS_COLORS)) == 8


def test_draw_detection_grid_colours_and_names_boxes_by_class():
    images, targets, masks = detection.generate_shapes(plain_textures(), 3, seed=1)
    grid = detection.draw_detection_grid(images, targets, ncols=3, tile=128,
                                         class_names=detection.SHAPE_CLASSES)
    assert grid.size == (384, 128)
    pixels = np.asarray(grid)
    for i, target in enumerate(targets):
        label, *box = target[(target[:, 0] >= 0).sum() - 1].tolist()  # the last box, drawn on top
        x, y = round((box[0] + box[2]) / 2 * 128) + 128 * i, round(box[3] * 128) - 1
        assert tuple(pixels[y, x]) == hex_rgb(detection.CLASS_COLORS[int(label)])  # its bottom edge
    plain = np.asarray(detection.draw_detection_grid(images, None, ncols=3, tile=128))
    assert not np.array_equal(plain, pixels)
    with_masks = detection.draw_detection_grid(images, None, 3, 128, masks=masks, alpha=0.0)
    assert np.array_equal(np.asarray(with_masks), plain)  # an invisible mask changes nothing
    with pytest.raises(ValueError, match="Label 2 has no name"):
        detection.draw_detection_grid(images, targets.clamp(max=2), class_names=["banana", "disc"])
    with pytest.raises(ValueError, match="one mask per image: 3 images, 2 masks"):
        detection.draw_detection_grid(images, targets, masks=masks[:2])
    with pytest.raises(ValueError, match="one target per image: 3 images, 1 targets"):
        detection.draw_detection_grid(images, targets[:1])


def test_draw_mask_overlay_paints_the_class_colours():
    image = torch.full((3, 4, 5), 100, dtype=torch.uint8)
    mask = torch.zeros(4, 5, dtype=torch.long)
    mask[1, 2], mask[3, 4] = 1, 3
    solid = np.asarray(detection.draw_mask_overlay(image, mask, alpha=1.0))
    assert solid.shape == (4, 5, 3) and tuple(solid[0, 0]) == (100, 100, 100)
    assert tuple(solid[1, 2]) == hex_rgb(detection.CLASS_COLORS[0])
    assert tuple(solid[3, 4]) == hex_rgb(detection.CLASS_COLORS[2])
    half = np.asarray(detection.draw_mask_overlay(image.float() / 255, mask.numpy(), alpha=0.5))
    expected = np.round((100 + np.array(hex_rgb(detection.CLASS_COLORS[0]))) / 2)
    assert np.array_equal(half[1, 2], expected) and tuple(half[0, 0]) == (100, 100, 100)
    with pytest.raises(ValueError, match=r"mask \(H, W\).*\(3, 4, 5\).*\(5, 4\)"):
        detection.draw_mask_overlay(image, mask.T)
    with pytest.raises(ValueError, match="Mask values must be 0 .background. to 8"):
        detection.draw_mask_overlay(image, mask * 3)
    with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
        detection.draw_mask_overlay(image, mask, alpha=1.5)


# --- chapter 9's "Try it" widgets: the anchors of one cell, and non-maximum suppression ---------------

def tiny_image(height=32, width=40):
    """A small float image in [0, 1]: a colour ramp (fast to draw)."""
    across = torch.linspace(0, 1, width).expand(height, width)
    down = torch.linspace(0, 1, height)[:, None].expand(height, width)
    return torch.stack([across, down, 1 - across])


def anchor_counts(message):
    """The numbers of a draw_anchors message: per-cell anchors, cell, map side, cell positives,
    best IoU, and the whole map's positives and anchors."""
    import re

    cell = re.search(r"(\d+) anchors? at cell \((\d+), (\d+)\) of (\d+)x\d+: (\d+) positive", message)
    best = re.search(r"best IoU ([\d.]+) \(size ([\d.]+), ratio ([\d.]+)\)", message)
    whole = re.search(r"Whole map: (\d+) of (\d+) anchors positive", message)
    return ([int(g) for g in cell.groups()], (float(best[1]), float(best[2]), float(best[3])),
            None if whole is None else (int(whole[1]), int(whole[2])))


def expected_anchor_counts(gt, sizes, ratios, side, row, col, threshold):
    """Independently of draw_anchors: the cell's anchors are those centred on the cell's centre;
    an anchor is positive if its IoU with a box reaches the threshold, or if d2l's greedy matching
    gives it a box (the largest IoU left, then its anchor and box are taken out, once per box)."""
    from helpers.boxes import anchor_boxes, box_iou

    anchors = anchor_boxes(side, side, sizes, ratios)
    iou = box_iou(anchors, gt)
    positive = iou.max(1).values >= threshold
    free = iou.numpy().copy()
    for _ in range(len(gt)):
        anchor, box = np.unravel_index(np.argmax(free), free.shape)
        positive[anchor] = True
        free[anchor, :], free[:, box] = -1, -1
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    in_cell = ((centre - torch.tensor([(col + 0.5) / side, (row + 0.5) / side])).abs() < 1e-6).all(1)
    return int(in_cell.sum()), int(positive[in_cell].sum()), float(iou.max(1).values[in_cell].max()), \
        int(positive.sum()), len(anchors)


GT = torch.tensor([[0.1, 0.15, 0.45, 0.5], [0.6, 0.55, 0.95, 0.9]])  # two ground-truth boxes


@pytest.mark.parametrize(("sizes", "ratios", "side", "row", "col", "threshold"), [
    ((0.75, 0.5, 0.25), (1, 2, 0.5), 4, 1, 1, 0.5),
    ("0.3, 0.4", "1", 8, 2, 2, 0.3),
    ("0.2 0.35", "1, 2, 1/2", 6, 4, 4, 0.5),
    ([0.9], [1, 3], 1, 0, 0, 0.2),
    ((0.35,), (1, 2), 5, 0, 4, 0.9),  # nothing reaches 0.9: only each box's best anchor is positive
])
def test_draw_anchors_counts_positives_as_box_iou_does(sizes, ratios, side, row, col, threshold):
    import matplotlib.pyplot as plt

    fig, message = detection.draw_anchors(tiny_image(), GT, sizes, ratios, side, row, col, threshold)
    plt.close(fig)
    parsed_sizes = detection.parse_numbers(sizes, "sizes")
    parsed_ratios = detection.parse_numbers(ratios, "ratios")
    per_cell, positives, best_iou, total, num_anchors = expected_anchor_counts(
        GT, parsed_sizes, parsed_ratios, side, row, col, threshold)
    (n, r, c, s, p), (best, best_size, best_ratio), whole = anchor_counts(message)
    assert (n, r, c, s, p) == (per_cell, row, col, side, positives) == (
        len(parsed_sizes) + len(parsed_ratios) - 1, row, col, side, positives)
    assert best == pytest.approx(best_iou, abs=0.005)
    assert best_size in parsed_sizes and best_ratio in [round(v, 3) for v in parsed_ratios]
    assert whole == (total, num_anchors) and num_anchors == side * side * per_cell
    assert f"for {len(GT)} ground-truth boxes" in message


def test_draw_anchors_tells_threshold_positives_from_a_box_s_best_anchor():
    import matplotlib.pyplot as plt

    fig, message = detection.draw_anchors(tiny_image(), GT[:1], [0.35], [1], 1, 0, 0, 0.5)
    plt.close(fig)
    assert "1 positive (0 with IoU ≥ 0.50, 1 as the best anchor of a box)" in message
    assert "Whole map: 1 of 1 anchors positive (1 only as the best anchor of a box" in message
    fig, message = detection.draw_anchors(tiny_image(), GT[:1], [0.35], [1], 2, 0, 0, 0.5)
    plt.close(fig)
    assert "1 positive (IoU ≥ 0.50)" in message and "Whole map: 1 of 4" in message
    assert "only as the best" not in message
    no_box = torch.zeros(0, 4)
    fig, message = detection.draw_anchors(tiny_image(), no_box, [0.5], [1], 2, 1, 1, 0.5)
    plt.close(fig)
    assert "0 positive" in message and "no ground-truth box: every anchor is background" in message
    rows = torch.cat([torch.tensor([[1.0, *GT[0].tolist()]]), torch.full((3, 5), -1.0)])  # padded targets
    fig, from_rows = detection.draw_anchors(tiny_image(), rows, [0.35], [1], 2, 0, 0, 0.5, show_all=True)
    plt.close(fig)
    fig, from_boxes = detection.draw_anchors(tiny_image(), GT[:1], [0.35], [1], 2, 0, 0, 0.5, show_all=True)
    plt.close(fig)
    assert from_rows == from_boxes and "for 1 ground-truth box." in from_rows


def test_draw_anchors_picture_is_labelled():
    import matplotlib.pyplot as plt

    fig, _ = detection.draw_anchors(tiny_image().mul(255).byte(), GT, "0.5, 0.25", "1, 2", 4, 1, 1, 0.3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ground truth" in labels and any(t.startswith("1: size 0.5, ratio 1, IoU") for t in labels)
    assert len([t for t in labels if t[0].isdigit()]) == 3 and "cell (1, 1)" in ax.get_title()
    assert ax.get_xlabel() == "x (pixels)"
    anchors = [p for p in ax.patches if (p.get_label() or "")[:1].isdigit()]
    assert len(anchors) == 3 and any("positive" in p.get_label() for p in anchors)
    for patch in anchors:  # positive: solid green; background: dashed vermillion
        positive = "positive" in patch.get_label()
        colour = detection.POSITIVE_COLOR if positive else detection.NEGATIVE_COLOR
        assert patch.get_edgecolor()[:3] == tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        assert (patch.get_linestyle() == "-") == positive
    plt.close(fig)


def test_anchor_and_nms_colours_come_from_the_course_palette():
    from helpers.plotting import PALETTE

    assert {detection.POSITIVE_COLOR, detection.NEGATIVE_COLOR} <= set(PALETTE)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"ratios": ""}, r"at least one number for ratios"),
    ({"ratios": " , "}, r"at least one number for ratios"),
    ({"sizes": "0.5, big"}, r"'big' in sizes is not a number"),
    ({"sizes": "0.5, -1"}, r"sizes must be a number > 0, got '-1'"),
    ({"ratios": "1/0"}, r"'1/0' in ratios is not a number"),
    ({"ratios": []}, r"at least one number for ratios"),
    ({"sizes": "0.1 0.2 0.3 0.4 0.5 0.6 0.7", "ratios": "1 2 3 4 5 6 7"},
     r"13 anchors per cell; give at most 12"),
    ({"row": 4}, r"row must be a whole number from 0 to 3 on a 4x4 feature map, got 4"),
    ({"col": -1}, r"col must be a whole number from 0 to 3"),
    ({"feature_size": 0}, r"feature_size must be a whole number >= 1"),
    ({"iou_threshold": 1.5}, r"iou_threshold must be a number from 0 to 1, got 1.5"),
    ({"image": torch.zeros(32, 32, 3)}, r"image must have shape \(3, H, W\)"),
    ({"gt_boxes": torch.zeros(2, 3)}, r"gt_boxes must be boxes \(G, 4\)"),
    ({"gt_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.9]])}, r"x1 <= x2 and y1 <= y2"),
])
def test_draw_anchors_explains_bad_settings(kwargs, message):
    settings = {"image": tiny_image(), "gt_boxes": GT, "sizes": "0.5", "ratios": "1", "feature_size": 4,
                "row": 0, "col": 0, "iou_threshold": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        detection.draw_anchors(**settings)


def test_parse_numbers_reads_what_a_learner_types():
    assert detection.parse_numbers("0.75, 0.5 0.25", "sizes") == [0.75, 0.5, 0.25]
    assert detection.parse_numbers(" 1;2 , 1/2 ", "ratios") == [1.0, 2.0, 0.5]
    assert detection.parse_numbers((1, 2.5), "ratios") == [1.0, 2.5]
    assert detection.parse_numbers(torch.tensor([0.5]), "ratios") == [0.5]
    for bad in ("nan", "inf", "0"):
        with pytest.raises(ValueError, match="ratios"):
            detection.parse_numbers(bad, "ratios")


def count_redraws(explorer):
    calls = []
    draw = explorer.draw
    explorer.draw = lambda **values: calls.append(values) or draw(**values)
    return calls


def test_anchor_explorer_drives_every_control():
    import matplotlib.pyplot as plt

    from helpers.widgets import PlotExplorer

    image = tiny_image()
    explorer = detection.AnchorExplorer(image, GT, feature_size=4)
    assert isinstance(explorer, PlotExplorer) and explorer.image.value[:4] == b"\x89PNG"
    assert set(explorer.controls) == {"sizes", "ratios", "feature_size", "row", "col", "iou_threshold",
                                      "show_all"}
    assert (explorer.controls["row"].value, explorer.controls["col"].value) == (1, 1)  # GT[0]'s centre

    def expected():
        values = explorer.values()
        fig, message = detection.draw_anchors(image, GT, **values)
        plt.close(fig)
        return message

    assert explorer.message == expected() and "5 anchors at cell (1, 1) of 4x4" in explorer.message
    calls = count_redraws(explorer)
    explorer.controls["feature_size"].value = 8  # row and col follow, in one redraw
    assert len(calls) == 1 and explorer.controls["row"].max == explorer.controls["col"].max == 7
    assert (explorer.controls["row"].value, explorer.controls["col"].value) == (3, 3)  # the same spot
    assert "at cell (3, 3) of 8x8" in explorer.message and explorer.message == expected()
    for name, value in [("row", 6), ("col", 7), ("sizes", "0.3, 0.6"), ("ratios", "1, 2"),
                        ("iou_threshold", 0.3), ("show_all", True), ("feature_size", 2)]:
        explorer.controls[name].value = value
        assert explorer.message == expected(), name
        assert explorer.seconds < 5.0
    assert len(calls) == 8 and "3 anchors at cell (1, 1) of 2x2" in explorer.message
    assert explorer.controls["row"].max == 1 and explorer.controls["row"].value == 1
    (_, _, _, _, cell_positives), _, whole = anchor_counts(explorer.message)
    _, positives, _, total, num_anchors = expected_anchor_counts(GT, [0.3, 0.6], [1, 2], 2, 1, 1, 0.3)
    assert (cell_positives, *whole) == (positives, total, num_anchors)


def test_anchor_explorer_turns_bad_text_into_the_warning_line():
    explorer = detection.AnchorExplorer(tiny_image(), GT[1], feature_size=3)
    assert "cell (2, 2) of 3x3" in explorer.message
    picture = explorer.image.value
    explorer.controls["ratios"].value = ""
    assert "⚠" in explorer.message and "Give at least one number for ratios" in explorer.message
    explorer.controls["sizes"].value = "0.5, x"
    assert "'x' in sizes is not a number" in explorer.message and explorer.image.value == picture
    explorer.controls["ratios"].value = "1, 2"
    explorer.controls["sizes"].value = "0.5"
    assert "⚠" not in explorer.message and "2 anchors at cell (2, 2)" in explorer.message
    with pytest.raises(ValueError, match="feature_size must be 1 to 16"):
        detection.AnchorExplorer(tiny_image(), GT, feature_size=17)
    with pytest.raises(ValueError, match="row must be a whole number from 0 to 3"):
        detection.AnchorExplorer(tiny_image(), GT, feature_size=4, row=4)


def test_importing_detection_imports_no_widget_or_pyplot_code():
    """helpers.datasets imports helpers.detection: the explorers are created on first access."""
    import subprocess
    import sys

    code = ("import sys; from helpers import detection; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ipywidgets' "
            "or m == 'matplotlib.pyplot')); "
            "from helpers.detection import NMSExplorer; from helpers.widgets import PlotExplorer; "
            "print(issubclass(NMSExplorer, PlotExplorer), detection.AnchorExplorer.__qualname__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "True AnchorExplorer"]
    assert "AnchorExplorer" in dir(detection) and detection.AnchorExplorer is detection.AnchorExplorer
    with pytest.raises(AttributeError, match="no attribute 'Explorer'"):
        detection.Explorer  # noqa: B018


# --- non-maximum suppression -----------------------------------------------------------------------

def random_outputs(num_boxes=200, num_classes=3, seed=0):
    """Raw outputs of an imaginary detector: boxes clustered around three objects, class scores."""
    g = torch.Generator().manual_seed(seed)
    objects = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.6], [0.3, 0.6, 0.7, 0.95]])
    which = torch.randint(0, 3, (num_boxes,), generator=g)
    boxes = objects[which] + 0.05 * torch.randn(num_boxes, 4, generator=g)
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:]), boxes[:, :2].maximum(boxes[:, 2:])], 1)
    logits = torch.randn(num_boxes, num_classes + 1, generator=g)
    logits[torch.arange(num_boxes), 1 + which % num_classes] += 2.5
    scores = logits.softmax(1)[:, 1:]
    targets = torch.cat([torch.arange(3.0)[:, None] % num_classes, objects], 1)
    return boxes, scores, torch.cat([targets, torch.full((1, 5), -1.0)])  # one padding row


def torchvision_keep(boxes, scores, score_threshold, iou_threshold, class_aware):
    from torchvision.ops import batched_nms, nms

    best, labels = scores.max(1)
    above = best >= score_threshold
    b, s, c = boxes[above], best[above], labels[above]
    keep = batched_nms(b, s, c, iou_threshold) if class_aware else nms(b, s, iou_threshold)
    return b[keep], s[keep], c[keep], int(above.sum())


@pytest.mark.parametrize("class_aware", [False, True])
@pytest.mark.parametrize(("score_threshold", "iou_threshold"),
                         [(0.3, 0.5), (0.1, 0.3), (0.6, 0.7), (0.0, 0.5)])
def test_select_and_suppress_keeps_what_torchvision_keeps(score_threshold, iou_threshold, class_aware):
    boxes, scores, _ = random_outputs()
    result = detection.select_and_suppress(boxes, scores, score_threshold, iou_threshold, class_aware)
    kept_boxes, kept_scores, kept_labels, num_above = torchvision_keep(boxes, scores, score_threshold,
                                                                       iou_threshold, class_aware)
    detections = result.detections()
    assert torch.equal(detections["boxes"], kept_boxes) and torch.equal(detections["scores"], kept_scores)
    assert torch.equal(detections["labels"], kept_labels)
    assert len(result.candidates) == result.num_above == num_above
    assert len(result.keep) + len(result.suppressed) == num_above
    assert (result.scores[:-1] >= result.scores[1:]).all()  # candidates by decreasing score


def test_select_and_suppress_caps_the_candidates():
    boxes, scores, _ = random_outputs(300)
    result = detection.select_and_suppress(boxes, scores, 0.0, 0.5, max_candidates=40)
    assert len(result.candidates) == 40 and result.num_above == 300
    assert torch.equal(result.scores, scores.max(1).values.sort(descending=True).values[:40])
    with pytest.raises(ValueError, match="max_candidates must be a whole number >= 1"):
        detection.select_and_suppress(boxes, scores, 0.0, 0.5, max_candidates=0)


def nms_counts(message):
    import re

    kept = re.search(r"kept (\d+) of (\d+) candidates with score ≥ ([\d.]+) \((\d+) suppressed", message)
    ap = re.search(r"AP@0.5 of this image ([\d.]+)", message)
    return [int(kept[1]), int(kept[2]), int(kept[4])], None if ap is None else float(ap[1])


def test_class_aware_nms_keeps_overlapping_objects_of_different_classes():
    import matplotlib.pyplot as plt

    boxes = torch.tensor([[0.1, 0.1, 0.6, 0.6], [0.15, 0.12, 0.62, 0.6], [0.7, 0.7, 0.8, 0.8]])
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.2]])  # a banana, a disc, noise
    targets = torch.tensor([[0, 0.1, 0.1, 0.6, 0.6], [1, 0.15, 0.12, 0.62, 0.6], [-1, -1, -1, -1, -1]])
    fig, agnostic = detection.draw_nms(tiny_image(), boxes, scores, 0.3, 0.5, False, targets)
    plt.close(fig)
    fig, aware = detection.draw_nms(tiny_image(), boxes, scores, 0.3, 0.5, True, targets)
    plt.close(fig)
    assert nms_counts(agnostic) == ([1, 2, 1], 0.5)  # the disc is suppressed by the banana: AP 1 and 0
    assert nms_counts(aware) == ([2, 2, 0], 1.0)
    assert "by class-agnostic NMS at IoU 0.50" in agnostic and "by class-aware NMS" in aware
    assert "(2 ground-truth boxes)" in aware
    kept_boxes, *_ = torchvision_keep(boxes, scores, 0.3, 0.5, False)
    assert len(kept_boxes) == 1 and len(torchvision_keep(boxes, scores, 0.3, 0.5, True)[0]) == 2


def test_draw_nms_without_candidates_says_so():
    import matplotlib.pyplot as plt

    boxes, scores, targets = random_outputs()
    top = float(scores.max())
    fig, message = detection.draw_nms(tiny_image(), boxes, scores, 1.0, 0.5, False, targets)
    assert fig is not None and message.startswith("no candidates: no box's best class scores ≥ 1.00")
    assert f"(the highest score is {top:.2f}); lower the score threshold" in message
    assert "AP@0.5 of this image 0.00" in message
    plt.close(fig)
    fig, message = detection.draw_nms(tiny_image(), boxes, scores, 0.3, 0.5, False, targets[3:])
    assert "no ground-truth box in this image, so no AP" in message
    plt.close(fig)
    fig, message = detection.draw_nms(tiny_image(), boxes[:0], scores[:0], 0.3, 0.5)
    assert message.startswith("no candidates") and "AP" not in message
    plt.close(fig)


def test_draw_nms_draws_kept_and_suppressed_boxes_labelled_and_capped():
    import matplotlib.pyplot as plt

    boxes, scores, targets = random_outputs(400)
    fig, message = detection.draw_nms(tiny_image(), boxes, scores, 0.0, 0.5, False, targets, max_drawn=7)
    counts, ap = nms_counts(message)
    kept_boxes, kept_scores, kept_labels, _ = torchvision_keep(boxes, scores, 0.0, 0.5, False)
    assert counts == [len(kept_boxes), 400, 400 - len(kept_boxes)] and len(kept_boxes) > 7
    from helpers.average_precision import mean_average_precision

    real = targets[targets[:, 0] >= 0]
    pred = {"boxes": kept_boxes, "scores": kept_scores, "labels": kept_labels}
    truth = {"boxes": real[:, 1:], "labels": real[:, 0]}
    expected_ap = mean_average_precision([pred], [truth], [0.5])["map_50"]
    assert ap == pytest.approx(expected_ap, abs=0.005)
    assert f"not drawn: the lowest-scoring {len(kept_boxes) - 7} of {len(kept_boxes)} kept and" in message
    ax = fig.axes[0]
    suppressed, truth, kept = ax.collections
    assert len(suppressed.get_paths()) == len(kept.get_paths()) == 7 and len(truth.get_paths()) == 3
    assert suppressed.get_linestyle()[0][1] is not None  # dashed
    hex_colours = [detection.CLASS_COLORS[c] for c in kept_labels[:7].tolist()]
    assert [tuple(c[:3]) for c in kept.get_edgecolor()] == [
        tuple(int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)) for h in hex_colours]
    names = [t.get_text() for t in ax.texts]
    assert names[0] == f"{detection.SHAPE_CLASSES[int(kept_labels[0])]} {float(kept_scores[0]):.2f}"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == [f"kept ({len(kept_boxes)})", f"suppressed ({400 - len(kept_boxes)})",
                          "ground truth (3)"] and legend[3:] == list(detection.SHAPE_CLASSES)
    assert "class-agnostic NMS: score ≥ 0.00" in ax.get_title()
    plt.close(fig)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scores": torch.rand(10, 2)}, r"scores has 2 classes \(columns\) but class_names has 3"),
    ({"scores": torch.rand(9, 3)}, r"scores must be a tensor \(A, C\).*A = 10 boxes, got \(9, 3\)"),
    ({"boxes": torch.rand(10, 5)}, r"boxes must be a tensor \(A, 4\)"),
    ({"boxes": torch.tensor([[0.5, 0.5, 0.1, 0.9]] * 10)}, r"x2 < x1 or y2 < y1"),
    ({"score_threshold": -0.1}, r"score_threshold must be a number from 0 to 1"),
    ({"iou_threshold": 2}, r"iou_threshold must be a number from 0 to 1"),
    ({"targets": torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 2)}, r"targets must be rows \(G, 5\)"),
    ({"targets": torch.tensor([[-1.0] * 5, [0, 0.5, 0.1, 0.2, 0.5]])},
     r"targets\[1\] = \[0.5, 0.1, 0.2, 0.5\] has x2 < x1"),
    ({"class_names": ()}, r"Give 1 to 8 class names"),
    ({"scores": torch.full((10, 3), float("nan"))}, r"scores contains nan"),
])
def test_draw_nms_explains_bad_input(kwargs, message):
    settings = {"image": tiny_image(), "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]] * 10),
                "scores": torch.rand(10, 3)} | kwargs
    with pytest.raises(ValueError, match=message):
        detection.draw_nms(**settings)


def test_nms_explorer_drives_every_control_and_updates_fast():
    import statistics

    from helpers.average_precision import mean_average_precision
    from helpers.widgets import PlotExplorer

    outputs = [random_outputs(150, seed=s) for s in range(3)]
    images = torch.stack([tiny_image()] * 3)
    boxes, scores = [o[0] for o in outputs], torch.stack([o[1] for o in outputs])
    targets = torch.stack([o[2] for o in outputs])
    explorer = detection.NMSExplorer(images, boxes, scores, targets)
    assert isinstance(explorer, PlotExplorer) and explorer.image.value[:4] == b"\x89PNG"
    assert set(explorer.controls) == {"index", "score_threshold", "iou_threshold", "class_aware"}
    assert explorer.controls["index"].options[0] == ("image 0 (3 objects)", 0)
    calls = count_redraws(explorer)
    seconds = []
    changes = [("index", 1), ("score_threshold", 0.45), ("iou_threshold", 0.3), ("class_aware", True),
               ("index", 2), ("score_threshold", 0.2), ("class_aware", False), ("iou_threshold", 0.7)]
    for name, value in changes:
        explorer.controls[name].value = value
        seconds.append(explorer.seconds)
        v = explorer.values()
        kept, kept_scores, kept_labels, above = torchvision_keep(boxes[v["index"]], scores[v["index"]],
                                                                 v["score_threshold"], v["iou_threshold"],
                                                                 v["class_aware"])
        pred = {"boxes": kept, "scores": kept_scores, "labels": kept_labels}
        real = targets[v["index"]][targets[v["index"]][:, 0] >= 0]
        expected_ap = mean_average_precision([pred], [{"boxes": real[:, 1:], "labels": real[:, 0]}],
                                             [0.5])["map_50"]
        counts, ap = nms_counts(explorer.message)
        assert counts == [len(kept), above, above - len(kept)], (name, value)
        assert ap == pytest.approx(expected_ap, abs=0.005), (name, value)
    assert len(calls) == 8
    assert statistics.median(seconds) < 1.0, seconds  # about 0.1 s on an idle 2-core machine
    explorer.controls["score_threshold"].value = 1.0
    assert explorer.message.startswith("no candidates") and "⚠" not in explorer.message
    with pytest.raises(ValueError, match="one entry per image, at least one: 3 images, 3 boxes, 2 scores"):
        detection.NMSExplorer(images, boxes, scores[:2])
    with pytest.raises(ValueError, match="scores has 3 classes"):
        detection.NMSExplorer(images, boxes, scores, class_names=["banana"])
