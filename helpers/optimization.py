"""2-D loss surfaces and the optimizer playground of chapter 8.

A :class:`Surface` is a function of two parameters with the region worth drawing and good default
settings. :data:`SURFACES` holds the three the chapter uses: an ill-conditioned quadratic, the
Rosenbrock valley and a surface with saddles and several minima (a global and a local pair).

:func:`playground` runs several ``torch.optim`` optimizers from the same start point on a surface
and returns their trajectories; a run whose parameters become non-finite or leave a huge box stops
and records the step at which it diverged. :func:`plot_trajectories` draws trajectories over the
surface's contour plot, with a note for every diverged run. :func:`draw_playground` is the plain
function behind the widget :class:`PlaygroundExplorer` (controls -> trajectories -> picture and a
one-line message); tests call it directly and drive the widget through its controls.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch

from helpers.plotting import LINESTYLES, PALETTE
from helpers.training import make_optimizer
from helpers.widgets import WARNING_COLOR, PlotExplorer, warning_html

# =============================================================================================
# Surfaces
# =============================================================================================


def ill_conditioned_quadratic(x, y):
    """``0.1 x^2 + 2 y^2``: curvatures 0.2 and 4 (condition number 20), minimum 0 at the origin."""
    return 0.1 * x**2 + 2 * y**2


def rosenbrock(x, y, a: float = 1.0, b: float = 100.0):
    """Rosenbrock's banana valley ``(a - x)^2 + b (y - x^2)^2``, minimum 0 at ``(a, a^2)``."""
    return (a - x) ** 2 + b * (y - x**2) ** 2


def saddle_and_minima(x, y):
    """``(x^2 - 1)^2 + (y^2 - 1)^2 + 0.3 x``: four minima, four saddles and one maximum.

    The two minima at ``x ~ -1.036`` (value -0.305) are global, the two at ``x ~ 0.960`` (value
    0.294) are local; saddles sit between them, e.g. at ``(0.960, 0)`` and ``(0.075, 1)``.
    """
    return (x**2 - 1) ** 2 + (y**2 - 1) ** 2 + 0.3 * x


_X_LEFT, _X_RIGHT = -1.0355787140888542, 0.9601495555191059  # roots of 4x(x^2 - 1) + 0.3 = 0


@dataclass(frozen=True)
class Surface:
    """A loss surface of two parameters, the region to draw and good default settings.

    ``fn(x, y)`` works elementwise on tensors (and on NumPy arrays). ``lr`` suits gradient descent
    and its momentum variants, ``adaptive_lr`` suits AdaGrad, RMSProp and Adam. ``minima`` lists the
    minima to mark on the plot (the global ones first).
    """

    name: str
    formula: str
    fn: Callable
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    start: tuple[float, float]
    lr: float
    adaptive_lr: float
    minima: tuple[tuple[float, float], ...]
    log_levels: bool = False

    def __call__(self, x, y):
        return self.fn(x, y)

    def value(self, point: Sequence[float]) -> float:
        """The loss at ``point = (x, y)``."""
        x, y = torch.tensor(point, dtype=torch.float64)
        return float(self.fn(x, y))

    def gradient(self, point: Sequence[float]) -> np.ndarray:
        """The gradient at ``point`` (by autograd), as a NumPy array of two numbers."""
        p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(self.fn(p[0], p[1]), p)
        return grad.numpy()


SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface("ill-conditioned quadratic", r"$f = 0.1x^2 + 2y^2$", ill_conditioned_quadratic,
                xlim=(-5.0, 5.0), ylim=(-3.0, 3.0), start=(-4.5, 2.0), lr=0.4, adaptive_lr=0.5,
                minima=((0.0, 0.0),)),
        Surface("Rosenbrock", r"$f = (1-x)^2 + 100\,(y-x^2)^2$", rosenbrock,
                xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), start=(-1.2, 1.0), lr=0.0015, adaptive_lr=0.1,
                minima=((1.0, 1.0),), log_levels=True),
        Surface("saddle and minima", r"$f = (x^2-1)^2 + (y^2-1)^2 + 0.3x$", saddle_and_minima,
                xlim=(-2.0, 2.0), ylim=(-2.0, 2.0), start=(1.9, 0.05), lr=0.03, adaptive_lr=0.05,
                minima=((_X_LEFT, 1.0), (_X_LEFT, -1.0), (_X_RIGHT, 1.0), (_X_RIGHT, -1.0))),
    )
}


