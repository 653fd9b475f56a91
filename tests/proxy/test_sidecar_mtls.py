"""mTLS between sidecars and inbound authorization, over real sockets with real TLS clients.

Three sidecars run in process (:class:`tlsutil.SidecarThread`, on uvloop) with
identities from a real :class:`~seawall.control.ca.CertificateAuthority`:

* ``payments``: ``mtls: strict``, deny by default; ``orders`` may POST/GET
  ``/charge`` and ``/refunds/*`` but not ``/refunds/secret`` (a deny rule);
  any authenticated caller may read ``/public/*``;
* ``orders``: the caller; its outbound listener reaches payments over mTLS;
* ``inventory``: ``mtls: permissive``, no rules.

Clients are ``openssl s_client``, httpx and raw sockets; bad clients present
no certificate, one from another CA, an expired one, or one whose SAN is not
a service of the mesh. Every refusal must show in ``/metrics``.
"""

from __future__ import annotations

import copy
import datetime as dt
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import Backend, BackendLoop, Echo, RawConn, Upgrade, free_ports, wait_until
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tlsutil
from seawall.config import load_mesh  # noqa: E402
from seawall.control.ca import CertificateAuthority  # noqa: E402
from seawall.proxy.core import CoreSidecar  # noqa: E402
from seawall.proxy.identity import Identity  # noqa: E402
from seawall.proxy.tls import MTLSError, check_identity  # noqa: E402
from tlsutil import (  # noqa: E402
    ClientCert,
    SidecarThread,
    client_files,
    client_from_identity,
    csr_for,
    forge,
    make_ca,
    make_identity,
    renew,
    s_client,
    serial_of,
    tls_request,
    utcnow,
)

OFF = {"enabled": False}


@dataclass
class Node:
    """A service of the test mesh: its ports, its backend, and its sidecar once started."""

    name: str
    backend: Backend | None
    inbound: int
    outbound: int
    admin: int
    app: int
    identity: Identity | None = None
    sidecar: CoreSidecar | None = None

    def metric(self, sample: str, **labels: str) -> float:
        """The sum of ``sample`` values with these labels on the sidecar's /metrics page."""
        text = httpx.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )


class MTLSMesh:
    def __init__(self, tmp: Path, loop: BackendLoop) -> None:
        self.tmp = tmp
        self.ca_dir = tmp / "ca"
        self.ca: CertificateAuthority = make_ca(self.ca_dir)
        ports = iter(free_ports(40))
        self.nodes: dict[str, Node] = {}
        for name in ("payments", "orders", "inventory", "email", "impostor", "legacy"):
            backend = loop.backend(name, Echo())
            self.nodes[name] = Node(
                name, backend, next(ports), next(ports), next(ports), backend.port
            )
        pay = self.nodes["payments"]
        services: dict[str, Any] = {
            name: {
                "port": node.app,
                "sidecar": {
                    "inbound": node.inbound,
                    "outbound": node.outbound,
                    "admin": node.admin,
                },
            }  # fmt: skip
            for name, node in self.nodes.items()
        }
        services["payments"]["mtls"] = "strict"
        services["payments"]["authorization"] = {
            "default": "deny",
            "rules": [
                {"action": "allow", "from": ["orders"], "methods": ["GET", "POST"],
                 "paths": ["/charge", "/refunds/*"]},
                {"action": "deny", "from": ["orders"], "paths": ["/refunds/secret"]},
                {"action": "allow", "from": ["*"], "paths": ["/public/*"]},
            ],
        }  # fmt: skip
        # "impostor" is reached at the payments sidecar: not the identity it must have.
        services["impostor"]["endpoints"] = [{"address": "127.0.0.1", "port": pay.inbound}]
        # "legacy" is reached at a plaintext HTTP server (inventory's admin listener): no TLS.
        legacy = self.nodes["inventory"].admin
        services["legacy"]["endpoints"] = [{"address": "127.0.0.1", "port": legacy}]
        quiet = {"circuit_breaker": OFF, "outlier": OFF}
        doc = {
            "mesh": "t",
            "services": services,
            "policies": {
                "payments": {"retry": {"attempts": 2, "on": ["connect-failure", "reset"]}} | quiet,
                "impostor": {"retry": {"attempts": 1}} | quiet,
                "legacy": {"retry": {"attempts": 1}} | quiet,
            },
            "limits": {"header_timeout": "2s", "body_timeout": "2s", "idle_timeout": "5s"},
        }
        self.doc = doc
        self.config = tmp / "mesh.yaml"
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.thread = SidecarThread()
        for name in ("payments", "orders", "inventory"):
            node = self.nodes[name]
            node.identity = make_identity(self.ca, tmp / "sidecars" / name, name)
            node.sidecar = self.thread.start(self.config, name, node.identity)
        # test clients with a valid mesh identity
        self.as_orders = client_from_identity(make_identity(self.ca, tmp / "c-orders", "orders"))
        self.as_email = client_from_identity(make_identity(self.ca, tmp / "c-email", "email"))

    def close(self) -> None:
        self.thread.close()


