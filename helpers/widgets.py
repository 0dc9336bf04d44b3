"""Interactive controls whose logic is a plain, testable function.

``PlotExplorer`` wires a few ipywidgets controls to a function ``draw(**values) -> (figure,
message)``: every change re-runs the function and shows the picture (an ``ipywidgets.Image``)
and the message (an ``HTML`` line). Errors from extreme settings become a warning in that line,
never a traceback. Tests drive an explorer by setting ``.value`` on ``explorer.controls[name]``
and reading ``explorer.message`` and ``explorer.image.value``.

``HyperparameterExplorer`` is the course's learning-rate / batch-size widget: it calls a plain
``run(lr, batch_size, num_epochs) -> History`` (see :func:`train_with`) and overlays the curves of
the latest runs so a learner can compare them.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

from helpers.config import seed_everything
from helpers.data import make_loader
from helpers.plotting import LINESTYLES, PALETTE, figure_to_png
from helpers.training import DivergenceError, History, fit

WARNING_COLOR = "#D55E00"


def warning_html(text: str) -> str:
    """A message styled as a warning, for the status line of a widget."""
    return f'<span style="color:{WARNING_COLOR}"><b>&#9888; {html.escape(text)}</b></span>'


class PlotExplorer:
    """Controls -> ``draw(**values)`` -> a picture and a one-line message.

    ``controls`` maps each keyword of ``draw`` to an ipywidgets control. ``draw`` returns
    ``(matplotlib figure or None, message)``. ``busy`` is shown while ``draw`` works.
    """

    def __init__(
        self,
        controls: Mapping[str, w.ValueWidget],
        draw: Callable[..., tuple[plt.Figure | None, str]],
        busy: str = "computing...",
        extra: Sequence[w.Widget] = (),
        tight: bool = True,
    ) -> None:
        self.controls = dict(controls)
        self.draw = draw
        self.busy = busy
        self.tight = tight  # see plotting.figure_to_png
        self.status = w.HTML()
        self.image = w.Image(format="png")
        self.seconds = 0.0
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.widget = w.VBox(
            [w.HBox([*self.controls.values(), *extra], layout=w.Layout(flex_flow="row wrap")),
             self.status, self.image]
        )
        self.refresh()

    @property
    def message(self) -> str:
        """The text of the status line, without HTML tags."""
        return html.unescape(_strip_tags(self.status.value))

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-run ``draw`` with the controls' values and show its picture and message."""
        self.status.value = f"<i>{html.escape(self.busy)}</i>"
        start = time.perf_counter()
        try:
            fig, message = self.draw(**self.values())
        except Exception as error:  # a widget shows the problem instead of a traceback
            fig, message = None, warning_html(str(error) or type(error).__name__)
        if fig is not None:
            self.image.value = figure_to_png(fig, tight=self.tight)
        self.seconds = time.perf_counter() - start
        self.status.value = message

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _strip_tags(text: str) -> str:
    out, inside = [], False
    for ch in text:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return "".join(out)


def train_with(
    lr: float,
    batch_size: int,
    num_epochs: int,
    *,
    make_model: Callable[[], nn.Module],
    loss_fn: Callable,
    train_data: Sequence[torch.Tensor],
    val_data: Sequence[torch.Tensor] | None = None,
    metrics: Mapping | None = None,
    optimizer: str = "sgd",
    seed: int = 0,
) -> History:
    """Train a fresh ``make_model()`` with the given learning rate and batch size; return its history.

    This is the plain function behind :class:`HyperparameterExplorer`. Everything else (model,
    data, initialisation, shuffling) is fixed by ``seed`` so that only ``lr`` and ``batch_size``
    change between runs. Raises :class:`DivergenceError` when the loss blows up.
    """
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"The learning rate must be a positive number, got {lr!r}.")
    seed_everything(seed)
    model = make_model()
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}.")
    opt = optimizers[optimizer](model.parameters(), lr=lr)
    train_iter = make_loader(*train_data, batch_size=batch_size, seed=seed)
    val_iter = None
    if val_data is not None:
        val_iter = make_loader(*val_data, batch_size=1024, shuffle=False)
    return fit(model, loss_fn, opt, train_iter, num_epochs, val_iter=val_iter, metrics=metrics,
               live=False, progress=False, verbose=False)


