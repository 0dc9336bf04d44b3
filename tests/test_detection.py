"""Tests of helpers.detection: the banana generator is a pure function of its arguments, the
drawing helper, and tools/save_detection_samples.py reproducing the shipped preview byte for byte."""

import importlib.util

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


def test_the_tool_reproduces_the_shipped_preview_byte_for_byte(tmp_path):
    path = S.REPO_DATA_DIR / "detection_samples.png"
    assert path.is_file() and path.stat().st_size < 150_000
    script = S.REPO_DATA_DIR.parent / "tools" / "save_detection_samples.py"
    spec = importlib.util.spec_from_file_location("save_detection_samples", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.DEFAULT_OUTPUT == path
    tool.main(["--output", str(tmp_path / "samples.png")])
    written = (tmp_path / "samples.png").read_bytes()
    assert S.sha256_of(written) == S.read_manifest()["detection_samples.png"]
