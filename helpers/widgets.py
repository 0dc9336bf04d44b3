"""Interactive controls whose logic is a plain, testable function.

``PlotExplorer`` wires a few ipywidgets controls to a function ``draw(**values) -> (figure,
message)``: every change re-runs the function and shows the picture (an ``ipywidgets.Image``)
and the message (an ``HTML`` line). Errors from extreme settings become a warning in that line,
never a traceback. Tests drive an explorer by setting ``.value`` on ``explorer.controls[name]``
and reading ``explorer.message`` and ``explorer.image.value``.

Explorers with controls that depend on each other (a preset that fills other controls) use the
public extension points of :class:`PlotExplorer` instead of its internals:

* :meth:`PlotExplorer.hold_updates`: control changes made inside it are drawn once, at the end;
* :meth:`PlotExplorer.on_change` (or the ``on_change=`` callback): runs before the redraw, inside
  ``hold_updates``, so the controls it sets cost no extra redraw and do not call it again;
* :meth:`PlotExplorer.build_layout`: arranges the widgets (called once by the constructor);
* strict mode (``strict=``, default :data:`STRICT`; the tests turn it on): a bug in ``draw`` is
  raised instead of becoming a warning line, and a control that ``draw`` does not take fails at
  construction.

``HyperparameterExplorer`` is the course's learning-rate / batch-size widget: it calls a plain
``run(lr, batch_size, num_epochs) -> History`` (see :func:`helpers.training.train_with`) and
overlays the curves of the latest runs so a learner can compare them. Given ``controls=`` it
takes any set of controls instead (e.g. one learning rate per network of a GAN) and calls
``run(**values)``; :func:`lr_slider`, :func:`batch_size_slider` and :func:`epochs_slider` build
the standard ones.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import ipywidgets as w
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from helpers.plotting import LINESTYLES, PALETTE, figure_to_png
from helpers.training import DivergenceError, History

WARNING_COLOR = "#D55E00"

STRICT = False
"""The default of ``PlotExplorer(strict=None)``. The tests set it to ``True`` (see
``tests/conftest.py``); notebooks keep it ``False``, so a learner never sees a traceback."""

LEARNER_ERRORS: tuple[type[Exception], ...] = (ValueError, DivergenceError)
"""Errors that extreme but legal settings can cause: shown as a warning line even in strict mode.
Anything else raised by ``draw`` (``TypeError``, ``KeyError``, ``AttributeError``, ...) is a bug,
raised in strict mode."""


def warning_html(text: str) -> str:
    """A message styled as a warning, for the status line of a widget."""
    return f'<span style="color:{WARNING_COLOR}"><b>&#9888; {html.escape(text)}</b></span>'


def _callable_name(fn: Callable) -> str:
    if isinstance(fn, functools.partial):
        return _callable_name(fn.func)
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def check_keywords(fn: Callable, names: Sequence[str], role: str = "draw") -> None:
    """Raise ``TypeError`` unless ``fn(**{name: ... for name in names})`` matches ``fn``'s signature.

    Every name must be a keyword parameter of ``fn`` (``**kwargs`` accepts all), and every
    parameter of ``fn`` without a default must be among the names. Strict explorers call it at
    construction, so a misspelled control name fails at once instead of becoming a warning line.
    Callables without a signature (some built-ins) are not checked.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    keywords = [p.name for p in params if p.kind in keyword_kinds]
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    described = f"{role} {_callable_name(fn)}{signature}"
    unknown = [name for name in names if name not in keywords and not accepts_any]
    if unknown:
        raise TypeError(f"The control {unknown[0]!r} is not a parameter of {described}; it takes "
                        f"{', '.join(keywords) or 'no keyword arguments'}. Rename the control or "
                        "add the parameter.")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind in (*keyword_kinds, inspect.Parameter.POSITIONAL_ONLY) and p.name not in names]
    if missing:
        raise TypeError(f"{described} needs {', '.join(map(repr, missing))}, but there is no control "
                        f"of that name (controls: {', '.join(names) or 'none'}). Add a control or "
                        "give the parameter a default.")


