"""Shared pytest fixtures.

``no_network`` is autouse: every test runs with outgoing connections blocked, so a loader that
tried to download something would fail loudly instead of passing on a machine that happens to
be online. Connection attempts raise :class:`NetworkBlockedError` (an ``OSError``, like a real
network failure) and are recorded in the list the fixture returns.
"""

from __future__ import annotations

import socket

import pytest


class NetworkBlockedError(OSError):
    """Raised by any connection attempt made while a test runs."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Block socket connections and DNS look-ups for the test; return the attempts made."""
    attempts: list[str] = []

    def refuse(what: str):
        def blocked(*args, **kwargs):
            target = next((a for a in args if not isinstance(a, socket.socket)), None)
            attempts.append(f"{what}({target!r})")
            raise NetworkBlockedError(f"network access is blocked in tests: {what}({target!r})")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return attempts
