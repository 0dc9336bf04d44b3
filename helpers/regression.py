"""Regression pieces that chapter 1 teaches and later chapters reuse.

``regression_metrics`` computes MSE, RMSE, MAE and R^2. ``PiecewiseModel`` is Hung-yi Lee's
flexible model ``y = b + sum_i c_i * act(b_i + w_i x)``: a sum of sigmoids (or ReLUs) that can
follow any continuous curve given enough pieces; ``fit_piecewise`` fits it, and
``draw_piecewise_fit`` is the plain function behind chapter 1's "number of pieces" slider.
"""

from __future__ import annotations

import torch
from torch import nn

from helpers.plotting import scatter_with_line

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu}


def regression_metrics(y_hat: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """MSE, RMSE, MAE and the coefficient of determination R^2 of predictions ``y_hat``."""
    y_hat, y = y_hat.reshape(-1).double(), y.reshape(-1).double()
    if y_hat.shape != y.shape:
        raise ValueError(f"y_hat has {y_hat.numel()} values but y has {y.numel()}.")
    err = y_hat - y
    mse = (err**2).mean()
    sst = ((y - y.mean()) ** 2).sum()
    return {
        "mse": mse.item(),
        "rmse": mse.sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": (1 - (err**2).sum() / sst).item(),
    }


def curve_data(num_examples: int = 200, noise: float = 0.1, seed: int = 0):
    """A wiggly 1-D target ``y = sin(2x) + 0.5 x`` on [-3, 3] with Gaussian noise, sorted by x."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(num_examples, 1, generator=gen) * 6 - 3
    x, _ = x.sort(dim=0)
    y = torch.sin(2 * x) + 0.5 * x + noise * torch.randn(num_examples, 1, generator=gen)
    return x, y


class PiecewiseModel(nn.Module):
    """``y = b + c^T act(b_vec + w x)`` with ``num_pieces`` sigmoid or ReLU pieces, for 1-D x."""

    def __init__(self, num_pieces: int, kind: str = "sigmoid") -> None:
        super().__init__()
        if kind not in ACTIVATIONS:
            raise ValueError(f"kind must be one of {sorted(ACTIVATIONS)}, got {kind!r}.")
        if num_pieces < 1:
            raise ValueError(f"num_pieces must be at least 1, got {num_pieces}.")
        self.act = ACTIVATIONS[kind]
        self.hidden = nn.Linear(1, num_pieces)  # w_i and b_i of every piece
        self.out = nn.Linear(num_pieces, 1)  # c_i and the shared bias b
        # Spread the bends (x = -b_i / w_i) evenly over the data range [-3, 3], alternating the
        # direction of the pieces; sigmoids get a steepness that matches the spacing of the bends.
        bends = torch.linspace(-3, 3, num_pieces + 2)[1:-1]
        spacing = 6 / (num_pieces + 1)
        slope = 4 / spacing if kind == "sigmoid" else 1.0
        signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(num_pieces)])
        with torch.no_grad():
            self.hidden.weight.copy_((signs * slope).reshape(-1, 1))
            self.hidden.bias.copy_(-signs * slope * bends)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x)))

    def pieces(self, x: torch.Tensor) -> torch.Tensor:
        """Each piece's contribution ``c_i * act(b_i + w_i x)``, shape (len(x), num_pieces)."""
        return self.act(self.hidden(x)) * self.out.weight


def fit_piecewise(x, y, num_pieces: int, kind: str = "sigmoid", num_steps: int = 300,
                  lr: float = 0.03, seed: int = 0) -> tuple[PiecewiseModel, list[float]]:
    """Fit a :class:`PiecewiseModel` to ``(x, y)``; return the model and its loss per step.

    The output layer starts at its least-squares solution for the initial pieces, then all
    parameters are trained with full-batch Adam, so more pieces reliably give a closer fit.
    """
    torch.manual_seed(seed)
    model = PiecewiseModel(num_pieces, kind)
    with torch.no_grad():  # start from the best heights c and offset b for the initial pieces
        features = torch.cat([model.act(model.hidden(x)), torch.ones_like(x)], dim=1)
        solution = torch.linalg.lstsq(features, y).solution
        model.out.weight.copy_(solution[:-1].T)
        model.out.bias.copy_(solution[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(num_steps):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def draw_piecewise_fit(num_pieces: int, kind: str = "sigmoid", data=None, num_steps: int = 300):
    """Fit ``num_pieces`` pieces and draw data, fit and the individual pieces; return (fig, text)."""
    import matplotlib.pyplot as plt

    x, y = data if data is not None else curve_data()
    model, losses = fit_piecewise(x, y, num_pieces, kind, num_steps)
    fig, (ax_fit, ax_pieces) = plt.subplots(1, 2, figsize=(8, 3))
    grid = torch.linspace(-3, 3, 200).reshape(-1, 1)
    with torch.no_grad():
        scatter_with_line(x, y, grid, model(grid), label=f"{num_pieces} {kind} pieces",
                          title="data and fitted curve", ax=ax_fit)
        ax_pieces.plot(grid, model.pieces(grid), linewidth=1)
    ax_pieces.set_xlabel("x")
    ax_pieces.set_ylabel("c_i * act(b_i + w_i x)")
    ax_pieces.set_title("the pieces being summed")
    return fig, f"{num_pieces} {kind} pieces: training MSE after {num_steps} Adam steps = {losses[-1]:.4f}"
