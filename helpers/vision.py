"""Tools for the convolutional chapters: kernels, shapes, the convolution explorer, CNN training.

What chapter 4 teaches (cross-correlation, padding, stride, pooling, batch norm) is written out in
its notebooks; this module holds what several notebooks reuse:

- ``KERNEL_PRESETS``, :func:`kernel_preset`: classic 3x3 image kernels (blur, sharpen, edges, ...);
- :func:`conv_output_size`, :func:`transposed_output_size`: the output-shape formulas, with errors
  that say which setting to change;
- :func:`draw_convolution` and :class:`ConvExplorer`: the "Try it" widget that convolves a shipped
  image with a preset or hand-edited 3x3 kernel, with padding/stride/dilation sliders;
- :func:`layer_summary`, :func:`count_parameters`: per-layer output shapes and parameter counts;
- :func:`train_classifier`: train an image classifier in the ``channels_last`` memory format,
  keeping the best checkpoint by validation accuracy (hold out the validation set with
  :func:`helpers.classification.train_val_split`).
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Sequence

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn
from torch.nn import functional as F

from helpers.data import make_loader
from helpers.datasets import list_images, load_image
from helpers.plotting import PALETTE
from helpers.training import History, accuracy, evaluate, fit, make_optimizer, training_device
from helpers.widgets import PlotExplorer

# ---------------------------------------------------------------------------------------------
# Kernels and shapes
# ---------------------------------------------------------------------------------------------

KERNEL_PRESETS: dict[str, list[list[float]]] = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "box blur": [[1 / 9] * 3] * 3,
    "Gaussian blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "vertical edges (Sobel x)": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "horizontal edges (Sobel y)": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "all edges (Laplacian)": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}


def kernel_preset(name: str) -> torch.Tensor:
    """The 3x3 kernel called ``name`` (a key of ``KERNEL_PRESETS``) as a float32 tensor."""
    if name not in KERNEL_PRESETS:
        raise ValueError(f"No kernel preset {name!r}; choose one of: {', '.join(KERNEL_PRESETS)}.")
    return torch.tensor(KERNEL_PRESETS[name], dtype=torch.float32)


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def conv_output_size(n: int, k: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """Output length of a convolution along one axis (PyTorch's convention: ``padding`` per side).

    ``floor((n + 2 * padding - dilation * (k - 1) - 1) / stride) + 1``. The dilated kernel spans
    ``dilation * (k - 1) + 1`` inputs; if that is longer than the padded input, there is no valid
    position and a ValueError says what to change.
    """
    _check_int("n", n, 1)
    _check_int("k", k, 1)
    _check_int("padding", padding, 0)
    _check_int("stride", stride, 1)
    _check_int("dilation", dilation, 1)
    span = dilation * (k - 1) + 1
    if span > n + 2 * padding:
        raise ValueError(
            f"The kernel spans {span} pixels (k={k}, dilation={dilation}) but the padded input has only "
            f"{n + 2 * padding} (n={n}, padding={padding}); lower the dilation or add padding."
        )
    return (n + 2 * padding - span) // stride + 1


def transposed_output_size(
    n: int, k: int, padding: int = 0, stride: int = 1, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution: ``(n - 1) * stride - 2 * padding +
    dilation * (k - 1) + output_padding + 1`` (the input length of the convolution it transposes)."""
    _check_int("n", n, 1)
    _check_int("k", k, 1)
    _check_int("padding", padding, 0)
    _check_int("stride", stride, 1)
    _check_int("dilation", dilation, 1)
    _check_int("output_padding", output_padding, 0)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding must be smaller than the stride or the dilation, got {output_padding}."
        )
    size = (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    if size < 1:
        raise ValueError(f"padding={padding} crops away the whole output; use a smaller padding.")
    return size


# ---------------------------------------------------------------------------------------------
# The convolution explorer
# ---------------------------------------------------------------------------------------------

EXPLORER_IMAGE_SIZE = 160


@functools.lru_cache(maxsize=32)
def _explorer_image_cached(name: str, size: int) -> torch.Tensor:
    image = load_image(name, mode="L")
    _, h, wd = image.shape
    side = min(h, wd)
    top, left = (h - side) // 2, (wd - side) // 2
    square = image[:, top : top + side, left : left + side]
    out = F.interpolate(square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp(0, 1)


def explorer_image(name: str, size: int = EXPLORER_IMAGE_SIZE) -> torch.Tensor:
    """A shipped image as a grayscale ``(size, size)`` tensor in [0, 1] (centre square, resized)."""
    _check_int("size", size, 8)
    return _explorer_image_cached(name, size).clone()


def _as_kernel(kernel) -> torch.Tensor:
    kernel = torch.as_tensor(kernel, dtype=torch.float32)
    if kernel.ndim != 2:
        raise ValueError(f"The kernel must be a 2-D matrix (kh, kw), got shape {tuple(kernel.shape)}.")
    if not torch.isfinite(kernel).all():
        raise ValueError("The kernel holds nan or inf; type ordinary numbers into its cells.")
    return kernel


def convolve_image(image: torch.Tensor, kernel, padding: int = 0, stride: int = 1,
                   dilation: int = 1) -> torch.Tensor:
    """Cross-correlate a 2-D image ``(H, W)`` with a 2-D kernel (zero padding); returns ``(H', W')``.

    Shapes are checked first with :func:`conv_output_size`, so an impossible setting raises a
    ValueError that says what to change.
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    if image.ndim != 2:
        raise ValueError(f"Give a 2-D grayscale image (H, W), got shape {tuple(image.shape)}.")
    kernel = _as_kernel(kernel)
    for n, k in zip(image.shape, kernel.shape, strict=True):
        conv_output_size(n, k, padding, stride, dilation)
    return F.conv2d(image[None, None], kernel[None, None], padding=padding, stride=stride,
                    dilation=dilation)[0, 0]


def _kernel_taps(kh: int, kw: int, row: int, col: int, stride: int, dilation: int):
    """Padded-input coordinates that output pixel (row, col) reads."""
    rows = [row * stride + a * dilation for a in range(kh)]
    cols = [col * stride + b * dilation for b in range(kw)]
    return [(r, c) for r in rows for c in cols]


def draw_convolution(image: torch.Tensor, kernel, padding: int = 1, stride: int = 1, dilation: int = 1,
                     title: str = "input"):
    """Picture and message of one convolution: the input, where the kernel reads, the output.

    ``image`` is ``(H, W)`` in [0, 1]; ``kernel`` is a 2-D matrix. The middle panel zooms into the
    top-left corner of the zero-padded input and marks the pixels read by the first two output
    pixels of the first row (they are ``stride`` apart; a kernel's taps are ``dilation`` apart).
    Outputs of kernels that sum to zero (edge detectors) are drawn in a diverging colour map centred
    on 0, others in gray over their 1st-99th percentile. Returns ``(figure, message)``, the contract
    of :class:`helpers.widgets.PlotExplorer`. The figure is built without pyplot and without an
    automatic layout, which keeps a redraw fast.
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    kernel = _as_kernel(kernel)
    out = convolve_image(image, kernel, padding, stride, dilation)
    (h, wd), (kh, kw) = image.shape, kernel.shape
    oh, ow = out.shape

    fig = Figure(figsize=(9, 3.1), layout=None)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.02, wspace=0.06)
    ax_in, ax_zoom, ax_out = axes
    for ax in axes:
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_in.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
    ax_in.set_title(f"{title}: {h}x{wd}", fontsize=9)

    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    view = max(span_h, span_w + (stride if ow > 1 else 0)) + 2
    view = min(view, h + 2 * padding, wd + 2 * padding)
    padded = F.pad(image, (padding, padding, padding, padding))[:view, :view]
    ax_zoom.imshow(padded.numpy(), cmap="gray", vmin=0, vmax=1)
    if padding:
        ax_zoom.add_patch(Rectangle((padding - 0.5, padding - 0.5), view, view, fill=False,
                                    edgecolor=PALETTE[2], linewidth=2, label="image edge"))
    for index, (color, marker) in enumerate([(PALETTE[1], "o"), (PALETTE[3], "x")][: min(ow, 2)]):
        taps = [(r, c) for r, c in _kernel_taps(kh, kw, 0, index, stride, dilation) if r < view and c < view]
        if taps:
            rs, cs = zip(*taps, strict=True)
            ax_zoom.scatter(cs, rs, s=30, color=color, marker=marker, label=f"read by output (0, {index})")
    ax_zoom.set_xlim(-0.5, view - 0.5)
    ax_zoom.set_ylim(view - 0.5, -0.5)
    ax_zoom.legend(fontsize=7, loc="lower right", framealpha=0.85, frameon=True)
    ax_zoom.set_title(f"top-left {view}x{view} of the padded input", fontsize=9)

    if abs(kernel.sum().item()) < 1e-6:  # edge detectors: signed output around 0
        vmax = float(out.abs().max()) or 1.0
        ax_out.imshow(out.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        scale = "blue < 0 < red"
    else:
        lo, hi = (float(v) for v in torch.quantile(out.reshape(-1), torch.tensor([0.01, 0.99])))
        ax_out.imshow(out.numpy(), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        scale = f"gray {lo:.2g} to {hi:.2g}"
    ax_out.set_title(f"output: {oh}x{ow} ({scale})", fontsize=9)

    message = (f"input {h}x{wd}, kernel {kh}x{kw}, padding {padding}, stride {stride}, dilation "
               f"{dilation} &rarr; output <b>{oh}x{ow}</b>: &lfloor;({h} + 2&middot;{padding} &minus; "
               f"{dilation}&middot;({kh} &minus; 1) &minus; 1) / {stride}&rfloor; + 1 = {oh}")
    if oh != ow:
        message += f" rows, {ow} columns"
    return fig, message


CELL_NAMES = tuple(f"k{r}{c}" for r in range(3) for c in range(3))


class ConvExplorer(PlotExplorer):
    """Try convolution on a shipped image: a kernel preset or 3x3 values you type, and sliders.

    Controls (``explorer.controls``): ``image`` (a shipped image), ``preset`` (a name of
    ``KERNEL_PRESETS``, or ``'custom'``), the nine cells ``k00`` ... ``k22``, ``padding``, ``stride``
    and ``dilation``. Choosing a preset fills the cells; editing a cell switches the preset to
    ``'custom'``. Each change redraws once; ``explorer.seconds`` is the time of the last redraw.
    """

    def __init__(self, image: str = "camera", preset: str = "vertical edges (Sobel x)", padding: int = 1,
                 stride: int = 1, dilation: int = 1, size: int = EXPLORER_IMAGE_SIZE) -> None:
        kernel = kernel_preset(preset)
        self.size = size
        narrow = w.Layout(width="70px")
        cells = {name: w.FloatText(value=float(kernel.reshape(-1)[i]), step=0.5, layout=narrow)
                 for i, name in enumerate(CELL_NAMES)}
        slider = {"continuous_update": False, "style": {"description_width": "initial"}}
        controls = {
            "image": w.Dropdown(options=list_images(), value=image, description="image"),
            "preset": w.Dropdown(options=[*KERNEL_PRESETS, "custom"], value=preset, description="kernel"),
            **cells,
            "padding": w.IntSlider(value=padding, min=0, max=8, description="padding", **slider),
            "stride": w.IntSlider(value=stride, min=1, max=8, description="stride", **slider),
            "dilation": w.IntSlider(value=dilation, min=1, max=20, description="dilation", **slider),
        }
        super().__init__(controls, self._draw, busy="convolving...")

    def build_layout(self) -> w.Widget:
        """The sliders on the left, the nine kernel cells as a 3x3 grid on the right."""
        c = self.controls
        grid = w.GridBox([c[name] for name in CELL_NAMES],
                         layout=w.Layout(grid_template_columns="repeat(3, 75px)", grid_gap="2px"))
        left = w.VBox([c["image"], c["preset"], c["padding"], c["stride"], c["dilation"]])
        return w.VBox([w.HBox([left, w.VBox([w.HTML("3x3 kernel values"), grid])]), self.status, self.image])

    def kernel(self) -> torch.Tensor:
        """The 3x3 kernel currently in the cells."""
        values = [self.controls[name].value for name in CELL_NAMES]
        return torch.tensor(values, dtype=torch.float32).reshape(3, 3)

    def on_change(self, name: str, change) -> None:
        """A preset fills the cells; a cell typed by hand switches the preset to ``'custom'``."""
        if name == "preset" and change.new != "custom":
            values = kernel_preset(change.new).reshape(-1).tolist()
            for cell, value in zip(CELL_NAMES, values, strict=True):
                self.controls[cell].value = value
        elif name in CELL_NAMES:
            self.controls["preset"].value = "custom"

    def _draw(self, image, preset, padding, stride, dilation, **cells):
        kernel = torch.tensor([cells[name] for name in CELL_NAMES], dtype=torch.float32).reshape(3, 3)
        picture = explorer_image(image, self.size)
        fig, message = draw_convolution(picture, kernel, padding, stride, dilation, title=image)
        return fig, f"<b>{html.escape(preset)}</b>: {message}"


# ---------------------------------------------------------------------------------------------
# Models: shapes and parameters
# ---------------------------------------------------------------------------------------------


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net`` (works on the ``meta`` device too)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def layer_summary(net: nn.Module, X: torch.Tensor, verbose: bool = True) -> list[tuple[str, tuple, int]]:
    """Run ``X`` through ``net`` and record each top-level child's output shape and parameter count.

    Returns ``[(name, output_shape, num_params), ...]`` in call order; with ``verbose`` also prints
    one aligned line per layer, e.g. ``Conv2d-0        (1, 6, 28, 28)       156``. Works on the
    ``meta`` device (shapes without computation).
    """
    rows: list[tuple[str, tuple, int]] = []

    def make_hook(label: str):
        def hook(module, _inputs, output):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            rows.append((label, shape, count_parameters(module)))

        return hook

    handles = [child.register_forward_hook(make_hook(f"{type(child).__name__}-{name}"))
               for name, child in net.named_children()]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(X)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    if verbose:
        width = max((len(name) for name, _, _ in rows), default=10) + 2
        for name, shape, params in rows:
            print(f"{name:<{width}}{str(shape):<22}{params:>10,}")
        print(f"{'total':<{width}}{'':<22}{count_parameters(net):>10,}")
    return rows


# ---------------------------------------------------------------------------------------------
# Training an image classifier
# ---------------------------------------------------------------------------------------------


def warmup_cosine(num_epochs: int, warmup_epochs: int = 1):
    """Learning-rate factor per epoch: linear warm-up, then a cosine decay towards zero.

    Returns ``f(epoch)`` for ``torch.optim.lr_scheduler.LambdaLR`` (stepped once per epoch).
    """
    _check_int("num_epochs", num_epochs, 1)
    _check_int("warmup_epochs", warmup_epochs, 0)
    warmup_epochs = min(warmup_epochs, num_epochs - 1)

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs + 1) / (num_epochs - warmup_epochs + 1)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_classifier(
    net: nn.Module,
    train_data: Sequence[torch.Tensor],
    val_data: Sequence[torch.Tensor],
    num_epochs: int,
    lr: float,
    batch_size: int = 128,
    optimizer: str = "nesterov",
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    warmup_epochs: int = 1,
    label_smoothing: float = 0.0,
    channels_last: bool = True,
    keep_best: tuple[str, str] | None = ("val_acc", "max"),
    device: torch.device | str | None = None,
    seed: int = 0,
    **fit_kwargs,
) -> History:
    """Train an image classifier with cross-entropy and return its :class:`~helpers.training.History`.

    ``train_data`` / ``val_data`` are ``(X, y)`` tensors (images ``(N, C, H, W)``, labels ``(N,)``).
    ``optimizer`` is a name of :func:`helpers.training.make_optimizer`: ``'nesterov'`` (the
    default, SGD with Nesterov momentum 0.9) or ``'adamw'`` are the usual choices; ``schedule`` is
    ``'cosine'`` (:func:`warmup_cosine`, stepped per epoch) or ``'constant'``. With
    ``channels_last`` the network's 4-D weights use the NHWC memory format, which oneDNN runs
    considerably faster on CPUs. ``keep_best=('val_acc', 'max')`` restores the weights of the epoch
    with the best validation accuracy. The model and both data sets go to ``device`` (default: the
    one :func:`helpers.setup` chose). Other keyword arguments go to :func:`helpers.training.fit`.
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}.")
    device = training_device(device)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, net.parameters(), lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = None
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(num_epochs, warmup_epochs))
    train_iter = make_loader(*train_data, batch_size=batch_size, seed=seed, device=device)
    val_iter = make_loader(*val_data, batch_size=1000, shuffle=False, device=device)
    return fit(net, nn.CrossEntropyLoss(label_smoothing=label_smoothing), opt, train_iter, num_epochs,
               val_iter=val_iter, metrics={"acc": accuracy}, scheduler=scheduler, keep_best=keep_best,
               device=device, **fit_kwargs)


def evaluate_accuracy(net: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``net`` on ``(X, y)``, in evaluation mode, in batches."""
    data_iter = make_loader(X, y, batch_size=batch_size, shuffle=False)
    return evaluate(net, data_iter, metrics={"acc": accuracy})["acc"]
