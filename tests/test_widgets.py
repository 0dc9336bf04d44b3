"""Widgets, driven as a learner would: set a control's value, read what the widget shows."""

import ipywidgets as w
import pytest
import torch
from torch import nn

from helpers.data import synthetic_regression
from helpers.training import DivergenceError, History
from helpers.widgets import HyperparameterExplorer, PlotExplorer, train_with, warning_html

X, Y = synthetic_regression([2.0, -3.4], 4.2, 500, seed=0)


def linear_run(lr, batch_size, num_epochs):
    return train_with(lr, batch_size, num_epochs, make_model=lambda: nn.Linear(2, 1),
                      loss_fn=nn.MSELoss(), train_data=(X, Y))


def test_train_with_is_deterministic_and_learns():
    a, b = linear_run(0.03, 10, 3), linear_run(0.03, 10, 3)
    assert a["train_loss"] == b["train_loss"]
    assert a["train_loss"][-1] < 1e-3


def test_train_with_raises_on_divergence_and_on_a_bad_learning_rate():
    with pytest.raises(DivergenceError, match="lr=10"):
        linear_run(10.0, 32, 2)
    with pytest.raises(ValueError, match="positive number"):
        linear_run(-1.0, 32, 2)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_with(0.1, 8, 1, make_model=lambda: nn.Linear(2, 1), loss_fn=nn.MSELoss(),
                   train_data=(X, Y), optimizer="lbfgs")


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
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(range(k + 1))
        return fig, f"k = {k}"

    explorer = PlotExplorer({"k": w.IntSlider(value=1, min=0, max=5)}, draw)
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
