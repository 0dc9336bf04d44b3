"""Chapter 11's GAN lab: a GAN on 2-D data that a learner trains press by press, and its pictures.

- :data:`LAB_DATA` names the data sets (one Gaussian, a ring of 8, a grid of 25, two moons) and
  :func:`lab_data` gives each as a ``data(n, generator=g)`` function with its mode centres.
- :func:`generator_arrows` computes where G's loss pushes each generated point (GAN Lab's arrows).
- :func:`draw_gan_state` draws one :class:`helpers.gan.GAN2D`: D's surface, the real and generated
  points with their arrows, and both losses; :func:`gan_state_message` says the step, the losses
  and the modes covered. :class:`LiveGANFigure` redraws that picture in place while a chapter's
  own loop trains.
- :class:`GANLab` puts it behind controls (data, loss, learning rates of G and D, D steps per G
  step, steps per press, seed) and a "train" button: every press trains more steps of the same
  GAN; changing a setting starts a new one. Its logic is :meth:`GANLab.press` and the draw
  function, which tests drive directly.

UI code for :mod:`helpers.gan` (which stays free of widgets and pyplot).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from helpers import gan
from helpers.plotting import show_in_place
from helpers.training import model_device
from helpers.widgets import PlotExplorer

__all__ = ["LAB_DATA", "LAB_STEPS", "GANLab", "LiveGANFigure", "draw_gan_state", "gan_state_message",
           "generator_arrows", "lab_data"]

LAB_DATA = ("one Gaussian", "ring of 8", "grid of 25", "two moons")
"""The GAN lab's data sets."""
LAB_STEPS = (0, 25, 50, 100, 200, 500)
"""Generator steps per press of the lab's "train" button."""

RING_STD, GRID_STD = 0.05, 0.05
"""The lab's mixtures are a little wider than the chapter's ring (std 0.02), so they show at a glance."""


def lab_data(name: str) -> tuple[Callable[..., torch.Tensor], torch.Tensor | None, float | None]:
    """``(data, centres, std)`` for a data set of :data:`LAB_DATA`: ``data(n, generator=g)`` gives
    ``(n, 2)`` points; ``centres`` and ``std`` describe a mixture's modes (``None`` for the others)."""
    if name == "one Gaussian":
        return functools.partial(gan.single_gaussian, mean=(1.0, 1.0), std=0.5), None, None
    if name == "ring of 8":
        return functools.partial(gan.ring_of_gaussians, std=RING_STD), gan.ring_centres(8, 2.0), RING_STD
    if name == "grid of 25":
        return (functools.partial(gan.grid_of_gaussians, spacing=1.0, std=GRID_STD),
                gan.grid_centres(5, 1.0), GRID_STD)
    if name == "two moons":
        return functools.partial(gan.two_moons, noise=0.05), None, None
    raise ValueError(f"Unknown data set {name!r}; choose one of {LAB_DATA}.")


