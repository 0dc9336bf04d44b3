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
:func:`draw_mask_overlay` one image with its mask. (Chapter 9 adds boxes, anchors, IoU and
non-maximum suppression here.)

Boxes are ``[xmin, ymin, xmax, ymax]`` in continuous pixel coordinates: pixel ``(row, col)``
covers ``[col, col + 1) x [row, row + 1)``, so ``xmax - xmin`` is the width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
