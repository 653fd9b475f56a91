"""The control plane's HTTP API over real sockets: an in-process replica on a SQLite store."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_server import InProcessControl

from seawall.control.api import ROUTES, openapi_document

MESH = """\
mesh: shop
services:
  orders:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
    subsets: {v1: {}, v2: {}}
  payments:
    port: 8003
    sidecar: {inbound: 18003, outbound: 15003, admin: 19003}
policies:
  orders: {timeout: 2s}
"""


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    server = InProcessControl(tmp_path / "state")
    yield server
    server.close()


def _apply(control: InProcessControl, text: str = MESH) -> httpx.Response:
    with control.client(**control.admin) as c:
        return c.put("/v1/config", content=text)


def _instance(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "orders.1",
        "service": "orders",
        "address": "127.0.0.1",
        "port": 18002,
        "subset": "v1",
        "ttl": 10,
    }
    body.update(over)
    return body


# ------------------------------------------------------------------ documents, routing


def test_openapi_document_lists_every_route(control: InProcessControl) -> None:
    with control.client() as c:
        doc = c.get("/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {(r.method, r.path) for r in ROUTES}
    assert doc == json.loads(json.dumps(openapi_document()))
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert ("security" in op) == (route.auth != "none")


def test_unknown_path_and_wrong_method(control: InProcessControl) -> None:
    with control.client() as c:
        r = c.get("/v1/nope")
        assert r.status_code == 404
        assert "/v1/nope" in r.json()["error"]
        r = c.post("/v1/status")
        assert r.status_code == 405
        assert "GET" in r.json()["error"]


# ------------------------------------------------------------------ tokens


def test_admin_token_created_once_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = InProcessControl(state)
    try:
        assert first.tokens.created
        mode = stat.S_IMODE(os.stat(state / "admin-token").st_mode)
        assert mode == 0o600
        assert stat.S_IMODE(os.stat(state / "join-secret").st_mode) == 0o600
        token = first.tokens.admin
    finally:
        first.close()
    again = InProcessControl(state)
    try:
        assert not again.tokens.created
        assert again.tokens.admin == token
    finally:
        again.close()


def test_writes_need_the_right_token(control: InProcessControl) -> None:
    with control.client() as c:
        r = c.put("/v1/config", content=MESH)
        assert r.status_code == 401
        assert "token" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    with control.client(authorization="Bearer wrong-token") as c:
        assert c.put("/v1/config", content=MESH).status_code == 401
    with control.client(**control.join("orders")) as c:
        r = c.put("/v1/config", content=MESH)
        assert r.status_code == 403
        assert "admin" in r.json()["error"]
    # a forged join token (right shape, wrong MAC) is no token
    forged = control.tokens.join_token("orders")[:-3] + "AAA"
    with control.client(authorization=f"Bearer {forged}") as c:
        assert c.post("/v1/instances", json=_instance()).status_code == 401
    assert control.tokens.service_of(control.tokens.join_token("orders")) == "orders"
    with control.client(**control.admin) as c:
        r = c.post("/v1/join-tokens", json={"service": "orders"})
        assert r.json() == {
            "service": "orders",
            "token": control.tokens.join_token("orders"),
            "generation": 0,
        }
        assert c.post("/v1/join-tokens", json={"service": "no such/name"}).status_code == 422


# ------------------------------------------------------------------ config


def test_apply_versions_and_digest(control: InProcessControl) -> None:
    with control.client() as c:
        assert c.get("/v1/config").status_code == 404
    r = _apply(control)
    assert r.status_code == 200
    assert r.json()["version"] == 1
    assert r.json()["changed"] is True
    # the same config, spelled differently: same digest, no new version
    r = _apply(control, MESH.replace("timeout: 2s", "timeout: 2000ms"))
    assert r.json() == {**r.json(), "version": 1, "changed": False}
    r = _apply(control, MESH.replace("timeout: 2s", "timeout: 3s"))
    assert r.json()["version"] == 2
    with control.client() as c:
        doc = c.get("/v1/config").json()
    assert doc["version"] == 2
    assert doc["config"]["policies"]["orders"]["timeout"] == 3.0


def test_invalid_config_lists_every_error_and_changes_nothing(control: InProcessControl) -> None:
    assert _apply(control).status_code == 200
    bad = MESH.replace("timeout: 2s", "timeout: -1s").replace("port: 8003", "port: 0")
    r = _apply(control, bad)
    assert r.status_code == 422
    errors = r.json()["errors"]
    paths = {e["path"] for e in errors}
    assert "policies.orders.timeout" in paths
    assert "services.payments.port" in paths
    assert all(e["message"] for e in errors)
    assert "nothing applied" in r.json()["error"]
    r = _apply(control, "mesh: [unclosed\n")
    assert r.status_code == 422
    assert isinstance(r.json()["errors"][0]["line"], int)  # YAML errors carry their line
    # a one-line body is text, never a path on the server's disk
    r = _apply(control, "/etc/passwd")
    assert r.status_code == 422
    with control.client() as c:
        assert c.get("/v1/config").json()["version"] == 1


# ------------------------------------------------------------------ registry and snapshot


def test_register_validates_every_field(control: InProcessControl) -> None:
    with control.client(**control.join("orders")) as c:
        r = c.post("/v1/instances", json=_instance())
        assert r.status_code == 409  # no config yet
        _apply(control)
        r = c.post(
            "/v1/instances",
            json=_instance(id="", port=0, address="", ttl=0, metadata={"a": 1}, extra=1),
        )
        assert r.status_code == 422
        text = r.json()["error"]
        for field in ("body.id", "body.port", "body.address", "body.ttl", "body.metadata"):
            assert field in text
        assert "body.extra: unknown field" in text
        r = c.post("/v1/instances", json=_instance(subset="v9"))
        assert r.status_code == 422
        assert "v9" in r.json()["error"]
        assert "v1, v2" in r.json()["error"]
        r = c.post("/v1/instances", json=_instance(service="payments"))
        assert r.status_code == 403
        r = c.post("/v1/instances", content=b"{not json")
        assert r.status_code == 400
        assert "JSON" in r.json()["error"]


def test_registration_lease_and_snapshot(control: InProcessControl) -> None:
    _apply(control)
    with control.client(**control.join("orders")) as c:
        first = c.get("/v1/snapshot").json()
        assert first["config"]["version"] == 1
        assert first["endpoints"] == {}
        lease = c.post("/v1/instances", json=_instance()).json()["lease"]
        snap = c.get("/v1/snapshot").json()
        assert snap["etag"] != first["etag"]
        assert snap["endpoints"]["orders"] == [
            {"id": "orders.1", "address": "127.0.0.1", "port": 18002, "subset": "v1"}
        ]
        assert c.put(f"/v1/leases/{lease}").status_code == 200
        # nothing pushed changed: the same etag, a long-poll with wait=0 says 304
        r = c.get("/v1/snapshot", params={"known": snap["etag"], "wait": "0"})
        assert r.status_code == 304
        assert c.delete(f"/v1/leases/{lease}").status_code == 204
        assert c.get("/v1/snapshot").json()["endpoints"] == {}
        r = c.put(f"/v1/leases/{lease}")
        assert r.status_code == 404
        assert "register again" in r.json()["error"]
        assert c.put("/v1/leases/abc").status_code == 400


def test_long_poll_is_woken_by_a_change(control: InProcessControl) -> None:
    _apply(control)
    with control.client(**control.join("orders")) as c:
        etag = c.get("/v1/snapshot").json()["etag"]
    answers: list[httpx.Response] = []

    def poll() -> None:
        with control.client(**control.join("orders")) as c:
            answers.append(c.get("/v1/snapshot", params={"known": etag, "wait": "50"}))

    threads = [threading.Thread(target=poll) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while control.server.api is not None and control.server.api.subscribers < 5:
        assert time.monotonic() < deadline, "the long-polls never started waiting"
        time.sleep(0.01)
    assert _apply(control, MESH.replace("2s", "4s")).json()["version"] == 2
    for t in threads:
        t.join(10)  # far below the 50 s wait: only the change can have answered them
    assert len(answers) == 5
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["config"]["version"] for a in answers} == {2}


def test_reports_status_and_health(control: InProcessControl) -> None:
    _apply(control)
    with control.client(**control.join("orders")) as c:
        lease = c.post("/v1/instances", json=_instance()).json()["lease"]
        lease2 = c.post(
            "/v1/instances", json=_instance(id="orders.2", port=18012, subset="v2")
        ).json()["lease"]
        body = {"id": "orders.1", "config_version": 1, "ejected": ["127.0.0.1:18012"]}
        assert c.put(f"/v1/leases/{lease}/status", json=body).status_code == 200
        body2 = {"id": "orders.2", "config_version": 1, "ejected": []}
        assert c.put(f"/v1/leases/{lease2}/status", json=body2).status_code == 200
        r = c.put(f"/v1/leases/{lease}/status", json={"id": "orders.1", "config_version": -1})
        assert r.status_code == 422
        assert "config_version" in r.json()["error"]
        r = c.put(f"/v1/leases/{lease}/status", json={**body, "id": "orders.2"})
        assert r.status_code == 422
        assert "belongs to 'orders.1'" in r.json()["error"]
    _apply(control, MESH.replace("2s", "5s"))  # version 2: both sidecars now lag
    with control.client() as c:
        status = c.get("/v1/status").json()
        assert status["config_version"] == 2
        assert {s["id"]: s["lagging"] for s in status["sidecars"]} == {
            "orders.1": True,
            "orders.2": True,
        }
        rows = {i["id"]: i for i in c.get("/v1/services").json()["instances"]}
        assert rows["orders.2"]["health"] == "ejected"
        assert rows["orders.2"]["ejected_by"] == ["orders.1"]
        assert rows["orders.1"]["health"] == "healthy"
    with control.client(**control.join("orders")) as c:
        body = {"id": "orders.1", "config_version": 2, "ejected": []}
        c.put(f"/v1/leases/{lease}/status", json=body)
    with control.client() as c:
        lag = {s["id"]: s["lagging"] for s in c.get("/v1/status").json()["sidecars"]}
    assert lag == {"orders.1": False, "orders.2": True}


def test_a_service_cannot_touch_another_services_lease(control: InProcessControl) -> None:
    _apply(control)
    with control.client(**control.join("orders")) as c:
        lease = c.post("/v1/instances", json=_instance()).json()["lease"]
    with control.client(**control.join("payments")) as c:
        assert c.put(f"/v1/leases/{lease}").status_code == 403
        assert c.delete(f"/v1/leases/{lease}").status_code == 403
        body = {"id": "orders.1", "config_version": 1, "ejected": ["127.0.0.1:18002"]}
        assert c.put(f"/v1/leases/{lease}/status", json=body).status_code == 403
        # nor take over its instance id
        r = c.post("/v1/instances", json=_instance(service="payments", subset=None))
        assert r.status_code == 403
        assert "'orders.1' is an instance of 'orders'" in r.json()["error"]
        # a forged handle: the lease number of orders with another instance id
        forged = lease.replace("orders.1", "payments.1")
        assert c.put(f"/v1/leases/{forged}").status_code == 403
        assert c.put("/v1/leases/99999999999999999999.x.y").status_code == 400
    with control.client(**control.join("orders")) as c:
        assert c.put(f"/v1/leases/{lease}").status_code == 200
        assert c.get("/v1/snapshot").json()["endpoints"]["orders"][0]["id"] == "orders.1"


def test_hostile_json_is_refused_with_a_reason(control: InProcessControl) -> None:
    _apply(control)
    with control.client(**control.join("orders")) as c:
        lease = c.post("/v1/instances", json=_instance()).json()["lease"]
        deep = b"[" * 100_000 + b"]" * 100_000
        r = c.put(f"/v1/leases/{lease}/status", content=deep)
        assert r.status_code == 400
        for bad in (b'{"id": "orders.1", "config_version": 1, "certificate_expires": Infinity}',
                    b'{"id": "orders.1", "config_version": 1, "certificate_expires": 1e300}',
                    b'{"id": "orders.1", "config_version": 99999999999999999999999}'):
            r = c.put(f"/v1/leases/{lease}/status", content=bad)
            assert r.status_code in (400, 422), bad
            assert r.json()["error"]
        assert c.post("/v1/instances", content=b"[1, 2]").status_code == 400
    with control.client() as c:
        assert c.get("/v1/status").status_code == 200
