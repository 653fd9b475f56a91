"""The sidecar's control link against a real in-process control plane (SQLite, loopback)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_server import InProcessControl, applied

from seawall.proxy.control_link import (
    ControlClient,
    ControlLink,
    InstanceSpec,
    load_snapshot,
    save_snapshot,
)

MESH = """\
mesh: shop
services:
  orders:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
"""


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    with applied(tmp_path / "state", MESH) as server:
        yield server


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused


def _link(
    control: InProcessControl, state: Path, apply: Any, urls: list[str] | None = None
) -> ControlLink:
    client = ControlClient(urls or [control.url], control.tokens.join_token("orders"))
    return ControlLink(
        client,
        InstanceSpec("orders.t1", "orders", "127.0.0.1", 18002, None),
        state,
        apply=apply,
        ejected=lambda: ["127.0.0.1:9"],
        ttl=3.0,
    )


def test_a_refused_snapshot_is_not_fetched_again_until_it_changes(
    control: InProcessControl, tmp_path: Path
) -> None:
    seen: list[int] = []

    def apply(snapshot: dict[str, Any]) -> int:
        version = int(snapshot["config"]["version"])
        seen.append(version)
        if version == 1:
            raise ValueError("refused for the test")
        return version

    async def scenario() -> None:
        link = _link(control, tmp_path / "side", apply)
        task = asyncio.create_task(link.subscribe())
        await asyncio.sleep(1.0)  # a refusal loop would have applied it hundreds of times
        assert seen == [1]
        assert link.status.config_version == 0
        with control.client(**control.admin) as c:  # (sync client in a thread-free test: brief)
            c.put("/v1/config", content=MESH.replace("8002", "8012"))
        for _ in range(100):
            if link.status.config_version == 2:
                break
            await asyncio.sleep(0.05)
        assert seen == [1, 2]
        assert link.status.config_version == 2
        task.cancel()
        await link.client.aclose()

    asyncio.run(scenario())
    persisted = load_snapshot(tmp_path / "side")
    assert persisted is not None
    assert persisted["config"]["version"] == 2  # only the accepted one was persisted


def test_snapshot_persistence_is_whole_or_nothing(tmp_path: Path, capsys: Any) -> None:
    snapshot = {"etag": "e1", "config": {"version": 3}, "endpoints": {}}
    save_snapshot(tmp_path, snapshot)
    assert load_snapshot(tmp_path) == snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.json"]  # no temporary left
    (tmp_path / "snapshot.json").write_text('{"etag": "e2", "conf')  # a torn write
    assert load_snapshot(tmp_path) is None
    assert "ignoring unreadable" in capsys.readouterr().err
    (tmp_path / "snapshot.json").write_text(json.dumps([1, 2]))
    assert load_snapshot(tmp_path) is None
    assert load_snapshot(tmp_path / "nothing-here") is None


def test_lease_is_kept_reported_and_taken_again_after_it_is_lost(
    control: InProcessControl, tmp_path: Path
) -> None:
    async def scenario() -> None:
        link = _link(control, tmp_path / "side", lambda s: int(s["config"]["version"]))
        link.status.config_version = 1
        task = asyncio.create_task(link.keep_lease())
        for _ in range(100):
            if link.status.reported:
                break
            await asyncio.sleep(0.05)
        first = link.status.lease
        assert first is not None
        assert link.status.reported["ejected"] == ["127.0.0.1:9"]
        async with httpx.AsyncClient(base_url=control.url, trust_env=False) as c:
            status = (await c.get("/v1/status")).json()
            assert [s["id"] for s in status["sidecars"]] == ["orders.t1"]
            # the lease is lost (as after a control plane restarted on an empty store)
            r = await c.delete(f"/v1/leases/{first}", headers=control.join("orders"))
            assert r.status_code == 204
            for _ in range(100):  # renewed every ttl/3 = 1 s: the next renewal finds it gone
                if link.status.lease != first:
                    break
                await asyncio.sleep(0.05)
            assert link.status.lease not in (None, first)
            instances = (await c.get("/v1/services")).json()["instances"]
            assert [i["id"] for i in instances] == ["orders.t1"]
        task.cancel()
        await link.deregister()
        async with httpx.AsyncClient(base_url=control.url, trust_env=False) as c:
            assert (await c.get("/v1/services")).json()["instances"] == []
        await link.client.aclose()

    asyncio.run(scenario())


def test_a_dead_replica_is_skipped(control: InProcessControl, tmp_path: Path) -> None:
    async def scenario() -> None:
        link = _link(control, tmp_path / "side", lambda s: 1, urls=[_dead_url(), control.url])
        task = asyncio.create_task(link.subscribe())
        for _ in range(100):
            if link.status.config_version == 1:
                break
            await asyncio.sleep(0.05)
        assert link.status.config_version == 1
        assert link.client.url == control.url
        assert link.status.connected
        task.cancel()
        await link.client.aclose()

    asyncio.run(scenario())
