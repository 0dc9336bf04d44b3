"""Course-wide set-up: the fast-mode switch, seeding, the device and the CPU threads, in one place.

Every notebook starts with ``helpers.setup()``. It seeds Python, NumPy and torch, picks the
fastest available device (cuda, then mps, then cpu), chooses how many CPU threads torch uses,
reads the fast-mode switch and prints one line such as
``device cpu | threads 2 | mode full | seed 0 | torch 2.14.1``.

Device: the one decision is made here and used everywhere. ``COURSE_DEVICE=cpu`` (or ``cuda``,
``mps``; or ``setup(device=...)``) overrides the choice, and a device the machine lacks is an error,
not a silent fallback. :func:`default_device` returns it, and every training function of
``helpers`` (``fit``, ``train_with``, ``train_classifier``, ``train_lm``, ``train_seq2seq``,
``train_ssd``, ``train_fcn``, ``pretrain_bert``, ``fine_tune``) moves the model and its batches
there unless given a ``device``; evaluation and decoding run where the model is.

Threads (:func:`choose_threads`): torch runs an operation on several cores with OpenMP, whose
threads meet at a barrier after every operation and spin while they wait. When another process
keeps a core busy (a browser, a second notebook), one of our threads is descheduled and every
operation waits for it, while its partner burns the other core spinning: on a 2-core machine with
one core kept busy, a training step takes 2 to 6 times as long with two threads as on an idle
machine (``benchmarks/threads.py``; section 5 of ``benchmarks/REPORT.md``). One thread suffers
nothing from the busy core; OpenMP's passive waiting (``OMP_WAIT_POLICY=PASSIVE``) would cure the
spinning too, but costs the idle machine more than it saves (a GRU step almost twice as long),
and it can only be set before torch is imported. So the course counts the cores that other
processes keep busy when ``setup()`` runs (the least of three 0.15 s measurements, so that a burst
does not count) and leaves them alone: ``threads = torch's default - busy cores`` (at least 1).
``COURSE_THREADS=n`` (or ``setup(threads=n)``) overrides the choice, e.g. for repeatable numbers.
A program started later (a second notebook) is seen too: after every epoch of a second or more,
:class:`helpers.training.TrainingRun` re-applies the rule to the load measured over that epoch
(:func:`adapt_threads`; free, from counters the kernel keeps anyway).

Fast mode exists for CI: it shrinks experiments (fewer epochs, a subset of the data, smaller
models) while every line of code still runs. It is switched on by the environment variable
``COURSE_FAST=1`` and read *only* by :func:`is_fast` below.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

FAST_ENV_VAR = "COURSE_FAST"
THREADS_ENV_VAR = "COURSE_THREADS"
DEVICE_ENV_VAR = "COURSE_DEVICE"
DEFAULT_THREADS = torch.get_num_threads()
"""torch's own choice when this module was imported (usually the number of physical cores)."""
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


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device() -> torch.device:
    """Return the best available device: cuda, then Apple's mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a :class:`torch.device` if this machine has it, else a ValueError that says what
    to change (e.g. ``COURSE_DEVICE=cuda`` on a machine without a GPU)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{device!r} is not a device torch knows; use cpu, cuda, cuda:1 or mps.") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"Device {device} was asked for, but torch sees no CUDA GPU here (torch "
                             f"{torch.__version__}); use cpu (and unset {DEVICE_ENV_VAR} if it is set).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"Device {device} was asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0.")
        if device.index is None:  # tensors report cuda:0; with the index, "already there" checks match
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"Device mps was asked for, but torch sees no Apple GPU here; use cpu (and unset "
                         f"{DEVICE_ENV_VAR} if it is set).")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"The course runs on cpu, cuda or mps, not {device.type}.")
    return device


def choose_device(device: torch.device | str | None = None) -> tuple[torch.device, str]:
    """The device the course trains on, and why: ``device`` (an argument) wins, then
    ``$COURSE_DEVICE`` (e.g. ``cpu`` to compare with the committed outputs on a GPU machine), then
    :func:`pick_device`. An unavailable device is a ValueError, never a silent fallback."""
    if device is not None:
        return check_device(device), "as asked"
    raw = os.environ.get(DEVICE_ENV_VAR, "").strip().lower()
    if raw:
        return check_device(raw), f"from {DEVICE_ENV_VAR}"
    return pick_device(), "best available"


_device = torch.device("cpu")  # set by setup(); what default_device() returns


def default_device() -> torch.device:
    """The device :func:`setup` chose (the CPU until it runs): where the course's training
    functions (``fit``, ``train_lm``, ``train_seq2seq``, ...) put the model and its batches when
    they are not given a ``device``."""
    return _device


def set_default_device(device: torch.device | str) -> torch.device:
    """Make ``device`` the course's default (checked as by :func:`check_device`); returns it.
    :func:`setup` calls it; tests use it to train on a chosen device."""
    global _device
    _device = check_device(device)
    return _device


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), or None if unknown."""
    own = sum(os.times()[:2])
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), own
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0), own


