"""Semantic segmentation (chapter 9b): a fully convolutional network (FCN), its metrics, training
and pictures.

Semantic segmentation gives every pixel a class. A fully convolutional network does it with the
pieces of chapter 4 only: a CNN *body* shrinks the image by its total stride ``s`` (a power of 2), a
1x1 convolution turns each position's features into class scores, and a transposed convolution
(kernel ``2s``, stride ``s``, padding ``s/2``) enlarges the score map ``s`` times, back to the
input's size. That last layer starts as bilinear interpolation (:func:`bilinear_kernel`) and is
then learned, as in Long, Shelhamer and Darrell (2015) and d2l's chapter on FCNs.

- :func:`bilinear_kernel`: the weight that makes a transposed convolution upsample bilinearly
  (chapter 4 checks the same kernel by hand for stride 2; it could import it from here);
- :class:`FCN`: a small body trained from scratch, the 1x1 classifier and the upsampling layer;
- :func:`resize_shapes`: the shapes set at a lower resolution (images antialiased, masks nearest);
- :func:`pixel_accuracy`, :func:`mean_iou` (from :func:`segmentation_confusion`, which reuses
  :func:`helpers.classification.confusion_matrix`), :func:`evaluate_segmentation`;
- :func:`train_fcn`: the training loop, its bookkeeping a :class:`helpers.training.TrainingRun`;
- :func:`predict_masks` and :func:`draw_segmentation` (true and predicted masks over the images,
  drawn by :func:`helpers.detection.draw_detection_grid`).

Masks follow the shapes set (:func:`helpers.datasets.shapes_tensors`): ``0`` is the background and
``c + 1`` the class ``c``, so a network for the shapes set has ``num_classes = 4`` output channels
(background included) and its ``argmax`` is directly a mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from helpers.detection import SHAPE_CLASSES, draw_detection_grid
from helpers.training import History, TrainingRun, make_optimizer, model_device, training_device

SHAPES_NUM_CLASSES = len(SHAPE_CLASSES) + 1  # background + banana, disc, square
SHAPES_CLASS_NAMES = ("background", *SHAPE_CLASSES)

# ---------------------------------------------------------------------------------------------
# Bilinear upsampling with a transposed convolution
# ---------------------------------------------------------------------------------------------


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """The weight ``(in_channels, out_channels, k, k)`` of a transposed convolution that upsamples
    each channel bilinearly (channel ``i`` to channel ``i``; the other pairs are zero).

    The 2-D kernel is the outer product of a 1-D "tent" with itself: tap ``j`` (0 to ``k - 1``)
    weighs ``1 - |j - (k - 1) / 2| / ceil(k / 2)``, largest at the kernel's centre and falling
    linearly towards its ends. With ``k = 2s``, stride ``s`` and padding ``s / 2`` (``s`` even) the
    tent's slope is ``1 / s``, so an output pixel gets from its two nearest input pixels the
    weights ``1 - distance`` (distance measured in input pixels, between pixel centres): exactly
    what ``F.interpolate(mode="bilinear", align_corners=False)`` computes, except in the outermost
    ``s / 2`` output rows and columns on each side. There the output pixel's centre lies outside
    the outermost input pixel's centre: ``F.interpolate`` clamps to the edge (it repeats the border
    pixel), while the transposed convolution sees zeros beyond the border and so gives only the
    part ``(o + 1/2) / s + 1/2`` of the border pixel (``o = 0`` for the outermost output pixel, up
    to ``s / 2 - 1``), e.g. 3/4 for ``s = 2``. (Chapter 4 compares the two without the border.)
    """
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if in_channels != out_channels:
        raise ValueError(f"Bilinear upsampling maps each channel to itself, so in_channels and out_channels "
                         f"must be equal; got {in_channels} and {out_channels}.")
    taps = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1 - (taps - (kernel_size - 1) / 2).abs() / math.ceil(kernel_size / 2)
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    channels = torch.arange(in_channels)
    weight[channels, channels] = torch.outer(tent, tent).float()
    return weight


# ---------------------------------------------------------------------------------------------
# The fully convolutional network
# ---------------------------------------------------------------------------------------------


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class FCN(nn.Module):
    """A fully convolutional network: a small CNN body, a 1x1 convolution to class scores and a
    transposed convolution, initialised as bilinear upsampling, back to the input's size.

    The body has one stage per entry of ``channels``: a stride-2 3x3 convolution to that many
    channels followed by ``convs_per_stage - 1`` stride-1 3x3 convolutions, each with batch norm
    and ReLU. So the total stride is ``s = 2 ** len(channels)`` and the input's height and width
    must be multiples of ``s`` (a ValueError says so otherwise). ``num_classes`` counts every
    output class, the background included (4 for the shapes set). ``forward`` maps images
    ``(B, in_channels, H, W)`` to scores ``(B, num_classes, H, W)``; :attr:`total_stride` is ``s``.
    The body is trained from scratch (no pretrained weights are shipped with the course).

    The default, ``channels=(16, 32)`` with 3 convolutions per stage (stride 4, 29,524 parameters
    for 4 classes), is what trained best on the shapes set at 128x128 within a CPU budget of about
    a minute: the classes differ mostly in colour and outline, so resolution matters more than
    depth. Measured with :func:`train_fcn`'s recipe (8 epochs, val mIoU at 128x128): stride 16
    ``(16, 32, 64, 128)`` 0.82, stride 8 ``(16, 32, 64)`` 0.89, stride 4 (the default) 0.93,
    stride 2 ``(16,)`` with 4 convolutions 0.94; the thin bananas gain most (IoU 0.53 to 0.86).
    """

    def __init__(self, num_classes: int, channels: Sequence[int] = (16, 32),
                 convs_per_stage: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes counts the background too, so it is at least 2; "
                             f"got {num_classes!r}.")
        if len(channels) < 1 or not isinstance(convs_per_stage, int) or convs_per_stage < 1:
            raise ValueError(f"Give at least one stage (channels={tuple(channels)}) and convs_per_stage >= 1 "
                             f"(got {convs_per_stage!r}).")
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += _conv_bn_relu(previous, width, stride=2)
            for _ in range(convs_per_stage - 1):
                layers += _conv_bn_relu(width, width)
            previous = width
        self.body = nn.Sequential(*layers)
        self.total_stride = s = 2 ** len(channels)
        self.classifier = nn.Conv2d(previous, num_classes, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=2 * s, stride=s,
                                           padding=s // 2, bias=False)
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(num_classes, num_classes, 2 * s))
        self.num_classes = num_classes

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.ndim != 4:
            raise ValueError(f"FCN expects a batch of images (B, C, H, W), got shape {tuple(X.shape)}.")
        h, w = X.shape[-2:]
        s = self.total_stride
        if h % s or w % s:
            raise ValueError(
                f"The image is {h}x{w} but this FCN's total stride is {s}: height and width must be "
                f"multiples of {s} for the output to have the input's size; resize or crop to e.g. "
                f"{max(s, h // s * s)}x{max(s, w // s * s)}."
            )
        return self.upsample(self.classifier(self.body(X)))


# ---------------------------------------------------------------------------------------------
# Data at a lower resolution
# ---------------------------------------------------------------------------------------------


def resize_shapes(images: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shapes set at ``size x size`` pixels: ``(images uint8 (N, 3, size, size), masks uint8
    (N, size, size))``.

    Images (uint8, or floats in [0, 1]) are resized bilinearly with antialiasing (each new pixel
    is a weighted average of the old pixels around it, not a sample of one). Masks, whose values
    are classes and must not be averaged, take the class of the old pixel under the new pixel's
    centre (nearest neighbour, as ``F.interpolate(mode="nearest-exact")``; for a factor of 2 the
    lower-right pixel of each 2x2 block). Predictions made at this size are scored against these
    masks. Works in chunks of 100 images, so the float copy stays small.
    """
    if (images.ndim != 4 or masks.ndim != 3 or len(images) != len(masks)
            or images.shape[-2:] != masks.shape[-2:]):
        raise ValueError(f"Give images (N, 3, H, W) and their masks (N, H, W); got shapes "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}.")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}.")
    h, w = images.shape[-2:]
    small = []
    for chunk in images.split(100):
        floats = chunk.float() if chunk.dtype == torch.uint8 else chunk.float() * 255
        resized = F.interpolate(floats, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
        small.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    rows = (centres * h / size).long().clamp(max=h - 1)
    cols = (centres * w / size).long().clamp(max=w - 1)
    return torch.cat(small), masks[:, rows][:, :, cols]


def _as_float_images(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _check_pred_mask(pred: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred, mask = torch.as_tensor(pred), torch.as_tensor(mask)
    if pred.shape != mask.shape:
        hint = " (take scores.argmax(dim=1) first)" if pred.ndim == mask.ndim + 1 else ""
        raise ValueError(f"pred and mask must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(mask.shape)}{hint}.")
    if pred.is_floating_point() or mask.is_floating_point():
        raise ValueError("pred and mask hold class indices (integers); take scores.argmax(dim=1) first.")
    return pred, mask


def pixel_accuracy(pred: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of pixels whose predicted class equals the true one (any shapes, equal in both).

    On the shapes set 93% of the pixels are background, so a network that predicts background
    everywhere already scores 0.93: read it together with :func:`mean_iou`.
    """
    pred, mask = _check_pred_mask(pred, mask)
    if mask.numel() == 0:
        raise ValueError("No pixels to score: pred and mask are empty.")
    return (pred == mask).double().mean().item()


def segmentation_confusion(pred: torch.Tensor, mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The ``(num_classes, num_classes)`` confusion matrix over all pixels (rows: true class,
    columns: predicted class), by :func:`helpers.classification.confusion_matrix`. Confusion
    matrices of several batches add up to that of all their pixels."""
    # imported here: helpers.classification imports pyplot, which this model module must not
    from helpers.classification import confusion_matrix

    pred, mask = _check_pred_mask(pred, mask)
    return confusion_matrix(pred.reshape(-1), mask.reshape(-1), num_classes)


def iou_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class intersection over union from a confusion matrix ``C`` (rows true, columns
    predicted): ``IoU_k = C[k, k] / (row_k + column_k - C[k, k])``, i.e. the pixels both call
    ``k`` over the pixels either calls ``k``. A class that neither the mask nor the prediction
    contains has no IoU: its entry is ``nan`` (float64 tensor)."""
    C = torch.as_tensor(confusion).double()
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"A confusion matrix is square (classes x classes), got shape {tuple(C.shape)}.")
    intersection = C.diagonal()
    union = C.sum(dim=0) + C.sum(dim=1) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, math.nan))


def mean_iou(pred: torch.Tensor, mask: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """Mean intersection over union of predicted and true masks (any shapes, equal in both).

    Returns ``(miou, per_class)``: ``per_class`` holds each class's IoU over *all* the pixels given
    (one confusion matrix, the data-set-level IoU of PASCAL VOC and Cityscapes, not an average of
    per-image IoUs), and ``miou`` is their mean over the classes, background included. A class
    that appears in neither ``pred`` nor ``mask`` cannot be scored: its IoU is ``nan`` and it is
    left out of the mean (a class that appears in only one of them scores 0 and counts). If no
    class appears at all (empty input) a ValueError is raised.
    """
    per_class = iou_from_confusion(segmentation_confusion(pred, mask, num_classes))
    return _mean_present(per_class), per_class


def _mean_present(per_class: torch.Tensor) -> float:
    present = ~per_class.isnan()
    if not present.any():
        raise ValueError("No pixels to score: no class appears in pred or mask.")
    return per_class[present].mean().item()


# ---------------------------------------------------------------------------------------------
# Prediction and evaluation
# ---------------------------------------------------------------------------------------------


def _scores(net: nn.Module, images: torch.Tensor, input_size: int | None) -> torch.Tensor:
    """Class scores at the images' own size; the network runs at ``input_size`` if given."""
    X = _as_float_images(images)
    size = tuple(X.shape[-2:])
    if input_size is not None and size != (input_size, input_size):
        X = F.interpolate(X, size=(input_size, input_size), mode="bilinear", align_corners=False,
                          antialias=True)
    scores = net(X)
    if tuple(scores.shape[-2:]) != size:
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores


def predict_masks(net: nn.Module, images: torch.Tensor, input_size: int | None = None,
                  batch_size: int = 50) -> torch.Tensor:
    """Predicted masks (int64 ``(N, H, W)``, the ``argmax`` over classes) of images ``(N, 3, H, W)``
    (uint8, or floats in [0, 1]; one image ``(3, H, W)`` gives one mask ``(H, W)``).

    With ``input_size`` the network sees the images resized to ``input_size x input_size`` (the
    size it was trained at) and its scores are resized bilinearly back to ``H x W`` before the
    argmax, so the masks always have the images' size. Runs in eval mode without gradients.
    """
    single = images.ndim == 3
    if single:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"Give images (N, 3, H, W) or one image (3, H, W), got shape {tuple(images.shape)}.")
    device = model_device(net)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            masks = [_scores(net, images[i : i + batch_size].to(device), input_size).argmax(dim=1).cpu()
                     for i in range(0, len(images), batch_size)]
    finally:
        net.train(was_training)
    masks = torch.cat(masks)
    return masks[0] if single else masks


def evaluate_segmentation(net: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                          loss_fn=None, input_size: int | None = None, batch_size: int = 50) -> dict:
    """Pixel accuracy, mean IoU and per-class IoU (and the mean ``loss_fn`` if given) of ``net``
    on ``(images, masks)``, in eval mode; masks are compared at their own size (see
    :func:`predict_masks` for ``input_size``). Returns ``{'pixel_acc', 'miou', 'iou' (tensor),
    'confusion'}`` (plus ``'loss'``)."""
    if len(images) != len(masks) or len(images) == 0:
        raise ValueError(f"Give as many masks as images (and at least one): {len(images)} and {len(masks)}.")
    device = model_device(net)
    num_classes = None
    confusion, loss_total = None, 0.0
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                target = masks[i : i + batch_size].to(device).long()
                scores = _scores(net, images[i : i + batch_size].to(device), input_size)
                num_classes = scores.shape[1]
                if loss_fn is not None:
                    loss_total += loss_fn(scores, target).item() * len(target)
                batch = segmentation_confusion(scores.argmax(dim=1), target, num_classes).cpu()
                confusion = batch if confusion is None else confusion + batch
    finally:
        net.train(was_training)
    per_class = iou_from_confusion(confusion)
    out = {"pixel_acc": (confusion.diagonal().sum() / confusion.sum()).item(),
           "miou": _mean_present(per_class), "iou": per_class, "confusion": confusion}
    if loss_fn is not None:
        out["loss"] = loss_total / len(images)
    return out


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def class_weights(masks: torch.Tensor, num_classes: int, power: float = 0.5) -> torch.Tensor:
    """Cross-entropy weights from the class frequencies of ``masks``: ``(1 / frequency) ** power``,
    scaled so that the pixel-weighted mean weight is 1. ``power=0`` weighs all classes equally
    (plain cross-entropy), ``power=1`` makes every class count as much in total as the background;
    ``0.5`` is in between. A class absent from the masks gets the largest weight of the others."""
    counts = torch.bincount(torch.as_tensor(masks).reshape(-1).long(), minlength=num_classes)[:num_classes]
    freq = counts.double() / counts.sum()
    weights = torch.where(counts > 0, freq.clamp(min=1e-12) ** -power, torch.zeros_like(freq))
    weights[counts == 0] = weights.max()
    return (weights / (weights * freq).sum()).float()


def train_fcn(
    net: nn.Module,
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    num_epochs: int,
    lr: float,
    batch_size: int = 16,
    optimizer: str = "adamw",
    weight_decay: float = 1e-4,
    warmup_fraction: float = 0.1,
    weights: torch.Tensor | None = None,
    flip: bool = False,
    channels_last: bool = True,
    keep_best: tuple[str, str] | None = None,
    seed: int | None = None,
    live: bool | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    device: torch.device | str | None = None,
) -> History:
    """Train a segmentation network with per-pixel cross-entropy; return its
    :class:`~helpers.training.History`.

    ``train`` and ``val`` are ``(images, masks)``: images uint8 (or floats in [0, 1]) ``(N, 3, H,
    W)``, masks ``(N, H, W)`` of class indices (``0`` background), at the size the network is
    trained at (:func:`resize_shapes`, applied once to the whole set rather than per batch, which
    is why this loop takes tensors and not ``load_shapes``' iterators). ``weights`` are the
    classes' cross-entropy weights (e.g. :func:`class_weights`; ``None``: plain cross-entropy).
    ``optimizer`` is a name of :func:`helpers.training.make_optimizer`; the learning rate warms up
    linearly over the first ``warmup_fraction`` of the steps and then follows a cosine to zero,
    updated every step. With ``flip`` each training batch is mirrored left-right at random (the
    masks with it). With ``channels_last`` the network's 4-D weights use the NHWC memory format,
    which oneDNN runs faster on CPUs (as :func:`helpers.vision.train_classifier`).

    Recorded per epoch (a live plot in a notebook, a progress bar, one line per epoch elsewhere):
    ``train_loss`` and the validation set's ``val_pixel_acc`` and ``val_miou`` (background
    included, see :func:`mean_iou`). ``keep_best=('val_miou', 'max')`` restores the best epoch's
    weights at the end (a choice made on the validation set, so its numbers become optimistic).
    ``seed`` fixes the order of the batches (and the flips); by default it follows torch's seed,
    which :func:`helpers.setup` sets. The network trains on ``device`` (default: the one
    :func:`helpers.setup` chose), the images going there one batch at a time.
    """
    images, masks = train
    val_images, val_masks = val
    if len(images) != len(masks):
        raise ValueError(f"Give one mask per training image: {len(images)} images, {len(masks)} masks.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must lie in [0, 1), got {warmup_fraction!r}.")
    device = training_device(device)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay=weight_decay)
    num_batches = math.ceil(len(images) / batch_size)
    total = num_epochs * num_batches
    warmup = round(warmup_fraction * total)

    def factor(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device))
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.initial_seed() % 2**63)
    run = TrainingRun(num_epochs, num_batches, optimizers=opt, model=net, keep_best=keep_best,
                      live=live, progress=progress, verbose=verbose)
    with run:
        for _epoch in run.epochs():
            net.train()
            order = torch.randperm(len(images), generator=gen)
            for i in range(num_batches):
                idx = order[i * batch_size : (i + 1) * batch_size]
                X, Y = _as_float_images(images[idx]).to(device), masks[idx].long().to(device)
                if flip:
                    mirror = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
                    X[mirror], Y[mirror] = X[mirror].flip(-1), Y[mirror].flip(-1)
                loss = loss_fn(net(X), Y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                scheduler.step()
                run.step(len(idx), loss=loss)
            scores = evaluate_segmentation(net, val_images, val_masks)
            run.end_epoch(val_pixel_acc=scores["pixel_acc"], val_miou=scores["miou"])
    return run.history


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------


def draw_segmentation(images: torch.Tensor, masks: torch.Tensor | None, pred: torch.Tensor,
                      ncols: int = 6, tile: int = 128, alpha: float = 0.5) -> Image.Image:
    """Images with their true masks (top row of each pair) and predicted masks (bottom row), in
    the class colours of :func:`helpers.detection.draw_detection_grid` (which draws them). Masks
    are ``(N, H, W)`` at the images' size; ``masks=None`` draws only the predictions."""
    if masks is not None and (len(masks) != len(images) or masks.shape != pred.shape):
        raise ValueError(f"Give one true and one predicted mask per image, of equal shapes: {len(images)} "
                         f"images, masks {tuple(masks.shape)}, predictions {tuple(pred.shape)}.")
    if masks is None:
        return draw_detection_grid(images, ncols=ncols, tile=tile, masks=pred, alpha=alpha)
    rows = []
    for start in range(0, len(images), ncols):
        part = slice(start, start + ncols)
        rows += [draw_detection_grid(images[part], ncols=ncols, tile=tile, masks=masks[part], alpha=alpha),
                 draw_detection_grid(images[part], ncols=ncols, tile=tile, masks=pred[part], alpha=alpha)]
    grid = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        grid.paste(row, (0, top))
        top += row.height
    return grid

