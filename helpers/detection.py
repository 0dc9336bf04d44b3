"""Object detection: the synthetic "banana" and "shapes" data sets, and drawing boxes and masks.

d2l's banana-detection set has no clear license, so the course generates one in the same format:
256x256 RGB images with one yellow, crescent-shaped object each, on random crops of background
textures, with the object's box. :func:`generate_bananas` is a pure function of its arguments (the
textures, how many images, a seed and a stream number), so the same call gives the same images on
every machine; :mod:`helpers.datasets` passes it the shipped textures and caches the result
(``detection_tensors``, ``load_detection``). :func:`generate_shapes` makes the multi-object
variant in the same way: 1 to 4 objects per image of three classes (:data:`SHAPE_CLASSES`:
banana, disc, square), with boxes of the visible part of every object and a per-pixel class mask
for semantic segmentation (``shapes_tensors``, ``load_shapes``). :func:`draw_detection_grid`
shows images with their boxes (coloured and named by class if asked) and masks,
:func:`draw_mask_overlay` one image with its mask.

Chapter 9's "Try it" widgets are here too (the box, anchor, IoU and NMS functions themselves are
in :mod:`helpers.boxes`): :func:`draw_anchors` and ``AnchorExplorer`` show the anchors of one cell
of a feature map and how labelling marks them positive or background; :func:`draw_nms` and
``NMSExplorer`` run the score threshold and non-maximum suppression (:func:`select_and_suppress`,
class-agnostic or class-aware) on a trained detector's raw outputs and count what is kept. These
take boxes in normalised coordinates ([0, 1], as the targets). The module imports neither
matplotlib nor ipywidgets until a picture is drawn or an explorer created (``helpers.datasets``
imports it).

Boxes are ``[xmin, ymin, xmax, ymax]`` in continuous pixel coordinates: pixel ``(row, col)``
covers ``[col, col + 1) x [row, row + 1)``, so ``xmax - xmin`` is the width.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


# ---------------------------------------------------------------------------------------------
# The multi-object "shapes" set: three classes, 1-4 objects per image, per-pixel class masks
# ---------------------------------------------------------------------------------------------

SHAPE_CLASSES = ("banana", "disc", "square")  # class c is labelled c in targets, c + 1 in masks
MAX_OBJECTS = 4  # targets have this many rows per image; unused rows are -1
MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels visible
_PLACEMENT_TRIES = 20  # positions tried for an object before it is left out
# Box and mask colours of the classes: the course's Okabe-Ito palette (helpers.plotting.PALETTE),
# written out here so that drawing a box does not import matplotlib.
CLASS_COLORS = ("#E69F00", "#CC79A7", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#F0E442", "#000000")


def _patch_grid(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets ``(v, u)`` (rows, columns) of a square patch of side ``2 * half + 1``."""
    v, u = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    return v, u


