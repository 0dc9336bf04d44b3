"""Shared pytest fixtures.

``no_network`` is autouse: every test runs with outgoing connections blocked, so a loader that
tried to download something would fail loudly instead of passing on a machine that happens to
be online. Connection attempts raise :class:`NetworkBlockedError` (an ``OSError``, like a real
network failure) and are recorded in the list the fixture returns.

Unix-domain sockets (local IPC, e.g. between DataLoader worker processes) are not network and
are allowed. A test marked ``@pytest.mark.loopback`` (the browser test, which talks to a JupyterLab server it
started on 127.0.0.1) may connect to loopback addresses; everything else stays blocked.

``one_cpu_thread`` (autouse, whole session): the tests run torch on one CPU thread, so the numbers
they assert (losses after a few training steps, accuracies) do not depend on how many cores the
machine has or on how busy it is, and the small models of the tests gain nothing from more. The
notebooks, which nbval runs in their own kernels, take the number ``helpers.setup()`` chooses
(every core that no other process keeps busy; ``COURSE_THREADS`` overrides it).
"""

from __future__ import annotations

import socket

import pytest
import torch


class NetworkBlockedError(OSError):
    """Raised by any connection attempt made while a test runs."""


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "loopback: the test may connect to 127.0.0.1 (its own servers)")


def _host(target) -> str | None:
    if isinstance(target, tuple) and target:
        return str(target[0])
    return str(target) if isinstance(target, str) else None


@pytest.fixture(autouse=True, scope="session")
def one_cpu_thread():
    """Run the tests on one CPU thread (see the module docstring); restore the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> list[str]:
    """Block socket connections and DNS look-ups for the test; return the attempts made."""
    attempts: list[str] = []
    allow_loopback = request.node.get_closest_marker("loopback") is not None

    def refuse(what: str):
        original = getattr(socket.socket if what.startswith("socket.connect") else socket, what.split(".")[1])

        def blocked(*args, **kwargs):
            target = next((a for a in args if not isinstance(a, socket.socket)), None)
            local_ipc = bool(args) and isinstance(args[0], socket.socket) and args[0].family == socket.AF_UNIX
            if local_ipc or (allow_loopback and _host(target) in LOOPBACK):
                return original(*args, **kwargs)
            attempts.append(f"{what}({target!r})")
            raise NetworkBlockedError(f"network access is blocked in tests: {what}({target!r})")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return attempts


@pytest.fixture(autouse=True)
def strict_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn on the explorers' strict mode for the test (see the module docstring); restore it after."""
    from helpers import widgets

    monkeypatch.setattr(widgets, "STRICT", True)


@pytest.fixture(autouse=True)
def cpu_default_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test on the CPU default, without ``COURSE_DEVICE``: a test that calls
    ``helpers.setup()`` (which makes its device the default) cannot leak that device into later
    tests, and the unit tests' numbers are the CPU's on a GPU machine too. Tests of the device
    choice set what they need themselves."""
    from helpers import config

    monkeypatch.setattr(config, "_device", torch.device("cpu"))
    monkeypatch.delenv("COURSE_DEVICE", raising=False)


@pytest.fixture(scope="session")
def built_slides(tmp_path_factory):
    """Every chapter's lecture slides (tools/slides.py), built once into a temporary folder."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import slides

    out = tmp_path_factory.mktemp("slides")
    slides.build_all(out)
    return out


@pytest.fixture(scope="session")
def built_site(tmp_path_factory, built_slides):
    """The course website (tools/website.py), built once into a temporary folder with those slides."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import website

    out = tmp_path_factory.mktemp("site") / "site"
    website.build(out, slides_dir=built_slides)
    return out
