"""Measure what ``helpers.training.fit`` costs over a bare PyTorch training loop.

Same model, data, batches and epochs; ``fit`` runs without plot or progress bar (as in a script).
Runs alternate (fit, bare, fit, bare, ...) so that drifts in machine speed hit both alike.

    .venv/bin/python benchmarks/loop_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from helpers.data import make_loader, synthetic_regression
from helpers.training import accuracy, fit


def bare_loop(model, loss_fn, optimizer, loader, num_epochs):
    for _ in range(num_epochs):
        for X, y in loader:
            loss = loss_fn(model(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def mlp_problem():
    """A Fashion-MNIST-sized MLP: 10,000 examples of 784 features, batch 256, 2 epochs."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(10_000, 784, generator=gen), torch.randint(0, 10, (10_000,), generator=gen)

    def make_model():
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    return make_model, nn.CrossEntropyLoss(), (X, y), 256, 0.1, 2, {"acc": accuracy}


def linear_problem():
    """Chapter 1's linear regression: 1,000 examples, batch 10, 3 epochs (tiny batches)."""
    X, y = synthetic_regression([2.0, -3.4], 4.2, 1000)
    return (lambda: nn.Linear(2, 1)), nn.MSELoss(), (X, y), 10, 0.03, 3, None


def time_once(problem, use_fit: bool) -> float:
    make_model, loss_fn, tensors, batch_size, lr, num_epochs, metrics = problem
    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loader = make_loader(*tensors, batch_size=batch_size, seed=0)
    start = time.perf_counter()
    if use_fit:
        fit(model, loss_fn, optimizer, loader, num_epochs, metrics=metrics, verbose=False)
    else:
        bare_loop(model, loss_fn, optimizer, loader, num_epochs)
    return time.perf_counter() - start


def measure(problem, repeats: int) -> dict[str, float]:
    time_once(problem, True), time_once(problem, False)  # warm-up
    ours, bare = [], []
    for _ in range(repeats):
        ours.append(time_once(problem, True))
        bare.append(time_once(problem, False))
    return {"fit_s": statistics.median(ours), "bare_s": statistics.median(bare),
            "median_ratio": statistics.median(ours) / statistics.median(bare),
            "best_ratio": min(ours) / min(bare)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    for name, problem in (("MLP 784-256-10, batch 256, with accuracy", mlp_problem()),
                          ("linear regression, batch 10", linear_problem())):
        r = measure(problem, args.repeats)
        print(f"{name}: fit {r['fit_s']:.3f} s, bare {r['bare_s']:.3f} s, "
              f"ratio {r['median_ratio']:.3f} (median), {r['best_ratio']:.3f} (best)")


if __name__ == "__main__":
    main()
