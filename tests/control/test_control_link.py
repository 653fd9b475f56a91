"""The sidecar's control link against a real in-process control plane (SQLite, loopback)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_server import InProcessControl, applied

from seawall.proxy.control_link import (
    ControlClient,
    ControlLink,
    ControlRefused,
    ControlUnavailable,
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


def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


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

    link = _link(control, tmp_path / "side", apply)
    link.start(link.subscribe)
    _until(lambda: seen)
    time.sleep(1.0)  # a refusal loop would have applied it hundreds of times
    assert seen == [1]
    assert link.status.config_version == 0
    with control.client(**control.admin) as c:
        c.put("/v1/config", content=MESH.replace("8002", "8012"))
    _until(lambda: link.status.config_version == 2)
    assert seen == [1, 2]
    link.stop.set()
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
    link = _link(control, tmp_path / "side", lambda s: int(s["config"]["version"]))
    link.status.config_version = 1
    link.start(link.keep_lease)
    _until(lambda: link.status.reported)
    first = link.status.lease
    assert first is not None
    assert link.status.reported["ejected"] == ["127.0.0.1:9"]
    with httpx.Client(base_url=control.url, trust_env=False) as c:
        status = c.get("/v1/status").json()
        assert [s["id"] for s in status["sidecars"]] == ["orders.t1"]
        # the lease is lost (as after a control plane restarted on an empty store)
        r = c.delete(f"/v1/leases/{first}", headers=control.join("orders"))
        assert r.status_code == 204
        # renewed every ttl/3 = 1 s: the next renewal finds it gone
        _until(lambda: link.status.lease not in (None, first))
        instances = c.get("/v1/services").json()["instances"]
        assert [i["id"] for i in instances] == ["orders.t1"]
        link.deregister()  # stops the loop, then revokes the lease
        assert c.get("/v1/services").json()["instances"] == []


def test_a_dead_replica_is_skipped(control: InProcessControl, tmp_path: Path) -> None:
    link = _link(control, tmp_path / "side", lambda s: 1, urls=[_dead_url(), control.url])
    link.start(link.subscribe)
    _until(lambda: link.status.config_version == 1)
    assert link.client.url == control.url
    assert link.status.connected
    link.stop.set()


def test_calls_carry_the_token_and_errors_say_which_replica(
    control: InProcessControl, tmp_path: Path
) -> None:
    client = ControlClient([control.url], "not-a-token")
    with pytest.raises(ControlRefused) as refused:
        client.call("POST", "/v1/instances", body={"id": "orders.t1"})
    assert refused.value.status == 401
    dead = _dead_url()
    client = ControlClient([dead], "t")
    with pytest.raises(ControlUnavailable, match=dead.removeprefix("http://")):
        client.call("GET", "/v1/snapshot", params={"known": "a b/c", "wait": "0"})
    with pytest.raises(ValueError, match="at least one"):
        ControlClient([], "t")