@dataclass
class Run:
    """One run of the explorer: its settings and either a history or the reason it failed."""

    lr: float
    batch_size: int
    num_epochs: int
    history: History | None
    problem: str | None
    seconds: float

    @property
    def label(self) -> str:
        return f"lr={self.lr:.3g}, batch={self.batch_size}"


class HyperparameterExplorer(PlotExplorer):
    """Learning-rate and batch-size controls over training curves, overlaying the latest runs.

    ``run(lr, batch_size, num_epochs)`` must return a :class:`History`; ``key`` is the curve shown
    (e.g. ``'train_loss'`` or ``'val_acc'``). Up to ``max_runs`` runs stay on the plot.
    """

    def __init__(
        self,
        run: Callable[[float, int, int], History],
        lr: float = 0.03,
        lr_range: tuple[float, float] = (1e-3, 10.0),
        batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
        batch_size: int = 32,
        num_epochs: int = 5,
        max_epochs: int = 20,
        key: str = "train_loss",
        logy: bool = True,
        max_runs: int = 6,
    ) -> None:
        self.run = run
        self.key = key
        self.logy = logy
        self.max_runs = max_runs
        self.runs: list[Run] = []
        lo, hi = (math.log10(v) for v in lr_range)
        controls = {
            "lr": w.FloatLogSlider(value=lr, base=10, min=lo, max=hi, step=0.05,
                                   description="learning rate", readout_format=".3g",
                                   continuous_update=False, style={"description_width": "initial"}),
            "batch_size": w.SelectionSlider(options=list(batch_sizes), value=batch_size,
                                            description="batch size", continuous_update=False),
            "num_epochs": w.IntSlider(value=num_epochs, min=1, max=max_epochs,
                                      description="epochs", continuous_update=False),
        }
        self.clear_button = w.Button(description="clear runs", icon="eraser")
        self.clear_button.on_click(lambda _: self.clear())
        super().__init__(controls, self._train_and_draw, busy="training...", extra=[self.clear_button])

    def clear(self) -> None:
        """Forget earlier runs and redraw with only the current settings."""
        self.runs.clear()
        self.refresh()

    def train(self, lr: float, batch_size: int, num_epochs: int) -> Run:
        """Call ``run`` once and record the result (a history, or the reason it failed)."""
        start = time.perf_counter()
        try:
            history, problem = self.run(lr, batch_size, num_epochs), None
        except (DivergenceError, ValueError) as error:
            history, problem = None, str(error)
        run = Run(lr, batch_size, num_epochs, history, problem, time.perf_counter() - start)
        self.runs = [*self.runs, run][-self.max_runs :]
        return run

    def _train_and_draw(self, lr: float, batch_size: int, num_epochs: int):
        run = self.train(lr, batch_size, num_epochs)
        fig = self.figure()
        if run.problem is not None:
            return fig, warning_html(f"{run.label}: {run.problem}")
        final = run.history[self.key][-1]
        return fig, (f"<b>{html.escape(run.label)}</b>, {num_epochs} epochs: final {self.key} "
                     f"<b>{final:.4g}</b> in {run.seconds:.2f} s")

    def figure(self) -> plt.Figure:
        """Draw every kept run's curve; the newest is drawn thickest, diverged runs are listed."""
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for i, run in enumerate(self.runs):
            newest = i == len(self.runs) - 1
            if run.history is None:
                continue
            values = run.history[self.key]
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3,
                    linewidth=2.5 if newest else 1.2, alpha=1.0 if newest else 0.7,
                    color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[0 if newest else 1],
                    label=run.label + (" (latest)" if newest else ""))
        for run in self.runs:
            if run.history is None:  # a legend entry without a line: the run has no curve to draw
                ax.plot([], [], linestyle="none", marker="x", color=WARNING_COLOR,
                        label=f"{run.label}: diverged")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(self.key.replace("_", " "))
        if self.logy and any(r.history is not None for r in self.runs):
            ax.set_yscale("log")
        if self.runs:
            ax.legend(fontsize=7, loc="best")
        ax.set_title("training curves: latest runs overlaid")
        return fig