@pytest.fixture(scope="module")
def mesh(sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MTLSMesh]:
    built = MTLSMesh(tmp_path_factory.mktemp("mtls"), sidecar_loop)
    try:
        yield built
    finally:
        built.close()


def https(client: ClientCert, port: int, method: str, path: str, **kw: Any) -> httpx.Response:
    with httpx.Client(verify=client.context(), timeout=5) as c:
        return c.request(method, f"https://127.0.0.1:{port}{path}", **kw)


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def peer_header(response: httpx.Response) -> str | None:
    """The x-seawall-peer the Echo backend received (None if it got none)."""
    values = [v for n, v in response.json()["headers"] if n == "x-seawall-peer"]
    assert len(values) <= 1
    return values[0] if values else None


# --------------------------------------------------------------------------- bad clients


def _bad_clients(mesh: MTLSMesh) -> dict[str, tuple[ClientCert, str]]:
    """Clients the strict listener must refuse, each with the ``reason`` it is counted under."""
    tmp, ca = mesh.tmp / "bad", mesh.ca
    key = ec.generate_private_key(ec.SECP256R1())
    other_ca = make_ca(tmp / "other-ca")  # same trust domain, another root
    expired = ca.issue(csr_for(key), "orders", ttl=60, now=utcnow() - dt.timedelta(hours=1))

    def forged(name: str, uris: list[str]) -> ClientCert:
        return client_files(tmp / name, key, forge(ca, mesh.ca_dir, key.public_key(), uris=uris),
                            ca.ca_pem)  # fmt: skip

    return {
        "no-certificate": (ClientCert(ca=mesh.as_orders.ca), "handshake"),
        "another-ca": (
            client_files(tmp / "other", key, other_ca.issue(csr_for(key), "orders"), ca.ca_pem),
            "handshake",
        ),
        "expired": (client_files(tmp / "expired", key, expired, ca.ca_pem), "handshake"),
        # signed by the mesh CA, yet not a service of the mesh: refused after the handshake
        "other-trust-domain": (forged("foreign", ["spiffe://other.domain/service/x"]), "identity"),
        "not-spiffe": (forged("web", ["https://orders.example/x"]), "identity"),
        "two-spiffe-ids": (
            forged("two", ["spiffe://t.local/service/orders", "spiffe://t.local/service/email"]),
            "identity",
        ),
        "unknown-service": (forged("nobody", ["spiffe://t.local/service/nobody"]), "identity"),
        "not-a-service-id": (forged("ns", ["spiffe://t.local/ns/orders"]), "identity"),
        "no-san": (forged("nosan", []), "identity"),
    }