def _disc(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A red-orange disc, lit from the upper left: (alpha (S, S), colour (S, S, 3)).

    Radius 12 to 40 pixels (24 to 80 across); soft edges about one pixel wide."""
    r = rng.uniform(12, 40)
    v, u = _patch_grid(int(np.ceil(r)) + 1)
    alpha = np.clip(r + 0.5 - np.sqrt(u * u + v * v), 0, 1)
    base = np.array([rng.uniform(200, 255), rng.uniform(40, 130), rng.uniform(10, 60)], np.float32)
    light = np.sqrt((u + 0.35 * r) ** 2 + (v + 0.35 * r) ** 2) / (1.4 * r)  # 0 at the highlight
    colour = base * (0.55 + 0.45 * np.clip(1 - light, 0, 1))[..., None]
    return alpha, colour


def _square(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A blue square with a darker rim, rotated by a random angle: (alpha (S, S), colour (S, S, 3)).

    Side 24 to 70 pixels (up to 99 across the diagonal); soft edges about one pixel wide."""
    h = rng.uniform(12, 35)  # half the side
    angle = rng.uniform(0, np.pi / 2)
    v, u = _patch_grid(int(np.ceil(h * np.sqrt(2))) + 1)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    x, y = u * c + v * s, -u * s + v * c
    inside = h - np.maximum(np.abs(x), np.abs(y))  # distance to the nearest side, in pixels
    alpha = np.clip(inside + 0.5, 0, 1)
    base = np.array([rng.uniform(20, 80), rng.uniform(90, 170), rng.uniform(170, 255)], np.float32)
    shade = np.where(inside < 0.18 * h, 0.65, 0.9 + 0.1 * (x - y) / (2 * h))
    return alpha, base * shade[..., None].astype(np.float32)


_SHAPE_DRAWERS = (_banana, _disc, _square)  # indexed by class


def _shapes_example(
    textures: Sequence[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """One image of the shapes set, drawn from ``rng``.

    Returns the image (uint8 (256, 256, 3)), the instance map (uint8 (256, 256): 0 background, k
    for the k-th object placed, where that object is visible), the class of each object and how
    many pixels each covers on its own (its full area). An object's pixels are those where its
    alpha is at least 0.5; a later object is drawn on top. A position that would leave an earlier
    object with less than ``MIN_VISIBLE`` of its full area visible is rejected, and an object
    with no acceptable position in ``_PLACEMENT_TRIES`` tries is left out (the first always fits).
    """
    image = _background(textures, rng)
    instances = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    classes: list[int] = []
    full: list[int] = []  # full area of each placed object
    visible = [0]  # visible area of each placed object, indexed by instance id (0: background)
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        label = int(rng.integers(len(SHAPE_CLASSES)))
        alpha, colour = _SHAPE_DRAWERS[label](rng)
        hard = alpha >= 0.5
        side = alpha.shape[0]
        for _try in range(_PLACEMENT_TRIES):
            top, left = rng.integers(IMAGE_SIZE - side + 1, size=2)
            region = instances[top : top + side, left : left + side]
            after = np.array(visible) - np.bincount(region[hard], minlength=len(visible))
            if all(after[k] >= MIN_VISIBLE * full[k - 1] for k in range(1, len(visible))):
                break
        else:
            continue  # no room for this object
        patch = image[top : top + side, left : left + side]
        patch[:] = alpha[..., None] * colour + (1 - alpha[..., None]) * patch
        region[hard] = len(visible)
        area = int(hard.sum())
        visible = [0, *after[1:].tolist(), area]
        classes.append(label)
        full.append(area)
    return np.clip(image, 0, 255).astype(np.uint8), instances, classes, full


def _visible_boxes(instances: np.ndarray, num_objects: int) -> np.ndarray:
    """Boxes ``(num_objects, 4)`` ``[xmin, ymin, xmax, ymax]`` of the pixels of instances 1, 2, ..."""
    boxes = np.zeros((num_objects, 4), np.float32)
    for k in range(1, num_objects + 1):
        on = instances == k
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        boxes[k - 1] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def generate_shapes(
    textures: Sequence[np.ndarray],
    num_images: int,
    seed: int = 0,
    stream: int = 0,
    return_instances: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Generate ``num_images`` multi-object images on crops of ``textures``: boxes and class masks.

    Each image holds 1 to 4 objects (:data:`MAX_OBJECTS`) of the classes :data:`SHAPE_CLASSES`:
    ``0`` a banana (the crescent of :func:`generate_bananas`), ``1`` a red-orange disc, ``2`` a
    rotated blue square, each about 24 to 100 pixels across, placed at random. Objects may
    overlap, but every object keeps at least half of its pixels visible (:data:`MIN_VISIBLE`),
    and its box is the bounding box of its *visible* pixels, so a partly hidden object's box
    covers what can be seen of it. Image ``i`` comes from its own random stream
    ``numpy.random.default_rng([seed, stream, i])``, as in :func:`generate_bananas`.

    Returns ``images`` uint8 ``(N, 3, 256, 256)``; ``targets`` float32 ``(N, 4, 5)``, one row
    ``[class, xmin, ymin, xmax, ymax]`` per object in drawing order with the corners divided by
    256, then rows of ``-1`` (padding; code that matches boxes skips rows with a negative class);
    and ``masks`` uint8 ``(N, 256, 256)``, the class of every pixel: ``0`` background, ``c + 1``
    where an object of class ``c`` is visible. With ``return_instances=True`` also the instance
    map, uint8 ``(N, 256, 256)``: ``0`` background, ``k`` where the object of row ``k - 1`` of
    ``targets`` is visible.
    """
    _check_textures(textures)
    if num_images < 0:
        raise ValueError(f"num_images must be 0 or more, got {num_images}.")
    images = np.empty((num_images, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    targets = np.full((num_images, MAX_OBJECTS, 5), -1, np.float32)
    masks = np.empty((num_images, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    instance_maps = np.empty_like(masks) if return_instances else None
    for i in range(num_images):
        rng = np.random.default_rng([seed, stream, i])
        images[i], instances, classes, _ = _shapes_example(textures, rng)
        n = len(classes)
        targets[i, :n, 0] = classes
        targets[i, :n, 1:] = _visible_boxes(instances, n) / IMAGE_SIZE
        lut = np.zeros(256, np.uint8)
        lut[1 : n + 1] = np.array(classes) + 1
        masks[i] = lut[instances]
        if instance_maps is not None:
            instance_maps[i] = instances
    out = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(targets),
           torch.from_numpy(masks))
    return (*out, torch.from_numpy(instance_maps)) if instance_maps is not None else out


# ---------------------------------------------------------------------------------------------
# Drawing: boxes and masks
# ---------------------------------------------------------------------------------------------


def _colour_table(num_classes: int) -> np.ndarray:
    if num_classes > len(CLASS_COLORS):
        raise ValueError(f"There are colours for {len(CLASS_COLORS)} classes, got {num_classes}.")
    return np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in CLASS_COLORS[:num_classes]],
                    np.float32)


def _as_uint8_image(image: torch.Tensor) -> torch.Tensor:
    return image if image.dtype == torch.uint8 else (image * 255).round().to(torch.uint8)


def draw_mask_overlay(
    image: torch.Tensor, mask: torch.Tensor | np.ndarray, alpha: float = 0.5
) -> Image.Image:
    """``image`` (uint8 or [0, 1] float ``(3, H, W)``) with its class mask painted over it.

    ``mask`` is ``(H, W)`` integers, ``0`` background (left as it is) and ``c + 1`` for class
    ``c``, as the masks of :func:`generate_shapes` (or a model's ``argmax`` over classes plus
    background). A pixel of class ``c`` becomes ``(1 - alpha) * pixel + alpha * colour``, with the
    class colours :data:`CLASS_COLORS` (the course's Okabe-Ito palette). Returns an RGB image.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
    image = _as_uint8_image(torch.as_tensor(image))
    mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
    if image.ndim != 3 or image.shape[0] != 3 or mask.shape != tuple(image.shape[1:]):
        raise ValueError(f"Give one image (3, H, W) and its mask (H, W); got an image of shape "
                         f"{tuple(image.shape)} and a mask of shape {mask.shape}.")
    if mask.size and (mask.min() < 0 or mask.max() > len(CLASS_COLORS)):
        raise ValueError(f"Mask values must be 0 (background) to {len(CLASS_COLORS)} (class + 1), "
                         f"got {mask.min()} to {mask.max()}.")
    rgb = image.cpu().permute(1, 2, 0).numpy().astype(np.float32)
    colours = np.concatenate([np.zeros((1, 3), np.float32), _colour_table(len(CLASS_COLORS))])
    on = mask > 0
    rgb[on] = (1 - alpha) * rgb[on] + alpha * colours[mask[on].astype(np.int64)]
    return Image.fromarray(np.clip(rgb.round(), 0, 255).astype(np.uint8))


def draw_detection_grid(
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    ncols: int = 6,
    tile: int = 128,
    class_names: Sequence[str] | None = None,
    masks: torch.Tensor | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """A grid of detection images (uint8 or [0, 1] float) with their boxes.

    ``targets`` is ``(N, M, 5)`` rows ``[label, xmin, ymin, xmax, ymax]`` with corners in [0, 1];
    rows with a negative label (padding) are not drawn, and ``targets=None`` draws no boxes.
    Without ``class_names`` every box is red (the banana set); with them each box has the colour
    of its class (:data:`CLASS_COLORS`) and is labelled with the class name. ``masks`` ``(N, H,
    W)`` (0 background, ``c + 1`` for class ``c``) paints each image's mask over it first, as
    :func:`draw_mask_overlay` with opacity ``alpha``.
    """
    images = _as_uint8_image(images)
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"Give one target per image: {len(images)} images, {len(targets)} targets.")
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"Give one mask per image: {len(images)} images, {len(masks)} masks.")
    colours = None if class_names is None else _colour_table(len(class_names)).astype(int)
    font = None if class_names is None else ImageFont.load_default()
    nrows = math.ceil(len(images) / ncols)
    grid = Image.new("RGB", (ncols * tile, nrows * tile), "white")
    for i, image in enumerate(images):
        if masks is None:
            pic = Image.fromarray(image.permute(1, 2, 0).numpy())
        else:
            pic = draw_mask_overlay(image, masks[i], alpha)
        pic = pic.resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(pic)
        for label, *box in ([] if targets is None else targets[i].tolist()):
            if label < 0:
                continue
            corners = [c * tile for c in box]
            if colours is None:
                draw.rectangle(corners, outline=(230, 20, 20), width=2)
                continue
            if label >= len(class_names):
                raise ValueError(f"Label {label:g} has no name: class_names has {len(class_names)}.")
            colour = tuple(colours[int(label)])
            draw.rectangle(corners, outline=colour, width=2)
            x0, y0 = corners[0], max(corners[1] - 11, 0)  # the name above the box, or inside it
            left, top, right, bottom = draw.textbbox((x0, y0), class_names[int(label)], font=font)
            draw.rectangle([left - 1, top - 1, right + 1, bottom], fill=colour)
            draw.text((x0, y0), class_names[int(label)], fill=(0, 0, 0), font=font)
        grid.paste(pic, ((i % ncols) * tile, (i // ncols) * tile))
    return grid


# ---------------------------------------------------------------------------------------------
# Chapter 9's "Try it" widgets: the anchors of one cell, and non-maximum suppression
# ---------------------------------------------------------------------------------------------
#
# draw_anchors and draw_nms are the plain functions (the tests call them); AnchorExplorer and
# NMSExplorer wire controls to them. helpers.datasets imports this module, so it imports neither
# matplotlib nor ipywidgets at import time: the drawing functions import matplotlib when they
# draw, and the two explorer classes (helpers.widgets.PlotExplorer subclasses) are created on
# first access by the module's __getattr__ at the end of the file.

POSITIVE_COLOR = "#009E73"  # an anchor labelled with an object (Okabe-Ito bluish green)
NEGATIVE_COLOR = "#D55E00"  # an anchor labelled background (vermillion)
MAX_ANCHORS_PER_CELL = 12  # n + m - 1 above this makes the anchor picture unreadable
MAX_DRAWN_BOXES = 50  # the NMS picture draws at most this many kept and this many suppressed boxes
MAX_LABELLED_BOXES = 20  # ... and names the class and score of at most this many kept ones
MAX_CANDIDATES = 1000  # NMS takes at most this many candidates, the highest scores (torchvision's SSD: 400
# per class), so that a score threshold of 0 on thousands of anchors stays fast


def parse_numbers(text, name: str, example: str = "1, 2, 0.5") -> list[float]:
    """The positive numbers typed into a text box: ``'0.75, 0.5 0.25'`` -> ``[0.75, 0.5, 0.25]``.

    Numbers are separated by commas, semicolons or spaces; fractions such as ``1/2`` are allowed.
    A list or tuple of numbers is checked and returned as it is. Raises ``ValueError`` naming
    ``name`` and showing ``example`` for an empty list, something that is not a number, or a number
    that is not positive and finite.
    """
    import fractions
    import re

    if isinstance(text, str):
        parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    elif isinstance(text, torch.Tensor | np.ndarray):
        parts = text.reshape(-1).tolist()
    else:
        parts = list(text) if isinstance(text, Sequence) else [text]
    if not parts:
        raise ValueError(f"Give at least one number for {name}, separated by commas (e.g. {example}).")
    values = []
    for part in parts:
        try:
            value = float(fractions.Fraction(part) if isinstance(part, str) else part)
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"{part!r} in {name} is not a number; type numbers separated by commas "
                             f"(e.g. {example}).") from None
        if isinstance(part, bool) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"Every one of {name} must be a number > 0, got {part!r} (e.g. {example}).")
        values.append(value)
    return values


def _display_image(image) -> np.ndarray:
    """``(3, H, W)`` uint8 or [0, 1] float (tensor or array) -> uint8 ``(H, W, 3)`` for ``imshow``."""
    image = torch.as_tensor(image).detach().cpu()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), channels first, got {tuple(image.shape)}.")
    if image.dtype != torch.uint8:
        if not image.is_floating_point():
            raise ValueError(f"image must be uint8 (0 to 255) or float in [0, 1], got {image.dtype}.")
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


def _ground_truth(gt, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ground truth as ``(boxes (G, 4) float32, classes (G,) long or None)``.

    Accepts one box ``(4,)``, boxes ``(G, 4)``, or target rows ``(G, 5)`` ``[class, x1, y1, x2,
    y2]`` whose padding rows (class < 0) are dropped; corners are normalised to [0, 1].
    """
    gt = torch.as_tensor(gt).detach().cpu()
    if gt.ndim == 1 and gt.shape[0] in (4, 5):
        gt = gt[None]
    if gt.numel() == 0:
        return torch.zeros(0, 4), None
    if gt.ndim != 2 or gt.shape[1] not in (4, 5):
        raise ValueError(f"{name} must be boxes (G, 4) [x1, y1, x2, y2] or rows (G, 5) "
                         f"[class, x1, y1, x2, y2] with corners in [0, 1], got shape {tuple(gt.shape)}.")
    gt = gt.float()
    rows = torch.arange(len(gt))  # where each box is in the given tensor
    classes = None
    if gt.shape[1] == 5:
        rows = rows[gt[:, 0] >= 0]
        classes, gt = gt[rows, 0].long(), gt[rows, 1:]
    bad = ~torch.isfinite(gt).all(1) | (gt[:, 2:] < gt[:, :2]).any(1)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{int(rows[i])}] = {[round(v, 4) for v in gt[i].tolist()]} has x2 < x1, "
                         "y2 < y1 or a non-finite corner: boxes must be corners [x1, y1, x2, y2] with "
                         "x1 <= x2 and y1 <= y2.")
    return gt, classes


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def _check_cell(feature_size, row, col) -> None:
    if isinstance(feature_size, bool) or not isinstance(feature_size, numbers.Integral) or feature_size < 1:
        raise ValueError(f"feature_size must be a whole number >= 1 (the side of the feature map), "
                         f"got {feature_size!r}.")
    for name, value in (("row", row), ("col", col)):
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not whole or not 0 <= value < feature_size:
            raise ValueError(f"{name} must be a whole number from 0 to {feature_size - 1} on a "
                             f"{feature_size}x{feature_size} feature map, got {value!r}.")


def _outlined(linewidth: float):
    """Path effects that draw a line over a black line two points wider: visible on any image."""
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=linewidth + 2, foreground="black"), patheffects.Normal()]


def draw_anchors(image, gt_boxes, sizes=(0.75, 0.5, 0.25), ratios=(1, 2, 0.5), feature_size: int = 4,
                 row: int = 0, col: int = 0, iou_threshold: float = 0.5, show_all: bool = False,
                 title: str | None = None):
    """The anchors of one cell of a feature map over an image: ``(figure, message)``.

    ``image`` is ``(3, H, W)``, uint8 or float in [0, 1]; ``gt_boxes`` the ground truth in
    normalised corners, ``(G, 4)`` boxes or ``(G, 5)`` target rows ``[class, x1, y1, x2, y2]``
    (padding rows with class < 0 are dropped). ``sizes`` and ``ratios`` are lists of positive
    numbers or text such as ``"0.75, 0.5, 0.25"`` (:func:`parse_numbers`). The anchors are
    :func:`helpers.boxes.anchor_boxes` of a ``feature_size`` x ``feature_size`` map, ``n + m - 1``
    per cell; the picture shows the ``n + m - 1`` of cell ``(row, col)``, numbered as in the legend
    (size, ratio and best IoU with the ground truth), solid green if labelled positive and dashed
    vermillion if background, the ground truth (white), and the centres of all cells as a faint
    grid of dots. ``show_all=True`` also draws every other positive anchor of the map (dotted).

    Labelling is :func:`helpers.boxes.assign_anchors`, what training the detector uses: an anchor
    is positive if its IoU with some ground-truth box is at least ``iou_threshold``, or if it is
    the best anchor of a box (so that every object has at least one anchor, however poorly the
    anchors fit it). The message counts the positives of the cell and of the whole map (what
    labelling gives the network to learn from) and names the cell's best anchor. Bad settings
    raise ``ValueError`` with a message that says what to change.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from helpers.boxes import anchor_boxes, assign_anchors, box_iou

    sizes = parse_numbers(sizes, "sizes", "0.75, 0.5, 0.25")
    ratios = parse_numbers(ratios, "ratios", "1, 2, 0.5")
    per_cell = len(sizes) + len(ratios) - 1
    if per_cell > MAX_ANCHORS_PER_CELL:
        raise ValueError(f"{len(sizes)} sizes and {len(ratios)} ratios make {per_cell} anchors per cell; "
                         f"give at most {MAX_ANCHORS_PER_CELL} (n + m - 1) so the picture stays readable.")
    _check_cell(feature_size, row, col)
    feature_size, row, col = int(feature_size), int(row), int(col)
    iou_threshold = _check_fraction(iou_threshold, "iou_threshold")
    pixels = _display_image(image)
    gt, _ = _ground_truth(gt_boxes, "gt_boxes")

    anchors = anchor_boxes(feature_size, feature_size, sizes, ratios)  # (fs * fs * per_cell, 4)
    if len(gt):
        best_iou = box_iou(anchors, gt).max(dim=1).values
        positive = assign_anchors(gt, anchors, iou_threshold) >= 0
    else:
        best_iou = torch.zeros(len(anchors))
        positive = torch.zeros(len(anchors), dtype=torch.bool)
    forced = positive & (best_iou < iou_threshold)  # positive only as the best anchor of a box
    first = (row * feature_size + col) * per_cell
    cell = slice(first, first + per_cell)
    shapes = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]

    height, width = pixels.shape[:2]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    fig, ax = plt.subplots(figsize=(7.6, 4.4), layout="none")
    fig.subplots_adjust(left=0.08, right=0.56, bottom=0.11, top=0.9)
    ax.imshow(pixels, extent=(0, width, height, 0))
    ax.grid(False)
    centres = (np.arange(feature_size) + 0.5) / feature_size
    cx, cy = np.meshgrid(centres * width, centres * height)
    ax.scatter(cx.ravel(), cy.ravel(), s=10, color="white", edgecolors="black", linewidths=0.5, alpha=0.8,
               label=f"cell centres ({feature_size}x{feature_size} map)")
    ax.add_patch(Rectangle((col * width / feature_size, row * height / feature_size), width / feature_size,
                           height / feature_size, facecolor="white", alpha=0.25, edgecolor="none"))
    if show_all:
        others = positive.clone()
        others[cell] = False
        shown = others.nonzero()[:, 0][:100].tolist()
        for k, index in enumerate(shown):
            x1, y1, x2, y2 = (anchors[index] * scale).tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=POSITIVE_COLOR,
                                   linestyle=":", linewidth=1.5,
                                   label=None if k else f"other positive anchors ({int(others.sum())})"))
    for k, (x1, y1, x2, y2) in enumerate((gt * scale).tolist()):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.6,
                               path_effects=_outlined(1.6), label=None if k else "ground truth"))
    cell_anchors = anchors[cell] * scale
    for j, ((x1, y1, x2, y2), (size, ratio)) in enumerate(zip(cell_anchors.tolist(), shapes, strict=True)):
        index = first + j
        pos, iou = bool(positive[index]), float(best_iou[index])
        colour = POSITIVE_COLOR if pos else NEGATIVE_COLOR
        note = " (a box's best)" if forced[index] else ""
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linestyle="-" if pos else "--", linewidth=2.0 if pos else 1.3,
                               label=f"{j + 1}: size {size:.3g}, ratio {ratio:.3g}, IoU {iou:.2f}"
                                     f"{' positive' if pos else ''}{note}"))
        ax.text(x1 + 1, y1 + 1, str(j + 1), fontsize=7, color="white", va="top", ha="left",
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0})
    ax.plot([(col + 0.5) * width / feature_size], [(row + 0.5) * height / feature_size], marker="+",
            color="white", markersize=9, markeredgewidth=2, path_effects=_outlined(2), linestyle="none")
    lo = torch.minimum(cell_anchors[:, :2].min(0).values, torch.zeros(2)) - 0.03 * scale[:2]
    hi = torch.maximum(cell_anchors[:, 2:].max(0).values, scale[2:]) + 0.03 * scale[:2]
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(hi[1]), float(lo[1]))
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title or
                 f"the {per_cell} anchors of cell ({row}, {col}) on a {feature_size}x{feature_size} map",
                 fontsize=10, y=1.01)  # a fixed position: no search for overlapping labels
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0.0,
              title=f"positive: solid, IoU ≥ {iou_threshold:.2f}", title_fontsize=7)

    cell_iou = best_iou[cell]
    best = int(cell_iou.argmax())
    num_positive, num_forced = int(positive[cell].sum()), int(forced[cell].sum())
    counted = f"{num_positive} positive (IoU ≥ {iou_threshold:.2f})"
    if num_forced:
        counted = (f"{num_positive} positive ({num_positive - num_forced} with IoU ≥ {iou_threshold:.2f}, "
                   f"{num_forced} as the best anchor of a box)")
    anchors_word = "anchor" if per_cell == 1 else "anchors"
    message = (f"{per_cell} {anchors_word} at cell ({row}, {col}) of {feature_size}x{feature_size}: "
               f"{counted}; "
               f"best IoU {float(cell_iou[best]):.2f} (size {shapes[best][0]:.3g}, "
               f"ratio {shapes[best][1]:.3g}). ")
    if not len(gt):
        return fig, message + "There is no ground-truth box: every anchor is background."
    total, total_forced = int(positive.sum()), int(forced.sum())
    message += f"Whole map: {total} of {len(anchors)} anchors positive"
    if total_forced:
        message += (f" ({total_forced} only as the best anchor of a box whose IoUs are all below "
                    f"{iou_threshold:.2f})")
    return fig, message + f" for {len(gt)} ground-truth box{'es' * (len(gt) != 1)}."


