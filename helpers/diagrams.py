r"""Architecture figures drawn with matplotlib: RNN, GRU, LSTM, seq2seq, Bahdanau attention, Transformer.

One public function per figure, each returning a new figure (the chapters' notation in mathtext):

* :func:`rnn_unrolled`: a recurrent network folded and unrolled over ``steps`` time steps (chapter 5)
* :func:`gru_cell` and :func:`lstm_cell`: the gated cells, with their equations (chapter 5)
* :func:`seq2seq`: a GRU encoder-decoder translating "they are watching ." with teacher forcing
  (chapter 5b)
* :func:`bahdanau_attention`: the decoder state querying the encoder states (chapter 6)
* :func:`transformer`: the Transformer encoder-decoder (chapter 7)
* :func:`normalization_axes`: which entries batch norm and layer norm average over (chapters 4, 7)

Why matplotlib, and without pyplot: the figures must show wherever the notebooks run (JupyterLab,
Colab and Kaggle, where the notebooks carry the helpers inside them, and the student edition), so
they are drawn here rather than shipped as image files or drawn by graphviz, and need no network.
They are built on ``matplotlib.figure.Figure`` directly, as the course's model modules do, so they
never enter pyplot's list of open figures (nothing to close, no second copy shown at the end of a
cell) and importing this module imports no pyplot.

How a notebook shows one: Jupyter's inline backend prints only the figures it knows of (a plain
``Figure`` made without pyplot shows as the text ``<Figure size ... with 1 Axes>``), so every
function here returns a :class:`Diagram`, a ``Figure`` that displays itself as one PNG in any
kernel (JupyterLab, Colab, Kaggle), whether or not pyplot has been used. Make it the last expression
of a cell, or call ``display`` anywhere in a cell::

    from helpers import diagrams
    diagrams.lstm_cell()                     # last expression: shown

    from IPython.display import display
    display(diagrams.rnn_unrolled(steps=3))  # anywhere in a cell

``fig.savefig("lstm.png")`` writes the figure to a file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle
from matplotlib.path import Path
from matplotlib.patheffects import withStroke

__all__ = ["Diagram", "rnn_unrolled", "gru_cell", "lstm_cell", "seq2seq", "bahdanau_attention",
           "transformer", "normalization_axes"]

# Okabe-Ito colours (helpers.plotting.PALETTE), written out because helpers.plotting imports pyplot.
BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, YELLOW, BLACK = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
# The role of each colour, the same in every figure.
INPUT, STATE, GATE, CANDIDATE, OUTPUT, CONTEXT = GREEN, BLUE, ORANGE, SKY, VERMILLION, PURPLE
INK = "#222222"  # lines, arrows and text
CELL_FILL = "#F3F3F3"  # the background of a cell or a stack of layers
LINEAR = "#7F7F7F"  # a linear layer without activation (the GRU's W_hh before the reset gate)

DPI = 100  # a 10-inch figure is 1000 pixels wide
FONT = 11  # text in boxes and next to arrows
SMALL = 9.5  # notes
TITLE = 13


class Diagram(Figure):
    """A ``matplotlib.figure.Figure`` that Jupyter shows as a PNG, whether or not pyplot is in use.

    ``_ipython_display_`` takes precedence over the inline backend's own printer, so a diagram shows
    once, the same way in every kernel (also under ``%config InlineBackend.figure_formats = ['svg']``),
    as a PNG reduced to 128 colours: a third of the bytes in a saved notebook, no visible difference."""

    def to_png(self) -> bytes:
        """The figure as PNG bytes at its own resolution, in 128 colours."""
        from PIL import Image

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=self.dpi)
        buffer.seek(0)
        image = Image.open(buffer).convert("RGB").quantize(colors=128)  # median cut
        out = io.BytesIO()
        image.save(out, format="png", optimize=True)
        return out.getvalue()

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display({"image/png": self.to_png(), "text/plain": repr(self)}, raw=True)


@dataclass(frozen=True)
class Box:
    """Where a drawn box (or node) lies, in inches from the figure's lower left corner."""

    x: float
    y: float
    w: float
    h: float

    @property
    def top(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x, self.y - self.h / 2)

    @property
    def left(self) -> tuple[float, float]:
        return (self.x - self.w / 2, self.y)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)


# ---------------------------------------------------------------------------------------------
# Drawing primitives (coordinates in inches)
# ---------------------------------------------------------------------------------------------


def _tint(color: str, amount: float = 0.22) -> tuple[float, float, float]:
    """``color`` mixed with white: ``amount`` of the colour (a light fill that black text reads on)."""
    from matplotlib.colors import to_rgb

    return tuple(1 - amount * (1 - c) for c in to_rgb(color))


