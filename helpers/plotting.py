"""Plot helpers: a colour-blind-safe style, curves, scatter with a line, image grids, heatmaps.

Every helper labels its axes, takes an optional ``ax`` to draw into, and returns the axes so a
notebook can add to the picture. ``LivePlot`` is the one figure that ``fit`` updates in place.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

# Okabe & Ito (2008), a palette that stays distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
LINESTYLES = ["-", "--", "-.", ":"]


def use_course_style() -> None:
    """Apply the course's matplotlib style: palette, light grid, small figures at moderate dpi."""
    plt.rcParams.update(
        {
            "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.figsize": (5.0, 3.2),
            "figure.dpi": 80,
            "savefig.dpi": 80,
            "figure.autolayout": True,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


# CJK font families, most common first (Debian's fonts-noto-cjk, then Windows, macOS and others).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


def use_cjk_font() -> str | None:
    """Let matplotlib draw Chinese labels: put the first installed CJK font in front of the
    sans-serif list and return its name. Without one, Chinese labels would be empty boxes, so warn
    with what to install and return ``None`` (figures with only Latin text are unaffected)."""
    import warnings

    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    name = next((family for family in CJK_FONTS if family in installed), None)
    if name is None:
        warnings.warn("no CJK font found, so Chinese text in figures would show as empty boxes: install "
                      "one (Debian/Ubuntu: apt-get install fonts-noto-cjk), then restart the kernel",
                      stacklevel=2)
        return None
    plt.rcParams["font.sans-serif"] = [name, *[f for f in plt.rcParams["font.sans-serif"] if f != name]]
    plt.rcParams["font.family"] = "sans-serif"
    plt.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack the minus sign U+2212
    return name


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _axes(ax=None, figsize=None):
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_curves(
    x,
    curves: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
    ax=None,
):
    """Draw several labelled curves over the same ``x`` (e.g. train and validation loss)."""
    ax = _axes(ax)
    x = _as_numpy(x)
    for i, (label, ys) in enumerate(curves.items()):
        ax.plot(x, _as_numpy(ys), label=label, linestyle=LINESTYLES[i // len(PALETTE) % 4])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    return ax


def plot_history(history, keys: Sequence[str] | None = None, ylabel: str | None = None, ax=None):
    """Plot the per-epoch values of a :class:`helpers.training.History` against the epoch."""
    keys = list(keys or history.keys())
    return plot_curves(
        history.epochs,
        {k: history[k] for k in keys},
        xlabel="epoch",
        ylabel=ylabel or ", ".join(keys),
        ax=ax,
    )


def scatter_with_line(
    x, y, line_x=None, line_y=None, xlabel="x", ylabel="y", label="fit", title=None, ax=None
):
    """Scatter the data ``(x, y)`` and draw a fitted line or curve ``(line_x, line_y)`` over it."""
    ax = _axes(ax)
    ax.scatter(_as_numpy(x), _as_numpy(y), s=8, alpha=0.5, color=PALETTE[0], label="data")
    if line_x is not None:
        order = np.argsort(_as_numpy(line_x).reshape(-1))
        lx = _as_numpy(line_x).reshape(-1)[order]
        ly = _as_numpy(line_y).reshape(-1)[order]
        ax.plot(lx, ly, color=PALETTE[3], linewidth=2, label=label)
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def show_images(images, nrows: int, ncols: int, titles: Sequence[str] | None = None, scale=1.4, cmap="gray"):
    """Show a grid of images (tensors (C,H,W) or (H,W), or arrays), with optional titles."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        img = _as_numpy(images[i])
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img.transpose(1, 2, 0)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=8)
    return axes


def heatmap(
    matrix,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    cmap: str = "viridis",
    annotate: bool = False,
    colorbar: bool = True,
    vmin=None,
    vmax=None,
    ax=None,
):
    """Draw a matrix as a heatmap (attention weights, confusion matrices), optionally annotated."""
    ax = _axes(ax)
    m = _as_numpy(matrix)
    image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.grid(False)
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), xlabels, rotation=90)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), ylabels)
    if annotate:
        threshold = np.nanmean(m)
        for (r, c), v in np.ndenumerate(m):
            text = f"{v:.2g}" if not float(v).is_integer() else f"{int(v)}"
            ax.text(c, r, text, ha="center", va="center", fontsize=7,
                    color="white" if v < threshold else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    return ax


def figure_to_png(fig, dpi: int = 80, tight: bool = True) -> bytes:
    """Render a figure to PNG bytes (what the widgets show in an ``ipywidgets.Image``) and close it.

    ``tight=True`` trims the margins so labels are never clipped; it renders the figure twice, so a
    figure with a fixed layout that must update fast (the attention-mask editor) passes ``False``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buffer.getvalue()


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def show_in_place(fig, handle=None):
    """Show ``fig`` in a notebook, or redraw it in the output area it was first shown in.

    Returns the display handle to pass back next time (``None`` outside IPython, where nothing is
    shown). Live figures that update during training use it.
    """
    if handle is not None:
        handle.update(fig)
        return handle
    if _in_ipython():
        from IPython.display import display

        return display(fig, display_id=True)
    return None


class LivePlot:
    """Loss curves (left) and metric curves (right, if any) per epoch, redrawn in place.

    The figure is created at the first update, with one panel when only losses are recorded.
    The loss axis turns logarithmic when the losses span more than two orders of magnitude.
    """

    def __init__(self) -> None:
        self.fig = None
        self.handle = None

    def update(self, history) -> None:
        """Redraw the curves of ``history`` into the same output area."""
        losses = [k for k in history.keys() if k.endswith("loss")]
        others = [k for k in history.keys() if not k.endswith("loss")]
        panels = [(losses, "loss"), (others, "metric")] if others else [(losses, "loss")]
        if self.fig is None:
            self.fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
            self.axes = list(axes.flat)
        for ax, (keys, ylabel) in zip(self.axes, panels, strict=True):
            ax.clear()
            plot_history(history, keys, ylabel=ylabel, ax=ax)
            values = np.array([v for k in keys for v in history[k]])
            if ylabel == "loss" and values.min() > 0 and values.max() / values.min() > 100:
                ax.set_yscale("log")
            ax.legend()
        self.handle = show_in_place(self.fig, self.handle)

    def close(self) -> None:
        if self.fig is not None:
            plt.close(self.fig)
