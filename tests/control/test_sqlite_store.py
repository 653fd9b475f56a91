"""SqliteStore beyond the contract: the file, restarts, leases on a fake clock, the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from seawall.control.store import Instance, SidecarStatus, StoreError
from seawall.control.store.sqlite import SCHEMA_VERSION, SqliteStore
from seawall.policy.clock import FakeClock

pytestmark = pytest.mark.anyio


def inst(id: str) -> Instance:
    return Instance(id=id, service="shop", address="127.0.0.1", port=8000)


@contextlib.asynccontextmanager
async def opened(path: Path, clock: FakeClock, **kw: float) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path, clock=clock, **kw)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def ids(store: SqliteStore) -> list[str]:
    return [i.id for i in await store.instances()]


# -- the file -------------------------------------------------------------


async def test_a_corrupt_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    path.write_bytes(b"this is not a database, just garbage\x00\xff" * 200)

    with pytest.raises(StoreError) as caught:
        await SqliteStore(path).open()

    assert str(path) in str(caught.value)
    assert "not a database" in str(caught.value)


async def test_an_unopenable_path_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    path.mkdir()  # a directory where the file should be

    with pytest.raises(StoreError, match="unable to open") as caught:
        await SqliteStore(path).open()

    assert str(path) in str(caught.value)


async def test_a_file_from_a_newer_seawall_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StoreError, match="newer") as caught:
        await SqliteStore(path).open()

    assert str(path) in str(caught.value)


async def test_the_file_is_in_wal_mode_and_keeps_every_version(tmp_path: Path) -> None:
    path = tmp_path / "state" / "seawall.db"  # the directory is created
    async with opened(path, FakeClock()) as store:
        await store.put_config("{}", "a")
        await store.put_config("{}", "a")
        await store.put_config('{"x":1}', "b")

    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT version, digest FROM configs").fetchall() == [
            (1, "a"),
            (2, "b"),
        ]


async def test_a_closed_or_unopened_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "seawall.db")
    with pytest.raises(StoreError, match="not opened"):
        await store.current_config()
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.instances()


@pytest.mark.parametrize(
    ("option", "value"), [("poll_interval", 0.0), ("poll_interval", -1.0), ("busy_timeout", -1.0)]
)
def test_options_are_validated(tmp_path: Path, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        SqliteStore(tmp_path / "seawall.db", **{option: value})  # type: ignore[arg-type]


async def test_a_ttl_must_be_positive(tmp_path: Path) -> None:
    async with opened(tmp_path / "seawall.db", FakeClock()) as store:
        with pytest.raises(ValueError, match="ttl"):
            await store.register(inst("a-1"), 0)


# -- leases on a fake clock -----------------------------------------------


async def test_keepalive_restarts_the_full_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(tmp_path / "seawall.db", clock) as store:
        lease = await store.register(inst("a-1"), 10.0)
        clock.advance(8.0)
        assert await store.keepalive(lease)

        clock.advance(8.0)  # 16: past the first deadline, not the renewed one (18)
        assert await store.reap() == 0
        assert await ids(store) == ["a-1"]

        clock.advance(2.0)  # 18
        assert await store.reap() == 1
        assert await ids(store) == []
        assert await store.reap() == 0


async def test_reads_hide_an_expired_lease_before_the_reaper_runs(tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened(tmp_path / "seawall.db", clock) as store:
        lease = await store.register(inst("a-1"), 10.0)
        assert await store.put_status(SidecarStatus("a-1", "shop", 1), lease)

        clock.advance(10.0)

        assert await store.instances() == []
        assert await store.statuses() == []
        assert not await store.keepalive(lease)  # and that reaped it
        assert await store.reap() == 0


async def test_reopening_gives_every_stored_lease_a_full_ttl(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    clock = FakeClock()
    async with opened(path, clock) as store:
        lease = await store.register(inst("a-1"), 10.0)
        clock.advance(8.0)
    # a restart at 8: the lease runs until 18, not 10

    async with opened(path, clock) as store:
        clock.advance(8.0)  # 16
        assert await store.reap() == 0
        assert await ids(store) == ["a-1"]
        assert await store.keepalive(lease)  # renewed at 16: until 26

        clock.advance(10.0)
        assert await store.reap() == 1
        assert await ids(store) == []


async def test_lease_ids_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    async with opened(path, FakeClock()) as store:
        first = await store.register(inst("a-1"), 10.0)
        await store.deregister(first)
    async with opened(path, FakeClock()) as store:
        second = await store.register(inst("a-1"), 10.0)
        assert second > first
        assert not await store.keepalive(first)


async def test_a_renewal_through_another_store_is_not_undone_by_a_stale_reap(
    tmp_path: Path,
) -> None:
    """Two processes on one file: each reaps by its own table, never a lease renewed elsewhere."""
    path = tmp_path / "seawall.db"
    clock = FakeClock()
    async with opened(path, clock) as a, opened(path, clock) as b:
        lease = await a.register(inst("a-1"), 10.0)
        await b.poll()  # b learns of the lease: deadline 10 in b's table
        clock.advance(8.0)
        assert await a.keepalive(lease)  # a: deadline 18; b has not polled since

        clock.advance(4.0)  # 12: past b's deadline
        assert await b.reap() == 0  # the renewal counter moved: b takes a's word
        assert await ids(b) == ["a-1"]

        clock.advance(6.0)  # 18
        assert await b.reap() + await a.reap() == 1
        assert await ids(a) == []
        assert await ids(b) == []


async def test_a_keepalive_through_another_store_wakes_nobody(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    clock = FakeClock()
    async with opened(path, clock) as a, opened(path, clock) as b:
        lease = await a.register(inst("a-1"), 10.0)
        assert await b.poll()  # a registration: a change

        assert await a.keepalive(lease)
        assert not await b.poll()  # a renewal: no change anyone can read
        assert not await b.poll()  # and nothing new since

        await a.put_config("{}", "d")
        assert await b.poll()


# -- the reaper, on the real clock ------------------------------------------


async def test_the_reaper_expires_leases_without_being_asked(tmp_path: Path) -> None:
    # the real clock; a poll interval far above the TTL: the due lease sets the pace
    store = SqliteStore(tmp_path / "seawall.db", poll_interval=5.0)
    await store.open()
    try:
        await store.register(inst("keep-1"), 60.0)
        await store.register(inst("gone-1"), 0.2)
        changes = store.changes()
        await anext(changes)

        async with asyncio.timeout(2.0):
            await anext(changes)

        assert await ids(store) == ["keep-1"]
    finally:
        await store.close()


async def test_the_reaper_polls_for_other_processes_changes(tmp_path: Path) -> None:
    path = tmp_path / "seawall.db"
    async with opened(path, FakeClock(), poll_interval=0.05) as a:
        changes = a.changes()
        await anext(changes)
        with contextlib.closing(sqlite3.connect(path)) as other:  # another process, in effect
            other.execute("INSERT INTO configs VALUES (1, 'd', '{}', 0)")
            other.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            other.commit()

        async with asyncio.timeout(2.0):
            await anext(changes)

        current = await a.current_config()
        assert current is not None
        assert current.digest == "d"
