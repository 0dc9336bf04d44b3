"""Widgets, driven as a learner would: set a control's value, read what the widget shows."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from helpers import widgets
from helpers.data import synthetic_regression
from helpers.training import DivergenceError, History, train_with
from helpers.widgets import (
    HyperparameterExplorer,
    PlotExplorer,
    batch_size_slider,
    epochs_slider,
    lr_slider,
    warning_html,
)

X, Y = synthetic_regression([2.0, -3.4], 4.2, 500, seed=0)


def linear_run(lr, batch_size, num_epochs):
    return train_with(lr, batch_size, num_epochs, make_model=lambda: nn.Linear(2, 1),
                      loss_fn=nn.MSELoss(), train_data=(X, Y))


def test_explorer_shows_the_first_run_on_creation():
    explorer = HyperparameterExplorer(linear_run, lr=0.03, batch_size=32, num_epochs=3)
    assert explorer.image.value[:4] == b"\x89PNG"
    assert "lr=0.03, batch=32" in explorer.message and "final train_loss" in explorer.message
    assert len(explorer.runs) == 1 and explorer.runs[0].history is not None


def test_diverging_learning_rate_shows_the_divergence_message():
    explorer = HyperparameterExplorer(linear_run, num_epochs=2)
    picture_before = explorer.image.value
    explorer.controls["lr"].value = 10.0
    assert "diverged" in explorer.message and "lr=10" in explorer.message
    assert "too large" in explorer.message
    assert "&#9888;" in explorer.status.value
    assert explorer.runs[-1].history is None and explorer.runs[-1].problem
    assert explorer.image.value != picture_before  # the plot notes the diverged run


def test_batch_size_of_one_and_learning_rate_changes_overlay_runs():
    explorer = HyperparameterExplorer(linear_run, num_epochs=1, max_runs=3)
    explorer.controls["batch_size"].value = 1
    explorer.controls["lr"].value = 0.01
    explorer.controls["num_epochs"].value = 2
    assert [r.batch_size for r in explorer.runs] == [1, 1, 1]
    assert [r.lr for r in explorer.runs][-2:] == [0.01, 0.01]
    assert explorer.runs[-1].num_epochs == 2 and len(explorer.runs) == 3
    explorer.clear()
    assert len(explorer.runs) == 1


def test_explorer_messages_stay_readable_for_any_failure():
    def failing_run(lr, batch_size, num_epochs):
        raise ValueError("the data set is empty")

    explorer = HyperparameterExplorer(failing_run)
    assert "the data set is empty" in explorer.message


def test_plot_explorer_turns_exceptions_into_a_warning():
    def draw(k):
        if k > 2:
            raise RuntimeError("k is too large for this demo; use k <= 2")
        fig, ax = plt.subplots()
        ax.plot(range(k + 1))
        return fig, f"k = {k}"

    explorer = PlotExplorer({"k": w.IntSlider(value=1, min=0, max=5)}, draw, strict=False)  # lenient
    assert explorer.message == "k = 1"
    explorer.controls["k"].value = 5
    assert "k is too large" in explorer.message and explorer.seconds >= 0
    explorer.controls["k"].value = 2
    assert explorer.message == "k = 2"


def test_warning_html_escapes_text():
    assert "&lt;b&gt;" in warning_html("<b>")


def test_explorer_can_show_a_validation_metric():
    def run(lr, batch_size, num_epochs):
        history = History()
        for epoch in range(num_epochs):
            history.log(float(epoch), train_loss=1.0, val_acc=0.5 + 0.1 * epoch)
        return history

    explorer = HyperparameterExplorer(run, key="val_acc", logy=False, num_epochs=3)
    assert "final val_acc 0.7" in explorer.message
    assert torch.isfinite(torch.tensor(explorer.seconds))


# --------------------------------------------------------------------------------------------
# PlotExplorer's extension points: strict mode, hold_updates, on_change, build_layout
# --------------------------------------------------------------------------------------------


def line_draw(a, b=0):
    """A small, fast draw function: a line with slope a and offset b."""
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [b, a + b])
    return fig, f"a = {a}, b = {b}"


def count_draws(explorer):
    """Wrap ``explorer.draw`` so that every redraw appends its values to the returned list."""
    calls = []
    draw = explorer.draw
    explorer.draw = lambda **values: calls.append(values) or draw(**values)
    return calls


def test_tests_run_explorers_in_strict_mode():
    assert widgets.STRICT is True  # the autouse fixture of conftest.py
    assert PlotExplorer({"a": w.IntSlider(value=1)}, line_draw).strict
    assert not PlotExplorer({"a": w.IntSlider(value=1)}, line_draw, strict=False).strict


def test_strict_mode_catches_a_misspelled_control_name_at_construction():
    misspelled = r"'slope' is not a parameter of draw line_draw\(a, b=0\).*takes a, b"
    with pytest.raises(TypeError, match=misspelled):
        PlotExplorer({"slope": w.IntSlider(value=1)}, line_draw)
    with pytest.raises(TypeError, match=r"needs 'a', but there is no control of that name"):
        PlotExplorer({"b": w.IntSlider(value=1)}, line_draw)
    # lenient: the same mistake becomes the warning line, as a learner's notebook would show it
    lenient = PlotExplorer({"slope": w.IntSlider(value=1)}, line_draw, strict=False)
    assert "unexpected keyword argument 'slope'" in lenient.message and "&#9888;" in lenient.status.value
    # **kwargs accepts every name; lambdas are checked like functions
    PlotExplorer({"slope": w.IntSlider(value=1)}, lambda **values: line_draw(values["slope"]))
    with pytest.raises(TypeError, match="'slope' is not a parameter of draw"):
        PlotExplorer({"slope": w.IntSlider(value=1)}, lambda a: line_draw(a))


def test_strict_mode_raises_a_bug_in_draw_and_lenient_mode_shows_it():
    def draw(k):
        if k > 2:
            return len(k), "unreachable"  # a bug: TypeError
        return line_draw(k)

    for strict in (True, False):
        explorer = PlotExplorer({"k": w.IntSlider(value=1, min=0, max=5)}, draw, strict=strict)
        assert explorer.message == "a = 1, b = 0"
        if strict:
            with pytest.raises(TypeError, match="has no len"):
                explorer.controls["k"].value = 5  # raised through the learner's action
        else:
            explorer.controls["k"].value = 5
        assert "has no len" in explorer.message and "&#9888;" in explorer.status.value
        explorer.controls["k"].value = 2
        assert explorer.message == "a = 2, b = 0"
    with pytest.raises(KeyError):  # a bug at construction is raised at once too
        PlotExplorer({"k": w.IntSlider(value=1)}, lambda k: ({}["missing"], "")[1])


def test_strict_mode_still_shows_errors_a_learner_can_cause():
    def draw(lr):
        if lr > 1:
            raise DivergenceError(f"the loss diverged at lr={lr:g}: it is too large")
        if lr < 0.01:
            raise ValueError("the learning rate is too small to see any progress")
        return line_draw(lr)

    explorer = PlotExplorer({"lr": w.FloatSlider(value=0.5, min=0.0, max=5.0)}, draw)
    assert explorer.strict
    explorer.controls["lr"].value = 5.0
    assert "diverged at lr=5" in explorer.message and "&#9888;" in explorer.status.value
    explorer.controls["lr"].value = 0.0
    assert "too small" in explorer.message
    explorer.controls["lr"].value = 0.5
    assert explorer.message == "a = 0.5, b = 0"


def test_hold_updates_batches_redraws():
    explorer = PlotExplorer({"a": w.IntSlider(value=1), "b": w.IntSlider(value=0)}, line_draw)
    calls = count_draws(explorer)
    with explorer.hold_updates():
        explorer.controls["a"].value = 3
        explorer.controls["b"].value = 4
        with explorer.hold_updates():  # nested: still held
            explorer.controls["a"].value = 5
        assert calls == [] and explorer.message == "a = 1, b = 0"
    assert calls == [{"a": 5, "b": 4}] and explorer.message == "a = 5, b = 4"
    with explorer.hold_updates():  # nothing changed: no redraw
        pass
    assert len(calls) == 1
    with explorer.hold_updates():  # refresh() inside is deferred to the end
        explorer.refresh()
        explorer.refresh()
        assert len(calls) == 1
    assert len(calls) == 2
    with pytest.raises(RuntimeError, match="oops"), explorer.hold_updates():
        explorer.controls["a"].value = 7
        raise RuntimeError("oops")
    assert len(calls) == 2  # an exception inside: no redraw; the next change draws the new state
    explorer.controls["b"].value = 1
    assert calls[-1] == {"a": 7, "b": 1} and len(calls) == 3


class Thermometer(PlotExplorer):
    """Two controls kept in step by on_change: Celsius and Fahrenheit."""

    def __init__(self, **kwargs):
        controls = {"celsius": w.FloatText(value=20.0), "fahrenheit": w.FloatText(value=68.0)}
        self.hooks = []
        super().__init__(controls, self.draw_temperature, **kwargs)

    def on_change(self, name, change):
        self.hooks.append(name)
        if name == "celsius":
            self.controls["fahrenheit"].value = change.new * 9 / 5 + 32
        else:
            self.controls["celsius"].value = (change.new - 32) * 5 / 9

    def draw_temperature(self, celsius, fahrenheit):
        return None, f"{celsius:g} °C = {fahrenheit:g} °F"


def test_on_change_syncs_controls_with_one_redraw_and_no_recursion():
    thermometer = Thermometer()
    calls = count_draws(thermometer)
    thermometer.controls["celsius"].value = 100.0
    assert thermometer.message == "100 °C = 212 °F" and len(calls) == 1
    assert thermometer.hooks == ["celsius"]  # the change it made did not call it again
    thermometer.controls["fahrenheit"].value = 32.0
    assert thermometer.message == "0 °C = 32 °F" and len(calls) == 2
    with thermometer.hold_updates():  # several changes by a user: the hook runs for each, one draw
        thermometer.controls["celsius"].value = 10.0
        thermometer.controls["celsius"].value = -40.0
    assert thermometer.message == "-40 °C = -40 °F" and len(calls) == 3
    assert thermometer.hooks == ["celsius", "fahrenheit", "celsius", "celsius"]


def test_on_change_callback_for_a_plain_plot_explorer():
    controls = {"a": w.IntSlider(value=1, max=10), "b": w.IntSlider(value=1, max=10)}

    def keep_b_at_most_a(name, change):
        if name == "a" and controls["b"].value > change.new:
            controls["b"].value = change.new

    explorer = PlotExplorer(controls, line_draw, on_change=keep_b_at_most_a)
    calls = count_draws(explorer)
    explorer.controls["a"].value = 0
    assert explorer.message == "a = 0, b = 0" and calls == [{"a": 0, "b": 0}]


def test_errors_in_on_change_follow_the_strict_rule():
    class Broken(PlotExplorer):
        def on_change(self, name, change):
            if change.new == 3:
                raise ValueError("3 is not allowed here")
            if change.new == 4:
                self.controls["missing"].value = 1  # a bug: KeyError

    for strict in (True, False):
        explorer = Broken({"a": w.IntSlider(value=1)}, line_draw, strict=strict)
        explorer.controls["a"].value = 3
        assert "3 is not allowed here" in explorer.message  # a learner's error: a warning line
        if strict:
            with pytest.raises(KeyError, match="missing"):
                explorer.controls["a"].value = 4
        else:
            explorer.controls["a"].value = 4
            assert "missing" in explorer.message and "&#9888;" in explorer.status.value
        explorer.controls["a"].value = 5
        assert explorer.message == "a = 5, b = 0"


def test_draw_that_changes_a_control_is_a_bug_in_strict_mode():
    def make(strict):
        controls = {"a": w.IntSlider(value=1, max=10)}

        def draw(a):
            if a == 5:
                controls["a"].value = 6  # sync controls in on_change, not in draw
            return line_draw(a)

        return PlotExplorer(controls, draw, strict=strict)

    with pytest.raises(RuntimeError, match="the control 'a' changed while draw was running"):
        make(strict=True).controls["a"].value = 5
    lenient = make(strict=False)
    calls = count_draws(lenient)
    lenient.controls["a"].value = 5
    assert len(calls) == 1 and lenient.message == "a = 5, b = 0"  # no recursion either


def test_build_layout_arranges_controls_and_extra_widgets():
    class Grid(PlotExplorer):
        def __init__(self):
            self.layouts = 0
            self.double = w.Button(description="double a")  # not a value control
            self.double.on_click(lambda _: self.double_a())
            controls = {"a": w.IntSlider(value=1, max=100), "b": w.IntSlider(value=0)}
            super().__init__(controls, line_draw, extra=[self.double])

        def double_a(self):
            self.controls["a"].value *= 2

        def build_layout(self):
            self.layouts += 1
            grid = w.GridBox([self.controls["a"], self.controls["b"], self.double],
                             layout=w.Layout(grid_template_columns="repeat(2, 200px)"))
            return w.VBox([self.status, w.HBox([grid, self.image])])

    explorer = Grid()
    assert explorer.layouts == 1  # built once by the constructor, never rebuilt
    assert explorer.widget.children[0] is explorer.status
    grid, image = explorer.widget.children[1].children
    assert image is explorer.image and explorer.double in grid.children
    explorer.double.click()
    assert explorer.message == "a = 2, b = 0" and explorer.image.value[:4] == b"\x89PNG"
    default = PlotExplorer({"a": w.IntSlider(value=1)}, line_draw, extra=[w.Button()])
    row, status, image = default.widget.children
    assert list(row.children) == [default.controls["a"], *default.extra] and status is default.status


# --------------------------------------------------------------------------------------------
# HyperparameterExplorer with any controls
# --------------------------------------------------------------------------------------------


def test_standard_control_factories_match_the_default_explorer():
    explorer = HyperparameterExplorer(linear_run, num_epochs=1)
    standard = {"lr": lr_slider(), "batch_size": batch_size_slider(), "num_epochs": epochs_slider()}
    for name, control in standard.items():
        built = explorer.controls[name]
        assert type(built) is type(control) and built.description == control.description
        differ = ("layout", "style", "value", "index")  # distinct sub-widgets; the value is set below
        state = {key: value for key, value in control.get_state().items() if key not in differ}
        assert {key: built.get_state()[key] for key in state} == state
    assert explorer.controls["num_epochs"].value == 1 and explorer.controls["num_epochs"].max == 20
    assert lr_slider(0.1, (1e-2, 1.0)).max == 0.0 and batch_size_slider(4, (2, 4)).options == (2, 4)
    assert explorer.runs[0].values == {"lr": 0.03, "batch_size": 32, "num_epochs": 1}


def fake_gan_run(lr_G, lr_D, d_steps):
    """A stand-in for a GAN's training: generator loss per epoch, diverging when lr_D is too large."""
    if lr_D > 0.1:
        raise DivergenceError(f"the discriminator loss became nan: lr_D={lr_D:g} is too large")
    history = History()
    for epoch in range(3):
        history.log(float(epoch), train_g_loss=1.0 / (1 + epoch * lr_G * 1e3 * d_steps), train_d_loss=0.7)
    return history


