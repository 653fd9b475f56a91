"""Egress (issue 14, part 1): calls through the outbound proxy to hosts outside the mesh.

An app runs with ``HTTP_PROXY`` at its sidecar, so every call it makes goes
there, not only calls to mesh services. With ``egress.mode: allow_any`` (the
default) a host that is not a mesh service is called directly: resolved by
DNS, at its own port, with the egress policy. ``registry_only`` refuses it
with 403. A name that does not resolve is a 502 at once
(``x-seawall-error: dns``). External hosts are counted in the metrics under
their own name, the first ``egress.metric_hosts`` of them; the rest as
``(other)``. The "external hosts" here are local servers, called by address
and by the name ``localhost``; the unresolvable one is under ``.invalid``
(RFC 6761: never resolves).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, wait_until
from conftest import Mesh, SidecarProcess


class Egress:
    def __init__(self, sidecar: SidecarProcess, outside: Backend, other: Backend) -> None:
        self.sidecar = sidecar
        self.outside = outside
        self.other = other
        self.client = httpx.Client(proxy=sidecar.proxy, timeout=10)

    def reload(self) -> None:
        before = self.sidecar.stderr().count("config reloaded")
        self.sidecar.rewrite(self.sidecar.mesh, keep_mtime=True)
        self.sidecar.signal(signal.SIGHUP)
        wait_until(lambda: self.sidecar.stderr().count("config reloaded") > before, 10, "reload")


@pytest.fixture(scope="module")
def egress(sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    app = sidecar_loop.backend("app", Echo())
    outside = sidecar_loop.backend("outside", Echo())
    other = sidecar_loop.backend("other", Echo())
    mesh = Mesh(app)
    mesh.destination("svc", [app])
    mesh.doc["egress"] = {"metric_hosts": 1}
    process = SidecarProcess(mesh, tmp_path_factory.mktemp("egress"))
    try:
        e = Egress(process.start(), outside, other)
        with e.client:
            yield e
    finally:
        process.stop()


def test_a_host_outside_the_mesh_is_called_directly(egress: Egress) -> None:
    backend = egress.outside.script(Echo())
    r = egress.client.get(f"http://127.0.0.1:{backend.port}/pay?x=1")
    assert r.status_code == 200
    assert r.json()["target"] == "/pay?x=1"  # origin-form, as any upstream gets it
    seen = backend.seen[-1]
    assert seen.header("host") == f"127.0.0.1:{backend.port}"
    assert "seawall" in (seen.header("via") or "")
    # by name: resolved by DNS
    r = egress.client.get(f"http://localhost:{backend.port}/by-name")
    assert r.status_code == 200
    assert backend.seen[-1].target == "/by-name"
    assert backend.seen[-1].header("host") == f"localhost:{backend.port}"


def test_external_hosts_are_counted_with_bounded_labels(egress: Egress) -> None:
    # metric_hosts: 1 -> the first external host seen keeps its name (127.0.0.1,
    # from the test above or this one), every later one is "(other)"
    egress.client.get(f"http://127.0.0.1:{egress.outside.port}/a")
    egress.client.get(f"http://localhost:{egress.other.port}/b")
    named = egress.sidecar.metric("seawall_requests_total", destination="127.0.0.1")
    other = egress.sidecar.metric("seawall_requests_total", destination="(other)")
    assert named >= 1
    assert other >= 1
    assert egress.sidecar.metric("seawall_requests_total", destination="localhost") == 0


def test_a_name_that_does_not_resolve_is_a_502_at_once(egress: Egress) -> None:
    r = egress.client.get("http://payments.example.invalid/charge")
    assert r.status_code == 502
    assert r.headers["x-seawall-error"] == "dns"
    assert r.json()["error"] == "bad_gateway"
    assert "does not resolve" in r.json()["reason"]


def test_a_non_idempotent_call_is_never_sent_twice(egress: Egress) -> None:
    closed = egress.sidecar.mesh.closed_port()
    before = egress.sidecar.metric("seawall_retries_total")
    assert egress.client.get(f"http://127.0.0.1:{closed}/x").status_code == 503
    after_get = egress.sidecar.metric("seawall_retries_total")
    assert after_get == before + 1  # a connect failure, retried once
    assert egress.client.post(f"http://127.0.0.1:{closed}/x", content=b"pay").status_code == 503
    assert egress.sidecar.metric("seawall_retries_total") == after_get  # not retried


def test_registry_only_refuses_with_403(egress: Egress) -> None:
    mesh = egress.sidecar.mesh
    mesh.doc["egress"] = {"mode": "registry_only", "metric_hosts": 1}
    egress.reload()
    try:
        backend = egress.outside.script(Echo())
        r = egress.client.get(f"http://localhost:{backend.port}/x")
        assert r.status_code == 403  # on the client's kept-alive connection, too
        assert r.headers["x-seawall-denied"] == "egress"
        assert r.json() == {
            "error": "forbidden",
            "destination": None,
            "reason": "egress to 'localhost' refused: egress.mode is registry_only "
            "(declare the host in the mesh, or set egress.mode: allow_any)",
        }
        assert backend.hits == 0
        # mesh services are not egress
        assert egress.client.get("http://svc/in-mesh").status_code == 200
    finally:
        mesh.doc["egress"] = {"metric_hosts": 1}
        egress.reload()
