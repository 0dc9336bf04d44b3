"""The set-up call: fast-mode switch, seeding, device choice and the one-line summary."""

import os
import random
import time

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


@pytest.fixture
def restore_threads(monkeypatch):
    """setup() sets torch's thread count; put the test session's count (and the auto flag) back."""
    before = torch.get_num_threads()
    monkeypatch.setattr(config, "_auto_threads", False)
    yield
    torch.set_num_threads(before)


def test_setup_prints_one_line_and_returns_the_choices(monkeypatch, capsys, restore_threads):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_THREADS", "1")
    info = helpers.setup(seed=7)
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    assert line.startswith(f"device {info.device.type} | threads 1 | mode fast | seed 7 | torch ")
    assert info.fast and info.mode == "fast" and info.seed == 7 and info.threads == 1
    assert torch.initial_seed() == 7 and torch.get_num_threads() == 1


def test_choose_threads_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    monkeypatch.setattr(config, "DEFAULT_THREADS", 4)
    for busy, expected in ((0.0, 4), (0.4, 4), (0.6, 3), (1.0, 3), (2.2, 2), (3.9, 1), (7.0, 1)):
        monkeypatch.setattr(config, "busy_cores", lambda busy=busy: busy)
        threads, reason = config.choose_threads()
        assert threads == expected, busy
        assert ("busy" in reason) == (expected < 4)
    monkeypatch.setattr(config, "DEFAULT_THREADS", 1)
    assert config.choose_threads() == (1, "one core")


def test_course_threads_and_the_argument_override_the_choice(monkeypatch, capsys, restore_threads):
    monkeypatch.setattr(config, "busy_cores", lambda: 5.0)
    monkeypatch.setenv("COURSE_THREADS", "3")
    assert config.choose_threads() == (3, "from COURSE_THREADS")
    assert config.choose_threads(2) == (2, "as asked")
    helpers.setup(threads=2)
    assert torch.get_num_threads() == 2 and "| threads 2 |" in capsys.readouterr().out
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("COURSE_THREADS", bad)
        with pytest.raises(ValueError, match="COURSE_THREADS=.*set it to a number of threads"):
            config.choose_threads()
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        config.choose_threads(0)


def test_busy_cores_ignores_a_burst_and_keeps_a_steady_load(monkeypatch):
    """Three windows of 1 s each (a fake clock): the least of them counts."""

    class FakeTime:
        now = 0.0

        def perf_counter(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    def fake_cpu(busy_per_window):
        machine, calls = [0.0], [0]

        def cpu_seconds():  # called before and after each window
            window, after = divmod(calls[0], 2)
            calls[0] += 1
            if after:
                machine[0] += busy_per_window[window]
            return machine[0], 0.0

        return cpu_seconds

    monkeypatch.setattr(config, "time", FakeTime())
    monkeypatch.setattr(config, "_cpu_seconds", fake_cpu([1.9, 0.1, 0.2]))  # a burst, then quiet
    assert config.busy_cores(interval=1.0) == pytest.approx(0.1)
    monkeypatch.setattr(config, "_cpu_seconds", fake_cpu([1.0, 1.1, 0.95]))  # one core kept busy
    assert config.busy_cores(interval=1.0) == pytest.approx(0.95)


def _spinner():
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\n"
                             "while time.time() < end: pass"])


def _needs_a_free_core() -> None:
    """Skip when other programs already keep every core but one busy: a spinning child could then
    only take time from them, and the measurement would say nothing."""
    cores = os.cpu_count() or 1
    load = config.busy_cores(0.3)
    if cores < 2 or load > cores - 1.3:
        pytest.skip(f"other programs keep {load:.1f} of {cores} cores busy; this needs a free core")


def test_busy_cores_sees_a_process_that_keeps_a_core_busy():
    """A child process spinning on one core for the whole measurement counts as about one core
    (three tries: a burst of other work on a shared machine can spoil one)."""
    if config._cpu_seconds() is None:
        pytest.skip("this platform reports no CPU times (no /proc/stat, no psutil)")
    results = []
    for _ in range(3):
        _needs_a_free_core()
        idle_guess = config.busy_cores(0.2)
        spinner = _spinner()
        try:
            time.sleep(0.3)  # let it start
            busy = config.busy_cores(0.5)
        finally:
            spinner.kill()
            spinner.wait()
        results.append((idle_guess, busy))
        if idle_guess + 0.5 < busy < idle_guess + 1.6:
            return
    pytest.fail(f"(load before, load with a spinning child) in three tries: {results}")


def test_adapt_threads_follows_the_load_only_when_setup_chose(monkeypatch, restore_threads):
    monkeypatch.setattr(config, "DEFAULT_THREADS", 2)
    torch.set_num_threads(2)
    assert config.adapt_threads(1.0) is None  # setup() did not choose: leave the count alone
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(config, "_auto_threads", True)
    assert config.adapt_threads(0.2) is None  # nothing to change
    note = config.adapt_threads(1.1)
    assert torch.get_num_threads() == 1 and note.startswith("threads 2 -> 1: other programs")
    assert config.adapt_threads(0.9) is None  # still busy
    note = config.adapt_threads(0.1)
    assert torch.get_num_threads() == 2 and "threads 1 -> 2" in note and "done" in note


def test_setup_lets_adapt_threads_work_only_without_an_explicit_choice(monkeypatch, restore_threads):
    monkeypatch.setattr(config, "busy_cores", lambda: 0.0)
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    helpers.setup(verbose=False)
    assert config._auto_threads
    helpers.setup(threads=1, verbose=False)
    assert not config._auto_threads
    monkeypatch.setenv("COURSE_THREADS", "1")
    helpers.setup(verbose=False)
    assert not config._auto_threads


def test_cpu_clock_counts_other_processes_only():
    """Our own work does not count, a spinning child counts as about one core (three tries)."""
    if config._cpu_seconds() is None:
        pytest.skip("this platform reports no CPU times (no /proc/stat, no psutil)")
    results = []
    for _ in range(3):
        _needs_a_free_core()
        clock = config.CpuClock()
        sum(i * i for i in range(3_000_000))  # our own work does not count
        own = clock.others_busy()
        spinner = _spinner()
        try:
            time.sleep(0.3)
            clock.restart()
            time.sleep(0.6)
            busy = clock.others_busy()
        finally:
            spinner.kill()
            spinner.wait()
        results.append((own, busy))
        if own < 0.5 and 0.5 < busy < 1.6:
            return
    pytest.fail(f"(others while we worked, others with a spinning child) in three tries: {results}")