BAD = [
    "no-certificate", "another-ca", "expired", "other-trust-domain", "not-spiffe",
    "two-spiffe-ids", "unknown-service", "not-a-service-id", "no-san",
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_clients(mesh: MTLSMesh) -> dict[str, tuple[ClientCert, str]]:
    return _bad_clients(mesh)


@pytest.mark.parametrize("case", BAD)
def test_bad_client_refused_by_openssl_s_client(
    mesh: MTLSMesh, bad_clients: dict[str, tuple[ClientCert, str]], case: str
) -> None:
    client, reason = bad_clients[case]
    pay = mesh.nodes["payments"]
    before = pay.metric("seawall_inbound_tls_refused_total", reason=reason)
    hits = pay.backend.hits if pay.backend else 0
    out = s_client(pay.inbound, client, request("/public/x"))
    assert "HTTP/1.1" not in out, out
    wait_until(
        lambda: pay.metric("seawall_inbound_tls_refused_total", reason=reason) == before + 1,
        what=f"{reason} refusal counted",
    )
    assert pay.backend is not None
    assert pay.backend.hits == hits


@pytest.mark.parametrize("case", BAD)
def test_bad_client_refused_with_httpx(
    mesh: MTLSMesh, bad_clients: dict[str, tuple[ClientCert, str]], case: str
) -> None:
    client, reason = bad_clients[case]
    pay = mesh.nodes["payments"]
    before = pay.metric("seawall_inbound_tls_refused_total", reason=reason)
    with pytest.raises(httpx.TransportError):
        https(client, pay.inbound, "GET", "/public/x")
    wait_until(
        lambda: pay.metric("seawall_inbound_tls_refused_total", reason=reason) == before + 1,
        what=f"{reason} refusal counted",
    )


def test_strict_refuses_plaintext_at_once(mesh: MTLSMesh) -> None:
    pay = mesh.nodes["payments"]
    before = pay.metric("seawall_inbound_tls_refused_total", reason="plaintext")
    start = time.monotonic()
    with RawConn(pay.inbound) as conn:
        conn.send(request("/public/x"))
        assert conn.response_or_close(timeout=2) is None
    assert time.monotonic() - start < 1.0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{pay.inbound}/public/x", timeout=5)
    wait_until(
        lambda: pay.metric("seawall_inbound_tls_refused_total", reason="plaintext") == before + 2
    )


# --------------------------------------------------------------------------- good clients


def test_valid_mesh_client_openssl_tls13(mesh: MTLSMesh) -> None:
    pay = mesh.nodes["payments"]
    out = s_client(pay.inbound, mesh.as_email, request("/public/x"))
    assert "HTTP/1.1 200" in out, out
    assert "TLSv1.3" in out
    assert "spiffe://t.local/service/email" in out  # the backend echoes x-seawall-peer


def test_sidecar_to_sidecar_over_mtls_end_to_end(mesh: MTLSMesh) -> None:
    orders, pay = mesh.nodes["orders"], mesh.nodes["payments"]
    assert pay.backend is not None
    pay.backend.reset()
    by_caller = "seawall_caller_requests_total"
    counted = pay.metric(by_caller, destination="payments", caller="orders", status_class="2xx")
    with httpx.Client(proxy=f"http://127.0.0.1:{orders.outbound}", timeout=5) as client:
        r = client.post("http://payments/charge", content=b"12.50")
        assert r.status_code == 200
        assert peer_header(r) == "spiffe://t.local/service/orders"
        assert client.get("http://payments/refunds/7").status_code == 200
    assert pay.backend.hits == 2
    # payments counts its requests by the caller its certificate names (a caller's SLO)
    after = pay.metric(by_caller, destination="payments", caller="orders", status_class="2xx")
    assert after == counted + 2
    # the caller keeps its mTLS connection to payments pooled for the next request
    assert orders.sidecar is not None
    (cluster,) = [c for c in orders.sidecar.clusters() if c["name"] == "payments"]
    assert sum(e["idle_connections"] for e in cluster["endpoints"]) >= 1
    assert orders.metric("seawall_upstream_tls_failures_total", destination="payments") == 0


def test_permissive_serves_plaintext_and_mtls_on_one_port(mesh: MTLSMesh) -> None:
    inv = mesh.nodes["inventory"]
    served = "seawall_inbound_connections_total"
    plain, mtls = inv.metric(served, transport="plaintext"), inv.metric(served, transport="mtls")
    # plaintext: served, and a client cannot claim an identity with the header
    r = httpx.get(
        f"http://127.0.0.1:{inv.inbound}/x",
        headers={"x-seawall-peer": "spiffe://t.local/service/payments"},
        timeout=5,
    )
    assert r.status_code == 200
    assert peer_header(r) is None
    # mTLS on the same port: the caller is known
    r = https(mesh.as_orders, inv.inbound, "GET", "/x")
    assert r.status_code == 200
    assert peer_header(r) == "spiffe://t.local/service/orders"
    # a slow plaintext client (the first byte comes later) is served too
    with RawConn(inv.inbound) as conn:
        time.sleep(0.2)
        conn.send(request("/slow"))
        assert conn.response().status == 200
    # and a bad certificate is still refused on a permissive port
    with pytest.raises(httpx.TransportError):
        https(ClientCert(ca=mesh.as_orders.ca), inv.inbound, "GET", "/x")
    assert inv.metric(served, transport="plaintext") == plain + 2
    assert inv.metric(served, transport="mtls") == mtls + 1


# --------------------------------------------------------------------------- authorization


def test_authorization_allows_denies_and_counts(mesh: MTLSMesh) -> None:
    pay = mesh.nodes["payments"]
    assert pay.backend is not None
    pay.backend.reset()
    denied = "seawall_inbound_denied_total"
    before = {
        ("orders", "rules[1]"): pay.metric(denied, caller="orders", rule="rules[1]"),
        ("orders", "default"): pay.metric(denied, caller="orders", rule="default"),
        ("email", "default"): pay.metric(denied, caller="email", rule="default"),
    }
    cases = [
        (mesh.as_orders, "POST", "/charge", 200),  # allowed: rules[0]
        (mesh.as_orders, "GET", "/refunds/7", 200),  # allowed: rules[0], a prefix
        (mesh.as_orders, "GET", "/refunds/secret", 403),  # deny rules[1] beats allow rules[0]
        (mesh.as_orders, "DELETE", "/charge", 403),  # method not allowed: default deny
        (mesh.as_email, "POST", "/charge", 403),  # not an allowed caller: default deny
        (mesh.as_email, "GET", "/public/menu", 200),  # "*": any authenticated caller
        (mesh.as_orders, "GET", "/refunds/x/../secret", 403),  # dot segments resolved first
    ]
    for client, method, path, status in cases:
        r = https(client, pay.inbound, method, path)
        assert r.status_code == status, (method, path, r.text)
        if status == 403:
            assert r.json()["reason"].startswith("access denied")
            assert r.json()["destination"] == "payments"
            assert r.headers["x-seawall-denied"]
    # the app saw exactly the allowed requests
    assert sorted((s.method, s.target) for s in pay.backend.seen) == [
        ("GET", "/public/menu"), ("GET", "/refunds/7"), ("POST", "/charge"),
    ]  # fmt: skip
    assert pay.metric(denied, caller="orders", rule="rules[1]") == before["orders", "rules[1]"] + 2
    assert pay.metric(denied, caller="orders", rule="default") == before["orders", "default"] + 1
    assert pay.metric(denied, caller="email", rule="default") == before["email", "default"] + 1


def test_an_upgrade_is_authorized_like_any_request(mesh: MTLSMesh) -> None:
    """A tunnel is authorized once, when it opens: the upgrade request is checked by its
    caller, method and path, and a denied one never reaches the app (issue 15)."""
    pay = mesh.nodes["payments"]
    assert pay.backend is not None
    pay.backend.reset()
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    for client, path in [(mesh.as_orders, "/refunds/secret"), (mesh.as_email, "/charge")]:
        r = https(client, pay.inbound, "GET", path, headers=upgrade)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["reason"].startswith("access denied")
    assert pay.backend.seen == []


def test_denied_through_the_callers_sidecar(mesh: MTLSMesh) -> None:
    orders, pay = mesh.nodes["orders"], mesh.nodes["payments"]
    assert pay.backend is not None
    pay.backend.reset()
    with httpx.Client(proxy=f"http://127.0.0.1:{orders.outbound}", timeout=5) as client:
        r = client.get("http://payments/refunds/secret")
    assert r.status_code == 403
    assert r.headers["x-seawall-denied"] == "rules[1]"
    assert pay.backend.hits == 0


def test_a_refused_caller_s_connections_are_closed_before_any_request(mesh: MTLSMesh) -> None:
    """``authorization.refuse``, applied live: the caller's open tunnel is cut and its
    idle pooled connection closed at once; new connections are closed right after the
    handshake; no rule is asked, the app never called; other callers are served;
    taking it out heals at once."""
    orders, pay = mesh.nodes["orders"], mesh.nodes["payments"]
    assert pay.backend is not None
    assert pay.sidecar is not None
    assert orders.sidecar is not None
    doc = copy.deepcopy(mesh.doc)
    doc["services"]["payments"]["authorization"]["refuse"] = ["orders"]
    refusing = mesh.tmp / "refusing.yaml"
    refusing.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = {"sample": "seawall_inbound_tls_refused_total", "reason": "caller"}
    cut = {"sample": "seawall_tunnels_closed_total", "closed_by": "refused"}
    denied = "seawall_inbound_denied_total"
    pay.backend.script(Echo(), paths={"/refunds/ws": Upgrade()})
    upgrade = (
        b"GET http://payments/refunds/ws HTTP/1.1\r\nHost: payments\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    proxy = f"http://127.0.0.1:{orders.outbound}"
    with httpx.Client(proxy=proxy, timeout=5) as client, RawConn(orders.outbound) as ws:
        ws.send(upgrade)
        assert ws.response().status == 101
        ws.send(b"ping")
        assert ws.exactly(4) == b"ping"
        assert client.post("http://payments/charge", content=b"1").status_code == 200
        (cluster,) = [c for c in orders.sidecar.clusters() if c["name"] == "payments"]
        assert sum(e["idle_connections"] for e in cluster["endpoints"]) >= 1  # pooled
        hits = pay.backend.hits
        before, cut_before, denied_before = (
            pay.metric(**refused),
            pay.metric(**cut),
            pay.metric(denied),
        )
        mesh.thread.call(pay.sidecar.apply, load_mesh(refusing))
        assert ws.closed(timeout=5)  # the tunnel, cut at once (not at its idle timeout)
        wait_until(lambda: pay.metric(**cut) == cut_before + 1, what="the cut tunnel counted")
        r = client.get("http://payments/refunds/7")
        assert r.status_code == 502, r.text
        assert r.json()["reason"] == "upstream reset: connection closed before a response"
        # the tunnel, every idle pooled connection (this test's POST's, and any other
        # test's still open), then the GET's new connection and its retry's: each
        # closed unanswered and counted
        assert pay.metric(**refused) >= before + 4
        assert pay.metric(denied) == denied_before
        assert pay.backend.hits == hits
        # a caller's own client with orders' certificate: refused the same way
        with pytest.raises(httpx.TransportError):
            https(mesh.as_orders, pay.inbound, "GET", "/public/x")
        # another caller is served
        assert https(mesh.as_email, pay.inbound, "GET", "/public/x").status_code == 200
        mesh.thread.call(pay.sidecar.apply, load_mesh(mesh.config))
        assert client.post("http://payments/charge", content=b"3").status_code == 200
    assert pay.backend.hits == hits + 2


# --------------------------------------------------------------------------- outbound checks


def test_outbound_refuses_a_server_with_another_identity(mesh: MTLSMesh) -> None:
    orders, pay = mesh.nodes["orders"], mesh.nodes["payments"]
    assert pay.backend is not None
    pay.backend.reset()
    failures = "seawall_upstream_tls_failures_total"
    before = orders.metric(failures, destination="impostor", reason="identity")
    with httpx.Client(proxy=f"http://127.0.0.1:{orders.outbound}", timeout=5) as client:
        r = client.get("http://impostor/public/x")
    assert r.status_code == 503  # a connect failure: the payments sidecar is not "impostor"
    assert pay.backend.hits == 0
    assert orders.metric(failures, destination="impostor", reason="identity") == before + 1


def test_outbound_to_a_plaintext_server_fails_the_handshake(mesh: MTLSMesh) -> None:
    orders = mesh.nodes["orders"]
    failures = "seawall_upstream_tls_failures_total"
    before = orders.metric(failures, destination="legacy", reason="handshake")
    with httpx.Client(proxy=f"http://127.0.0.1:{orders.outbound}", timeout=5) as client:
        r = client.get("http://legacy/metrics")
    assert r.status_code == 503  # the admin page was never served: the TLS handshake failed
    assert r.json()["reason"].startswith("upstream connect")
    assert orders.metric(failures, destination="legacy", reason="handshake") == before + 1


# --------------------------------------------------------------------------- start-up checks


def test_strict_without_identity_fails_at_start(mesh: MTLSMesh) -> None:
    config = load_mesh(mesh.config)
    with pytest.raises(MTLSError, match="mtls: strict, but this sidecar has no identity"):
        check_identity(config, "payments", None)
    other = make_identity(make_ca(mesh.tmp / "td-ca", "other.local"), mesh.tmp / "td", "payments")
    with pytest.raises(MTLSError, match="trust domain 'other.local'"):
        check_identity(config, "payments", other)
    orders = mesh.nodes["orders"].identity
    with pytest.raises(MTLSError, match="for service 'orders', not 'payments'"):
        check_identity(config, "payments", orders)
    check_identity(config, "inventory", None)  # permissive: plaintext only, fine
    # The core refuses the same on its own, before opening any port.
    doc = copy.deepcopy(mesh.doc)
    inbound, outbound, admin = free_ports(3)
    doc["services"]["payments"]["sidecar"] = {
        "inbound": inbound,
        "outbound": outbound,
        "admin": admin,
    }
    fresh = load_mesh(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ValueError, match="mtls: strict, which needs an identity"):
        CoreSidecar(fresh, "payments")
    # refusing callers needs an identity too: without mTLS no caller is named
    doc["services"]["email"]["authorization"] = {"refuse": ["orders"]}
    refusing = load_mesh(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(MTLSError, match=r"authorization.refuse: \[orders\], but this sidecar"):
        check_identity(refusing, "email", None)
    with pytest.raises(ValueError, match=r"authorization.refuse: \[orders\], which needs an"):
        CoreSidecar(refusing, "email")
    plain = mesh.thread.start(mesh.config, "email", None)  # permissive, no identity: fine
    with pytest.raises(ValueError, match=r"authorization.refuse: \[orders\], which needs an"):
        plain.apply(refusing)
    assert orders is not None
    with pytest.raises(ValueError, match="identity refused"):
        CoreSidecar(fresh, "payments", identity=orders.directory)


# --------------------------------------------------------------------------- rotation


def test_rotation_under_load_drops_nothing(mesh: MTLSMesh) -> None:
    """Requests flow while both sides get new certificates three times: no failure."""
    orders, pay = mesh.nodes["orders"], mesh.nodes["payments"]
    assert pay.identity is not None
    assert orders.identity is not None
    proxy = f"http://127.0.0.1:{orders.outbound}"
    total = 5000  # the Rust core serves these in a second or two: rotations land mid-flow
    deadline = time.monotonic() + 10.0  # bounded by time and by count
    budget = [total]
    lock = threading.Lock()
    results: list[int | str] = []

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.monotonic() > deadline:
                return False
            budget[0] -= 1
            return True

    def through_caller() -> None:
        with httpx.Client(proxy=proxy, timeout=5) as client:
            while take():
                try:
                    results.append(client.post("http://payments/charge", content=b"1").status_code)
                except httpx.HTTPError as exc:
                    results.append(repr(exc))

    # a keep-alive mTLS connection opened before any rotation, used after them
    long_lived = httpx.Client(verify=mesh.as_orders.context(), timeout=5)
    assert long_lived.get(f"https://127.0.0.1:{pay.inbound}/refunds/0").status_code == 200

    serials = [pay.identity.serial]
    workers = [threading.Thread(target=through_caller) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for rotation, after in enumerate((40, 110, 180)):  # rotate while requests flow
            wait_until(lambda after=after: len(results) >= after, what=f"{after} requests")
            assert pay.sidecar is not None
            renewed = renew(mesh.ca, pay.identity)
            mesh.thread.rotate(pay.sidecar, pay.identity, renewed, mesh.ca.ca_pem)
            if rotation == 1:  # the caller's client certificate too
                assert orders.sidecar is not None
                mesh.thread.rotate(
                    orders.sidecar, orders.identity, renew(mesh.ca, orders.identity), mesh.ca.ca_pem
                )
            serials.append(pay.identity.serial)
            # a new connection sees the new certificate at once
            cert, answer = tls_request(pay.inbound, mesh.as_orders, request("/refunds/1"))
            assert serial_of(cert) == serials[-1]
            assert answer.startswith(b"HTTP/1.1 200")
            # the caller's idle pooled connections close: its next ones handshake anew
            mesh.thread.call(close_idle, orders, "payments")
        assert len(results) < total  # the last rotation happened under load
    finally:
        for worker in workers:
            worker.join(10)
    assert len(set(serials)) == 4
    failed = [r for r in results if r != 200]
    assert not failed, failed[:5]
    assert len(results) == total - budget[0]
    assert len(results) > 180
    # the connection from before the rotations still works, on its old certificate
    assert long_lived.get(f"https://127.0.0.1:{pay.inbound}/refunds/9").status_code == 200
    long_lived.close()
    # connections busy at a rotation went back to the pool with the certificate they
    # started with; once those are closed, the caller's next connection sees the newest
    mesh.thread.call(close_idle, orders, "payments")
    with httpx.Client(proxy=proxy, timeout=5) as client:
        r = client.post("http://payments/charge", content=b"1")
    assert peer_header(r) == "spiffe://t.local/service/orders"
    assert orders.metric("seawall_upstream_tls_failures_total", destination="payments") == 0


def close_idle(node: Node, destination: str) -> None:
    """Close the node's idle pooled upstream connections (every destination's)."""
    assert node.sidecar is not None
    node.sidecar.close_idle()


def test_a_connection_that_never_speaks_is_closed(mesh: MTLSMesh) -> None:
    """Nothing sent after connecting: closed after the header timeout (2 s here), not held."""
    inv = mesh.nodes["inventory"]
    with socket.create_connection(("127.0.0.1", inv.inbound), timeout=5) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""
        assert 1.5 < time.monotonic() - start < 4.0
