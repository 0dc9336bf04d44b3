"""Shared helpers for the course notebooks.

Modules, one concern each:

- ``helpers.config``: ``setup()`` (seed, device, fast mode), ``by_mode(full=..., fast=...)``
- ``helpers.data``: synthetic regression data and ``make_loader`` for in-memory tensors
- ``helpers.training``: ``fit`` (progress bar, live plot, divergence check), ``evaluate``, ``accuracy``
- ``helpers.plotting``: course style and plot helpers (curves, scatter + line, image grids, heatmaps)
- ``helpers.widgets``: ``PlotExplorer``, ``HyperparameterExplorer`` and ``train_with``
- ``helpers.regression``: regression metrics and the sum-of-sigmoids model of chapter 1
"""

from helpers.config import by_mode, is_fast, setup

__all__ = ["by_mode", "is_fast", "setup"]
__version__ = "0.1.0"
