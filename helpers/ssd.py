"""A single-shot multibox detector (SSD) small enough to train on a laptop's CPU in about a minute.

Chapter 9 builds d2l's TinySSD and finds that, as published, it learns too slowly on a CPU (d2l
trains it for 20 epochs of 256x256 images on a GPU). This module keeps its design (a base network,
feature maps of decreasing resolution, on each map a 3x3 convolution that predicts the classes and
box offsets of every anchor) and changes what the measurements on the course's 2-core CPU favour:

- **Smaller images, resized once.** 128x128 (antialiased) instead of 256x256, once before training
  (:func:`prepare_ssd_data`): the objects, 10 to 100 pixels of 256, keep 5 to 50 pixels.
- **A lighter base network.** Three stride-2 convolutions instead of d2l's six convolutions and
  three max-pools before the first feature map, so nothing runs at full resolution: an epoch of
  1,000 images takes 9 s instead of 22 s (one thread, d2l's base at the same size). Three feature maps
  (16x16, 8x8 and 4x4 for a 128x128 image), 1,344 anchors sized for the objects of the course's
  data sets (:data:`DEFAULT_SIZES`).
- **Anchors labelled once, and more of them positive.** :func:`helpers.boxes.multibox_target`
  labels every anchor of every image before training, and of the horizontally flipped images
  (flipping a box is exact); an epoch flips each image with probability 1/2. An anchor counts as an
  object from an IoU of 0.4 on (:data:`IOU_THRESHOLD`; d2l: 0.5), which gives a banana 4.4 positive
  anchors instead of 1.75.
- **A loss per object.** :func:`ssd_loss` sums the cross-entropy of all anchors and the smooth-L1
  loss of the positive ones and divides both by the number of positive anchors (as SSD and
  RetinaNet do), and the classifier starts out predicting "background" with probability 0.99
  (RetinaNet's prior). SSD's hard-negative mining is an option (``negative_ratio=3``).
- **AdamW** (lr 3e-3, 30 warm-up steps, then a cosine to 0) instead of SGD with lr 0.2.

The API, in the order a training run uses it: :class:`TinySSD`; :func:`prepare_ssd_data` (an
:class:`SSDData`); :func:`ssd_loss`; :func:`train_ssd` (a :class:`helpers.training.TrainingRun`:
progress bar, live plot of the loss parts and of the validation AP per epoch, optional time
budget); :func:`raw_outputs` then :func:`detections_from_raw`, or both at once :func:`detect`
(boxes after non-maximum suppression, in pixels); :func:`evaluate_ssd` (COCO's AP next to d2l's
per-anchor class error and box MAE, and what an all-background model scores on those two).
Everything runs on the device the model is on; nothing here imports plotting or widget code.

Typical use (a minute on two CPU threads; AP@0.5 of about 1.0 on the banana set's validation
images, about 0.97 on the shapes set's)::

    net = TinySSD(num_classes=1).to(device)
    train = prepare_ssd_data(net, *datasets.detection_tensors("train"))
    val = datasets.detection_tensors("val")
    history = train_ssd(net, train, val, num_epochs=12, lr=3e-3)
    evaluate_ssd(net, *val)["map_50"]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.average_precision import mean_average_precision
from helpers.boxes import (
    anchor_boxes,
    detections_to_list,
    multibox_detection,
    multibox_target,
    offset_inverse,
)
from helpers.training import History, TrainingRun, make_optimizer, model_device, training_device

__all__ = [
    "DEFAULT_RATIOS",
    "DEFAULT_SIZES",
    "IOU_THRESHOLD",
    "SSDData",
    "TinySSD",
    "detect",
    "detections_from_raw",
    "evaluate_ssd",
    "flip_targets",
    "prepare_ssd_data",
    "raw_outputs",
    "resize_images",
    "ssd_loss",
    "targets_to_list",
    "train_ssd",
]

# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------

DEFAULT_SIZES = ((0.1, 0.14), (0.2, 0.28), (0.38, 0.5))
"""Anchor sizes (fractions of the image side) of the three feature maps. The objects of the
banana and shapes sets are 0.08 to 0.38 of the image (the square root of the box area); each map
covers the objects that fit its cells, with two sizes a factor of about 1.4 apart."""
DEFAULT_RATIOS = ((1.0, 2.0, 0.5),) * 3
"""Anchor width-to-height ratios per feature map: square, wide and tall (bananas lie at any angle)."""
IOU_THRESHOLD = 0.4
"""An anchor is labelled with an object when their IoU is at least this (besides the best anchor of
each object, which always is). d2l and :func:`helpers.boxes.multibox_target` use 0.5; 0.4 gives
about twice as many positive anchors per object, and the detector learns faster."""


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def _pair(size, name: str = "image_size") -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"{name} must be an int or a pair (height, width), got {size!r}.")
    return _positive_int(int(size[0]), name), _positive_int(int(size[1]), name)


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


class TinySSD(nn.Module):
    """A small single-shot detector: ``forward(images) -> (anchors, cls_logits, box_offsets)``.

    ``images`` (B, 3, H, W): floats in [0, 1]. Outputs: ``anchors`` (A, 4), corners in normalised
    image coordinates, the same for every image (from :func:`helpers.boxes.anchor_boxes`, map by
    map, pixel by pixel); ``cls_logits`` (B, A, num_classes + 1), background first;
    ``box_offsets`` (B, A * 4), in the units of :func:`helpers.boxes.offset_boxes`.

    The network: a base of six 3x3 convolutions (three of stride 2, widths ``base_channels`` and
    then ``channels``) gives the first feature map at 1/8 of the image's resolution; each further
    map halves the resolution (max-pool and two convolutions, d2l's down-sampling block). One map
    per entry of ``sizes``: ``sizes[i]`` and ``ratios[i]`` are the anchor sizes (fractions of the
    image side) and width-to-height ratios of map ``i``, with ``len(sizes[i]) + len(ratios[i]) - 1``
    anchors per pixel. On every map a 3x3 convolution predicts each anchor's class scores and
    another its four offsets. ``background_prior`` sets the initial bias of the class scores so
    that every anchor starts out as background with that probability (None: PyTorch's default).
    ``image_size`` is the side the detector is trained on: :func:`prepare_ssd_data` and
    :func:`detect` resize images to it (``forward`` takes any size of at least
    :attr:`min_image_size`).
    """

    def __init__(self, num_classes: int, sizes: Sequence[Sequence[float]] = DEFAULT_SIZES,
                 ratios: Sequence[Sequence[float]] = DEFAULT_RATIOS,
                 base_channels: Sequence[int] = (16, 32, 64), channels: int = 128,
                 image_size: int = 128, background_prior: float | None = 0.99) -> None:
        super().__init__()
        self.num_classes = _positive_int(num_classes, "num_classes (object classes, without the background)")
        self.image_size = _positive_int(image_size, "image_size")
        if len(sizes) == 0 or len(sizes) != len(ratios):
            raise ValueError(f"Give one list of anchor sizes and one of ratios per feature map; got "
                             f"{len(sizes)} lists of sizes and {len(ratios)} of ratios.")
        for name, rows in (("sizes", sizes), ("ratios", ratios)):
            for row in rows:
                if len(row) == 0 or not all(isinstance(v, (int, float)) and v > 0 for v in row):
                    raise ValueError(f"Every entry of {name} must be a non-empty list of positive numbers, "
                                     f"got {list(row)!r}.")
        if len(base_channels) != 3:
            raise ValueError(f"base_channels must hold three widths, got {tuple(base_channels)!r}.")
        self.sizes = tuple(tuple(float(s) for s in row) for row in sizes)
        self.ratios = tuple(tuple(float(r) for r in row) for row in ratios)
        self.anchors_per_pixel = tuple(len(s) + len(r) - 1
                                       for s, r in zip(self.sizes, self.ratios, strict=True))
        c1, c2, c3 = (_positive_int(c, "base_channels") for c in base_channels)
        channels = _positive_int(channels, "channels")
        self.base = nn.Sequential(*_conv_bn_relu(3, c1, 2), *_conv_bn_relu(c1, c2, 2),
                                  *_conv_bn_relu(c2, c3), *_conv_bn_relu(c3, c3, 2),
                                  *_conv_bn_relu(c3, channels), *_conv_bn_relu(channels, channels))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), *_conv_bn_relu(channels, channels),
                          *_conv_bn_relu(channels, channels))
            for _ in range(len(self.sizes) - 1))
        self.cls_heads = nn.ModuleList(nn.Conv2d(channels, k * (num_classes + 1), 3, padding=1)
                                       for k in self.anchors_per_pixel)
        self.box_heads = nn.ModuleList(nn.Conv2d(channels, k * 4, 3, padding=1)
                                       for k in self.anchors_per_pixel)
        if background_prior is not None:
            if not 0 < background_prior < 1:
                raise ValueError(f"background_prior must be a probability in (0, 1), "
                                 f"got {background_prior!r}.")
            bias = math.log(background_prior * num_classes / (1 - background_prior))
            for head in self.cls_heads:
                nn.init.zeros_(head.bias)
                with torch.no_grad():
                    head.bias.view(-1, num_classes + 1)[:, 0] = bias
        self._anchor_cache: dict = {}

    @property
    def min_image_size(self) -> int:
        """The smallest image side that still gives every feature map at least one pixel."""
        return 8 * (2 ** (len(self.sizes) - 1) - 1) + 1

    def feature_sizes(self, image_size: int | tuple[int, int] | None = None) -> list[tuple[int, int]]:
        """The (height, width) of every feature map for an image of ``image_size`` (default: the
        detector's own): ``ceil(side / 8)`` after the base, then halved (rounded down) per map."""
        h, w = _pair(self.image_size if image_size is None else image_size)
        if min(h, w) < self.min_image_size:
            raise ValueError(f"An image of {h}x{w} pixels is too small for {len(self.sizes)} feature maps: "
                             f"each side needs at least {self.min_image_size} pixels.")
        h, w = -(-h // 8), -(-w // 8)
        sizes = [(h, w)]
        for _ in self.blocks:
            h, w = h // 2, w // 2
            sizes.append((h, w))
        return sizes

    def num_anchors(self, image_size: int | tuple[int, int] | None = None) -> int:
        """How many anchors an image of ``image_size`` (default: the detector's own) gets."""
        return sum(h * w * k for (h, w), k in zip(self.feature_sizes(image_size), self.anchors_per_pixel,
                                                  strict=True))

    def anchors(self, image_size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """The anchors (A, 4) of an image of ``image_size`` (default: the detector's own), as
        ``forward`` returns them, on the model's device."""
        return self._anchors(self.feature_sizes(image_size), model_device(self))

    def _anchors(self, sizes, device) -> torch.Tensor:
        key = (tuple(sizes), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = torch.cat([
                anchor_boxes(h, w, s, r, device=device)
                for (h, w), s, r in zip(sizes, self.sizes, self.ratios, strict=True)])
        return self._anchor_cache[key]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(anchors (A, 4), cls_logits (B, A, C + 1), box_offsets (B, A * 4))`` for ``images``."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"TinySSD takes a batch of RGB images (batch, 3, height, width), got "
                             f"{_shape(images)}; for one image pass image[None].")
        if not images.is_floating_point():
            raise ValueError(f"TinySSD takes float images in [0, 1], got {images.dtype}; use "
                             "images.float() / 255 (or resize_images).")
        sizes = self.feature_sizes(tuple(images.shape[-2:]))  # checks the size, too
        feature = self.base(images)
        batch, cls, box = images.shape[0], [], []
        for i, (cls_head, box_head) in enumerate(zip(self.cls_heads, self.box_heads, strict=True)):
            if i > 0:
                feature = self.blocks[i - 1](feature)
            cls.append(cls_head(feature).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes + 1))
            box.append(box_head(feature).permute(0, 2, 3, 1).reshape(batch, -1))
        return self._anchors(sizes, images.device), torch.cat(cls, dim=1), torch.cat(box, dim=1)


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------


def ssd_loss(cls_logits: torch.Tensor, box_offsets: torch.Tensor, class_labels: torch.Tensor,
             bbox_offsets: torch.Tensor, bbox_mask: torch.Tensor, negative_ratio: float | None = None,
             box_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The detector's loss ``cls + box_weight * box`` and its parts ``{"cls": ..., "box": ...}``.

    Inputs: the detector's ``cls_logits`` (B, A, C + 1) and ``box_offsets`` (B, A * 4), and the
    targets of :func:`helpers.boxes.multibox_target`: ``class_labels`` (B, A) (0 = background),
    ``bbox_offsets`` and ``bbox_mask`` (B, A * 4).

    Both parts are sums divided by the number of positive anchors in the batch (anchors assigned
    to an object; at least 1), so they are "per object" whatever the number of anchors:

    - ``cls``: the cross-entropy of the anchors' classes, summed over all anchors
      (``negative_ratio=None``) or, with SSD's hard-negative mining, over the positive anchors and
      the ``negative_ratio`` times as many background anchors of the same image with the largest
      loss (an image without objects keeps ``negative_ratio`` of them);
    - ``box``: smooth L1 (Huber with threshold 1) of the offsets of the positive anchors.

    d2l's loss is the mean over all anchors (and over all A * 4 offsets) instead: about 1,340 of an
    image's 1,344 anchors are background, so its values are tiny (about 0.002 after training) and
    say little about how well the objects are found.
    """
    if cls_logits.dim() != 3 or cls_logits.shape[:2] != class_labels.shape:
        raise ValueError(f"cls_logits must be (batch, anchors, classes + 1) and class_labels "
                         f"(batch, anchors); got {_shape(cls_logits)} and {_shape(class_labels)}.")
    expected = (class_labels.shape[0], class_labels.shape[1] * 4)
    for name, value in (("box_offsets", box_offsets), ("bbox_offsets", bbox_offsets),
                        ("bbox_mask", bbox_mask)):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            raise ValueError(f"{name} must have shape (batch, anchors * 4) = {expected}, "
                             f"got {_shape(value)}.")
    positive = class_labels > 0
    num_positive = positive.sum().clamp(min=1).to(cls_logits.dtype)
    ce = F.cross_entropy(cls_logits.flatten(0, 1), class_labels.flatten(), reduction="none")
    ce = ce.view_as(class_labels)
    if negative_ratio is None:
        cls = ce.sum() / num_positive
    else:
        with torch.no_grad():
            per_image = positive.sum(dim=1, keepdim=True).clamp(min=1)
            wanted = (per_image * negative_ratio).ceil().long()  # background anchors to keep, per image
            rank = ce.masked_fill(positive, -1.0).argsort(dim=1, descending=True).argsort(dim=1)
            hard_negative = (rank < wanted) & ~positive
        cls = (ce * (positive | hard_negative)).sum() / num_positive
    diff = (box_offsets - bbox_offsets) * bbox_mask
    box = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="sum", beta=1.0) / num_positive
    return cls + box_weight * box, {"cls": cls, "box": box}


# ---------------------------------------------------------------------------------------------
# Data: resize once, label once
# ---------------------------------------------------------------------------------------------


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Images (N, 3, H, W), uint8 or floats in [0, 1], as floats (N, 3, size, size) in [0, 1].

    Bilinear with antialiasing (each output pixel averages the input pixels it covers, as PIL's
    resize does; without it a 2x reduction drops every other pixel and edges alias). On the CPU
    uint8 images are resized as uint8 (ten times faster than floats) and converted afterwards.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, height, width), got {_shape(images)}.")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0-255) or floats in [0, 1], got {images.dtype}.")
    size = _pair(size, "size")
    if images.dtype == torch.uint8 and images.device.type != "cpu":
        images = images.float().div_(255.0)
    if tuple(images.shape[-2:]) != size and len(images):
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float().clamp(0, 1)


def flip_targets(targets: torch.Tensor) -> torch.Tensor:
    """Targets (..., 5) ``[class, x1, y1, x2, y2]`` (normalised) of the horizontally flipped images.

    A box ``[x1, x2]`` becomes ``[1 - x2, 1 - x1]``: exact, no resampling. Padding rows (class < 0)
    stay as they are.
    """
    if not isinstance(targets, torch.Tensor) or targets.dim() < 1 or targets.shape[-1] != 5:
        raise ValueError(f"targets must have rows [class, x1, y1, x2, y2] in the last dimension, got "
                         f"{_shape(targets)}.")
    flipped = targets.clone()
    real = targets[..., 0] >= 0
    flipped[..., 1] = torch.where(real, 1 - targets[..., 3], targets[..., 1])
    flipped[..., 3] = torch.where(real, 1 - targets[..., 1], targets[..., 3])
    return flipped


@dataclass
class SSDData:
    """A data set ready for :func:`train_ssd`, made by :func:`prepare_ssd_data`.

    ``images`` (N, 3, s, s) floats in [0, 1] (channels-last in memory, which convolutions on a CPU
    prefer); ``targets`` (N, G, 5) the normalised ground truth; ``class_labels`` (N, A) and
    ``bbox_offsets`` (N, A * 4) the labels of every anchor from
    :func:`helpers.boxes.multibox_target` (the box mask is ``class_labels > 0``, four times), and
    ``flipped`` the same pair for the horizontally flipped images (None without flip
    augmentation).
    """

    images: torch.Tensor
    targets: torch.Tensor
    class_labels: torch.Tensor
    bbox_offsets: torch.Tensor
    flipped: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> SSDData:
        """The same data set with every tensor on ``device``."""
        flipped = None if self.flipped is None else tuple(t.to(device) for t in self.flipped)
        return SSDData(self.images.to(device), self.targets.to(device), self.class_labels.to(device),
                       self.bbox_offsets.to(device), flipped)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, generator: torch.Generator | None = None,
                flip: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Minibatches ``(X, class_labels, bbox_offsets, bbox_mask)``: shuffled by ``generator``
        (in order without one) and, when ``flip``, each image flipped with probability 1/2 (its
        labels taken from ``flipped``)."""
        _positive_int(batch_size, "batch_size")
        if flip and self.flipped is None:
            raise ValueError("This SSDData has no labels of flipped images; make it with "
                             "prepare_ssd_data(..., flip=True) or train with flip=False.")
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        flips = torch.rand(n, generator=generator) < 0.5 if flip else None
        device = self.images.device
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size].to(device)
            X, labels, offsets = self.images[idx], self.class_labels[idx], self.bbox_offsets[idx]
            if flips is not None:
                f = flips[start:start + batch_size].to(device)
                X = torch.where(f[:, None, None, None], X.flip(-1), X)
                labels = torch.where(f[:, None], self.flipped[0][idx], labels)
                offsets = torch.where(f[:, None], self.flipped[1][idx], offsets)
            mask = (labels > 0).to(offsets.dtype).repeat_interleave(4, dim=1)
            yield X, labels, offsets, mask


def _check_targets(images: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dim() != 3 or targets.shape[-1] != 5:
        raise ValueError(f"targets must have shape (N, boxes per image, 5) with rows [class, x1, y1, x2, "
                         f"y2] (corners divided by the image size, padding rows with class -1), got "
                         f"{_shape(targets)}.")
    if len(targets) != len(images):
        raise ValueError(f"images has {len(images)} images but targets has {len(targets)}; give one target "
                         "row block per image.")


def prepare_ssd_data(net: TinySSD, images: torch.Tensor, targets: torch.Tensor, flip: bool = True,
                     iou_threshold: float = IOU_THRESHOLD, device=None) -> SSDData:
    """Resize ``images`` to ``net.image_size`` once and label every anchor of every image once.

    ``images`` (N, 3, H, W) uint8 or floats in [0, 1]; ``targets`` (N, G, 5) ``[class, x1, y1, x2,
    y2]`` with corners in [0, 1] (as ``detection_tensors`` and ``shapes_tensors`` give them).
    The anchors are ``net.anchors()``; :func:`helpers.boxes.multibox_target` labels them all at
    once (a fraction of a second for 1,000 images; an anchor is positive from an IoU of
    ``iou_threshold`` on), and with ``flip`` also the anchors of the horizontally flipped images
    (:func:`flip_targets`). The net and the data go to ``device`` (default: the one
    :func:`helpers.setup` chose, where :func:`train_ssd` trains).
    """
    _check_targets(images, targets)
    device = training_device(device)
    net.to(device)
    X = resize_images(images, net.image_size).to(device).contiguous(memory_format=torch.channels_last)
    targets = targets.to(device=device, dtype=torch.float32)
    anchors = net.anchors()
    offsets, _, labels = multibox_target(anchors, targets, iou_threshold)
    flipped = None
    if flip:
        flip_offsets, _, flip_labels = multibox_target(anchors, flip_targets(targets), iou_threshold)
        flipped = (flip_labels, flip_offsets)
    return SSDData(X, targets, labels, offsets, flipped)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


def _check_net(net) -> None:
    if not isinstance(net, nn.Module) or not hasattr(net, "image_size"):
        raise ValueError(f"net must be a detector such as TinySSD (an nn.Module with an image_size), "
                         f"got {type(net).__name__}.")


def raw_outputs(net: TinySSD, images: torch.Tensor, batch_size: int = 64) -> dict:
    """What the detector predicts for ``images`` before non-maximum suppression.

    ``images`` (B, 3, H, W), uint8 or floats in [0, 1], of any size (resized to
    ``net.image_size``). Returns a dict with the inputs of :func:`helpers.boxes.multibox_detection`,
    ``"anchors"`` (A, 4), ``"cls_probs"`` (B, C + 1, A) (softmax, background first) and
    ``"offset_preds"`` (B, A * 4); ``"boxes"`` (B, A, 4), every anchor's predicted box (normalised);
    and ``"image_size"``, the (H, W) of the images given. Run it once and then
    :func:`detections_from_raw` as often as you like, e.g. for every position of an NMS slider.
    """
    _check_net(net)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must have shape (batch, 3, height, width), got {_shape(images)}; "
                         "for one image pass image[None].")
    device = model_device(net)
    was_training = net.training
    net.eval()
    probs, offsets = [], []
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                X = resize_images(chunk.to(device), net.image_size)
                X = X.contiguous(memory_format=torch.channels_last)
                anchors, cls, box = net(X)
                probs.append(F.softmax(cls, dim=-1).permute(0, 2, 1))
                offsets.append(box)
    finally:
        net.train(was_training)
    offset_preds = torch.cat(offsets)
    return {"anchors": anchors, "cls_probs": torch.cat(probs), "offset_preds": offset_preds,
            "boxes": offset_inverse(anchors, offset_preds.view(len(offset_preds), -1, 4)),
            "image_size": tuple(images.shape[-2:])}


def detections_from_raw(raw: dict, pos_threshold: float = 0.5, nms_threshold: float = 0.5,
                        class_aware: bool = True, image_size: int | tuple[int, int] | None = None,
                        max_candidates: int = 200) -> list[dict[str, torch.Tensor]]:
    """Detections ``{"boxes" (K, 4), "scores" (K,), "labels" (K,)}`` per image from :func:`raw_outputs`.

    Each anchor proposes its most likely object class with that probability as its score; the
    anchors scoring at least ``pos_threshold`` (at most the ``max_candidates`` best per image)
    go through :func:`helpers.boxes.multibox_detection`, whose non-maximum suppression (within each
    class if ``class_aware``) drops every box that overlaps a better one by more than
    ``nms_threshold``. Leaving the low-scoring anchors out changes nothing above the threshold (a
    box is only ever suppressed by a better one) and keeps NMS fast (a few milliseconds an
    image). Boxes are clipped to the image and given in pixels of ``image_size`` (default: the
    size of the images given to :func:`raw_outputs`), labels are classes 0..C-1, by decreasing
    score: the format of :mod:`helpers.average_precision` and of drawing.
    """
    probs, offsets, anchors = raw["cls_probs"], raw["offset_preds"], raw["anchors"]
    h, w = _pair(raw["image_size"] if image_size is None else image_size)
    _positive_int(max_candidates, "max_candidates")
    for name, value in (("pos_threshold", pos_threshold), ("nms_threshold", nms_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
    scale = torch.tensor([w, h, w, h], dtype=offsets.dtype, device=offsets.device)
    result = []
    for p, o in zip(probs, offsets, strict=True):
        score = p[1:].max(dim=0).values
        keep = (score >= pos_threshold).nonzero()[:, 0]
        if len(keep) > max_candidates:
            keep = keep[score[keep].topk(max_candidates).indices]
        if len(keep) == 0:
            none = torch.zeros(0, dtype=offsets.dtype, device=offsets.device)
            result.append({"boxes": none.view(0, 4), "scores": none, "labels": none.long()})
            continue
        rows = multibox_detection(p[:, keep][None], o.view(-1, 4)[keep].reshape(1, -1), anchors[keep],
                                  nms_threshold, pos_threshold, class_aware)
        found = detections_to_list(rows)[0]
        found["boxes"] = found["boxes"].clamp(0, 1) * scale
        result.append(found)
    return result


def detect(net: TinySSD, images: torch.Tensor, pos_threshold: float = 0.5, nms_threshold: float = 0.5,
           class_aware: bool = True, image_size: int | tuple[int, int] | None = None) -> list[dict]:
    """Detect objects: per image a dict ``{"boxes" (K, 4), "scores" (K,), "labels" (K,)}``.

    ``images`` (B, 3, H, W) uint8 or floats in [0, 1]; boxes come in pixels of ``image_size``
    (default: H x W), so they can be drawn on the images given. ``pos_threshold`` is the least
    score a detection needs (0.5 to draw; :func:`evaluate_ssd` uses 0.01, since AP wants the
    whole ranking); see :func:`detections_from_raw` for the rest.
    """
    raw = raw_outputs(net, images)
    return detections_from_raw(raw, pos_threshold, nms_threshold, class_aware, image_size)


def targets_to_list(targets: torch.Tensor, height: int, width: int) -> list[dict[str, torch.Tensor]]:
    """Ground truth (N, G, 5) rows ``[class, x1, y1, x2, y2]`` (normalised, padding class < 0) as one
    dict ``{"boxes" (in pixels of a height x width image), "labels"}`` per image: the format of
    :mod:`helpers.average_precision` and of drawing."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    truth = []
    for rows in targets.detach().cpu().float():
        rows = rows[rows[:, 0] >= 0]
        truth.append({"boxes": rows[:, 1:] * scale, "labels": rows[:, 0].long()})
    return truth


def evaluate_ssd(net: TinySSD, images: torch.Tensor, targets: torch.Tensor, pos_threshold: float = 0.01,
                 nms_threshold: float = 0.5, class_aware: bool = True, d2l_metrics: bool = True,
                 iou_threshold: float = IOU_THRESHOLD) -> dict:
    """How good the detector is on ``images`` with ground truth ``targets`` (N, G, 5), normalised.

    Average precision (:func:`helpers.average_precision.mean_average_precision`, COCO rules, boxes
    in pixels of the given images) of the detections of :func:`detect` with ``pos_threshold``
    (low, so the ranking is complete): ``"map_50"`` (AP@0.5, PASCAL VOC's criterion), ``"map"``
    (AP@[.5:.95], COCO's), ``"map_75"``, ``"per_class_50"`` and ``"per_class"`` (``{class: AP}``).

    With ``d2l_metrics`` also d2l's two numbers, over all anchors of these images labelled as for
    training (:func:`helpers.boxes.multibox_target` with ``iou_threshold``): ``"class_err"`` (the
    fraction of anchors whose most likely class is wrong) and ``"bbox_mae"`` (the mean absolute
    error of the offsets, zero for background anchors, averaged over all A * 4 entries); and
    ``"background_class_err"`` and ``"background_bbox_mae"``, what a model that calls every anchor
    background (offsets 0) scores on them. More than 99% of the anchors are background, so that
    model, which finds nothing, already has a class error below 1% and a small MAE: the reason to
    measure a detector by its AP.
    """
    _check_net(net)
    _check_targets(images, targets)
    raw = raw_outputs(net, images)
    h, w = raw["image_size"]
    found = detections_from_raw(raw, pos_threshold, nms_threshold, class_aware)
    found = [{k: v.cpu() for k, v in d.items()} for d in found]
    ap = mean_average_precision(found, targets_to_list(targets, h, w))
    result = {"map_50": ap["map_50"], "map": ap["map"], "map_75": ap["map_75"],
              "per_class_50": ap["per_class_50"], "per_class": ap["per_class"]}
    if d2l_metrics:
        device = raw["anchors"].device
        targets = targets.to(device=device, dtype=torch.float32)
        offsets, mask, labels = multibox_target(raw["anchors"], targets, iou_threshold)
        predicted = raw["cls_probs"].argmax(dim=1)
        result["class_err"] = (predicted != labels).float().mean().item()
        result["bbox_mae"] = ((raw["offset_preds"] - offsets) * mask).abs().mean().item()
        result["background_class_err"] = (labels != 0).float().mean().item()
        result["background_bbox_mae"] = (offsets * mask).abs().mean().item()
    return result


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from 1 to 0 at step ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_ssd(net: TinySSD, train_data: SSDData, val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
              num_epochs: int = 12, lr: float = 3e-3, batch_size: int = 32, weight_decay: float = 1e-4,
              warmup_steps: int = 30, flip: bool = True, negative_ratio: float | None = None,
              seed: int = 0, budget_s: float | None = None, live: bool | None = None,
              progress: bool | None = None, verbose: bool = True, device=None) -> History:
    """Train ``net`` on ``train_data`` (from :func:`prepare_ssd_data`); return the :class:`History`.

    AdamW (``lr``, ``weight_decay``), the learning rate warmed up linearly over ``warmup_steps``
    minibatches and then decayed along a cosine to 0 at the end of ``num_epochs``; the loss is
    :func:`ssd_loss` (``negative_ratio``); each image is flipped with probability 1/2 per epoch
    when ``flip``. ``seed`` fixes the order of the minibatches and the flips (seed the model's
    initialisation yourself, e.g. with ``helpers.setup``), so a run repeats exactly.

    Recorded per epoch (progress bar and live plot in a notebook): ``train_loss``,
    ``train_cls_loss`` and ``train_box_loss``, and, with ``val_data = (images, targets)`` (the
    original images, any size), ``val_ap50`` and ``val_ap`` (AP@0.5 and AP@[.5:.95] of
    :func:`evaluate_ssd`).

    ``budget_s`` (seconds, evaluation included) is a guard for slow machines: the schedule then
    follows whichever is further along, the minibatches done or the time spent, so the learning
    rate still reaches 0, and training stops, after the epoch's validation, once the time is up
    (``history.stopped_early``). On a machine fast enough for the budget nothing changes.

    The net and the data go to ``device`` (default: the one :func:`helpers.setup` chose).
    """
    _check_net(net)
    if not isinstance(train_data, SSDData):
        raise ValueError(f"train_data must be an SSDData from prepare_ssd_data, "
                         f"got {type(train_data).__name__}.")
    if hasattr(net, "num_anchors") and train_data.class_labels.shape[1] != net.num_anchors():
        raise ValueError(f"train_data labels {train_data.class_labels.shape[1]} anchors per image but net "
                         f"has {net.num_anchors()}; make it with prepare_ssd_data(net, ...) for this net.")
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("net has no trainable parameters, so there is nothing to train; pass a TinySSD "
                         "(or unfreeze its parameters).")
    _positive_int(num_epochs, "num_epochs")
    _positive_int(batch_size, "batch_size")
    if budget_s is not None and not budget_s > 0:
        raise ValueError(f"budget_s must be a positive number of seconds (or None), got {budget_s!r}.")
    if val_data is not None:
        if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
            raise ValueError("val_data must be a pair (images, targets) (from shapes_tensors, which also "
                             "returns masks, take the first two), or None.")
        _check_targets(*val_data)
    device = training_device(device)
    net.to(device)
    if train_data.device != device:
        train_data = train_data.to(device)
    if device.type == "cpu":
        net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer("adamw", params, lr, weight_decay=weight_decay)
    steps_per_epoch = train_data.num_batches(batch_size)
    total = num_epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    run = TrainingRun(num_epochs, steps_per_epoch, optimizers=optimizer, live=live, progress=progress,
                      verbose=verbose)
    step, base_lrs, eval_s = 0, [group["lr"] for group in optimizer.param_groups], 0.0
    out_of_time = False
    with run:
        for _ in run.epochs():
            net.train()
            for X, labels, offsets, mask in train_data.batches(batch_size, generator, flip):
                done = step / total
                if budget_s is not None:
                    done = min(1.0, max(done, run.seconds / budget_s))
                factor = _schedule(round(done * total), total, warmup_steps)
                for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base_lr * factor
                _, cls_logits, box_offsets = net(X)
                loss, parts = ssd_loss(cls_logits, box_offsets, labels, offsets, mask, negative_ratio)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                run.step(len(X), loss=loss, cls_loss=parts["cls"], box_loss=parts["box"])
                out_of_time = budget_s is not None and run.seconds + eval_s >= budget_s
                if out_of_time:
                    break  # leaving the time the validation took last epoch
            values = {}
            if val_data is not None:
                start = time.perf_counter()
                scores = evaluate_ssd(net, *val_data, d2l_metrics=False)
                values = {"val_ap50": scores["map_50"], "val_ap": scores["map"]}
                eval_s = time.perf_counter() - start
            run.end_epoch(**values)
            if out_of_time or (budget_s is not None and run.seconds >= budget_s):
                run.stop()
    return run.history