def generator_arrows(model: gan.GAN2D, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points, directions)``: ``n`` generated points of the fixed noise batch and, for each, minus
    the gradient of G's loss with respect to the point (where G's next step wants to move it), on
    the CPU. The loss is the one ``model`` trains G with."""
    device = model_device(model.G)
    with torch.no_grad():
        points = model.G(model.fixed_noise[:n].to(device))
    points.requires_grad_(True)
    scores = model.D(points)
    if model.loss == "wgan-gp":
        loss = gan.wasserstein_generator_loss(scores)
    else:
        loss = gan.generator_loss(scores, model.loss)
    (grad,) = torch.autograd.grad(loss * len(points), points)  # per point, not divided by n
    return points.detach().cpu(), -grad.cpu()


def _limits(real: torch.Tensor, fake: torch.Tensor, margin: float = 0.5) -> tuple[float, float, float, float]:
    """Axis limits that show all the real points and most generated ones (a few outliers may leave)."""
    low = real.min(0).values - margin
    high = real.max(0).values + margin
    if len(fake):
        low = torch.minimum(low, fake.quantile(0.02, dim=0) - margin)
        high = torch.maximum(high, fake.quantile(0.98, dim=0) + margin)
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def _two_panels():
    return plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.15, 1]}, layout="constrained")


def draw_gan_state(model: gan.GAN2D, real: torch.Tensor, axes=None, resolution: int = 60,
                   arrows: bool = True) -> plt.Figure:
    """Two panels: D's surface with the ``real`` points (grey) and G's samples (orange) with arrows
    where G's loss pushes them; and D's and G's losses over the steps. Returns the figure."""
    if axes is None:
        fig, axes = _two_panels()
    ax, ax_loss = axes
    fig = ax.figure
    ax.clear()
    ax_loss.clear()
    real = torch.as_tensor(real).cpu()
    fake = model.samples()
    x0, x1, y0, y1 = _limits(real, fake)
    xs, ys = torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution)
    surface = model.decision_surface(xs, ys)
    if model.loss == "wgan-gp":
        limits, label = {}, "critic score"
    else:
        limits, label = {"vmin": 0, "vmax": 1}, "D(x) = P(real)"
    image = ax.imshow(surface.numpy(), extent=(x0, x1, y0, y1), origin="lower", cmap="RdBu_r", aspect="auto",
                      **limits)
    if not hasattr(ax, "_course_colorbar"):
        ax._course_colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    else:
        ax._course_colorbar.update_normal(image)
    ax._course_colorbar.set_label(label)
    ax.scatter(real[:, 0], real[:, 1], s=4, c="0.35", alpha=0.5, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=4, c="#E69F00", alpha=0.8, label="generated")
    if arrows:
        points, directions = generator_arrows(model)
        scale = directions.norm(dim=1).max().clamp_min(1e-12)
        step = 0.08 * max(x1 - x0, y1 - y0) / scale
        ax.quiver(points[:, 0], points[:, 1], directions[:, 0] * step, directions[:, 1] * step, angles="xy",
                  scale_units="xy", scale=1, color="k", width=0.004, alpha=0.7)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="$x_1$", ylabel="$x_2$",
           title=f"step {model.step}: samples and D's surface")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    history = model.history
    if history["d_loss"]:
        steps = torch.arange(1, len(history["d_loss"]) + 1)
        ax_loss.plot(steps, history["d_loss"], label="D's loss", lw=1)
        ax_loss.plot(steps, history["g_loss"], label="G's loss", lw=1)
        if "wasserstein" in history:
            ax_loss.plot(steps, history["wasserstein"], label="W estimate", lw=1)
        ax_loss.legend(fontsize=8)
    ax_loss.set(xlabel="generator step", ylabel="loss", title=f"losses ({model.loss})")
    return fig


def gan_state_message(model: gan.GAN2D, centres: torch.Tensor | None = None, std: float | None = None) -> str:
    """One line: the step, the latest losses and (for a mixture) the modes covered by 2,000 samples."""
    if not model.history["d_loss"]:
        text = f"step 0 ({model.loss}): press train"
    else:
        text = (f"step {model.step} ({model.loss}): D's loss {model.history['d_loss'][-1]:.3f}, "
                f"G's loss {model.history['g_loss'][-1]:.3f}")
    if centres is not None:
        coverage = gan.mode_coverage(model.samples(2000), centres, std)
        text += (f" | modes covered {coverage['modes_covered']}/{coverage['num_modes']}, "
                 f"high quality {coverage['high_quality_fraction']:.2f}")
    return text


class LiveGANFigure:
    """:func:`draw_gan_state` redrawn in place, for a chapter's own training loop.

    ``update(model)`` draws the current state (in a notebook, into one output area; elsewhere it
    only draws); ``close()`` ends it and keeps the last picture."""

    def __init__(self, real: torch.Tensor, arrows: bool = True) -> None:
        self.real, self.arrows = real, arrows
        self.fig, self.axes = _two_panels()
        self.handle = None

    def update(self, model: gan.GAN2D) -> None:
        draw_gan_state(model, self.real, self.axes, arrows=self.arrows)
        self.handle = show_in_place(self.fig, self.handle)

    def close(self) -> None:
        plt.close(self.fig)


def _lab_control(name: str) -> w.ValueWidget:
    style = {"description_width": "initial"}
    if name == "data":
        return w.Dropdown(options=LAB_DATA, value="ring of 8", description="data")
    if name == "loss":
        return w.Dropdown(options=gan.GAN_LOSSES, value="non_saturating", description="loss")
    if name in ("lr_g", "lr_d"):
        return w.FloatLogSlider(value=1e-3, base=10, min=-5, max=1, step=0.25, description=name,
                                readout_format=".0e", style=style)
    if name == "d_steps":
        return w.IntSlider(value=1, min=0, max=10, description="D steps per G step", style=style)
    if name == "steps":
        return w.SelectionSlider(options=LAB_STEPS, value=100, description="G steps per press", style=style)
    if name == "seed":
        return w.IntSlider(value=0, min=0, max=9, description="seed")
    raise ValueError(name)