class PlotExplorer:
    """Controls -> ``draw(**values)`` -> a picture and a one-line message.

    ``controls`` maps each keyword of ``draw`` to an ipywidgets control. ``draw`` returns
    ``(matplotlib figure or None, message)``. ``busy`` is shown while ``draw`` works; ``extra``
    widgets (buttons, ...) are shown beside the controls; ``tight=False`` skips the second
    rendering of :func:`helpers.plotting.figure_to_png` for figures with a fixed layout.

    Extension points (see the module docstring): :meth:`hold_updates`, :meth:`on_change` or the
    ``on_change(name, change)`` callback, :meth:`build_layout`, and ``strict`` (default
    :data:`STRICT`): in strict mode only :data:`LEARNER_ERRORS` from ``draw`` become a warning
    line, other exceptions are raised, and :func:`check_keywords` checks the control names
    against ``draw`` at construction.

    Attributes: ``controls``, ``status`` (the HTML line), ``image``, ``widget`` (what a notebook
    shows), ``message`` (the status text), ``seconds`` (time of the latest update: ``on_change``
    plus ``draw``), ``strict``.
    """

    def __init__(
        self,
        controls: Mapping[str, w.ValueWidget],
        draw: Callable[..., tuple[plt.Figure | None, str]],
        busy: str = "computing...",
        extra: Sequence[w.Widget] = (),
        tight: bool = True,
        *,
        on_change: Callable[[str, dict], None] | None = None,
        strict: bool | None = None,
    ) -> None:
        self.controls = dict(controls)
        self.draw = draw
        self.busy = busy
        self.extra = list(extra)
        self.tight = tight  # see plotting.figure_to_png
        self.strict = STRICT if strict is None else bool(strict)
        self.status = w.HTML()
        self.image = w.Image(format="png")
        self.seconds = 0.0
        self._callback = on_change
        self._depth = 0  # how many hold_updates are open
        self._stale = False  # something changed since the last redraw
        self._in_hook = False  # on_change is running: the changes it makes do not call it again
        self._drawing = False
        self._hook_seconds = 0.0
        self._hook_problem: str | None = None
        if self.strict:
            check_keywords(draw, list(self.controls), "draw")
        self.widget = self.build_layout()
        for name, control in self.controls.items():
            control.observe(functools.partial(self._control_changed, name), names="value")
        self.refresh()

    # --- extension points ------------------------------------------------------------------
    def on_change(self, name: str, change) -> None:
        """Called when control ``name`` changes, before the redraw; override to sync controls.

        It runs inside :meth:`hold_updates`: the controls it sets are drawn together in one
        redraw and do not call ``on_change`` again. ``change`` is the traitlets change
        (``change.new``, ``change.old``, ``change.owner``). The default does nothing.
        """

    def build_layout(self) -> w.Widget:
        """The widget the notebook shows; the constructor calls it once and keeps it as ``widget``.

        The default: the controls and ``extra`` in a wrapping row, the status line, the image.
        Override it to arrange them differently; create the widgets it needs before calling
        ``super().__init__``. It should contain ``status`` and ``image``.
        """
        return w.VBox([self.controls_row(), self.status, self.image])

    def controls_row(self, widgets: Sequence[w.Widget] | None = None) -> w.HBox:
        """A wrapping row of ``widgets`` (default: every control, then ``extra``)."""
        if widgets is None:
            widgets = [*self.controls.values(), *self.extra]
        return w.HBox(list(widgets), layout=w.Layout(flex_flow="row wrap"))

    @contextlib.contextmanager
    def hold_updates(self) -> Iterator[PlotExplorer]:
        """Batch control changes: inside, nothing is redrawn; when the outermost one exits, one
        redraw happens if anything changed (or :meth:`refresh` was called). Nests."""
        if self._depth == 0:
            self._hook_seconds, self._hook_problem = 0.0, None
        self._depth += 1
        completed = False
        try:
            yield self
            completed = True
        finally:
            self._depth -= 1
        if completed and self._depth == 0 and self._stale:
            self._redraw()

    # --- state -------------------------------------------------------------------------------
    @property
    def message(self) -> str:
        """The text of the status line, without HTML tags."""
        return html.unescape(_strip_tags(self.status.value))

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def refresh(self) -> None:
        """Re-run ``draw`` with the controls' values and show its picture and message.

        Inside :meth:`hold_updates` the redraw waits until the outermost one exits.
        """
        if self._drawing:
            self._changed_while_drawing("refresh() was called")
        elif self._depth:
            self._stale = True
        else:
            self._redraw()

    # --- internals -----------------------------------------------------------------------------
    def _control_changed(self, name: str, change) -> None:
        if self._drawing:
            self._changed_while_drawing(f"the control {name!r} changed")
            return
        with self.hold_updates():
            self._stale = True
            if not self._in_hook:
                self._run_hooks(name, change)

    def _run_hooks(self, name: str, change) -> None:
        self._in_hook = True
        start = time.perf_counter()
        try:
            self.on_change(name, change)
            if self._callback is not None:
                self._callback(name, change)
        except Exception as error:  # shown like an error of draw (raised if a bug, in strict mode)
            self._hook_problem = self._problem(error)
        finally:
            self._in_hook = False
            self._hook_seconds += time.perf_counter() - start

    def _changed_while_drawing(self, what: str) -> None:
        if self.strict:
            raise RuntimeError(f"{what} while draw was running; draw must not change controls "
                               "(sync controls in on_change instead).")

    def _problem(self, error: Exception) -> str:
        """The warning line for an exception; in strict mode, a bug (not a LEARNER_ERROR) is raised."""
        message = warning_html(str(error) or type(error).__name__)
        if self.strict and not isinstance(error, LEARNER_ERRORS):
            self.status.value = message
            raise error
        return message

    def _redraw(self) -> None:
        hook_seconds, problem = self._hook_seconds, self._hook_problem
        self._stale, self._hook_seconds, self._hook_problem = False, 0.0, None
        self.status.value = f"<i>{html.escape(self.busy)}</i>"
        start = time.perf_counter()
        fig = None
        if problem is None:
            self._drawing = True
            try:
                fig, message = self.draw(**self.values())
            except Exception as error:  # a widget shows the problem instead of a traceback
                fig, message = None, self._problem(error)
            finally:
                self._drawing = False
        else:
            message = problem
        if fig is not None:
            self.image.value = figure_to_png(fig, tight=self.tight)
        self.seconds = hook_seconds + time.perf_counter() - start
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