@dataclass
class NMSResult:
    """What :func:`select_and_suppress` found in one image's raw detector outputs.

    ``candidates`` (K,): the indices (into the A outputs) whose best class scores at least the
    score threshold, by decreasing score; ``boxes`` (K, 4), ``labels`` (K,) and ``scores`` (K,)
    are theirs. ``keep``: indices into the candidates that NMS kept, by decreasing score;
    ``suppressed``: the others, by decreasing score. ``num_above``: how many outputs passed the
    score threshold (more than ``K`` when only the ``max_candidates`` best went to NMS).
    """

    candidates: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    keep: torch.Tensor
    suppressed: torch.Tensor
    num_above: int

    def detections(self) -> dict[str, torch.Tensor]:
        """The kept boxes as ``{"boxes", "scores", "labels"}``, the format of
        :func:`helpers.average_precision.mean_average_precision`."""
        return {"boxes": self.boxes[self.keep], "scores": self.scores[self.keep],
                "labels": self.labels[self.keep]}


def _raw_outputs(boxes, scores, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check one image's raw outputs: boxes (A, 4) and scores (A, C) (or (A,) for one class)."""
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor (A, 4) of corners [x1, y1, x2, y2], one per anchor, "
                         f"got {shape}.")
    if not isinstance(scores, torch.Tensor) or scores.ndim not in (1, 2) or len(scores) != len(boxes):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a tensor (A, C), the probability of each of the C object classes "
                         f"(no background) for each of the A = {len(boxes)} boxes, got {shape}.")
    scores = scores[:, None] if scores.ndim == 1 else scores
    if not boxes.is_floating_point() or not scores.is_floating_point():
        raise ValueError(f"boxes and scores must be floating point, got {boxes.dtype} and {scores.dtype}.")
    if num_classes is not None and scores.shape[1] != num_classes:
        raise ValueError(f"scores has {scores.shape[1]} classes (columns) but class_names has {num_classes}; "
                         "give scores without the background column and one name per class.")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contains nan or inf; check the model's outputs.")
    return boxes.detach().cpu().float(), scores.detach().cpu().float()


