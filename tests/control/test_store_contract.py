"""The :class:`Store` contract, run against both backends (SQLite file, real etcd).

A second store object on the same backend (``backend.open()``) plays another
process on the same SQLite file, or another control-plane replica on etcd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from store_backends import Backend

from seawall.control.store import (
    ConfigRecord,
    Instance,
    InstanceConflict,
    SidecarStatus,
    SqliteStore,
    Store,
)

pytestmark = pytest.mark.anyio

WAIT = 5.0  # longest a test waits for a change to be noticed, seconds
TTL = 30.0  # a lease that does not expire during a test


def inst(id: str, service: str = "shop", port: int = 8000, **kw: object) -> Instance:
    return Instance(id=id, service=service, address="127.0.0.1", port=port, **kw)  # type: ignore[arg-type]


async def next_change(changes: AsyncIterator[None], wait: float = WAIT) -> None:
    """The next item of ``changes``, failing the test if none comes within ``wait`` s."""
    try:
        async with asyncio.timeout(wait):
            await anext(changes)
    except TimeoutError:
        pytest.fail(f"changes() did not yield within {wait}s")


async def no_change(changes: AsyncIterator[None]) -> bool:
    """Whether ``changes`` has nothing pending (it yields nothing right away)."""
    try:
        async with asyncio.timeout(0.05):
            await anext(changes)
    except TimeoutError:
        return True
    return False


# -- config versions ------------------------------------------------------


async def test_empty_store_has_no_config_and_no_instances(store: Store) -> None:
    assert await store.current_config() is None
    assert await store.instances() == []
    assert await store.statuses() == []


async def test_versions_count_up_from_one(store: Store) -> None:
    records = [await store.put_config(f'{{"n":{n}}}', f"digest-{n}") for n in range(3)]

    assert [r.version for r in records] == [1, 2, 3]
    assert [r.digest for r in records] == ["digest-0", "digest-1", "digest-2"]
    assert records[2].document == '{"n":2}'
    assert all(r.applied_at > 1e9 for r in records)  # wall-clock seconds
    assert await store.current_config() == records[2]


async def test_same_digest_as_current_is_not_a_new_version(store: Store) -> None:
    first = await store.put_config("{}", "a")

    assert await store.put_config("{}", "a") == first
    assert await store.current_config() == first
    assert (await store.put_config('{"x":1}', "b")).version == 2
    # only the current version counts: going back to "a" is a new version
    assert (await store.put_config("{}", "a")).version == 3


async def test_concurrent_applies_from_two_stores_get_distinct_versions(
    store: Store, backend: Backend
) -> None:
    other = await backend.open()
    applies = [
        (store if n % 2 else other).put_config(f'{{"n":{n}}}', f"digest-{n}") for n in range(16)
    ]

    records = await asyncio.gather(*applies)

    assert sorted(r.version for r in records) == list(range(1, 17))  # none reused, none lost
    assert len({r.digest for r in records}) == 16
    current = await store.current_config()
    assert current is not None
    assert current.version == 16
    assert current == await other.current_config()
    assert current == next(r for r in records if r.version == 16)


async def test_concurrent_applies_of_one_digest_make_one_version(
    store: Store, backend: Backend
) -> None:
    other = await backend.open()

    records = await asyncio.gather(
        *[(store if n % 2 else other).put_config("{}", "same") for n in range(8)]
    )

    assert {r.version for r in records} == {1}
    assert (await store.put_config("{}", "next")).version == 2


# -- registry -------------------------------------------------------------


async def test_register_list_and_deregister(store: Store) -> None:
    b = await store.register(inst("b-1", "b", metadata={"zone": "z1"}), TTL)
    a2 = await store.register(inst("a-2", "a", subset="canary"), TTL)
    a1 = await store.register(inst("a-1", "a"), TTL)
    assert len({a1, a2, b}) == 3

    assert await store.instances() == [
        inst("a-1", "a"),
        inst("a-2", "a", subset="canary"),
        inst("b-1", "b", metadata={"zone": "z1"}),
    ]

    await store.deregister(a2)
    assert [i.id for i in await store.instances()] == ["a-1", "b-1"]
    await store.deregister(a2)  # again: no-op
    await store.deregister(987654321)  # unknown: no-op
    assert [i.id for i in await store.instances()] == ["a-1", "b-1"]


async def test_registering_an_id_again_replaces_it_and_revokes_its_lease(store: Store) -> None:
    old = await store.register(inst("a-1", port=8000), TTL)
    assert await store.put_status(SidecarStatus("a-1", "shop", 1), old)

    new = await store.register(inst("a-1", port=9000), TTL)

    assert new != old
    assert await store.instances() == [inst("a-1", port=9000)]
    assert not await store.keepalive(old)
    assert await store.keepalive(new)
    assert await store.statuses() == []  # the status went with the old lease
    assert not await store.put_status(SidecarStatus("a-1", "shop", 1), old)


async def test_keepalive_of_live_unknown_and_revoked_leases(store: Store) -> None:
    lease = await store.register(inst("a-1"), TTL)

    assert await store.keepalive(lease)
    assert await store.keepalive(lease)
    assert not await store.keepalive(987654321)
    await store.deregister(lease)
    assert not await store.keepalive(lease)


async def test_statuses_are_kept_under_the_lease(store: Store) -> None:
    a = await store.register(inst("a-1", "a"), TTL)
    b = await store.register(inst("b-1", "b"), TTL)
    assert await store.put_status(SidecarStatus("b-1", "b", 1, ("10.0.0.1:80",), 5.0), b)
    assert await store.put_status(SidecarStatus("a-1", "a", 0), a)
    assert await store.put_status(SidecarStatus("a-1", "a", 2, reported_at=6.0), a)  # replaces

    assert await store.statuses() == [
        SidecarStatus("a-1", "a", 2, reported_at=6.0),
        SidecarStatus("b-1", "b", 1, ("10.0.0.1:80",), 5.0),
    ]

    await store.deregister(a)
    assert [s.id for s in await store.statuses()] == ["b-1"]
    assert not await store.put_status(SidecarStatus("a-1", "a", 3), a)
    assert not await store.put_status(SidecarStatus("x-1", "x", 3), 987654321)
    assert [s.id for s in await store.statuses()] == ["b-1"]


async def test_an_expired_lease_takes_its_instance_and_status(
    store: Store, backend: Backend
) -> None:
    keep = await store.register(inst("keep-1"), TTL)
    lease = await store.register(inst("gone-1"), 1.0)
    assert await store.put_status(SidecarStatus("gone-1", "shop", 1), lease)
    changes = store.changes()
    await next_change(changes)

    async def expired() -> bool:
        return [i.id for i in await store.instances()] == ["keep-1"]

    await backend.outlive(1.0, expired)

    assert await store.statuses() == []
    assert not await store.keepalive(lease)
    assert not await store.put_status(SidecarStatus("gone-1", "shop", 1), lease)
    assert await store.keepalive(keep)
    await next_change(changes)  # the expiry woke changes()


# -- change events --------------------------------------------------------


async def test_changes_yields_at_once_then_after_each_write(store: Store) -> None:
    changes = store.changes()
    await next_change(changes, wait=0.5)  # the initial item, at once

    await store.put_config("{}", "a")
    await next_change(changes)
    lease = await store.register(inst("a-1"), TTL)
    await next_change(changes)
    assert await store.put_status(SidecarStatus("a-1", "shop", 1), lease)
    await next_change(changes)
    await store.deregister(lease)
    await next_change(changes)


async def test_changes_are_coalesced_and_seen_by_every_consumer(store: Store) -> None:
    first, second = store.changes(), store.changes()
    await next_change(first, wait=0.5)
    await next_change(second, wait=0.5)

    for n in range(3):
        await store.put_config("{}", f"d{n}")
    await asyncio.sleep(0.3)  # let etcd's watch deliver every event

    await next_change(first)
    await next_change(second)
    assert await no_change(first)  # three writes, possibly fewer wakeups, never more


async def test_a_change_through_another_store_object_is_seen(
    store: Store, backend: Backend
) -> None:
    other = await backend.open()
    changes = store.changes()
    await next_change(changes, wait=0.5)

    await other.put_config("{}", "from-the-other")
    await next_change(changes)
    current = await store.current_config()
    assert current is not None
    assert current.digest == "from-the-other"

    lease = await other.register(inst("a-1"), TTL)
    await next_change(changes)
    assert [i.id for i in await store.instances()] == ["a-1"]
    assert await store.keepalive(lease)  # a lease granted through the other object

    await other.deregister(lease)
    await next_change(changes)
    assert await store.instances() == []


async def test_changes_ends_when_the_store_closes(store: Store) -> None:
    changes = store.changes()
    await next_change(changes, wait=0.5)
    waiting = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)

    await store.close()

    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(WAIT):
            await waiting


# -- persistence ----------------------------------------------------------


async def test_state_survives_closing_and_reopening(store: Store, backend: Backend) -> None:
    record = await store.put_config('{"mesh":"m"}', "d1")
    lease = await store.register(inst("a-1", metadata={"k": "v"}), TTL)
    assert await store.put_status(SidecarStatus("a-1", "shop", 1), lease)
    await store.close()

    reopened = await backend.open()

    assert await reopened.current_config() == record
    assert await reopened.instances() == [inst("a-1", metadata={"k": "v"})]
    assert await reopened.statuses() == [SidecarStatus("a-1", "shop", 1)]
    assert await reopened.keepalive(lease)
    assert (await reopened.put_config("{}", "d2")) == ConfigRecord(
        2, "d2", "{}", (await reopened.current_config() or record).applied_at
    )


# -- ownership, the registry in memory, revocation (issue 8) -----------------


def mirrored(store: Store) -> list[Instance]:
    return store.registry.instances()


async def eventually(check: object, wait: float = WAIT) -> None:
    """Poll ``check()`` (sync or async) until true, failing after ``wait`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.02)


async def test_an_id_of_another_service_is_never_replaced(store: Store) -> None:
    lease = await store.register(inst("front-api.1", service="front-api"), TTL)
    with pytest.raises(InstanceConflict, match="belongs to service 'front-api'"):
        await store.register(inst("front-api.1", service="front", port=9999), TTL)
    assert await store.instances() == [inst("front-api.1", service="front-api")]
    assert mirrored(store) == [inst("front-api.1", service="front-api")]
    assert await store.keepalive(lease)


async def test_the_registry_mirror_follows_writes_expiry_and_other_stores(
    store: Store, backend: Backend
) -> None:
    other = await backend.open()
    a = await store.register(inst("shop.a"), TTL)
    await store.register(inst("shop.b", port=8001), TTL)
    assert mirrored(store) == await store.instances()
    await store.deregister(a)
    assert [i.id for i in mirrored(store)] == ["shop.b"]
    # a write through another store object (another process, another replica)
    await other.register(inst("shop.c", port=8002), TTL)
    if isinstance(store, SqliteStore):
        await store.poll()
    await eventually(lambda: [i.id for i in mirrored(store)] == ["shop.b", "shop.c"])
    assert mirrored(store) == await store.instances()
    # expiry
    short = await store.register(inst("shop.d", port=8003), 1.0)
    assert short > 0

    async def expired() -> bool:
        return "shop.d" not in {i.id for i in await store.instances()}

    await backend.outlive(1.0, expired)
    await eventually(lambda: "shop.d" not in store.registry)
    assert mirrored(store) == await store.instances()


async def test_revoking_a_service_deregisters_it_in_bulk(store: Store, backend: Backend) -> None:
    for n in range(40):
        await store.register(inst(f"pay.{n}", service="pay", port=9000 + n), TTL)
    keep = await store.register(inst("pay-gw.1", service="pay-gw"), TTL)
    assert await store.token_generations() == {}
    generation, removed = await store.revoke_service("pay")
    assert (generation, removed) == (1, 40)
    assert [i.id for i in await store.instances()] == ["pay-gw.1"]
    assert [i.id for i in mirrored(store)] == ["pay-gw.1"]
    assert await store.keepalive(keep)
    assert await store.token_generations() == {"pay": 1}
    assert (await store.revoke_service("pay"))[0] == 2
    other = await backend.open()
    assert await other.token_generations() == {"pay": 2}


async def test_config_head_is_the_newest_version_and_digest(store: Store) -> None:
    assert await store.config_head() is None
    await store.put_config("{}", "a")
    await store.put_config('{"x":1}', "b")
    assert await store.config_head() == (2, "b")