class GANLab(PlotExplorer):
    """A GAN Lab in the notebook: pick the data, the loss, both learning rates, the D steps per G step,
    then press "train" to run more generator steps on the same GAN.

    Any change of data, loss, learning rates, D steps or seed starts a new GAN (``self.model``, a
    :class:`helpers.gan.GAN2D`); "steps per press" only changes how far the next press trains, and
    "reset" starts the same settings again. The picture is :func:`draw_gan_state`, the line
    :func:`gan_state_message` plus the press's seconds. Bad settings (a learning rate above 1, zero
    D steps, zero steps per press) and a diverged run give a warning line instead of a traceback.
    Choosing a loss sets the D steps of its paper (5 for WGAN-GP, 1 otherwise); change them after.
    ``num_samples`` is the number of real points drawn; ``device`` where the GAN trains.
    """

    SETTINGS = ("data", "loss", "lr_g", "lr_d", "d_steps", "seed")

    def __init__(self, num_samples: int = 1000, device: torch.device | str | None = None, *,
                 strict: bool | None = None, **values) -> None:
        self.num_samples, self.device = num_samples, device
        self.model: gan.GAN2D | None = None
        self._settings: tuple | None = None
        self._train_next = False
        self.last_press_seconds = 0.0
        controls = {name: _lab_control(name) for name in (*self.SETTINGS[:5], "steps", "seed")}
        for name, value in values.items():
            if name not in controls:
                raise TypeError(f"GANLab has no control {name!r}; its controls are {list(controls)}.")
            controls[name].value = value
        self.train_button = w.Button(description="train", icon="play", button_style="primary")
        self.reset_button = w.Button(description="reset", icon="undo")
        self.train_button.on_click(lambda _: self.press())
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__(controls, self._draw, busy="training...",
                         extra=[self.train_button, self.reset_button], strict=strict)

    def on_change(self, name: str, change) -> None:
        """Choosing a loss sets its paper's D steps per G step: 5 for WGAN-GP, 1 for the others."""
        if name == "loss":
            self.controls["d_steps"].value = 5 if change.new == "wgan-gp" else 1

    def press(self) -> None:
        """What the "train" button does: train ``steps`` more generator steps, then redraw."""
        self._train_next = True
        try:
            self.refresh()
        finally:
            self._train_next = False

    def reset(self) -> None:
        """Start a new GAN with the current settings (the "reset" button)."""
        self._settings = None
        self.refresh()

    def _build(self, data, loss, lr_g, lr_d, d_steps, seed) -> None:
        settings = (data, loss, lr_g, lr_d, d_steps, seed)
        if self.model is not None and settings == self._settings:
            return
        self.model, self._settings = None, None
        if d_steps == 0:
            raise ValueError("0 D steps per G step: the discriminator would never learn; set at least 1 "
                             "(5 is the WGAN-GP paper's choice, 1 the original GAN's).")
        sampler, self.centres, self.std = lab_data(data)
        self.model = gan.GAN2D(sampler, loss=loss, lr_g=lr_g, lr_d=lr_d, d_steps=d_steps, seed=seed,
                               device=self.device)
        self.real = sampler(self.num_samples, generator=torch.Generator().manual_seed(1000 + seed))
        self._settings = settings

    def _draw(self, data, loss, lr_g, lr_d, d_steps, steps, seed):
        self._build(data, loss, lr_g, lr_d, d_steps, seed)
        note = ""
        if self._train_next:
            if steps == 0:
                note = " | 0 steps per press: nothing trained; move the steps slider"
            else:
                start = time.perf_counter()
                try:
                    self.model.train(steps)
                finally:
                    self.last_press_seconds = time.perf_counter() - start
                note = f" | {steps} steps in {self.last_press_seconds:.1f} s"
        fig = draw_gan_state(self.model, self.real)
        message = gan_state_message(self.model, self.centres, self.std) + note
        plt.close(fig)
        return fig, message