# ---------------------------------------------------------------------------------------------
# Training curves: the hyperparameter explorer
# ---------------------------------------------------------------------------------------------

_SLIDER = {"continuous_update": False, "style": {"description_width": "initial"}}
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def lr_slider(value: float = 0.03, lr_range: tuple[float, float] = (1e-3, 10.0),
              description: str = "learning rate") -> w.FloatLogSlider:
    """A logarithmic learning-rate slider from ``lr_range[0]`` to ``lr_range[1]``."""
    lo, hi = (math.log10(v) for v in lr_range)
    return w.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=0.05, description=description,
                            readout_format=".3g", **_SLIDER)


def batch_size_slider(value: int = 32, batch_sizes: Sequence[int] = BATCH_SIZES,
                      description: str = "batch size") -> w.SelectionSlider:
    """A slider over the given batch sizes."""
    return w.SelectionSlider(options=list(batch_sizes), value=value, description=description,
                             continuous_update=False)


def epochs_slider(value: int = 5, max_epochs: int = 20, description: str = "epochs") -> w.IntSlider:
    """An epoch-count slider from 1 to ``max_epochs``."""
    return w.IntSlider(value=value, min=1, max=max_epochs, description=description, continuous_update=False)


LABEL_NAMES = {"batch_size": "batch"}
"""Short names used in run labels (``lr=0.03, batch=32``); ``num_epochs`` is left out of labels
(the status line says "N epochs")."""


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def run_label(values: Mapping[str, object]) -> str:
    """A run's label from its settings: ``{'lr': 0.03, 'batch_size': 32, 'num_epochs': 5}`` ->
    ``'lr=0.03, batch=32'``; ``{'lr_G': 2e-4, 'd_steps': 2}`` -> ``'lr_G=0.0002, d_steps=2'``."""
    shown = {name: value for name, value in values.items() if name != "num_epochs"} or dict(values)
    return ", ".join(f"{LABEL_NAMES.get(name, name)}={_format_value(value)}" for name, value in shown.items())


@dataclass
class Run:
    """One run of the explorer: its settings and either a history or the reason it failed."""

    values: dict[str, object] = field(default_factory=dict)
    history: History | None = None
    problem: str | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return run_label(self.values)

    @property
    def lr(self):
        return self.values.get("lr")

    @property
    def batch_size(self):
        return self.values.get("batch_size")

    @property
    def num_epochs(self):
        return self.values.get("num_epochs")


