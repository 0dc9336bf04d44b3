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