def test_hyperparameter_explorer_with_two_learning_rates_and_a_step_ratio():
    seen = []

    def run(**values):
        seen.append(values)
        return fake_gan_run(**values)

    explorer = HyperparameterExplorer(
        run, controls={"lr_G": lr_slider(2e-4, (1e-5, 1.0), "lr G"),
                       "lr_D": lr_slider(2e-4, (1e-5, 1.0), "lr D"),
                       "d_steps": w.IntSlider(value=2, min=1, max=5, description="D steps")},
        key="train_g_loss")
    assert seen == [{"lr_G": 2e-4, "lr_D": 2e-4, "d_steps": 2}]
    assert explorer.runs[0].label == "lr_G=0.0002, lr_D=0.0002, d_steps=2"
    assert explorer.message.startswith("lr_G=0.0002, lr_D=0.0002, d_steps=2: final train_g_loss")
    assert explorer.runs[0].values == seen[0] and explorer.runs[0].lr is None
    explorer.controls["d_steps"].value = 1
    assert explorer.runs[-1].label == "lr_G=0.0002, lr_D=0.0002, d_steps=1" and len(explorer.runs) == 2
    explorer.controls["lr_D"].value = 1.0  # too large: a diverged run, listed in the legend
    assert "lr_D=1 is too large" in explorer.message and "&#9888;" in explorer.status.value
    assert explorer.runs[-1].history is None and len(explorer.runs) == 3
    fig = explorer.figure()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "lr_G=0.0002, lr_D=0.0002, d_steps=2", "lr_G=0.0002, lr_D=0.0002, d_steps=1",
        "lr_G=0.0002, lr_D=1, d_steps=1: diverged"]
    plt.close(fig)
    explorer.clear()
    assert len(explorer.runs) == 1 and explorer.runs[0].problem