class HyperparameterExplorer(PlotExplorer):
    """Hyperparameter controls over training curves, overlaying the latest runs.

    Two ways to build it:

    * ``HyperparameterExplorer(run, lr=0.03, batch_size=32, num_epochs=5, lr_range=(1e-3, 10),
      batch_sizes=(1, 2, ..., 256), max_epochs=20)``: the three standard controls ``lr``,
      ``batch_size`` and ``num_epochs``; ``run(lr, batch_size, num_epochs)`` is called with them
      positionally.
    * ``HyperparameterExplorer(run, controls={"lr_G": lr_slider(2e-4), "lr_D": lr_slider(2e-4),
      "d_steps": w.IntSlider(...)})``: any controls; ``run(**values)`` is called with them by name
      (see :func:`lr_slider`, :func:`batch_size_slider`, :func:`epochs_slider`). The two ways do
      not mix: pass either ``controls`` or the standard settings.

    ``run`` must return a :class:`History`; ``key`` is the curve shown (e.g. ``'train_loss'`` or
    ``'val_acc'``). Up to ``max_runs`` runs stay on the plot (``explorer.runs``, :class:`Run`),
    labelled from their values (:func:`run_label`); runs that raise :class:`DivergenceError` or
    ``ValueError`` are listed in the legend as diverged.
    """

    def __init__(
        self,
        run: Callable[..., History],
        lr: float | None = None,  # default 0.03
        lr_range: tuple[float, float] | None = None,  # default (1e-3, 10.0)
        batch_sizes: Sequence[int] | None = None,  # default BATCH_SIZES
        batch_size: int | None = None,  # default 32
        num_epochs: int | None = None,  # default 5
        max_epochs: int | None = None,  # default 20
        key: str = "train_loss",
        logy: bool = True,
        max_runs: int = 6,
        *,
        controls: Mapping[str, w.ValueWidget] | None = None,
        on_change: Callable[[str, dict], None] | None = None,
        strict: bool | None = None,
    ) -> None:
        self.run = run
        self.key = key
        self.logy = logy
        self.max_runs = max_runs
        self.runs: list[Run] = []
        standard = {"lr": lr, "lr_range": lr_range, "batch_sizes": batch_sizes, "batch_size": batch_size,
                    "num_epochs": num_epochs, "max_epochs": max_epochs}
        self._positional = controls is None
        if controls is None:
            controls = {
                "lr": lr_slider(0.03 if lr is None else lr, lr_range or (1e-3, 10.0)),
                "batch_size": batch_size_slider(32 if batch_size is None else batch_size,
                                                BATCH_SIZES if batch_sizes is None else batch_sizes),
                "num_epochs": epochs_slider(5 if num_epochs is None else num_epochs,
                                            20 if max_epochs is None else max_epochs),
            }
        else:
            given = [name for name, value in standard.items() if value is not None]
            if given:
                raise TypeError(f"Pass either controls= or the standard settings, not both (got "
                                f"{', '.join(given)}); build those controls with lr_slider, "
                                "batch_size_slider and epochs_slider instead.")
            if not controls:
                raise ValueError("controls is empty; give at least one control.")
        strict = STRICT if strict is None else bool(strict)
        if strict:
            if self._positional:
                try:
                    inspect.signature(run).bind(0.1, 1, 1)
                except TypeError as error:
                    raise TypeError(f"run {_callable_name(run)} must take (lr, batch_size, num_epochs): "
                                    f"{error}") from None
                except ValueError:  # no signature to check
                    pass
            else:
                check_keywords(run, list(controls), "run")
        self.clear_button = w.Button(description="clear runs", icon="eraser")
        self.clear_button.on_click(lambda _: self.clear())
        super().__init__(controls, self._train_and_draw, busy="training...", extra=[self.clear_button],
                         on_change=on_change, strict=strict)

    def clear(self) -> None:
        """Forget earlier runs and redraw with only the current settings."""
        self.runs.clear()
        self.refresh()

    def train(self, *args, **values) -> Run:
        """Call ``run`` once with these settings and record the result (a history, or the reason
        it failed). Positional arguments follow the order of the controls (``lr, batch_size,
        num_epochs`` for the standard ones)."""
        names = list(self.controls)
        if len(args) > len(names):
            raise TypeError(f"train takes at most {len(names)} positional settings ({', '.join(names)}).")
        values = {**dict(zip(names, args, strict=False)), **values}
        start = time.perf_counter()
        try:
            if self._positional:
                history = self.run(values["lr"], values["batch_size"], values["num_epochs"])
            else:
                history = self.run(**values)
            problem = None
        except LEARNER_ERRORS as error:
            history, problem = None, str(error) or type(error).__name__
        run = Run(values, history, problem, time.perf_counter() - start)
        self.runs = [*self.runs, run][-self.max_runs :]
        return run

    def _train_and_draw(self, **values):
        run = self.train(**values)
        fig = self.figure()
        if run.problem is not None:
            return fig, warning_html(f"{run.label}: {run.problem}")
        final = run.history[self.key][-1]
        epochs = f", {values['num_epochs']} epochs" if "num_epochs" in values else ""
        return fig, (f"<b>{html.escape(run.label)}</b>{epochs}: final {self.key} "
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
