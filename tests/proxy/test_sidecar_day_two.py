"""Issue 14, the rest of the wire: declared external services with TLS
origination, hedging in the mesh, and rate limits in both directions.

* ``external: {pay: {host: localhost, port: P, ca_file: ca.pem}}``: the app
  calls ``http://pay/...`` through its sidecar in plain HTTP; the sidecar
  speaks TLS to a local HTTPS server whose certificate a test CA (made with
  openssl) signed, and checks it against that CA, or against the system's
  roots as ``SSL_CERT_FILE`` names them; ``policies.pay`` applies there (a
  breaker here).
* ``policies.X.hedge``: a backend with a slow tail (every tenth request takes
  2 s) answers fast when a copy is hedged after 50 ms; the loser's connection
  is closed (cancelled on the wire); copies beyond the retry budget are not
  sent.
* ``policies.X.rate_limit`` (outbound) and ``services.X.rate_limit`` (inbound,
  per caller identity over mTLS): 429 with ``retry-after``, marked
  ``x-seawall-overloaded`` (do not retry).

Rates are chosen so that no test depends on how fast the machine is: a limit
of one request per 10 s is never refilled within a test.
"""

from __future__ import annotations

import http.server
import itertools
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from backends import (
    Backend,
    BackendLoop,
    Behaviour,
    Echo,
    Fail,
    Hang,
    Ok,
    _Context,
    free_ports,
    serve_https,
    wait_until,
)
from conftest import OFF, Mesh, SidecarProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tlsutil
from tlsutil import SidecarThread, client_from_identity, make_ca, make_identity, tls_request  # noqa: E402

# --------------------------------------------------------------------------- a test CA


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class LocalCA:
    """A CA made with openssl, and server certificates it signs."""

    def __init__(self, directory: Path, name: str = "seawall test CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.cert, self.key = directory / "ca.pem", directory / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", f"/CN={name}", "-keyout", str(self.key), "-out", str(self.cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, name: str, sans: str) -> tuple[Path, Path]:
        key, csr, cert = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(ext),
        )  # fmt: skip
        return cert, key


class PaymentProvider:
    """An HTTPS API on loopback (a payment provider's stand-in): ``/fail`` answers
    503, anything else 200 ``paid <path>``; it records each request's path and Host."""

    def __init__(self, cert: Path, key: Path) -> None:
        seen: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                seen.append((self.path, self.headers.get("host", "")))
                status, body = (503, b"down\n") if self.path == "/fail" else (200, b"paid ")
                body += self.path.encode() if status == 200 else b""
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = serve_https(Handler, cert, key)
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Outside:
    ca: LocalCA
    other_ca: LocalCA
    provider: PaymentProvider


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outside]:
    base = tmp_path_factory.mktemp("outside")
    ca = LocalCA(base / "ca")
    provider = PaymentProvider(*ca.issue("localhost", "DNS:localhost,IP:127.0.0.1"))
    try:
        yield Outside(ca, LocalCA(base / "other", "another CA"), provider)
    finally:
        provider.close()


def _external_mesh(app: Backend, port: int, **pay: object) -> Mesh:
    mesh = Mesh(app)
    mesh.doc["external"] = {"pay": {"host": "localhost", "port": port, **pay}}
    mesh.doc["policies"]["pay"] = {"retry": {"attempts": 1}, "outlier": OFF}
    return mesh


# --------------------------------------------------------------------------- external