def test_hyperparameter_explorer_controls_are_checked_against_run():
    controls = {"lr_G": lr_slider(2e-4), "lr_d": lr_slider(2e-4), "d_steps": w.IntSlider(value=1)}
    with pytest.raises(TypeError, match=r"'lr_d' is not a parameter of run fake_gan_run.*takes lr_G, lr_D"):
        HyperparameterExplorer(fake_gan_run, controls=controls, key="train_g_loss")
    lenient = HyperparameterExplorer(fake_gan_run, controls=controls, key="train_g_loss", strict=False)
    assert "unexpected keyword argument 'lr_d'" in lenient.message
    with pytest.raises(TypeError, match="either controls= or the standard settings"):
        HyperparameterExplorer(fake_gan_run, lr=0.1, controls=controls)
    with pytest.raises(TypeError, match=r"must take \(lr, batch_size, num_epochs\)"):
        HyperparameterExplorer(lambda lr, batch_size: None)
    with pytest.raises(KeyError, match="No 'val_acc' in this history"):  # a wrong key is a bug
        HyperparameterExplorer(fake_gan_run, controls={"lr_G": lr_slider(2e-4), "lr_D": lr_slider(2e-4),
                                                       "d_steps": w.IntSlider(value=1)}, key="val_acc")


def test_hyperparameter_explorer_with_standard_controls_composed_by_hand():
    def run(lr, batch_size, num_epochs, mask_ratio):
        history = History()
        for epoch in range(num_epochs):
            history.log(float(epoch), train_loss=mask_ratio / (1 + epoch * lr * batch_size))
        return history

    explorer = HyperparameterExplorer(run, controls={
        "lr": lr_slider(0.1), "batch_size": batch_size_slider(8), "num_epochs": epochs_slider(2),
        "mask_ratio": w.FloatSlider(value=0.15, min=0.05, max=0.95, step=0.05)})
    assert explorer.message.startswith("lr=0.1, batch=8, mask_ratio=0.15, 2 epochs: final train_loss")
    explorer.controls["mask_ratio"].value = 0.5
    assert explorer.runs[-1].values["mask_ratio"] == 0.5 and explorer.runs[-1].num_epochs == 2
