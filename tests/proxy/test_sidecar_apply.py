"""CoreSidecar.apply with pushed endpoint sets: registry changes update in place, configs rebuild.

The sidecar runs on the Rust core in this process; its state is read from the
admin ``/clusters`` document (what an operator sees), and traffic goes through
its outbound port to real backends on loopback.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from backends import Backend, BackendLoop, Ok, free_ports

from seawall.config import load_mesh
from seawall.proxy.core import CoreSidecar


def mesh(ports: list[int], minimum_calls: int = 5) -> str:
    inbound, outbound, admin = ports
    return f"""\
mesh: t
services:
  api: {{port: 8001, sidecar: {{inbound: {inbound}, outbound: {outbound}, admin: {admin}}}}}
  backend:
    port: 8002
    sidecar: {{inbound: 18002, outbound: 15002, admin: 19002}}
    subsets: {{v1: {{}}, v2: {{}}}}
policies:
  backend:
    retry: {{attempts: 1}}
    load_balancer: round_robin
    circuit_breaker: {{minimum_calls: {minimum_calls}}}
    outlier: {{consecutive_5xx: 2, base_ejection: 30s, max_ejected_percent: 100%}}
"""


def endpoint(backend: Backend, subset: str) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": backend.port, "subset": subset, "weight": 1}


def cluster(sidecar: CoreSidecar, name: str) -> dict[str, Any]:
    (found,) = [c for c in sidecar.clusters() if c["name"] == name]
    return found


@pytest.fixture
def backends(sidecar_loop: BackendLoop) -> tuple[Backend, Backend, Backend]:
    a = sidecar_loop.backend("a", Ok())
    b = sidecar_loop.backend("b", Ok(status=503))
    c = sidecar_loop.backend("c", Ok())
    return a, b, c


def test_a_registry_change_keeps_breakers_budgets_and_ejections(
    backends: tuple[Backend, Backend, Backend],
) -> None:
    a, b, c = backends
    ports = free_ports(3)
    config = load_mesh(mesh(ports))
    endpoints = {"backend": [endpoint(a, "v1"), endpoint(b, "v2")]}
    sidecar = CoreSidecar(config, "api", endpoints=endpoints)
    try:
        proxy = f"http://127.0.0.1:{ports[1]}"
        with httpx.Client(proxy=proxy, timeout=5) as client:
            statuses = [client.get("http://backend/x").status_code for _ in range(20)]
        assert 503 in statuses  # B answered until it was ejected
        before = cluster(sidecar, "backend")
        ejected = {e["port"] for e in before["endpoints"] if e["ejected"]}
        assert ejected == {b.port}
        breaker = before["breaker"]
        assert breaker is not None
        # an instance joins (C); the config is the same: nothing is rebuilt
        assert sidecar.apply(config, {"backend": [endpoint(a, "v1"), endpoint(b, "v2"),
                                                  endpoint(c, "v2")]}).listeners_moved is False
        after = cluster(sidecar, "backend")
        assert [e["port"] for e in after["endpoints"]] == [a.port, b.port, c.port]
        assert {e["port"] for e in after["endpoints"] if e["ejected"]} == {b.port}  # still
        assert after["outlier"]["ejections"] == before["outlier"]["ejections"]
        assert after["breaker"]["failure_rate"] == breaker["failure_rate"]  # same window
        b.reset()
        c.reset()
        with httpx.Client(proxy=proxy, timeout=5) as client:
            statuses = [client.get("http://backend/x").status_code for _ in range(20)]
        assert statuses == [200] * 20  # the ejected one gets nothing; the new one is used
        assert b.hits == 0
        assert c.hits > 0
        # B's lease expires: it leaves the set; then every instance is gone
        sidecar.apply(config, {"backend": [endpoint(a, "v1"), endpoint(c, "v2")]})
        assert [e["port"] for e in cluster(sidecar, "backend")["endpoints"]] == [a.port, c.port]
        sidecar.apply(config, {})
        assert cluster(sidecar, "backend")["endpoints"] == []
        with httpx.Client(proxy=proxy, timeout=5) as client:
            r = client.get("http://backend/x")
        assert r.status_code == 503
        assert "no endpoint for backend" in r.text
    finally:
        sidecar.core.drain(0.1)


def test_a_config_change_builds_a_new_runtime(backends: tuple[Backend, Backend, Backend]) -> None:
    a, b, _ = backends
    ports = free_ports(3)
    config = load_mesh(mesh(ports))
    sidecar = CoreSidecar(config, "api", endpoints={"backend": [endpoint(a, "v1")]})
    try:
        changed = load_mesh(mesh(ports, minimum_calls=7))
        sidecar.apply(changed, {"backend": [endpoint(a, "v1"), endpoint(b, "v2")]})
        assert sidecar.config is changed
        found = cluster(sidecar, "backend")
        assert [e["port"] for e in found["endpoints"]] == [a.port, b.port]
        doc = httpx.get(f"http://127.0.0.1:{ports[2]}/config", timeout=5).json()
        assert doc["digest"] == changed.digest()
        assert doc["config"]["policies"]["backend"]["circuit_breaker"]["minimum_calls"] == 7
    finally:
        sidecar.core.drain(0.1)