def get_surface(surface: str | Surface) -> Surface:
    """A :class:`Surface` by name (or the surface itself); unknown names list the known ones."""
    if isinstance(surface, Surface):
        return surface
    if surface not in SURFACES:
        raise ValueError(f"Unknown surface {surface!r}; choose one of {sorted(SURFACES)}.")
    return SURFACES[surface]


@functools.lru_cache(maxsize=16)
def surface_grid(surface: Surface, num: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, Y, Z)`` on a ``num x num`` grid over the surface's region (cached, for contours)."""
    xs = torch.linspace(*surface.xlim, num, dtype=torch.float64)
    ys = torch.linspace(*surface.ylim, num, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    return X.numpy(), Y.numpy(), surface.fn(X, Y).numpy()


# =============================================================================================
# Running optimizers
# =============================================================================================

OPTIMIZERS = ("GD", "momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam")
ADAPTIVE = frozenset({"AdaGrad", "RMSProp", "Adam"})
DIVERGENCE_LIMIT = 1e6
MAX_STEPS = 10_000


TORCH_NAMES = {"GD": "sgd", "momentum": "momentum", "Nesterov": "nesterov", "AdaGrad": "adagrad",
               "RMSProp": "rmsprop", "Adam": "adam"}
"""The name of each playground optimizer in :func:`helpers.training.make_optimizer`."""


def playground_optimizer(name: str, params, lr: float, momentum: float = 0.9,
                         betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer behind a playground name (see :data:`OPTIMIZERS`).

    Made by the course's one factory, :func:`helpers.training.make_optimizer`. GD is plain
    ``SGD``; momentum and Nesterov are ``SGD(momentum=...)`` (Nesterov with zero momentum is plain
    GD); RMSProp uses ``alpha = betas[1]``, the same decay of the squared gradients as Adam's
    second moment; AdaGrad has no extra hyperparameter.
    """
    if name not in TORCH_NAMES:
        raise ValueError(f"Unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}.")
    return make_optimizer(TORCH_NAMES[name], params, lr, momentum=momentum, betas=betas, alpha=betas[1])


@dataclass
class Trajectory:
    """The path of one optimizer: ``points`` (k+1, 2) and ``values`` (k+1,) from the start on.

    ``diverged_at`` is the step at which the parameters became non-finite or left the box
    ``|x|, |y| <= DIVERGENCE_LIMIT`` (the run stopped there), else None.
    """

    optimizer: str
    lr: float
    points: np.ndarray
    values: np.ndarray
    diverged_at: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def steps_run(self) -> int:
        return len(self.points) - 1

    @property
    def final_point(self) -> np.ndarray:
        return self.points[-1]

    @property
    def final_value(self) -> float:
        return float(self.values[-1])

    @property
    def label(self) -> str:
        return f"{self.optimizer} (lr {self.lr:.3g})"


def _check_unit_interval(name: str, value: float, hint: str) -> None:
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; {hint}")


def _learning_rates(optimizers: Sequence[str], lr: float | Mapping[str, float]) -> dict[str, float]:
    lrs = {}
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}.")
        if isinstance(lr, Mapping):
            if name not in lr:
                raise ValueError(f"No learning rate for {name!r}; the lr mapping has {sorted(lr)}.")
            value = lr[name]
        else:
            value = lr
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ValueError(f"The learning rate of {name} must be a positive number, got {value!r}.")
        lrs[name] = float(value)
    return lrs


def run_optimizer(surface: str | Surface, name: str, lr: float, start: Sequence[float] | None = None,
                  steps: int = 100, momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                  limit: float = DIVERGENCE_LIMIT) -> Trajectory:
    """Run one optimizer for ``steps`` steps on ``surface``; stop early if it diverges."""
    return playground(surface, [name], {name: lr}, momentum, betas, start, steps, limit)[name]


def playground(
    surface: str | Surface,
    optimizers: Sequence[str] = ("GD", "momentum", "Adam"),
    lr: float | Mapping[str, float] = 0.01,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    start: Sequence[float] | None = None,
    steps: int = 100,
    limit: float = DIVERGENCE_LIMIT,
) -> dict[str, Trajectory]:
    """Run each optimizer in ``optimizers`` from ``start`` on ``surface``; return their trajectories.

    ``lr`` is one learning rate for all, or a mapping ``{optimizer name: lr}``. ``momentum`` is
    used by momentum and Nesterov, ``betas`` by Adam (and ``betas[1]`` by RMSProp). ``start``
    defaults to the surface's suggested start. The parameters are float64; a run stops at the
    first step where they become non-finite or exceed ``limit`` in absolute value, and its
    trajectory records that step in ``diverged_at``. Bad settings raise a ``ValueError`` that
    says what to change; settings that merely diverge do not raise.
    """
    surface = get_surface(surface)
    lrs = _learning_rates(optimizers, lr)
    _check_unit_interval("momentum", momentum, "try 0.9 (0 turns momentum off).")
    if len(betas) != 2:
        raise ValueError(f"betas must be two numbers (beta1, beta2), got {betas!r}.")
    _check_unit_interval("beta1", betas[0], "try 0.9.")
    _check_unit_interval("beta2", betas[1], "try 0.999.")
    if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
        raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}.")
    start = surface.start if start is None else tuple(float(v) for v in start)
    if len(start) != 2 or not all(math.isfinite(v) for v in start):
        raise ValueError(f"start must be two finite numbers (x, y), got {start!r}.")
    return {name: _run(surface, name, lr_, start, steps, momentum, betas, limit)
            for name, lr_ in lrs.items()}


def _run(surface, name, lr, start, steps, momentum, betas, limit) -> Trajectory:
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = playground_optimizer(name, [point], lr, momentum, betas)
    points = np.empty((steps + 1, 2))
    values = np.empty(steps + 1)
    points[0] = start
    diverged_at = None
    for k in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=False)
        loss = surface.fn(point[0], point[1])
        loss.backward()
        values[k - 1] = loss.item()
        optimizer.step()
        points[k] = point.detach().numpy()
        if not (np.isfinite(points[k]).all() and np.abs(points[k]).max() <= limit):
            diverged_at = k
            points, values = points[:k], values[:k]
            break
    else:
        values[steps] = surface.value(points[steps])
    return Trajectory(name, lr, points, values, diverged_at)


# =============================================================================================
# Drawing
# =============================================================================================

COLORS = {name: PALETTE[i] for i, name in enumerate(OPTIMIZERS)}
STYLES = {name: LINESTYLES[i % len(LINESTYLES)] for i, name in enumerate(OPTIMIZERS)}


def plot_surface(surface: str | Surface, ax=None, levels: int = 14, num: int = 120):
    """Contour lines of a surface over its region, with its minima marked by stars."""
    surface = get_surface(surface)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    X, Y, Z = surface_grid(surface, num)
    if surface.log_levels:
        low = max(Z.min(), 1e-3)
        contour_levels = np.logspace(math.log10(low), math.log10(Z.max()), levels)
    else:
        contour_levels = np.linspace(Z.min(), np.quantile(Z, 0.9), levels)
    ax.contour(X, Y, Z, levels=contour_levels, cmap="viridis", linewidths=0.8, alpha=0.8)
    xs, ys = zip(*surface.minima, strict=True)
    ax.plot(xs, ys, linestyle="none", marker="*", markersize=11, color="black", label="minimum")
    ax.set(xlim=surface.xlim, ylim=surface.ylim, xlabel="$x$", ylabel="$y$")
    ax.grid(False)
    return ax


def plot_trajectories(surface: str | Surface, trajectories: Mapping[str, Trajectory] | Sequence[Trajectory],
                      ax=None, title: str | None = None, legend: bool = True):
    """Draw trajectories over the surface's contours; diverged runs get a note on the plot."""
    surface = get_surface(surface)
    ax = plot_surface(surface, ax)
    _draw_runs(ax, trajectories)
    ax.set_title(title if title is not None else f"{surface.name}: {surface.formula}", fontsize=10)
    if legend:
        ax.legend(fontsize=7, loc="upper right", framealpha=0.85, frameon=True)
    return ax


def _draw_runs(ax, trajectories) -> None:
    """The paths, their end points, the start point and a note for every diverged run."""
    runs = list(trajectories.values()) if isinstance(trajectories, Mapping) else list(trajectories)
    notes = []
    for i, run in enumerate(runs):
        color = COLORS.get(run.optimizer, PALETTE[i % len(PALETTE)])
        style = STYLES.get(run.optimizer, LINESTYLES[i % len(LINESTYLES)])
        marker = "." if run.steps_run <= 200 else None
        value = "diverged" if run.diverged else f"f = {run.final_value:.3g}"
        ax.plot(run.points[:, 0], run.points[:, 1], color=color, linestyle=style, marker=marker,
                markersize=3, linewidth=1.5, label=f"{run.label}: {value}")
        ax.plot(*run.final_point, marker="X" if run.diverged else "o", markersize=7, color=color,
                markeredgecolor=WARNING_COLOR if run.diverged else "black")
        if run.diverged:
            notes.append(f"{run.optimizer} diverged at step {run.diverged_at}: lower its learning rate")
    if runs:
        ax.plot(*runs[0].points[0], marker="o", markersize=7, color="white", markeredgecolor="black",
                linestyle="none", label="start")
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=8, color=WARNING_COLOR,
                va="bottom", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": WARNING_COLOR})


# The widget draws on a fixed canvas: the contour plot (axes, ticks, labels, title) is rendered once
# per surface and pasted in as a bitmap, and only the paths are drawn on every update. This keeps an
# update of 100 steps of three optimizers well under 0.1 s (drawing tick labels is what is slow).
PLAYGROUND_FIGSIZE = (7.6, 4.4)
PLAYGROUND_DPI = 80
_AXES_RECT = (0.09, 0.11, 0.55, 0.82)  # left, bottom, width, height; the legend goes to the right


@functools.lru_cache(maxsize=8)
def _background(surface: Surface) -> np.ndarray:
    """The contour plot of a surface on the playground's canvas, as an RGBA array (cached)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLAYGROUND_FIGSIZE, dpi=PLAYGROUND_DPI, layout="none")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes(_AXES_RECT)
    plot_surface(surface, ax)
    ax.set_title(f"{surface.name}: {surface.formula}", fontsize=10)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def draw_playground(surface: str, optimizers: Sequence[str], lr: float, adaptive_lr: float,
                    momentum: float, beta1: float, beta2: float, x0: float, y0: float,
                    steps: int) -> tuple[plt.Figure, str]:
    """The widget's logic: run the chosen optimizers and draw them; return ``(figure, message)``.

    ``lr`` is the learning rate of GD, momentum and Nesterov; ``adaptive_lr`` that of AdaGrad,
    RMSProp and Adam (their steps have a different scale, see the chapter). The message gives
    each optimizer's final loss, or a warning for every run that diverged. The figure is meant to
    be saved at ``PLAYGROUND_DPI`` (as ``helpers.plotting.figure_to_png`` does).
    """
    surface = get_surface(surface)
    fig = plt.figure(figsize=PLAYGROUND_FIGSIZE, dpi=PLAYGROUND_DPI, layout="none")
    # The cached contour plot fills the figure pixel for pixel, in axes of its own (so that saving
    # with bbox_inches="tight" moves it together with the paths drawn on top).
    back = fig.add_axes((0.0, 0.0, 1.0, 1.0), zorder=-1)
    back.imshow(_background(surface), interpolation="none", aspect="auto")
    back.set_axis_off()
    ax = fig.add_axes(_AXES_RECT)
    ax.set_axis_off()
    ax.set(xlim=surface.xlim, ylim=surface.ylim)
    optimizers = [name for name in OPTIMIZERS if name in optimizers]  # fixed order, no duplicates
    if not optimizers:
        return fig, "Select at least one optimizer (Ctrl/Cmd-click to select several)."
    lrs = {name: adaptive_lr if name in ADAPTIVE else lr for name in optimizers}
    runs = playground(surface, optimizers, lrs, momentum, (beta1, beta2), (x0, y0), steps)
    _draw_runs(ax, runs)
    ax.set(xlim=surface.xlim, ylim=surface.ylim)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    parts = []
    for run in runs.values():
        if run.diverged:
            parts.append(warning_html(f"{run.optimizer} diverged at step {run.diverged_at} "
                                      f"(lr {run.lr:.3g} is too large here)"))
        else:
            parts.append(f"{html.escape(run.optimizer)}: f = <b>{run.final_value:.4g}</b>")
    return fig, f"{steps} steps from ({x0:.2f}, {y0:.2f}): " + " | ".join(parts)


class PlaygroundExplorer(PlotExplorer):
    """The chapter's widget: several optimizers at once on a 2-D surface, with their trajectories.

    Controls: surface, optimizers (select several), the two learning rates, momentum, beta1,
    beta2, the start point ``(x0, y0)`` and the number of steps. Choosing a surface resets the
    start point, the learning rates and the start sliders' ranges to that surface's defaults
    (one redraw). ``explorer.seconds`` is the time of the latest update.
    """

    def __init__(self, surface: str = "Rosenbrock", optimizers: Sequence[str] = ("GD", "momentum", "Adam"),
                 steps: int = 100) -> None:
        s = get_surface(surface)
        slider = {"continuous_update": False, "style": {"description_width": "initial"}}
        log_lr = {"base": 10, "min": -4, "max": 1, "step": 0.05, "readout_format": ".3g"}
        controls = {
            "surface": w.Dropdown(options=list(SURFACES), value=s.name, description="surface"),
            "optimizers": w.SelectMultiple(options=list(OPTIMIZERS), value=tuple(optimizers), rows=6,
                                           description="optimizers"),
            "lr": w.FloatLogSlider(value=s.lr, description="lr (GD, momentum, Nesterov)", **log_lr, **slider),
            "adaptive_lr": w.FloatLogSlider(value=s.adaptive_lr, description="lr (AdaGrad, RMSProp, Adam)",
                                            **log_lr, **slider),
            "momentum": w.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="momentum",
                                      **slider),
            "beta1": w.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="beta1", **slider),
            "beta2": w.SelectionSlider(options=[0.9, 0.99, 0.999, 0.9999], value=0.999, description="beta2",
                                       **slider),
            "x0": w.FloatSlider(value=s.start[0], min=s.xlim[0], max=s.xlim[1], step=0.01,
                                description="start x", **slider),
            "y0": w.FloatSlider(value=s.start[1], min=s.ylim[0], max=s.ylim[1], step=0.01,
                                description="start y", **slider),
            "steps": w.IntSlider(value=steps, min=1, max=1000, description="steps", **slider),
        }
        super().__init__(controls, draw_playground, busy="running the optimizers...")

    def on_change(self, name: str, change) -> None:
        """Choosing a surface resets the start point and learning rates to its defaults."""
        if name == "surface":
            self.reset_to_surface_defaults()

    def reset_to_surface_defaults(self) -> None:
        """Set the start point, its slider ranges and the learning rates for the chosen surface
        (one redraw, or none if nothing changed)."""
        s = get_surface(self.controls["surface"].value)
        with self.hold_updates():
            for key, (low, high), value in (("x0", s.xlim, s.start[0]), ("y0", s.ylim, s.start[1])):
                slider = self.controls[key]
                slider.min, slider.max = min(low, slider.min), max(high, slider.max)
                slider.value = value
                slider.min, slider.max = low, high
            self.controls["lr"].value = s.lr
            self.controls["adaptive_lr"].value = s.adaptive_lr