def select_and_suppress(boxes, scores, score_threshold: float = 0.3, iou_threshold: float = 0.5,
                        class_aware: bool = False, max_candidates: int = MAX_CANDIDATES) -> NMSResult:
    """Candidates above a score threshold, then non-maximum suppression: an :class:`NMSResult`.

    ``boxes`` (A, 4) are a detector's decoded boxes (one per anchor, before NMS) and ``scores``
    (A, C) its class probabilities without the background column (for a d2l-style output
    ``cls_probs`` (C + 1, A) and offsets: ``scores = cls_probs[1:].T``, ``boxes =
    helpers.boxes.offset_inverse(anchors, offsets.reshape(-1, 4))``). As d2l, each box predicts
    only its most likely class, with that probability as its score, and is a candidate if that
    score is at least ``score_threshold``; the same candidates go to both kinds of NMS.
    Class-agnostic NMS (:func:`helpers.boxes.nms`) lets any kept box suppress every candidate it
    overlaps by more than ``iou_threshold``; class-aware NMS (:func:`helpers.boxes.batched_nms`)
    only candidates of its own class, so two overlapping objects of different classes both stay.
    Only the ``max_candidates`` highest-scoring candidates go to NMS (as detectors keep the top few
    hundred before NMS); ``result.num_above`` counts all that passed the score threshold.
    """
    from helpers.boxes import batched_nms, nms

    boxes, scores = _raw_outputs(boxes, scores)
    score_threshold = _check_fraction(score_threshold, "score_threshold")
    iou_threshold = _check_fraction(iou_threshold, "iou_threshold")
    best, labels = scores.max(dim=1)
    above = (best >= score_threshold).nonzero()[:, 0]
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
        raise ValueError(f"max_candidates must be a whole number >= 1, got {max_candidates!r}.")
    candidates = above[torch.sort(best[above], descending=True, stable=True).indices[:max_candidates]]
    cand_boxes, cand_labels, cand_scores = boxes[candidates], labels[candidates], best[candidates]
    if class_aware:
        keep = batched_nms(cand_boxes, cand_scores, cand_labels, iou_threshold)
    else:
        keep = nms(cand_boxes, cand_scores, iou_threshold)
    kept = torch.zeros(len(candidates), dtype=torch.bool)
    kept[keep] = True
    return NMSResult(candidates, cand_boxes, cand_labels, cand_scores, keep, (~kept).nonzero()[:, 0],
                     len(above))


