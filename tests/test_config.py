"""The set-up call: fast-mode switch, seeding, device choice and the one-line summary."""

import random

import numpy as np
import pytest
import torch

import helpers
from helpers import config


@pytest.mark.parametrize("raw, expected", [("1", True), ("true", True), ("YES", True),
                                           ("0", False), ("", False), ("off", False)])
def test_is_fast_reads_the_environment_variable(monkeypatch, raw, expected):
    monkeypatch.setenv("COURSE_FAST", raw)
    assert config.is_fast() is expected


def test_is_fast_defaults_to_full_mode(monkeypatch):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    assert config.is_fast() is False


def test_is_fast_rejects_a_value_it_does_not_understand(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "maybe")
    with pytest.raises(ValueError, match="COURSE_FAST='maybe'.*set it to 1"):
        config.is_fast()


def test_by_mode_picks_the_value_for_the_current_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert helpers.by_mode(full=10, fast=2) == 2
    monkeypatch.setenv("COURSE_FAST", "0")
    assert helpers.by_mode(full=10, fast=2) == 10


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    config.seed_everything(3)
    first = draw()
    config.seed_everything(3)
    assert draw() == first
    config.seed_everything(4)
    assert draw() != first


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.pick_device().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.pick_device().type == "cuda"


def test_setup_prints_one_line_and_returns_the_choices(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    info = helpers.setup(seed=7)
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert line.startswith(f"device {info.device.type} | mode fast | seed 7 | torch ")
    assert info.fast and info.mode == "fast" and info.seed == 7
    assert torch.initial_seed() == 7
