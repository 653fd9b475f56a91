"""Fixtures for the control plane's store tests.

``etcd`` is ONE real etcd for the whole session (:mod:`etcd_server`); each test
that uses it gets its own key prefix, so tests never see each other's keys.
Without ``etcd`` installed the etcd tests fail (they do not skip): ``make
test`` installs it.

``backend`` is parametrized over both stores and knows how to open another
store object on the same state (the same SQLite file; the same etcd prefix),
which is how the contract tests play a second process or replica, and how to
let time pass for leases: a fake clock and ``reap()`` for SQLite, real
seconds for etcd. ``store`` is the first store object of ``backend``, opened;
every store the backend opened is closed at teardown.

Async tests run on asyncio through anyio's pytest plugin (anyio comes with
httpx): mark them ``pytest.mark.anyio``.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from etcd_server import EtcdServer

from seawall.control.store import Store
from seawall.control.store.etcd import EtcdStore
from seawall.control.store.sqlite import SqliteStore
from seawall.policy.clock import FakeClock

# The mesh tests reuse the sidecar tests' scripted backends (tests/proxy/backends.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

EXPIRY_WAIT = 8.0  # longest a test waits for etcd to expire a lease, seconds


@pytest.fixture
def anyio_backend() -> str:
    """Run the anyio-marked tests on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd for the session (fails the test, with the install hint, if etcd is missing)."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    failure: str | None = None
    try:
        server.start()
    except RuntimeError as exc:
        failure = f"cannot start etcd for the store tests: {exc}"
    if failure is not None:  # failed outside the except: no chained traceback
        pytest.fail(failure, pytrace=False)
    yield server
    server.stop()


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


@pytest.fixture(params=["sqlite", "etcd"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store backend in turn (see the module docstring)."""
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "state" / "seawall.db")
    return EtcdBackend(request.getfixturevalue("etcd"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """The first store object of ``backend``, opened; all of its stores closed after."""
    try:
        yield await backend.open()
    finally:
        await backend.close_all()
