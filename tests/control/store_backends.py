"""Store backends for the contract tests: SQLite with a fake clock, etcd with a unique prefix.

A :class:`Backend` opens store objects on one shared state (the same SQLite
file; the same etcd prefix), which is how the tests play a second process or
replica, and lets lease time pass (a fake clock and ``reap()`` for SQLite, real
seconds for etcd). Kept out of conftest.py: test modules import these names,
and ``from conftest import`` would find tests/proxy's conftest as well.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from etcd_server import EtcdServer

from seawall.control.store import Store
from seawall.control.store.etcd import EtcdStore
from seawall.control.store.sqlite import SqliteStore
from seawall.policy.clock import FakeClock

EXPIRY_WAIT = 8.0  # longest a test waits for etcd to expire a lease, seconds


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/seawall-test/{uuid.uuid4().hex}/"


class Backend(abc.ABC):
    """Opens store objects on one shared state, and lets lease time pass."""

    name: str

    def __init__(self) -> None:
        self.opened: list[Store] = []

    @abc.abstractmethod
    def make(self) -> Store:
        """A new, unopened store object on this backend's state."""

    async def open(self) -> Store:
        """A new store object on this backend's state, opened (closed at teardown)."""
        store = self.make()
        await store.open()
        self.opened.append(store)
        return store

    @abc.abstractmethod
    async def outlive(self, ttl: float, done: Callable[[], Awaitable[bool]]) -> None:
        """Let more than ``ttl`` seconds of lease time pass, until ``done()`` holds."""

    async def close_all(self) -> None:
        """Close every store :meth:`open` returned."""
        for store in self.opened:
            await store.close()
        self.opened.clear()


class SqliteBackend(Backend):
    """SQLite files in tmp_path; every store object shares one fake clock."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.clock = FakeClock(1000.0)

    def make(self) -> Store:
        """A :class:`SqliteStore` on the same file and the same fake clock."""
        return SqliteStore(self.path, clock=self.clock)

    async def outlive(self, ttl: float, done: Callable[[], Awaitable[bool]]) -> None:
        """Advance the fake clock past ``ttl`` and reap through every open store."""
        self.clock.advance(ttl + 0.001)
        for store in self.opened:
            assert isinstance(store, SqliteStore)
            await store.reap()
        assert await done()


class EtcdBackend(Backend):
    """One unique prefix in the session's etcd."""

    name = "etcd"

    def __init__(self, server: EtcdServer) -> None:
        super().__init__()
        self.server = server
        self.prefix = unique_prefix()

    def make(self) -> Store:
        """An :class:`EtcdStore` on the same prefix."""
        return EtcdStore([self.server.url], prefix=self.prefix)

    async def outlive(self, ttl: float, done: Callable[[], Awaitable[bool]]) -> None:
        """Wait (real time, at most :data:`EXPIRY_WAIT` s) until etcd has expired the lease."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXPIRY_WAIT
        for delay in itertools.chain([ttl], itertools.repeat(0.1)):
            await asyncio.sleep(delay)
            if await done():
                return
            if loop.time() > deadline:
                pytest.fail(f"etcd did not expire a {ttl}s lease within {EXPIRY_WAIT}s")
