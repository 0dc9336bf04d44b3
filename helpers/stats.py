"""Small statistics for comparisons over a few seeds or draws.

Chapter 10b derives the t-interval from scratch (``t_quantile``, ``t_interval``); this module is the
same code for the chapters that only use it (4b's transfer-learning comparison), so a close
comparison gets an interval, not just two means. Plain torch and ``math``: no SciPy at run time
(the tests check against ``scipy.stats.t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["t_quantile", "t_interval", "paired_differences"]


def t_quantile(p: float, df: int, num_points: int = 20_001) -> float:
    """The ``p``-quantile (0.5 < p < 1) of Student's t distribution with ``df`` degrees of freedom.

    Integrates the density from 0 with Simpson's rule and bisects; accurate to about 1e-4, plenty for
    the 95% intervals of a few seeds."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must be between 0.5 and 1 (an upper quantile), got {p}.")
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}.")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:  # 1/2 + the integral of the density from 0 to x
        grid = torch.linspace(0, x, num_points, dtype=torch.float64)
        density = torch.exp(log_norm - (df + 1) / 2 * torch.log1p(grid**2 / df))
        weights = torch.ones(num_points, dtype=torch.float64)
        weights[1:-1:2], weights[2:-1:2] = 4, 2
        return 0.5 + (weights * density).sum().item() * x / (num_points - 1) / 3

    low, high = 0.0, 1.0
    while cdf(high) < p:  # bracket the quantile, then halve the bracket
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-interval of the mean of a few values (one per seed or draw)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    n = len(x)
    if n < 2:
        raise ValueError(f"A t-interval needs at least 2 values, got {n}: run more seeds or draws.")
    # x.std() divides by n - 1, as the t-interval needs
    half = t_quantile(0.5 + confidence / 2, n - 1) * x.std().item() / math.sqrt(n)
    return x.mean().item(), half


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``a[i] - b[i]`` for results paired by seed or draw; pairing removes what the two share (the
    draw's difficulty), so the interval of the differences is narrower than comparing two means."""
    if len(a) != len(b):
        raise ValueError(f"Paired results need the same number of values, got {len(a)} and {len(b)}.")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]