def test_an_external_service_is_called_by_name_over_tls_the_sidecar_originates(
    sidecar_loop: BackendLoop, tmp_path: Path, outside: Outside
) -> None:
    app = sidecar_loop.backend("app", Echo())
    mesh = _external_mesh(app, outside.provider.port, ca_file=str(outside.ca.cert))
    # the breaker of policies.pay: two failures in a window of two open it
    mesh.doc["policies"]["pay"]["circuit_breaker"] = {
        "window": {"size": 2}, "minimum_calls": 2, "failure_rate": 100, "open_for": "1m",
    }  # fmt: skip
    sidecar = SidecarProcess(mesh, tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            r = client.get("http://pay/charges/7")
            assert (r.status_code, r.text) == (200, "paid /charges/7")
            # the real host's name goes upstream, not the mesh's name for it
            assert outside.provider.seen[-1] == ("/charges/7", f"localhost:{outside.provider.port}")
            # policies.pay applies: the provider fails, the breaker opens, it sees no more calls
            seen = len(outside.provider.seen)
            assert [client.get("http://pay/fail").status_code for _ in range(2)] == [503, 503]
            refused = client.get("http://pay/charges/8")
            assert (refused.status_code, refused.headers["x-seawall-circuit"]) == (503, "open")
            assert refused.json()["error"] == "circuit_open"
            assert len(outside.provider.seen) == seen + 2
        assert sidecar.metric("seawall_requests_total", destination="pay") == 4
    finally:
        sidecar.stop()


def test_a_host_whose_certificate_the_roots_do_not_trust_is_refused(
    sidecar_loop: BackendLoop, tmp_path: Path, outside: Outside
) -> None:
    app = sidecar_loop.backend("app", Echo())
    mesh = _external_mesh(app, outside.provider.port, ca_file=str(outside.other_ca.cert))
    mesh.doc["external"]["named"] = {
        "host": "127.0.0.1", "port": outside.provider.port, "ca_file": str(outside.ca.cert),
        "server_name": "payments.example.com",  # not a name the certificate has
    }  # fmt: skip
    mesh.doc["policies"]["named"] = {"retry": {"attempts": 1}}
    sidecar = SidecarProcess(mesh, tmp_path).start()
    seen = len(outside.provider.seen)
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            r = client.get("http://pay/charges/1")
            assert r.status_code == 503
            assert "UnknownIssuer" in r.json()["reason"]
            r = client.get("http://named/charges/1")
            assert r.status_code == 503
            assert "not valid for name" in r.json()["reason"]
        assert len(outside.provider.seen) == seen  # no request ever reached it
        assert sidecar.metric("seawall_upstream_tls_failures_total", reason="origin") == 2
    finally:
        sidecar.stop()


def test_the_system_roots_are_the_ones_ssl_cert_file_names(
    sidecar_loop: BackendLoop,
    tmp_path: Path,
    outside: Outside,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ca_file: the sidecar trusts the system's roots, as OpenSSL finds them
    (``SSL_CERT_FILE`` first): here a bundle holding the test CA."""
    app = sidecar_loop.backend("app", Echo())
    monkeypatch.setenv("SSL_CERT_FILE", str(outside.ca.cert))
    sidecar = SidecarProcess(_external_mesh(app, outside.provider.port), tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            assert client.get("http://pay/system-roots").text == "paid /system-roots"
    finally:
        sidecar.stop()


def test_an_unreadable_ca_file_is_a_clear_error_and_keeps_the_config_running(
    sidecar_loop: BackendLoop, tmp_path: Path, outside: Outside
) -> None:
    app = sidecar_loop.backend("app", Echo())
    mesh = _external_mesh(app, outside.provider.port, ca_file=str(outside.ca.cert))
    sidecar = SidecarProcess(mesh, tmp_path).start()
    try:
        missing = tmp_path / "missing.pem"
        mesh.doc["external"]["pay"]["ca_file"] = str(missing)
        sidecar.config.write_text(mesh.yaml())
        sidecar.signal(signal.SIGHUP)
        wait_until(lambda: str(missing) in sidecar.stderr(), 10, "the reload refused")
        assert "cannot read the CA bundle" in sidecar.stderr()
        sidecar.assert_alive()
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            assert client.get("http://pay/still").text == "paid /still"
    finally:
        sidecar.stop()


# --------------------------------------------------------------------------- hedging


@dataclass
class SlowEvery(Behaviour):
    """Every ``every``-th request to arrive (the 1st, the 11th...) takes ``delay``
    seconds; the others answer at once. Answers say which they were."""

    every: int = 10
    delay: float = 2.0
    arrivals: itertools.count[int] = field(default_factory=itertools.count)

    async def act(self, ctx: _Context) -> bool:
        slow = next(self.arrivals) % self.every == 0
        return await Ok(b"slow" if slow else b"fast", delay=self.delay if slow else 0.0).act(ctx)


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def _run(client: httpx.Client, n: int) -> tuple[list[str], list[float]]:
    bodies, took = [], []
    for i in range(n):
        began = time.monotonic()
        r = client.get(f"http://svc/item/{i}")
        took.append(time.monotonic() - began)
        assert r.status_code == 200
        bodies.append(r.text)
    return bodies, took


def test_hedging_cuts_the_slow_tail_within_the_retry_budget(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    app = sidecar_loop.backend("app", Echo())
    backend = sidecar_loop.backend("tail", SlowEvery())
    mesh = Mesh(app).destination("svc", [backend])
    sidecar = SidecarProcess(mesh, tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            bodies, plain = _run(client, 20)
            assert bodies.count("slow") == 2  # the 1st and the 11th
            # hedge after 50 ms: the copy arrives next, and answers at once
            mesh.doc["policies"]["svc"]["hedge"] = {"delay": "50ms"}
            backend.script(SlowEvery())
            sidecar.reload(mesh)
            bodies, hedged = _run(client, 20)
        assert bodies.count("slow") == 0
        # 20 requests and 3 copies (the arrivals 0, 10 and 20 were slow, each
        # hedged, each copy won); the budget allowed them all
        assert backend.hits == 23
        assert sidecar.metric("seawall_hedges_total", destination="svc", outcome="won") == 3
        print(f"p99 without hedging {_p99(plain):.3f}s, with {_p99(hedged):.3f}s")
        assert _p99(plain) >= 2.0  # the slow answers themselves
        assert _p99(hedged) < 2.0  # no answer waited for a slow one
    finally:
        sidecar.stop()


def test_the_losing_copy_is_cancelled_on_the_wire(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    app = sidecar_loop.backend("app", Echo())
    backend = sidecar_loop.backend("hangs", Echo())
    policy = {"hedge": {"delay": "50ms"}}
    sidecar = SidecarProcess(Mesh(app).destination("svc", [backend], policy), tmp_path).start()
    try:
        backend.script(queue=[Hang(), Ok(b"second")])
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            r = client.get("http://svc/x")
        assert (r.status_code, r.text, r.headers["x-backend"]) == (200, "second", "hangs")
        # the hanging copy's connection was closed by the sidecar: the backend
        # sees its end of stream, and only the winner's connection stays pooled
        wait_until(lambda: backend.open_connections == 1, 5, "the loser's connection closed")
        assert sidecar.metric("seawall_hedges_total", destination="svc", outcome="won") == 1
        # the copy carried its own attempt number
        assert [s.header("x-seawall-attempt") for s in backend.seen] == ["1", "2"]
        # a POST is never hedged
        backend.script(queue=[Ok(b"slow", delay=0.3)])
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            assert client.post("http://svc/pay", content=b"x").text == "slow"
        assert backend.hits == 1
    finally:
        sidecar.stop()


def test_a_failed_copy_does_not_win_while_another_may_answer(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    app = sidecar_loop.backend("app", Echo())
    backend = sidecar_loop.backend("mixed", Echo())
    policy = {"hedge": {"delay": "50ms", "max_hedges": 1}}
    sidecar = SidecarProcess(Mesh(app).destination("svc", [backend], policy), tmp_path).start()
    try:
        # the first copy is slow but good, its hedge fails at once: the good answer wins
        backend.script(queue=[Ok(b"good", delay=0.4), Fail(503)])
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            r = client.get("http://svc/x")
            assert (r.status_code, r.text) == (200, "good")
            # every copy fails: the last failure is the answer
            backend.script(queue=[Fail(502), Fail(503)])
            assert client.get("http://svc/y").status_code in (502, 503)
        assert sidecar.metric("seawall_hedges_total", destination="svc", outcome="failed") == 2
    finally:
        sidecar.stop()


def test_copies_beyond_the_retry_budget_are_not_sent(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    """Every request is slow, so every one would be hedged: the budget (10% of
    requests, no floor) lets one copy in ten go, no more."""
    app = sidecar_loop.backend("app", Echo())
    backend = sidecar_loop.backend("slow", Ok(b"slow", delay=0.15))
    policy = {
        "hedge": {"delay": "10ms"},
        "retry": {"attempts": 1, "budget": {"ratio": 0.1, "min_per_second": 0, "ttl": "1m"}},
    }
    sidecar = SidecarProcess(Mesh(app).destination("svc", [backend], policy), tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            for i in range(30):
                assert client.get(f"http://svc/{i}").status_code == 200
        copies = backend.hits - 30
        assert 1 <= copies <= 3, copies  # 10% of 30
        refused = sidecar.metric(
            "seawall_hedges_total", destination="svc", outcome="refused_budget"
        )
        assert refused == 30 - copies
    finally:
        sidecar.stop()


# --------------------------------------------------------------------------- rate limits


def test_an_outbound_rate_limit_answers_429_at_once(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    app = sidecar_loop.backend("app", Echo())
    backend = sidecar_loop.backend("limited", Echo())
    policy = {"rate_limit": {"rate": 0.1, "burst": 2}, "retry": {"attempts": 3}}
    sidecar = SidecarProcess(Mesh(app).destination("svc", [backend], policy), tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=10) as client:
            statuses = [client.get(f"http://svc/{i}").status_code for i in range(2)]
            refused = client.get("http://svc/3")
        assert statuses == [200, 200]
        assert refused.status_code == 429
        assert refused.reason_phrase == "Too Many Requests"
        assert refused.headers["retry-after"] == "10"  # one token per 10 s
        assert refused.headers["x-seawall-overloaded"] == "1"  # callers must not retry it
        assert refused.headers["x-seawall-ratelimit"] == "outbound"
        assert refused.json() == {
            "error": "rate_limited",
            "destination": "svc",
            "reason": "rate limit for calls to 'svc' reached",
        }
        assert backend.hits == 2  # the refused call was never sent
        assert sidecar.metric("seawall_rate_limited_total", destination="svc") == 1
    finally:
        sidecar.stop()


def test_an_inbound_rate_limit_has_a_bucket_per_caller(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    """Over mTLS each caller's identity has its own bucket; callers without one
    (plaintext, the service is permissive) share one."""
    names = ("app", "orders", "gateway")
    backends = {n: sidecar_loop.backend(n, Echo()) for n in names}
    ports = iter(free_ports(12))
    services = {
        n: {
            "port": backends[n].port,
            "sidecar": {"inbound": next(ports), "outbound": next(ports), "admin": next(ports)},
        }
        for n in names
    }
    services["app"]["rate_limit"] = {"rate": 0.1, "burst": 1}
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump({"mesh": "t", "services": services}))
    ca = make_ca(tmp_path / "ca")
    identities = {n: make_identity(ca, tmp_path / n, n) for n in names}
    thread = SidecarThread()
    try:
        thread.start(path, "app", identities["app"])
        inbound = services["app"]["sidecar"]["inbound"]
        request = b"GET /x HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"

        def call(caller: str) -> bytes:
            return tls_request(inbound, client_from_identity(identities[caller]), request)[1]

        def status(answer: bytes) -> int:
            return int(answer.split(b" ", 2)[1])

        wait_until(lambda: _answers(inbound), 10, "the app's sidecar listening")
        assert status(call("orders")) == 200
        second = call("orders")
        assert status(second) == 429
        assert b"retry-after: 10" in second.lower()
        assert b"rate limit of 'app' reached for 'orders'" in second
        # another caller has its own bucket
        assert status(call("gateway")) == 200
        # plaintext callers share one
        with httpx.Client(timeout=5) as plain:
            assert plain.get(f"http://127.0.0.1:{inbound}/p").status_code == 200
            r = plain.get(f"http://127.0.0.1:{inbound}/p")
        assert r.status_code == 429
        assert r.json()["reason"] == "rate limit of 'app' reached for unauthenticated callers"
        assert backends["app"].hits == 3
    finally:
        thread.close()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
