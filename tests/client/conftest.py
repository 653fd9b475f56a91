"""Fixtures for the client tests (all prefixed ``client_``); the server is in scripted_server.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scripted_server import ScriptedServer

from seawall.policy.clock import FakeClock


@pytest.fixture
def client_server() -> Iterator[ScriptedServer]:
    """A fresh scripted server for each test."""
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client_clock() -> FakeClock:
    """A fake clock whose sleeps record the delay and return at once."""
    return FakeClock(start=1000.0)


@pytest.fixture
def client_closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