def busy_cores(interval: float = 0.15, samples: int = 3) -> float:
    """How many CPU cores *other* processes keep busy: the least of ``samples`` consecutive
    measurements of ``interval`` seconds each.

    Each measurement reads the machine's CPU time (``/proc/stat`` on Linux, ``psutil`` elsewhere if
    installed) before and after a short sleep and subtracts this process's own CPU time. The
    minimum keeps what lasts (a process that keeps a core busy shows up in every window) and drops
    a burst (a program starting, a browser redrawing). Returns 0.0 where no CPU times are available.
    """
    readings = []
    for _ in range(samples):
        before = _cpu_seconds()
        if before is None:
            return 0.0
        start = time.perf_counter()
        time.sleep(interval)
        after = _cpu_seconds()
        elapsed = time.perf_counter() - start
        readings.append(max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / elapsed))
    return min(readings)


class CpuClock:
    """CPU time of the machine and of this process since it was created (or last ``restart()``).

    :meth:`others_busy` is how many cores other processes kept busy over that window, measured for
    free from counters the kernel keeps anyway, so a training loop can look at it after every epoch.
    """

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start, self.wall = _cpu_seconds(), time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.wall

    def others_busy(self) -> float | None:
        """Cores kept busy by other processes since the start, or None where CPU times are unknown."""
        now = _cpu_seconds()
        if self.start is None or now is None or self.seconds <= 0:
            return None
        return max(0.0, ((now[0] - self.start[0]) - (now[1] - self.start[1])) / self.seconds)


_auto_threads = False  # True once setup() chose the thread count itself (no argument, no COURSE_THREADS)


def adapt_threads(others_busy: float) -> str | None:
    """Re-apply :func:`choose_threads`'s rule with a new measurement of the other processes' load.

    Called by :class:`helpers.training.TrainingRun` after every epoch that took at least a second,
    with the load measured over that epoch, so that a program started while a notebook trains (a
    second notebook) does not leave two threads waiting for each other, and the second thread comes
    back when it ends. Does nothing unless ``setup()`` chose the count itself. Returns a one-line
    note when it changes the count, else None.
    """
    if not _auto_threads:
        return None
    wanted = max(1, DEFAULT_THREADS - int(others_busy + 0.5))
    current = torch.get_num_threads()
    if wanted == current:
        return None
    torch.set_num_threads(wanted)
    why = "other programs keep a core busy" if wanted < current else "the other programs are done"
    return f"threads {current} -> {wanted}: {why} ({others_busy:.1f} cores over the last epoch)"


def _threads_from_env() -> int | None:
    raw = os.environ.get(THREADS_ENV_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{THREADS_ENV_VAR}={raw!r} is not understood; set it to a number of threads "
                         "such as 1 or 2, or unset it to let helpers.setup() choose.")
    return int(raw)


def choose_threads(threads: int | None = None) -> tuple[int, str]:
    """How many CPU threads torch should use, and why (for the set-up line).

    ``threads`` (an argument) wins, then ``$COURSE_THREADS``; otherwise torch's default
    (:data:`DEFAULT_THREADS`) minus the cores other processes keep busy right now
    (:func:`busy_cores`, rounded), at least 1. See the module docstring for the measurements
    behind this rule.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer (or None to let setup choose), "
                             f"got {threads!r}.")
        return threads, "as asked"
    from_env = _threads_from_env()
    if from_env is not None:
        return from_env, f"from {THREADS_ENV_VAR}"
    if DEFAULT_THREADS <= 1:
        return 1, "one core"
    busy = int(busy_cores() + 0.5)
    if busy == 0:
        return DEFAULT_THREADS, "all free cores"
    chosen = max(1, DEFAULT_THREADS - busy)
    return chosen, f"{busy} of {DEFAULT_THREADS} cores busy with other work"


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` decided: the seed, the device, the CPU threads and whether fast mode is on."""

    seed: int
    device: torch.device
    fast: bool
    threads: int = 1
    threads_reason: str = ""
    device_reason: str = ""

    @property
    def mode(self) -> str:
        return "fast" if self.fast else "full"

    def summary(self) -> str:
        threads = f"threads {self.threads}"
        if self.threads_reason and "busy" in self.threads_reason:
            threads += f" ({self.threads_reason})"
        device = f"device {self.device}"
        if self.device_reason.startswith("from"):
            device += f" ({self.device_reason})"
        return (f"{device} | {threads} | mode {self.mode} | seed {self.seed} | "
                f"torch {torch.__version__}")


def setup(seed: int = 0, threads: int | None = None, verbose: bool = True,
          device: torch.device | str | None = None) -> Setup:
    """Seed everything, pick the device and the CPU threads, read fast mode, apply the plot style;
    print one line.

    Call it once in a notebook's first code cell. ``threads=None`` lets :func:`choose_threads`
    decide (``$COURSE_THREADS`` overrides); ``device=None`` lets :func:`choose_device` decide
    (``$COURSE_DEVICE`` overrides). The device becomes :func:`default_device`, where the training
    functions put models and batches. Returns a :class:`Setup`.
    """
    from helpers import plotting  # local import: plotting pulls in matplotlib

    global _auto_threads
    chosen_device, device_reason = choose_device(device)
    num_threads, reason = choose_threads(threads)
    set_default_device(chosen_device)
    torch.set_num_threads(num_threads)
    _auto_threads = threads is None and _threads_from_env() is None
    seed_everything(seed)
    plotting.use_course_style()
    info = Setup(seed=seed, device=chosen_device, fast=is_fast(), threads=num_threads, threads_reason=reason,
                 device_reason=device_reason)
    if verbose:
        print(info.summary())
    return info
