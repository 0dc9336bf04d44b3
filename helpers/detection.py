"""Object detection: the synthetic "banana" data set and drawing boxes on images.

d2l's banana-detection set has no clear license, so the course generates one in the same format:
256x256 RGB images with one yellow, crescent-shaped object each, on random crops of background
textures, with the object's box. :func:`generate_bananas` is a pure function of its arguments (the
textures, how many images, a seed and a stream number), so the same call gives the same images on
every machine; :mod:`helpers.datasets` passes it the shipped textures and caches the result
(``detection_tensors``, ``load_detection``). :func:`draw_detection_grid` shows images with their
boxes. (Chapter 9 adds boxes, anchors, IoU and non-maximum suppression here.)

Boxes are ``[xmin, ymin, xmax, ymax]`` in continuous pixel coordinates: pixel ``(row, col)``
covers ``[col, col + 1) x [row, row + 1)``, so ``xmax - xmin`` is the width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

IMAGE_SIZE = 256  # side of a generated image, in pixels


def _check_textures(textures: Sequence[np.ndarray]) -> None:
    if len(textures) == 0:
        raise ValueError("Give at least one background texture (a uint8 array of shape (H, W, 3)).")
    for i, texture in enumerate(textures):
        shape = getattr(texture, "shape", None)
        if getattr(texture, "dtype", None) != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise ValueError(
                f"Texture {i} must be a uint8 array of shape (H, W, 3), got "
                f"{getattr(texture, 'dtype', type(texture).__name__)} of shape {shape}."
            )
        if shape[0] < IMAGE_SIZE or shape[1] < IMAGE_SIZE:
            raise ValueError(f"Texture {i} is {shape[0]}x{shape[1]}; it needs at least "
                             f"{IMAGE_SIZE}x{IMAGE_SIZE} pixels for a crop.")


def _background(textures: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random 256x256 crop of a random texture, randomly flipped and tinted."""
    size = IMAGE_SIZE
    texture = textures[rng.integers(len(textures))]
    top = rng.integers(texture.shape[0] - size + 1)
    left = rng.integers(texture.shape[1] - size + 1)
    crop = texture[top : top + size, left : left + size].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.6, 1.1, size=3) * rng.uniform(0.7, 1.2)
    return crop * tint.astype(np.float32)


def _banana(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A crescent-shaped yellow object on a square patch: (alpha (S, S), colour (S, S, 3)).

    The crescent is an ellipse minus a second ellipse shifted along the minor axis; the
    shape is rotated by a random angle. Edges are soft (about one pixel wide).
    """
    a = rng.uniform(18, 50)  # semi-major axis in pixels
    b = a * rng.uniform(0.45, 0.6)
    shift, a_in = b * rng.uniform(0.45, 0.7), a * rng.uniform(1.0, 1.1)
    angle = rng.uniform(0, 2 * np.pi)
    half = int(np.ceil(a)) + 1
    v, u = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    x = u * np.cos(angle) + v * np.sin(angle)  # coordinates along the object's axes
    y = -u * np.sin(angle) + v * np.cos(angle)
    r_out = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    r_in = np.sqrt((x / a_in) ** 2 + ((y - shift) / b) ** 2)
    # (1 - r) * b approximates the distance to the ellipse edge in pixels
    alpha = np.clip((1 - r_out) * b + 0.5, 0, 1) * np.clip((r_in - 1) * b + 0.5, 0, 1)
    yellow = np.array([rng.uniform(215, 255), rng.uniform(180, 225), rng.uniform(20, 80)])
    shade = 0.7 + 0.3 * np.clip(1.2 - r_out, 0, 1)[..., None]
    tips = (np.abs(x) > 0.8 * a)[..., None]
    colour = np.where(tips, yellow * [0.55, 0.45, 0.3], yellow * shade)
    return alpha, colour


def _example(textures: Sequence[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """One image (uint8 (256, 256, 3)) with one banana, and its box [xmin, ymin, xmax, ymax]."""
    image = _background(textures, rng)
    alpha, colour = _banana(rng)
    side = alpha.shape[0]
    top, left = rng.integers(IMAGE_SIZE - side + 1, size=2)
    patch = image[top : top + side, left : left + side]
    patch[:] = alpha[..., None] * colour + (1 - alpha[..., None]) * patch
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    box = [left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1]
    return np.clip(image, 0, 255).astype(np.uint8), [float(c) for c in box]


def generate_bananas(
    textures: Sequence[np.ndarray], num_images: int, seed: int = 0, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``num_images`` banana-detection images on crops of ``textures``, and their boxes.

    ``textures`` are uint8 arrays ``(H, W, 3)`` of at least 256x256 pixels. Image ``i`` is drawn
    from its own random stream ``numpy.random.default_rng([seed, stream, i])``, so it is the same
    whatever ``num_images`` is (the first images of a longer run), and different ``stream``
    numbers (one per split) give independent images. Returns ``images`` uint8
    ``(N, 3, 256, 256)`` and ``targets`` float32 ``(N, 1, 5)`` holding ``[label, xmin, ymin,
    xmax, ymax]`` with label 0 and the box corners divided by 256 (so in [0, 1]), as d2l's
    ``read_data_bananas``.
    """
    _check_textures(textures)
    if num_images < 0:
        raise ValueError(f"num_images must be 0 or more, got {num_images}.")
    images = np.empty((num_images, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    targets = np.zeros((num_images, 1, 5), np.float32)  # label 0 = banana
    for i in range(num_images):
        rng = np.random.default_rng([seed, stream, i])
        images[i], targets[i, 0, 1:] = _example(textures, rng)
    targets[:, :, 1:] /= IMAGE_SIZE
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(targets)


def draw_detection_grid(
    images: torch.Tensor, targets: torch.Tensor, ncols: int = 6, tile: int = 128
) -> Image.Image:
    """A grid of detection images (uint8 or [0, 1] float) with their boxes drawn in red.

    ``targets`` is ``(N, M, 5)`` rows ``[label, xmin, ymin, xmax, ymax]`` with corners in [0, 1];
    rows with a negative label (padding) are not drawn.
    """
    images = images if images.dtype == torch.uint8 else (images * 255).round().to(torch.uint8)
    nrows = math.ceil(len(images) / ncols)
    grid = Image.new("RGB", (ncols * tile, nrows * tile), "white")
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        pic = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(pic)
        for label, *box in target.tolist():
            if label >= 0:
                draw.rectangle([c * tile for c in box], outline=(230, 20, 20), width=2)
        grid.paste(pic, ((i % ncols) * tile, (i // ncols) * tile))
    return grid
