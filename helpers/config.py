"""Course-wide set-up: the fast-mode switch, seeding and the device, in one place.

Every notebook starts with ``helpers.setup()``. It seeds Python, NumPy and torch, picks the
fastest available device (cuda, then mps, then cpu), reads the fast-mode switch and prints one
line such as ``device cpu | mode full | seed 0 | torch 2.14.1``.

Fast mode exists for CI: it shrinks experiments (fewer epochs, a subset of the data, smaller
models) while every line of code still runs. It is switched on by the environment variable
``COURSE_FAST=1`` and read *only* by :func:`is_fast` below.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

FAST_ENV_VAR = "COURSE_FAST"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

T = TypeVar("T")


def is_fast() -> bool:
    """Return True when the course runs in fast (CI) mode, i.e. ``COURSE_FAST=1``."""
    raw = os.environ.get(FAST_ENV_VAR, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{FAST_ENV_VAR}={raw!r} is not understood; set it to 1 for fast mode or 0 (or unset it) "
        "for full mode."
    )


def by_mode(full: T, fast: T) -> T:
    """Pick the full-mode or the fast-mode value of a setting, e.g. ``by_mode(full=10, fast=2)``."""
    return fast if is_fast() else full


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy and torch (all devices) so that runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """Return the best available device: cuda, then Apple's mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` decided: the seed, the device and whether fast mode is on."""

    seed: int
    device: torch.device
    fast: bool

    @property
    def mode(self) -> str:
        return "fast" if self.fast else "full"

    def summary(self) -> str:
        return f"device {self.device.type} | mode {self.mode} | seed {self.seed} | torch {torch.__version__}"


def setup(seed: int = 0, verbose: bool = True) -> Setup:
    """Seed everything, pick the device, read fast mode, apply the plot style; print one line.

    Call it once in a notebook's first code cell. Returns a :class:`Setup`.
    """
    from helpers import plotting  # local import: plotting pulls in matplotlib

    seed_everything(seed)
    plotting.use_course_style()
    info = Setup(seed=seed, device=pick_device(), fast=is_fast())
    if verbose:
        print(info.summary())
    return info