def _canvas(width: float, height: float, title: str):
    """A :class:`Diagram` of ``width`` x ``height`` inches, one axes whose data units are inches, a title."""
    fig = Diagram(figsize=(width, height), dpi=DPI, layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(width / 2, height - 0.15, title, ha="center", va="top", fontsize=TITLE, fontweight="bold",
            color=INK, gid="title")
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str = "", color: str = STATE,
         fontsize: float = FONT, fill: str | None = None, **text_style) -> Box:
    """A rounded box centred on ``(x, y)``, its edge in ``color`` and its fill a tint of it."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor=fill or _tint(color), edgecolor=color, linewidth=1.6, zorder=3))
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=4, **text_style)
    return Box(x, y, w, h)


def _frame(ax, x0: float, y0: float, x1: float, y1: float, color: str = "#999999") -> None:
    """A light rounded rectangle behind a group of boxes (a cell, a stack of layers)."""
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.2",
                                facecolor=CELL_FILL, edgecolor=color, linewidth=1.2, zorder=0))


def _arrow(ax, *points, color: str = INK, head: bool = True, lw: float = 1.5, halo: str | None = None,
           style: str = "-", zorder: float = 2) -> None:
    """A polyline through ``points`` with an arrowhead at the last one; ``halo`` (the background colour)
    draws an edge around it, so that a line it crosses shows a gap (the lines do not join there)."""
    path = Path([tuple(p) for p in points])
    arrow = FancyArrowPatch(path=path, arrowstyle="-|>,head_length=0.45,head_width=0.22" if head else "-",
                            mutation_scale=14, color=color, linewidth=lw, linestyle=style,
                            joinstyle="miter", capstyle="butt", zorder=zorder)
    if halo:
        arrow.set_path_effects([withStroke(linewidth=lw + 5, foreground=halo)])
    ax.add_patch(arrow)


def _curve(ax, start, control1, control2, end, color: str = INK, lw: float = 1.5) -> None:
    """A cubic Bezier arrow from ``start`` to ``end`` (a loop, a bend)."""
    path = Path([start, control1, control2, end], [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4])
    ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>,head_length=0.45,head_width=0.22",
                                 mutation_scale=14, color=color, linewidth=lw, zorder=2))


def _dot(ax, x: float, y: float) -> None:
    """A junction: the line is copied to several places."""
    ax.add_patch(Circle((x, y), 0.045, color=INK, zorder=5))


def _op(ax, x: float, y: float, kind: str, r: float = 0.17) -> Box:
    """An elementwise operation: ``"prod"`` (⊙, a circle with a dot), ``"sum"`` (⊕) or ``"one_minus"``."""
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=INK, linewidth=1.5, zorder=4))
    if kind == "prod":
        ax.add_patch(Circle((x, y), r * 0.22, color=INK, zorder=5))
    elif kind == "sum":
        ax.plot([x - 0.6 * r, x + 0.6 * r], [y, y], color=INK, lw=1.5, zorder=5)
        ax.plot([x, x], [y - 0.6 * r, y + 0.6 * r], color=INK, lw=1.5, zorder=5)
    else:
        ax.text(x, y, "1−", ha="center", va="center", fontsize=FONT - 2, color=INK, zorder=5)
    return Box(x, y, 2 * r, 2 * r)


def _label(ax, x: float, y: float, text: str, fontsize: float = FONT, **style) -> None:
    """Text at ``(x, y)`` (centred unless ``ha``/``va`` say otherwise)."""
    style.setdefault("ha", "center")
    style.setdefault("va", "center")
    ax.text(x, y, text, fontsize=fontsize, color=style.pop("color", INK), zorder=6, **style)


def _token(ax, x: float, y: float, word: str, color: str = INPUT) -> Box:
    """A word in a small rounded box, as wide as the word."""
    w = max(0.5, 0.085 * len(word) + 0.2)
    return _box(ax, x, y, w, 0.36, word, color=color, fontsize=FONT - 0.5, family="monospace")


# ---------------------------------------------------------------------------------------------
# 1. A recurrent neural network unrolled in time
# ---------------------------------------------------------------------------------------------


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 8:
        raise ValueError(f"steps must be a whole number from 1 to 8, got {steps!r}.")
    return steps


def _rnn_column(ax, x: float, rows: tuple[float, float, float], t: str) -> Box:
    """Input, hidden state and output of one time step, joined by arrows; returns the hidden box."""
    y_in, y_h, y_out = rows
    x_box = _box(ax, x, y_in, 0.78, 0.5, rf"$\mathbf{{X}}_{{{t}}}$", INPUT)
    h_box = _box(ax, x, y_h, 0.78, 0.56, rf"$\mathbf{{H}}_{{{t}}}$", STATE)
    o_box = _box(ax, x, y_out, 0.78, 0.5, rf"$\mathbf{{O}}_{{{t}}}$", OUTPUT)
    _arrow(ax, x_box.top, h_box.bottom)
    _arrow(ax, h_box.top, o_box.bottom)
    _label(ax, x + 0.08, (y_in + y_h) / 2, r"$\mathbf{W}_{xh}$", ha="left", fontsize=FONT - 1)
    _label(ax, x + 0.08, (y_h + y_out) / 2, r"$\mathbf{W}_{hq}$", ha="left", fontsize=FONT - 1)
    return h_box


def _folded_rnn(ax, x: float, rows: tuple[float, float, float]) -> None:
    """The network as one step whose hidden state loops back to itself, with row names on its left."""
    h_box = _rnn_column(ax, x, rows, "t")
    right_x, y = h_box.right
    _curve(ax, (right_x, y + 0.14), (right_x + 0.75, y + 0.75), (right_x + 0.75, y - 0.75),
           (right_x + 0.02, y - 0.14))
    _label(ax, right_x + 0.62, y, r"$\mathbf{W}_{hh}$", ha="left", fontsize=FONT - 1)
    for y_row, name in zip(rows, ("input", "hidden\nstate", "output"), strict=True):
        _label(ax, 0.12, y_row, name, ha="left", fontsize=SMALL, color="#555555")


def rnn_unrolled(steps: int = 4):
    r"""A recurrent neural network folded (one step, its hidden state fed back) and unrolled over
    ``steps`` time steps (1 to 8): inputs $\mathbf{X}_t$, hidden states $\mathbf{H}_t$ from
    $\mathbf{H}_0$, outputs $\mathbf{O}_t$, the weights that every step shares, and the update
    $\mathbf{H}_t = \phi(\mathbf{X}_t\mathbf{W}_{xh} + \mathbf{H}_{t-1}\mathbf{W}_{hh} + \mathbf{b}_h)$.
    Returns a :class:`Diagram` (a ``Figure``)."""
    steps = _check_steps(steps)
    spacing, first = 1.5, 4.9
    width = max(9.8, first + spacing * (steps - 1) + 0.6)
    fig, ax = _canvas(width, 5.35, "A recurrent neural network, folded (left) and unrolled in time (right)")
    rows = (1.45, 2.85, 4.25)
    _folded_rnn(ax, 1.45, rows)
    _arrow(ax, (2.85, rows[1]), (3.3, rows[1]), lw=3, color="#888888")
    _label(ax, 3.07, rows[1] + 0.3, "unroll", fontsize=SMALL, color="#555555")
    previous = _box(ax, 3.85, rows[1], 0.62, 0.5, r"$\mathbf{H}_0$", STATE, fill="white")
    for i in range(steps):
        x = first + spacing * i
        h_box = _rnn_column(ax, x, rows, str(i + 1))
        _arrow(ax, previous.right, h_box.left)
        if i > 0:
            _label(ax, (previous.right[0] + h_box.left[0]) / 2, rows[1] + 0.22, r"$\mathbf{W}_{hh}$",
                   fontsize=FONT - 1)
        previous = h_box
    _label(ax, width / 2, 0.72, r"$\mathbf{H}_t = \phi(\mathbf{X}_t\mathbf{W}_{xh} + "
           r"\mathbf{H}_{t-1}\mathbf{W}_{hh} + \mathbf{b}_h)$,    "
           r"$\mathbf{O}_t = \mathbf{H}_t\mathbf{W}_{hq} + \mathbf{b}_q$", fontsize=FONT + 1)
    _label(ax, width / 2, 0.3, "Every time step uses the same weights; the hidden state carries what the "
           "network has read so far.", fontsize=SMALL, color="#555555")
    return fig


# ---------------------------------------------------------------------------------------------
# 2. and 3. The GRU and LSTM cells
# ---------------------------------------------------------------------------------------------


def _layer(ax, x: float, y: float, name: str, activation: str, color: str) -> Box:
    """A fully connected layer with its activation, as a gate or candidate box of a cell."""
    box = _box(ax, x, y, 1.12, 0.8, "", color)
    _label(ax, x, y + 0.17, name, fontsize=SMALL)
    _label(ax, x, y - 0.16, activation, fontsize=FONT + 1)
    return box


def _cell_legend(ax, x: float, y: float) -> None:
    """What the shapes of a cell mean, in one row starting at ``(x, y)``."""
    _box(ax, x + 0.25, y, 0.5, 0.3, "", GATE)
    _label(ax, x + 0.6, y, "fully connected layer with activation", fontsize=SMALL, ha="left")
    _op(ax, x + 3.75, y, "prod", r=0.13)
    _label(ax, x + 3.98, y, "elementwise product", fontsize=SMALL, ha="left")
    _op(ax, x + 5.65, y, "sum", r=0.13)
    _label(ax, x + 5.88, y, "sum", fontsize=SMALL, ha="left")
    _dot(ax, x + 6.5, y)
    _label(ax, x + 6.65, y, "copy", fontsize=SMALL, ha="left")


def _gate(name: str, activation: str, sub: str) -> str:
    """The equation of a gate (or candidate) that reads the input and the previous hidden state:
    ``_gate("F", "σ", "f")`` is F = σ(X W_xf + H W_hf + b_f), in mathtext."""
    return (rf"${name} = {activation}(\mathbf{{X}}_t\mathbf{{W}}_{{x{sub}}} + "
            rf"\mathbf{{H}}_{{t-1}}\mathbf{{W}}_{{h{sub}}} + \mathbf{{b}}_{sub})$")


def _equations(ax, x: float, y: float, lines: list[str], step: float = 0.42) -> None:
    """Equations one under another, left-aligned at ``x``, the first at height ``y``."""
    for i, line in enumerate(lines):
        _label(ax, x, y - i * step, line, ha="left", fontsize=FONT)


def gru_cell():
    r"""The gated recurrent unit: reset gate $\mathbf{R}_t$ and update gate $\mathbf{Z}_t$ computed from
    $\mathbf{X}_t$ and $\mathbf{H}_{t-1}$, the candidate $\tilde{\mathbf{H}}_t$ from $\mathbf{X}_t$ and
    $\mathbf{R}_t \odot (\mathbf{H}_{t-1}\mathbf{W}_{hh} + \mathbf{b}_{hh})$ (the reset gate acts after the
    product with $\mathbf{W}_{hh}$, as in PyTorch, cuDNN and chapter 5's cell), and the new state
    $\mathbf{H}_t = \mathbf{Z}_t \odot \mathbf{H}_{t-1} + (1 - \mathbf{Z}_t) \odot \tilde{\mathbf{H}}_t$;
    the four equations under the cell. Returns a :class:`Diagram` (a ``Figure``)."""
    fig, ax = _canvas(9.8, 7.6, "A gated recurrent unit (GRU) cell")
    top, bus, mid = 6.2, 3.0, 3.95  # the state line, the [H, X] line, the layers' centres
    xr, xz, xc, x_join = 2.9, 4.35, 7.0, 1.55
    _frame(ax, 1.05, 2.35, 8.45, 6.75)
    # H_{t-1}: the line along the top, and a copy down to the layers
    _label(ax, 0.12, top + 0.3, r"$\mathbf{H}_{t-1}$", ha="left", fontsize=FONT + 1)
    prod_z, plus = _op(ax, xz, top, "prod"), _op(ax, xc, top, "sum")
    _arrow(ax, (0.1, top), prod_z.left)
    _arrow(ax, prod_z.right, plus.left)
    _arrow(ax, plus.right, (9.65, top))
    _label(ax, 9.65, top + 0.3, r"$\mathbf{H}_t$", ha="right", fontsize=FONT + 1)
    _dot(ax, x_join, top)
    _arrow(ax, (x_join, top), (x_join, bus), head=False)
    # X_t joins it: the gates read [H_{t-1}, X_t]
    _label(ax, 2.05, 1.62, r"$\mathbf{X}_t$", fontsize=FONT + 1)
    _arrow(ax, (2.05, 1.85), (2.05, bus), head=False)
    _dot(ax, 2.05, bus)
    _arrow(ax, (x_join, bus), (xz, bus), head=False)
    reset = _layer(ax, xr, mid, r"reset gate $\mathbf{R}_t$", r"$\sigma$", GATE)
    update = _layer(ax, xz, mid, r"update gate $\mathbf{Z}_t$", r"$\sigma$", GATE)
    candidate = _layer(ax, xc, mid, r"candidate $\tilde{\mathbf{H}}_t$", r"$\tanh$", CANDIDATE)
    _dot(ax, xr, bus)
    _arrow(ax, (xr, bus), reset.bottom)
    _arrow(ax, (xz, bus), update.bottom)
    # the candidate reads X_t and R_t ⊙ H_{t-1}
    _dot(ax, 2.05, 2.6)
    _arrow(ax, (2.05, 2.6), (xc, 2.6), candidate.bottom)
    prod_r = _op(ax, xr, 5.05, "prod")
    _dot(ax, x_join, 5.05)
    linear = _box(ax, 2.13, 5.05, 0.7, 0.42, "", LINEAR)  # H_{t-1} W_hh + b_hh, no activation
    _label(ax, 2.13, 5.05, r"$\mathbf{W}_{hh}$", fontsize=SMALL)
    _arrow(ax, (x_join, 5.05), linear.left)
    _arrow(ax, linear.right, prod_r.left)
    _arrow(ax, reset.top, prod_r.bottom)
    _arrow(ax, prod_r.right, (5.9, 5.05), (5.9, mid), candidate.left, halo=CELL_FILL, zorder=2.5)
    # Z_t weighs the old state, 1 - Z_t the candidate
    one_minus, prod_c = _op(ax, 5.9, 5.6, "one_minus"), _op(ax, xc, 5.6, "prod")
    _arrow(ax, update.top, prod_z.bottom)
    _dot(ax, xz, 5.6)
    _arrow(ax, (xz, 5.6), one_minus.left)
    _arrow(ax, one_minus.right, prod_c.left)
    _arrow(ax, candidate.top, prod_c.bottom)
    _arrow(ax, prod_c.top, plus.bottom)
    _label(ax, xr + 0.1, 4.62, r"$\mathbf{R}_t$", ha="left")
    _label(ax, xz + 0.1, 4.62, r"$\mathbf{Z}_t$", ha="left")
    _label(ax, 5.9, 5.9, r"$1-\mathbf{Z}_t$", fontsize=FONT - 1)
    _label(ax, xc + 0.1, 4.85, r"$\tilde{\mathbf{H}}_t$", ha="left")
    _label(ax, 3.55, 5.27, r"$\mathbf{R}_t \odot (\cdot)$", fontsize=FONT - 1)
    _cell_legend(ax, 1.05, 1.1)
    _equations(ax, 0.3, 0.62, [
        _gate(r"\mathbf{R}_t", r"\sigma", "r"),
        r"$\tilde{\mathbf{H}}_t = \tanh(\mathbf{X}_t\mathbf{W}_{xh} + \mathbf{R}_t \odot (\mathbf{H}_{t-1}"
        r"\mathbf{W}_{hh} + \mathbf{b}_{hh}) + \mathbf{b}_{xh})$",
    ])
    _equations(ax, 5.1, 0.62, [
        _gate(r"\mathbf{Z}_t", r"\sigma", "z"),
        r"$\mathbf{H}_t = \mathbf{Z}_t \odot \mathbf{H}_{t-1} + (1 - \mathbf{Z}_t) \odot "
        r"\tilde{\mathbf{H}}_t$",
    ])
    return fig


def lstm_cell():
    r"""The long short-term memory cell: forget, input and output gates $\mathbf{F}_t, \mathbf{I}_t,
    \mathbf{O}_t$ and the candidate $\tilde{\mathbf{C}}_t$, all computed from $\mathbf{X}_t$ and
    $\mathbf{H}_{t-1}$; the memory cell $\mathbf{C}_t = \mathbf{F}_t \odot \mathbf{C}_{t-1} + \mathbf{I}_t
    \odot \tilde{\mathbf{C}}_t$ along the top, the hidden state $\mathbf{H}_t = \mathbf{O}_t \odot
    \tanh(\mathbf{C}_t)$; the six equations under the cell. Returns a :class:`Diagram` (a ``Figure``)."""
    fig, ax = _canvas(9.8, 8.0, "A long short-term memory (LSTM) cell")
    top, bus, mid, x_in = 6.6, 3.4, 4.35, 2.0
    xf, xi, xc, xo, x_out = 2.75, 4.05, 5.35, 6.65, 7.7
    _frame(ax, 1.05, 2.75, 8.45, 7.15)
    # the memory cell along the top: C_t = F_t ⊙ C_{t-1} + I_t ⊙ C~_t
    _label(ax, 0.12, top + 0.3, r"$\mathbf{C}_{t-1}$", ha="left", fontsize=FONT + 1)
    _label(ax, 9.65, top + 0.3, r"$\mathbf{C}_t$", ha="right", fontsize=FONT + 1)
    _label(ax, 4.7, top + 0.3, "memory cell", fontsize=SMALL, color="#555555")
    prod_f, plus = _op(ax, xf, top, "prod"), _op(ax, xc, top, "sum")
    _arrow(ax, (0.1, top), prod_f.left)
    _arrow(ax, prod_f.right, plus.left)
    _arrow(ax, plus.right, (9.65, top))
    # H_{t-1} and X_t feed all four layers
    _label(ax, 0.12, bus + 0.3, r"$\mathbf{H}_{t-1}$", ha="left", fontsize=FONT + 1)
    _label(ax, x_in, 2.02, r"$\mathbf{X}_t$", fontsize=FONT + 1)
    _arrow(ax, (x_in, 2.25), (x_in, bus), head=False)
    _dot(ax, x_in, bus)
    _arrow(ax, (0.1, bus), (xo, bus), head=False)
    forget = _layer(ax, xf, mid, r"forget gate $\mathbf{F}_t$", r"$\sigma$", GATE)
    input_ = _layer(ax, xi, mid, r"input gate $\mathbf{I}_t$", r"$\sigma$", GATE)
    candidate = _layer(ax, xc, mid, r"candidate $\tilde{\mathbf{C}}_t$", r"$\tanh$", CANDIDATE)
    output = _layer(ax, xo, mid, r"output gate $\mathbf{O}_t$", r"$\sigma$", GATE)
    for layer in (forget, input_, candidate, output):
        if layer is not output:
            _dot(ax, layer.x, bus)
        _arrow(ax, (layer.x, bus), layer.bottom)
    _arrow(ax, forget.top, prod_f.bottom)
    prod_i = _op(ax, xc, 5.65, "prod")
    _arrow(ax, input_.top, (xi, prod_i.y), prod_i.left)
    _arrow(ax, candidate.top, prod_i.bottom)
    _arrow(ax, prod_i.top, plus.bottom)
    # H_t = O_t ⊙ tanh(C_t)
    _dot(ax, x_out, top)
    squash = _box(ax, x_out, 5.6, 0.62, 0.36, r"$\tanh$", INK, fill="white", fontsize=FONT - 1)
    prod_o = _op(ax, x_out, mid, "prod")
    _arrow(ax, (x_out, top), squash.top)
    _arrow(ax, squash.bottom, prod_o.top)
    _arrow(ax, output.right, prod_o.left)
    _arrow(ax, prod_o.bottom, (x_out, 3.1), (9.65, 3.1))
    _label(ax, 9.65, 3.4, r"$\mathbf{H}_t$", ha="right", fontsize=FONT + 1)
    _label(ax, xf + 0.1, 5.45, r"$\mathbf{F}_t$", ha="left")
    _label(ax, xi + 0.1, 5.1, r"$\mathbf{I}_t$", ha="left")
    _label(ax, xc + 0.1, 5.15, r"$\tilde{\mathbf{C}}_t$", ha="left")
    _cell_legend(ax, 1.05, 1.5)
    left, right = 0.3, 5.1
    _equations(ax, left, 1.0, [
        _gate(r"\mathbf{I}_t", r"\sigma", "i"),
        _gate(r"\mathbf{O}_t", r"\sigma", "o"),
        r"$\mathbf{C}_t = \mathbf{F}_t \odot \mathbf{C}_{t-1} + \mathbf{I}_t \odot \tilde{\mathbf{C}}_t$",
    ])
    _equations(ax, right, 1.0, [
        _gate(r"\mathbf{F}_t", r"\sigma", "f"),
        _gate(r"\tilde{\mathbf{C}}_t", r"\tanh", "c"),
        r"$\mathbf{H}_t = \mathbf{O}_t \odot \tanh(\mathbf{C}_t)$",
    ])
    return fig


# ---------------------------------------------------------------------------------------------
# 4. Sequence to sequence
# ---------------------------------------------------------------------------------------------

SOURCE = ("they", "are", "watching", ".", "<eos>")
TARGET = ("ils", "regardent", ".", "<eos>")


def _encoder_row(ax, xs, y: float, words, y_words: float) -> list[Box]:
    """A recurrent encoder over ``words``: a token under each step, the step's state h_t in a box,
    arrows from step to step. Returns the boxes."""
    boxes = []
    for t, (x, word) in enumerate(zip(xs, words, strict=True)):
        token = _token(ax, x, y_words, word)
        box = _box(ax, x, y, 0.62, 0.52, rf"$\mathbf{{h}}_{{{t + 1}}}$", STATE)
        _arrow(ax, token.top, box.bottom)
        if boxes:
            _arrow(ax, boxes[-1].right, box.left)
        boxes.append(box)
    return boxes


def seq2seq():
    r"""Sequence-to-sequence learning, as chapter 5b trains it: a GRU encoder reads "they are watching ."
    and ``<eos>``; its final state is the context $\mathbf{c}$, which starts the decoder and is
    concatenated with the decoder's input at every step; with teacher forcing the decoder reads the
    target shifted by one (``<bos> ils regardent .``) and learns to output ``ils regardent . <eos>``.
    Returns a :class:`Diagram` (a ``Figure``)."""
    fig, ax = _canvas(10.1, 5.5, r"Sequence to sequence: a GRU encoder, the context vector $\mathbf{c}$, "
                      "a GRU decoder")
    y_in, y_h, y_out = 1.45, 2.75, 4.0
    enc_x = [0.85 + 0.9 * t for t in range(len(SOURCE))]
    dec_x = [5.98 + 1.08 * t for t in range(len(TARGET))]
    _frame(ax, 0.3, 0.95, 5.1, 4.65)
    _frame(ax, 5.45, 0.95, 9.95, 4.65)
    _label(ax, 2.7, 4.87, "Encoder (GRU)", fontsize=FONT, fontweight="bold")
    _label(ax, 7.7, 4.87, "Decoder (GRU)", fontsize=FONT, fontweight="bold")
    encoder = _encoder_row(ax, enc_x, y_h, SOURCE, y_in)
    inputs = ("<bos>",) + TARGET[:-1]
    previous = encoder[-1]
    for t, (x, word, target) in enumerate(zip(dec_x, inputs, TARGET, strict=True)):
        box = _box(ax, x, y_h, 0.62, 0.52, rf"$\mathbf{{s}}_{{{t + 1}}}$", STATE)
        token = _token(ax, x - 0.14, y_in - 0.15, word)
        _arrow(ax, token.top, (token.x, box.bottom[1]))
        context = _box(ax, x + 0.43, y_in + 0.42, 0.3, 0.3, r"$\mathbf{c}$", CONTEXT, fontsize=FONT - 1)
        _arrow(ax, context.top, (x + 0.2, box.bottom[1]))
        out = _token(ax, x, y_out, target, color=OUTPUT)
        _arrow(ax, box.top, out.bottom)
        _arrow(ax, previous.right, box.left, color=CONTEXT if t == 0 else INK, lw=2.2 if t == 0 else 1.5)
        previous = box
    _label(ax, (encoder[-1].right[0] + dec_x[0] - 0.35) / 2, y_h + 0.28, r"$\mathbf{c}$", color=CONTEXT,
           fontsize=FONT + 1)
    _label(ax, 0.3, 0.62, r"context $\mathbf{c}$ = the encoder's final state $\mathbf{h}_5$: the decoder's "
           r"initial state, and concatenated with its input at every step", fontsize=SMALL, color=CONTEXT,
           ha="left")
    _label(ax, 0.3, 0.25, "Teacher forcing: in training the decoder reads the target shifted right by one "
           "(<bos> ils regardent .), not its own predictions", fontsize=SMALL, ha="left")
    return fig


# ---------------------------------------------------------------------------------------------
# 5. Bahdanau attention
# ---------------------------------------------------------------------------------------------

# The attention weights drawn while the decoder outputs "regardent" (illustrative: peaked on "watching").
ILLUSTRATIVE_WEIGHTS = (0.05, 0.08, 0.74, 0.09, 0.04)


def _attention_weights(ax, xs, y: float, weights, scale: float = 1.1) -> None:
    """A bar of height proportional to each weight, standing at ``y`` over each encoder state."""
    for x, weight in zip(xs, weights, strict=True):
        ax.add_patch(Rectangle((x - 0.2, y), 0.4, weight * scale, facecolor=CONTEXT, edgecolor="none",
                               zorder=4))
        _label(ax, x, y + weight * scale + 0.14, f"{weight:.2f}", fontsize=SMALL)


def bahdanau_attention():
    r"""Bahdanau (additive) attention at one decoder step $t'$: the previous decoder state
    $\mathbf{s}_{t'-1}$ is the query, the encoder states $\mathbf{h}_1, \dots, \mathbf{h}_T$ are the
    keys and the values; the scores $a(\mathbf{s}_{t'-1}, \mathbf{h}_t)$ go through a softmax into the
    weights $\alpha_{t',t}$ (drawn as bars, illustrative values), and the context
    $\mathbf{c}_{t'} = \sum_t \alpha_{t',t}\mathbf{h}_t$ enters the decoder step with the previous word.
    Returns a :class:`Diagram` (a ``Figure``)."""
    fig, ax = _canvas(10.0, 6.9, "Bahdanau attention: the decoder state queries the encoder states")
    xs = [1.5 + 1.0 * t for t in range(len(SOURCE))]
    encoder = _encoder_row(ax, xs, 1.55, SOURCE, 0.65)
    _label(ax, 0.12, 1.55, "encoder", fontsize=SMALL, color="#555555", ha="left")
    # attention pooling over the encoder states
    band = _box(ax, 3.5, 3.1, 5.1, 1.5, "", CONTEXT, fill=_tint(CONTEXT, 0.1))
    for box in encoder:
        _arrow(ax, box.top, (box.x, band.bottom[1]))
    _label(ax, 1.4, 2.05, r"keys = values $\mathbf{h}_t$", fontsize=SMALL, ha="right")
    _attention_weights(ax, xs, band.bottom[1] + 0.15, ILLUSTRATIVE_WEIGHTS)
    _label(ax, 0.95, 4.1, r"attention weights $\alpha_{t',t}$" + " while the decoder outputs “regardent”",
           ha="left", fontsize=FONT)
    # the decoder: s_{t'-1} queries, c_{t'} and the previous word y_{t'-1} give s_{t'}
    previous = _box(ax, 6.9, 5.25, 0.9, 0.55, r"$\mathbf{s}_{t'-1}$", STATE)
    current = _box(ax, 8.6, 5.25, 0.9, 0.55, r"$\mathbf{s}_{t'}$", STATE)
    _label(ax, 5.75, 5.25, "⋯", fontsize=FONT + 2)
    _arrow(ax, (5.95, 5.25), previous.left)
    _arrow(ax, previous.right, current.left)
    _label(ax, 6.9, 5.8, "decoder", fontsize=SMALL, color="#555555")
    _arrow(ax, previous.bottom, (6.9, 3.45), (band.right[0], 3.45))
    _label(ax, 7.0, 4.2, r"query $\mathbf{s}_{t'-1}$", ha="left")
    _arrow(ax, (band.right[0], 2.75), (8.35, 2.75), (8.35, current.bottom[1]), color=CONTEXT, lw=2.2)
    _label(ax, 7.2, 2.5, r"context $\mathbf{c}_{t'}$", color=CONTEXT)
    word = _token(ax, 8.95, 3.9, "ils")
    _arrow(ax, word.top, (8.95, current.bottom[1]))
    _label(ax, 9.3, 3.9, r"$y_{t'-1}$", ha="left")
    out = _token(ax, 8.6, 6.15, "regardent", color=OUTPUT)
    _arrow(ax, current.top, out.bottom)
    _equations(ax, 6.2, 1.75, [
        r"$a(\mathbf{s}_{t'-1}, \mathbf{h}_t) = \mathbf{w}_v^\top \tanh(\mathbf{W}_q\mathbf{s}_{t'-1} + "
        r"\mathbf{W}_k\mathbf{h}_t)$",
        r"$\alpha_{t',t} = \mathrm{softmax}_t\; a(\mathbf{s}_{t'-1}, \mathbf{h}_t)$",
        r"$\mathbf{c}_{t'} = \sum_{t=1}^{T} \alpha_{t',t}\,\mathbf{h}_t$",
    ], step=0.5)
    return fig


# ---------------------------------------------------------------------------------------------
# 6. The Transformer
# ---------------------------------------------------------------------------------------------

BOX_W, BOX_H = 2.5, 0.46
ADD_NORM_FILL = _tint(YELLOW, 0.45)


def _sublayer(ax, x: float, y_stream: float, y: float, name: str, color: str, side: float,
              qkv: bool = True) -> float:
    """A sublayer with its residual connection and its "Add & norm": the stream arrives at
    ``(x, y_stream)``, feeds the sublayer at height ``y`` (as queries, keys and values when ``qkv``)
    and goes around it on the ``side`` (-1 left, +1 right) into the Add & norm box above. Returns the
    height where the stream leaves the Add & norm box."""
    box = _box(ax, x, y, BOX_W, BOX_H, name, color)
    norm = _box(ax, x, y + 0.65, BOX_W, BOX_H, "Add & norm", "#8C8C8C", fill=ADD_NORM_FILL)
    junction = box.bottom[1] - 0.22
    x_side = x + side * (BOX_W / 2 + 0.3)
    _arrow(ax, (x, y_stream), (x, junction), head=False)
    _dot(ax, x, junction)
    if qkv:
        _arrow(ax, (x - 0.55, junction), (x + 0.55, junction), head=False)
        for dx in (-0.55, 0, 0.55):
            _arrow(ax, (x + dx, junction), (x + dx, box.bottom[1]))
    else:
        _arrow(ax, (x, junction), box.bottom)
    _arrow(ax, (x, junction), (x_side, junction), (x_side, norm.y), (x + side * BOX_W / 2, norm.y))
    _arrow(ax, box.top, norm.bottom)
    return norm.top[1]


def _embedding(ax, x: float, name: str, tokens: str, side: float) -> float:
    """Token embedding plus positional encoding at the bottom of a stack; returns where the sum leaves."""
    _label(ax, x, 0.35, tokens, fontsize=SMALL)
    embed = _box(ax, x, 1.0, BOX_W, BOX_H, name, INPUT)
    _arrow(ax, (x, 0.55), embed.bottom)
    plus = _op(ax, x, 1.7, "sum")
    _arrow(ax, embed.top, plus.bottom)
    wave_x = x + side * 0.7
    ax.add_patch(Circle((wave_x, 1.7), 0.2, facecolor="white", edgecolor=INK, linewidth=1.2, zorder=4))
    waves = [i / 20 for i in range(21)]
    ax.plot([wave_x - 0.14 + 0.28 * t for t in waves],
            [1.7 + 0.08 * math.sin(2 * math.pi * t) for t in waves], color=INK, lw=1.2, zorder=5)
    _arrow(ax, (wave_x - side * 0.2, 1.7), (x + side * 0.17, 1.7))
    _label(ax, wave_x + side * 0.3, 1.7, "Positional\nencoding", fontsize=SMALL,
           ha="left" if side > 0 else "right")
    return plus.top[1]


def transformer():
    r"""The Transformer encoder-decoder (Vaswani et al., 2017): token embeddings plus positional
    encoding; N encoder blocks (multi-head self-attention, add & norm, feed-forward, add & norm); N
    decoder blocks (masked multi-head self-attention, add & norm, multi-head cross-attention whose keys
    and values are the encoder's output, add & norm, feed-forward, add & norm); a linear layer and a
    softmax over the target vocabulary. Returns a :class:`Diagram` (a ``Figure``)."""
    fig, ax = _canvas(9.6, 9.6, "The Transformer: an encoder-decoder built from attention")
    enc_x, dec_x = 2.75, 6.85
    _frame(ax, 1.0, 2.2, 4.2, 5.4)
    _frame(ax, 5.4, 2.2, 8.6, 7.0)
    _label(ax, 0.62, 3.8, "N ×", fontsize=FONT + 3, fontweight="bold")
    _label(ax, 9.0, 4.6, "× N", fontsize=FONT + 3, fontweight="bold")
    # encoder
    stream = _embedding(ax, enc_x, "Input embedding", "source tokens (they are watching .)", side=-1)
    stream = _sublayer(ax, enc_x, stream, 2.8, "Multi-head attention", GATE, side=-1)
    stream = _sublayer(ax, enc_x, stream, 4.25, "Feed-forward", CANDIDATE, side=-1, qkv=False)
    # decoder
    dec = _embedding(ax, dec_x, "Output embedding", "target tokens, shifted right (<bos> ils regardent)",
                     side=+1)
    dec = _sublayer(ax, dec_x, dec, 2.8, "Masked multi-head attention", GATE, side=+1)
    dec = _sublayer(ax, dec_x, dec, 4.25, "Multi-head cross-attention", GATE, side=+1, qkv=False)
    dec = _sublayer(ax, dec_x, dec, 5.7, "Feed-forward", CANDIDATE, side=+1, qkv=False)
    # the encoder's output: the keys and values of every decoder block's cross-attention
    _arrow(ax, (enc_x, stream), (enc_x, 5.75), (4.85, 5.75), (4.85, 4.25), (dec_x - BOX_W / 2, 4.25),
           color=CONTEXT, lw=2.2)
    _label(ax, 3.8, 5.98, "encoder output: keys, values", fontsize=SMALL, color=CONTEXT)
    _label(ax, dec_x - 0.08, 3.92, "queries", fontsize=SMALL - 1, ha="right")
    linear = _box(ax, dec_x, 7.5, BOX_W, BOX_H, "Linear", STATE)
    softmax = _box(ax, dec_x, 8.15, BOX_W, BOX_H, "Softmax", OUTPUT)
    _arrow(ax, (dec_x, dec), linear.bottom)
    _arrow(ax, linear.top, softmax.bottom)
    _arrow(ax, softmax.top, (dec_x, 8.75))
    _label(ax, dec_x, 8.95, "output probabilities (next token)", fontsize=SMALL)
    return fig


# ---------------------------------------------------------------------------------------------
# 7. Batch norm and layer norm
# ---------------------------------------------------------------------------------------------

N_EXAMPLES, N_CHANNELS, N_POSITIONS = 4, 3, 4
CELL = 0.3


def _activation_grid(ax, x0: float, y0: float, shaded, color: str) -> None:
    """The activations of a batch as a grid: one row per example, one column per (channel, position),
    the channels separated by thick lines; ``shaded(example, channel)`` says which cells are normalized
    together."""
    for n in range(N_EXAMPLES):
        for c in range(N_CHANNELS):
            for p in range(N_POSITIONS):
                x = x0 + (c * N_POSITIONS + p) * CELL
                y = y0 + (N_EXAMPLES - 1 - n) * CELL
                fill = _tint(color, 0.75) if shaded(n, c) else "white"
                ax.add_patch(Rectangle((x, y), CELL, CELL, facecolor=fill, edgecolor="#777777", lw=0.8,
                                       zorder=3))
    width, height = N_CHANNELS * N_POSITIONS * CELL, N_EXAMPLES * CELL
    for c in range(N_CHANNELS + 1):
        x = x0 + c * N_POSITIONS * CELL
        ax.plot([x, x], [y0, y0 + height], color=INK, lw=2.2, zorder=4)
        if c < N_CHANNELS:
            _label(ax, x + N_POSITIONS * CELL / 2, y0 + height + 0.2, f"channel {c + 1}", fontsize=SMALL)
    ax.plot([x0, x0 + width], [y0, y0], color=INK, lw=2.2, zorder=4)
    ax.plot([x0, x0 + width], [y0 + height, y0 + height], color=INK, lw=2.2, zorder=4)
    for n in range(N_EXAMPLES):
        _label(ax, x0 - 0.1, y0 + (N_EXAMPLES - 0.5 - n) * CELL, f"example {n + 1}", fontsize=SMALL - 1,
               ha="right")
    _label(ax, x0 + width / 2, y0 - 0.22, "positions (H·W) within each channel", fontsize=SMALL - 1,
           color="#555555")


def _norm_panel(ax, x0: float, name: str, shaded, color: str, lines: list[str]) -> None:
    """One normalization: its name, the grid with its group shaded, what the statistics are over."""
    width = N_CHANNELS * N_POSITIONS * CELL
    _label(ax, x0 + width / 2, 4.2, name, fontsize=FONT + 1, fontweight="bold", color=color)
    _activation_grid(ax, x0, 2.5, shaded, color)
    for i, line in enumerate(lines):
        _label(ax, x0 + width / 2, 1.8 - 0.3 * i, line, fontsize=SMALL)


def normalization_axes():
    r"""Which activations batch norm and layer norm normalize together, on a batch of 4 examples with
    3 channels of 4 positions each (the (batch, channels, height x width) array of a CNN, drawn as a
    grid): batch norm one channel across the batch and the positions, layer norm one example across the
    channels and positions. For a (batch x features) matrix the positions are 1: batch norm normalizes
    each column, layer norm each row (each token, in a Transformer). Returns a :class:`Diagram`."""
    fig, ax = _canvas(10.0, 5.0, "Batch norm vs layer norm: which activations share a mean and variance")
    _norm_panel(ax, 1.05, "Batch norm", lambda n, c: c == 1, BLUE, [
        "one channel, over the batch and the positions:",
        r"a mean and a variance per channel ($N \cdot H \cdot W$ values);",
        "depends on the other examples in the batch",
    ])
    _norm_panel(ax, 6.0, "Layer norm", lambda n, c: n == 1, VERMILLION, [
        "one example, over the channels and the positions:",
        r"a mean and a variance per example ($C \cdot H \cdot W$ values);",
        "the same in training and at test time",
    ])
    _label(ax, 5.0, 0.6, r"Both then compute $\hat{x} = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$ and "
           r"output $\gamma\hat{x} + \beta$, with a learned scale $\gamma$ and shift $\beta$.",
           fontsize=SMALL)
    _label(ax, 5.0, 0.25, r"In a (batch $\times$ features) matrix, batch norm normalizes each column and "
           "layer norm each row (each token, in a Transformer).",
           fontsize=SMALL)
    return fig
