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

import http.server
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, RawConn, serve_https, wait_until
from conftest import Mesh, SidecarProcess


class Egress:
    def __init__(self, sidecar: SidecarProcess, outside: Backend, other: Backend) -> None:
        self.sidecar = sidecar
        self.outside = outside
        self.other = other
        self.client = httpx.Client(proxy=sidecar.proxy, timeout=10)

    def reload(self) -> None:
        self.sidecar.reload(self.sidecar.mesh)


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


def test_a_call_to_the_sidecar_itself_is_refused_not_looped(egress: Egress) -> None:
    for port in (egress.sidecar.outbound, egress.sidecar.admin):
        r = egress.client.get(f"http://127.0.0.1:{port}/x")
        assert (r.status_code, r.reason_phrase) == (508, "Loop Detected")
        assert "this sidecar's own listener" in r.json()["reason"]
    assert egress.client.get(f"http://localhost:{egress.sidecar.outbound}/x").status_code == 508


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


# --------------------------------------------------------------------------- CONNECT


class TlsServer:
    """An HTTPS server on loopback with a self-signed certificate made by openssl,
    for localhost and 127.0.0.1: what an external API looks like to the app."""

    def __init__(self, directory: Path) -> None:
        self.cert, self.key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(self.key),
             "-out", str(self.cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                seen.append(self.path)
                body = f"secret {self.path}".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = serve_https(Handler, self.cert, self.key)
        self.port = self.server.server_address[1]

    def client(self, proxy: str) -> httpx.Client:
        """An httpx client behind HTTPS_PROXY (the sidecar) that trusts this server."""
        return httpx.Client(proxy=proxy, verify=ssl.create_default_context(cafile=self.cert),
                            timeout=10)  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path_factory.mktemp("tls"))
    yield server
    server.close()


def test_https_through_the_proxy_is_a_connect_tunnel(egress: Egress, tls_server: TlsServer) -> None:
    """The sidecar opens a byte-for-byte tunnel and never reads the TLS in it: the
    app verifies the real server's certificate end to end."""
    before = egress.sidecar.metric("seawall_tunnel_bytes_total", to="client")
    with tls_server.client(egress.sidecar.proxy) as client:
        r = client.get(f"https://localhost:{tls_server.port}/account?id=7")
        assert (r.status_code, r.text) == (200, "secret /account?id=7")
        again = client.get(f"https://127.0.0.1:{tls_server.port}/again")
        assert again.status_code == 200
    assert tls_server.seen[-2:] == ["/account?id=7", "/again"]
    # counted as tunnels: the bytes both ways (TLS records, whatever they hold)
    wait_until(
        lambda: egress.sidecar.metric("seawall_tunnel_bytes_total", to="client") > before + 100,
        5,
        "the tunnel's bytes",
    )
    assert egress.sidecar.metric("seawall_tunnels_closed_total") >= 2


def test_a_connect_to_a_name_that_does_not_resolve_is_a_502(egress: Egress) -> None:
    with RawConn(egress.sidecar.outbound, timeout=5) as conn:
        target = b"api.example.invalid:443"
        conn.send(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
        resp = conn.response()
    assert (resp.status, resp.header("x-seawall-error")) == (502, "dns")
    assert json.loads(resp.body)["error"] == "bad_gateway"


def test_connect_is_refused_where_it_must_be(egress: Egress) -> None:
    def connect(target: bytes, port: int | None = None) -> tuple[int, dict[str, str]]:
        with RawConn(port or egress.sidecar.outbound, timeout=5) as conn:
            conn.send(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
            resp = conn.response()
        return resp.status, dict(resp.headers)

    # a mesh service is called over plain HTTP (the mesh does the TLS), by any of its names
    assert connect(b"svc:443")[0] == 400
    assert connect(b"svc.svc:443")[0] == 400
    # the sidecar's own listeners: a loop, refused
    own = f"127.0.0.1:{egress.sidecar.outbound}".encode()
    assert connect(own)[0] == 508
    # no port: not the authority-form CONNECT needs
    assert connect(b"localhost")[0] == 400
    # the inbound listener never tunnels
    assert connect(b"localhost:443", egress.sidecar.inbound)[0] == 405
    mesh = egress.sidecar.mesh
    mesh.doc["egress"] = {"mode": "registry_only", "metric_hosts": 1}
    egress.reload()
    try:
        status, headers = connect(b"localhost:443")
        assert (status, headers["x-seawall-denied"]) == (403, "egress")
    finally:
        mesh.doc["egress"] = {"metric_hosts": 1}
        egress.reload()


def test_tunnels_are_bounded_and_close_when_idle(
    sidecar_loop: BackendLoop, tmp_path: Path, tls_server: TlsServer
) -> None:
    app = sidecar_loop.backend("app", Echo())
    mesh = Mesh(app)
    mesh.doc["egress"] = {"max_tunnels": 1, "tunnel_idle_timeout": "300ms"}
    sidecar = SidecarProcess(mesh, tmp_path).start()
    target = f"127.0.0.1:{tls_server.port}".encode()
    request = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n"
    try:
        with RawConn(sidecar.outbound, timeout=5) as first:
            first.send(request)
            assert first.response("CONNECT").status == 200
            with RawConn(sidecar.outbound, timeout=5) as second:
                second.send(request)
                resp = second.response("CONNECT")
                assert (resp.status, resp.header("x-seawall-overflow")) == (503, "tunnels")
            # silent for longer than tunnel_idle_timeout: the sidecar closes it
            assert first.closed(timeout=3)
        wait_until(
            lambda: sidecar.metric("seawall_tunnels_closed_total", closed_by="idle") == 1,
            5,
            "the idle close counted",
        )
        # the slot is free again
        with RawConn(sidecar.outbound, timeout=5) as third:
            third.send(request)
            assert third.response("CONNECT").status == 200
    finally:
        sidecar.stop()
