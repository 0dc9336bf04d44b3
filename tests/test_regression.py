"""Regression metrics and the sum-of-pieces model of chapter 1, and its slider."""

import ipywidgets as w
import numpy as np
import pytest
import torch

from helpers.regression import (
    PiecewiseModel,
    curve_data,
    draw_piecewise_fit,
    fit_piecewise,
    regression_metrics,
)
from helpers.widgets import PlotExplorer


def test_regression_metrics_match_independent_numpy_formulas():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    y_hat = y + rng.normal(scale=0.3, size=50)
    got = regression_metrics(torch.tensor(y_hat), torch.tensor(y))
    assert got["mse"] == pytest.approx(np.mean((y_hat - y) ** 2))
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y_hat - y) ** 2)))
    assert got["mae"] == pytest.approx(np.mean(np.abs(y_hat - y)))
    # For a least-squares line with an intercept, R^2 equals the squared correlation.
    slope, intercept = np.polyfit(y_hat, y, 1)
    fitted = slope * y_hat + intercept
    r2 = regression_metrics(torch.tensor(fitted), torch.tensor(y))["r2"]
    assert r2 == pytest.approx(np.corrcoef(y_hat, y)[0, 1] ** 2)


def test_regression_metrics_perfect_and_mean_predictions():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert regression_metrics(y, y) == {"mse": 0.0, "rmse": 0.0, "mae": 0.0, "r2": 1.0}
    assert regression_metrics(torch.full((3,), 2.0), y)["r2"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="3 values but y has 2"):
        regression_metrics(y, y[:2])


def test_piecewise_model_is_a_sum_of_its_pieces():
    model = PiecewiseModel(5, "relu")
    x = torch.linspace(-3, 3, 11).reshape(-1, 1)
    with torch.no_grad():
        assert model(x).shape == (11, 1)
        assert torch.allclose(model.pieces(x).sum(1, keepdim=True) + model.out.bias, model(x))
    with pytest.raises(ValueError, match="kind must be one of"):
        PiecewiseModel(3, "tanhh")
    with pytest.raises(ValueError, match="at least 1"):
        PiecewiseModel(0)


def test_more_pieces_fit_the_curve_better():
    x, y = curve_data()
    losses = {n: fit_piecewise(x, y, n)[1][-1] for n in (1, 3, 12)}
    assert losses[1] > losses[3] > losses[12]
    assert losses[12] < 0.03  # close to the noise variance 0.01


def test_piece_slider_redraws_and_reports_the_fit():
    explorer = PlotExplorer(
        {"num_pieces": w.IntSlider(value=2, min=1, max=30),
         "kind": w.Dropdown(options=["sigmoid", "relu"], value="sigmoid")},
        draw_piecewise_fit,
    )
    assert explorer.message.startswith("2 sigmoid pieces")
    explorer.controls["num_pieces"].value = 30  # the maximum
    explorer.controls["kind"].value = "relu"
    assert explorer.message.startswith("30 relu pieces: training MSE")
    assert explorer.seconds < 3
