"""EtcdStore beyond the contract: the keys, endpoints, errors, and an etcd restart."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from etcd_server import EtcdServer, free_ports
from store_backends import unique_prefix

from seawall.control.store import Instance, SidecarStatus, StoreError
from seawall.control.store.etcd import EtcdStore

pytestmark = pytest.mark.anyio


def inst(id: str) -> Instance:
    return Instance(id=id, service="shop", address="127.0.0.1", port=8000)


def dead_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def raw_keys(server: EtcdServer, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` with its JSON value, read straight from etcd."""
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    response = httpx.post(
        server.url + "/v3/kv/range",
        json={"key": base64.b64encode(start).decode(), "range_end": base64.b64encode(end).decode()},
    )
    return {
        base64.b64decode(kv["key"]).decode()[len(prefix) :]: json.loads(
            base64.b64decode(kv["value"])
        )
        for kv in response.json().get("kvs", [])
    }


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of this test's own, which it may stop and restart."""
    server = EtcdServer(tmp_path / "etcd")
    failure: str | None = None
    try:
        server.start()
    except RuntimeError as exc:
        failure = f"cannot start etcd: {exc}"
    if failure is not None:  # failed outside the except: no chained traceback
        pytest.fail(failure, pytrace=False)
    yield server
    server.stop()


# -- errors -----------------------------------------------------------------


async def test_an_unreachable_etcd_is_a_store_error_naming_the_url() -> None:
    url = dead_url()
    store = EtcdStore([url], timeout=2.0)

    with pytest.raises(StoreError, match="no endpoint reachable") as caught:
        await store.open()

    assert url in str(caught.value)


async def test_every_unreachable_endpoint_is_named() -> None:
    urls = [dead_url(), dead_url()]

    with pytest.raises(StoreError) as caught:
        await EtcdStore(urls, timeout=2.0).open()

    assert all(url in str(caught.value) for url in urls)


async def test_calls_move_on_to_an_endpoint_that_answers(etcd: EtcdServer) -> None:
    store = EtcdStore([dead_url(), etcd.url], prefix=unique_prefix())
    await store.open()
    try:
        assert (await store.put_config("{}", "d")).version == 1
        lease = await store.register(inst("a-1"), 30)
        assert await store.keepalive(lease)
        changes = store.changes()
        await anext(changes)
        await store.deregister(lease)
        async with asyncio.timeout(5.0):
            await anext(changes)  # the watch found the live endpoint too
    finally:
        await store.close()


async def test_an_error_from_etcd_names_the_endpoint_and_the_call(etcd: EtcdServer) -> None:
    store = EtcdStore([etcd.url], prefix=unique_prefix())
    await store.open()
    try:
        with pytest.raises(StoreError) as caught:
            await store.put_config("x" * 3_000_000, "huge")  # over etcd's 1.5 MiB request limit
        assert etcd.url in str(caught.value)
        assert "put_config" in str(caught.value)
        assert await store.current_config() is None
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("endpoints", "options", "field"),
    [
        ([], {}, "endpoints"),
        ("http://127.0.0.1:2379", {}, "endpoints"),
        (["127.0.0.1:2379"], {}, "endpoints"),
        (["http://"], {}, "endpoints"),
        (["http://127.0.0.1:2379"], {"prefix": "/seawall"}, "prefix"),
        (["http://127.0.0.1:2379"], {"timeout": 0.0}, "timeout"),
    ],
)
def test_options_are_validated(endpoints: Any, options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EtcdStore(endpoints, **options)


# -- the keys ---------------------------------------------------------------


async def test_the_documented_key_layout(etcd: EtcdServer) -> None:
    prefix = unique_prefix()
    store = EtcdStore([etcd.url], prefix=prefix)
    await store.open()
    try:
        first = await store.put_config('{"a":1}', "da")
        second = await store.put_config('{"b":2}', "db")
        lease = await store.register(inst("a-1"), 30)
        assert await store.put_status(SidecarStatus("a-1", "shop", 2), lease)
    finally:
        await store.close()

    assert raw_keys(etcd, prefix) == {
        "config/current": {"version": 2, "digest": "db"},
        "config/versions/0000000001": first.to_dict(),
        "config/versions/0000000002": second.to_dict(),
        "instances/a-1": inst("a-1").to_dict(),
        "status/a-1": SidecarStatus("a-1", "shop", 2).to_dict(),
    }


# -- an etcd restart ----------------------------------------------------------


async def test_the_watch_comes_back_after_an_etcd_restart(own_etcd: EtcdServer) -> None:
    errors: list[StoreError] = []
    store = EtcdStore([own_etcd.url], prefix=unique_prefix(), on_error=errors.append)
    await store.open()
    try:
        lease = await store.register(inst("a-1"), 5)
        changes = store.changes()
        await anext(changes)

        own_etcd.stop()
        await asyncio.sleep(0.3)  # the watch notices, and retries against nothing
        own_etcd.start()

        async with asyncio.timeout(8.0):
            await anext(changes)  # reconnected: "anything may have changed"
        assert errors
        assert own_etcd.url in str(errors[0])
        assert await store.instances() == [inst("a-1")]  # the lease survived the restart
        assert await store.keepalive(lease)

        await store.put_config("{}", "after")
        async with asyncio.timeout(5.0):
            await anext(changes)  # and the new watch sees new writes
    finally:
        await store.close()
