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

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The mesh tests reuse the sidecar tests' scripted backends and free_ports
# (tests/proxy/backends.py), etcd_server too: on the path before it is imported.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proxy"))

from etcd_server import EtcdServer  # noqa: E402
from store_backends import Backend, EtcdBackend, SqliteBackend  # noqa: E402

from seawall.control.store import Store  # noqa: E402


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