def draw_nms(image, boxes, scores, score_threshold: float = 0.3, iou_threshold: float = 0.5,
             class_aware: bool = False, targets=None, class_names: Sequence[str] = SHAPE_CLASSES,
             max_drawn: int = MAX_DRAWN_BOXES, max_candidates: int = MAX_CANDIDATES,
             title: str | None = None):
    """Non-maximum suppression on one image's raw detector outputs: ``(figure, message)``.

    ``image`` is ``(3, H, W)`` (uint8 or float in [0, 1]); ``boxes`` (A, 4) the decoded boxes in
    normalised corners and ``scores`` (A, C) the class probabilities without background, before
    NMS. :func:`select_and_suppress` chooses the candidates (each box's best class, if its score
    is at least ``score_threshold``; at most ``max_candidates``) and runs NMS, class-agnostic or,
    if ``class_aware``, within each class. The picture shows the kept boxes solid in their class
    colour (:data:`CLASS_COLORS`), the best :data:`MAX_LABELLED_BOXES` labelled with class name and
    score, the suppressed candidates dashed and faded (at most ``max_drawn`` of each kind, the
    highest scores, so that drawing stays fast), and the ground truth in white if ``targets``
    (G, 5) rows ``[class, x1, y1, x2, y2]`` are given (padding rows with class < 0 are skipped).
    The message counts kept and suppressed candidates and, with ``targets``, gives this image's
    AP at IoU 0.5 (:func:`helpers.average_precision.mean_average_precision` of the kept boxes,
    averaged over the classes in the ground truth). Bad settings raise ``ValueError``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from helpers.average_precision import mean_average_precision

    class_names = list(class_names)
    if not 1 <= len(class_names) <= len(CLASS_COLORS):
        raise ValueError(f"Give 1 to {len(CLASS_COLORS)} class names, got {len(class_names)}.")
    if isinstance(max_drawn, bool) or not isinstance(max_drawn, int) or max_drawn < 0:
        raise ValueError(f"max_drawn must be a whole number >= 0, got {max_drawn!r}.")
    pixels = _display_image(image)
    boxes, scores = _raw_outputs(boxes, scores, len(class_names))
    result = select_and_suppress(boxes, scores, score_threshold, iou_threshold, class_aware, max_candidates)
    gt, gt_classes = (None, None) if targets is None else _ground_truth(targets, "targets")
    if gt is not None and gt_classes is None and len(gt):
        raise ValueError("targets must be rows (G, 5) [class, x1, y1, x2, y2], with the class first.")
    num_kept, num_candidates = len(result.keep), len(result.candidates)
    num_suppressed = num_candidates - num_kept
    mode = "class-aware" if class_aware else "class-agnostic"

    height, width = pixels.shape[:2]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="none")  # a fixed layout, rendered once
    fig.subplots_adjust(left=0.02, right=0.7, bottom=0.03, top=0.91)
    ax.imshow(pixels, extent=(0, width, height, 0))
    ax.set_axis_off()  # fewer texts to render: the picture is the image, in its own pixels
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)

    def outlines(rows: torch.Tensor) -> np.ndarray:  # (N, 5, 2) closed rectangles in pixels
        x1, y1, x2, y2 = (rows * scale).T.numpy()
        return np.stack([np.stack([x1, x1, x2, x2, x1], 1), np.stack([y1, y2, y2, y1, y1], 1)], 2)

    def colours(rows: torch.Tensor) -> list[str]:
        return [CLASS_COLORS[c] for c in result.labels[rows].tolist()]

    drawn_suppressed, drawn_kept = result.suppressed[:max_drawn], result.keep[:max_drawn]
    if len(drawn_suppressed):
        ax.add_collection(LineCollection(outlines(result.boxes[drawn_suppressed]), linewidths=1.0,
                                         colors=colours(drawn_suppressed), linestyles="--", alpha=0.55))
    if gt is not None and len(gt):
        ax.add_collection(LineCollection(outlines(gt), colors="white", linewidths=1.3,
                                         path_effects=_outlined(1.3)))
    if len(drawn_kept):
        ax.add_collection(LineCollection(outlines(result.boxes[drawn_kept]), colors=colours(drawn_kept),
                                         linewidths=2.2))
    for i in drawn_kept[:MAX_LABELLED_BOXES].tolist():
        x1, y1 = (result.boxes[i, :2] * scale[:2]).tolist()
        label = int(result.labels[i])
        ax.text(min(max(x1, 0), 0.85 * width), min(max(y1, 0.06 * height), height), f"{class_names[label]} "
                f"{float(result.scores[i]):.2f}", fontsize=7, va="bottom", ha="left",
                bbox={"facecolor": CLASS_COLORS[label], "edgecolor": "none", "pad": 1.0})
    handles = [Line2D([], [], color="0.3", linewidth=2.2, label=f"kept ({num_kept})"),
               Line2D([], [], color="0.3", linewidth=1.0, linestyle="--", alpha=0.55,
                      label=f"suppressed ({num_suppressed})")]
    if gt is not None:
        handles.append(Line2D([], [], color="white", linewidth=1.3, path_effects=_outlined(1.3),
                              label=f"ground truth ({len(gt)})"))
    handles += [Patch(color=CLASS_COLORS[c], label=name) for c, name in enumerate(class_names)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0.0)
    at = f"{float(score_threshold):.2f}"
    ax.set_title(title or f"{mode} NMS: score ≥ {at}, IoU threshold {float(iou_threshold):.2f}",
                 fontsize=10, y=1.01)  # a fixed position: no search for overlapping labels

    if num_candidates:
        message = f"kept {num_kept} of {num_candidates} candidates with score ≥ {at}"
        if result.num_above > num_candidates:
            message += f" (the {num_candidates} highest of {result.num_above})"
        message += f" ({num_suppressed} suppressed by {mode} NMS at IoU {float(iou_threshold):.2f})"
    else:
        highest = float(scores.max()) if scores.numel() else 0.0
        message = (f"no candidates: no box's best class scores ≥ {at} (the highest score is "
                   f"{highest:.2f}); lower the score threshold")
    if gt is not None:
        if len(gt):
            target = {"boxes": gt, "labels": gt_classes}
            ap = mean_average_precision([result.detections()], [target], iou_thresholds=[0.5])["map_50"]
            message += f"; AP@0.5 of this image {ap:.2f} ({len(gt)} ground-truth box{'es' * (len(gt) != 1)})"
        else:
            message += "; no ground-truth box in this image, so no AP"
    hidden = [f"{n - max_drawn} of {n} {what}"
              for n, what in ((num_kept, "kept"), (num_suppressed, "suppressed")) if n > max_drawn]
    if hidden:
        message += f" (not drawn: the lowest-scoring {' and '.join(hidden)})"
    return fig, message + "."


# --- the explorers -----------------------------------------------------------------------------------
# The logic of each explorer is written in a mixin here; the public class, the mixin plus
# helpers.widgets.PlotExplorer, is created on first access (``detection.AnchorExplorer``) by the
# module's __getattr__, so importing helpers.detection imports no widget code.

_SLIDER = {"continuous_update": False, "style": {"description_width": "initial"}}


def _numbers_text(values) -> str:
    return ", ".join(f"{v:g}" for v in parse_numbers(values, "the default"))


class _AnchorExplorerLogic:
    """The anchor explorer of chapter 9: the anchors of one cell of a feature map over an image.

    ``AnchorExplorer(image, gt_boxes, sizes=(0.75, 0.5, 0.25), ratios=(1, 2, 0.5),
    feature_size=4, row=None, col=None, iou_threshold=0.5, show_all=False, title=None)``; ``image``
    (3, H, W) and
    ``gt_boxes`` as in :func:`draw_anchors`, which draws every update. Controls
    (``explorer.controls``): ``sizes`` and ``ratios`` (text boxes: numbers separated by commas,
    applied on Enter), ``feature_size`` (1 to 16), ``row`` and ``col`` (their maximum follows
    ``feature_size``; a new size keeps the same part of the image), ``iou_threshold`` and
    ``show_all`` (every positive anchor of the map). ``row``/``col`` default to the cell that holds
    the centre of the first ground-truth box. A :class:`helpers.widgets.PlotExplorer`: ``message``,
    ``image``, ``seconds``, ``widget``, ``hold_updates()``.
    """

    def __init__(self, image, gt_boxes, sizes=(0.75, 0.5, 0.25), ratios=(1, 2, 0.5), feature_size: int = 4,
                 row: int | None = None, col: int | None = None, iou_threshold: float = 0.5,
                 show_all: bool = False, title: str | None = None, *, strict: bool | None = None) -> None:
        import ipywidgets as w

        _display_image(image)  # check the inputs here, not at every update
        gt, _ = _ground_truth(gt_boxes, "gt_boxes")
        _check_cell(feature_size, 0, 0)
        if feature_size > 16:
            raise ValueError(f"feature_size must be 1 to 16 in the explorer, got {feature_size}.")
        if len(gt):  # the cell of the first box's centre
            cx, cy = ((gt[0, :2] + gt[0, 2:]) / 2).clamp(0, 0.999).tolist()
            row = int(cy * feature_size) if row is None else row
            col = int(cx * feature_size) if col is None else col
        row, col = (feature_size // 2 if v is None else v for v in (row, col))
        _check_cell(feature_size, row, col)
        controls = {
            "sizes": w.Text(value=_numbers_text(sizes), description="sizes", continuous_update=False),
            "ratios": w.Text(value=_numbers_text(ratios), description="ratios", continuous_update=False),
            "feature_size": w.IntSlider(value=feature_size, min=1, max=16, description="feature map side",
                                        **_SLIDER),
            "row": w.IntSlider(value=row, min=0, max=feature_size - 1, description="row", **_SLIDER),
            "col": w.IntSlider(value=col, min=0, max=feature_size - 1, description="col", **_SLIDER),
            "iou_threshold": w.FloatSlider(value=iou_threshold, min=0.05, max=0.95, step=0.05,
                                           description="IoU threshold", **_SLIDER),
            "show_all": w.Checkbox(value=show_all, description="all positive anchors"),
        }
        draw = functools.partial(draw_anchors, image, gt_boxes, title=title)
        super().__init__(controls, draw, busy="drawing...", tight=False, strict=strict)

    def on_change(self, name: str, change) -> None:
        """A new feature-map side moves ``row`` and ``col`` to the cell over the same spot of the
        image and sets their maximum (one redraw: it runs inside ``hold_updates``)."""
        if name != "feature_size":
            return
        old, new = change.old, change.new
        for slider in (self.controls["row"], self.controls["col"]):
            value = min(int((slider.value + 0.5) * new / old), new - 1)
            slider.max = max(slider.max, new - 1)  # a lower max would clamp the value first
            slider.value = value
            slider.max = new - 1


class _NMSExplorerLogic:
    """The NMS explorer of chapter 9: a trained detector's raw outputs, before and after NMS.

    ``NMSExplorer(images, boxes, scores, targets=None, class_names=SHAPE_CLASSES,
    score_threshold=0.3, iou_threshold=0.5, class_aware=False)``: ``images`` (N, 3, H, W) or a
    list; ``boxes`` (N, A, 4) and ``scores`` (N, A, C) (or lists of (A, 4) and (A, C)), each
    image's decoded boxes and class probabilities without background, computed once beforehand;
    ``targets`` (N, G, 5) or a list of (G, 5), optional. Every update only re-runs NMS and
    :func:`draw_nms` (a fraction of a second). Controls (``explorer.controls``): ``index`` (the
    image), ``score_threshold``, ``iou_threshold``, ``class_aware`` (Checkbox). A
    :class:`helpers.widgets.PlotExplorer`: ``message``, ``image``, ``seconds``, ``widget``.
    """

    def __init__(self, images, boxes, scores, targets=None, class_names: Sequence[str] = SHAPE_CLASSES,
                 score_threshold: float = 0.3, iou_threshold: float = 0.5, class_aware: bool = False,
                 *, strict: bool | None = None) -> None:
        import ipywidgets as w

        n = len(images)
        given = {"boxes": len(boxes), "scores": len(scores)}
        if targets is not None:
            given["targets"] = len(targets)
        if n == 0 or any(length != n for length in given.values()):
            counts = ", ".join(f"{length} {name}" for name, length in given.items())
            raise ValueError(f"Give one entry per image, at least one: {n} images, {counts}.")
        self.images, self.boxes, self.scores, self.targets = images, boxes, scores, targets
        self.class_names = list(class_names)
        for i in range(n):  # check every image's outputs once, so an update cannot fail on them
            _display_image(images[i])
            _raw_outputs(boxes[i], scores[i], len(self.class_names))
        options = []
        for i in range(n):
            objects = "" if targets is None else f" ({len(_ground_truth(targets[i], 'targets')[0])} objects)"
            options.append((f"image {i}{objects}", i))
        controls = {
            "index": w.Dropdown(options=options, value=0, description="image"),
            "score_threshold": w.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.01,
                                             description="score threshold", **_SLIDER),
            "iou_threshold": w.FloatSlider(value=iou_threshold, min=0.0, max=1.0, step=0.05,
                                           description="NMS IoU threshold", **_SLIDER),
            "class_aware": w.Checkbox(value=class_aware, description="class-aware NMS"),
        }
        super().__init__(controls, self._draw, busy="suppressing...", tight=False, strict=strict)

    def _draw(self, index: int, score_threshold: float, iou_threshold: float, class_aware: bool):
        targets = None if self.targets is None else self.targets[index]
        return draw_nms(self.images[index], self.boxes[index], self.scores[index], score_threshold,
                        iou_threshold, class_aware, targets, self.class_names,
                        title=f"image {index}: {'class-aware' if class_aware else 'class-agnostic'} NMS")


_EXPLORERS = {"AnchorExplorer": _AnchorExplorerLogic, "NMSExplorer": _NMSExplorerLogic}


def __getattr__(name: str):
    """Create ``AnchorExplorer`` and ``NMSExplorer`` (PlotExplorer subclasses) on first access."""
    if name in _EXPLORERS:
        from helpers.widgets import PlotExplorer

        logic = _EXPLORERS[name]
        cls = type(name, (logic, PlotExplorer), {"__doc__": logic.__doc__, "__module__": __name__,
                                                 "__qualname__": name})
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPLORERS})
