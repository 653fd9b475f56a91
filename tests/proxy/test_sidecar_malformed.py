"""Malformed requests over raw sockets: refused with the right status, never forwarded.

Each case is sent on a fresh connection to a sidecar of its own (small limits,
short header and body timeouts). It must be answered with the expected status
(or, where no status can be given, a close), the connection must then be
closed, no complete request may reach the backend (none at all when the head
itself is invalid), and the sidecar must keep serving. A last test replays
every case and checks that the sidecar's file descriptors come back to where
they were (no leaked connection, upstream or downstream) and that no task
died with an unhandled exception.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, RawConn
from conftest import Mesh, SidecarProcess

KIB = 1024


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    expect: frozenset[int | None]  # statuses allowed; None: a close without a response
    head_ok: bool = False  # the head is valid: it may go upstream while the body streams
    shutdown: bool = False  # half-close after sending (the client went away)


def case(
    id: str,
    data: bytes,
    *expect: int | None,
    head_ok: bool = False,
    shutdown: bool = False,
) -> Case:
    return Case(id, data, frozenset(expect or (400,)), head_ok, shutdown)


def post(*fields: bytes, body: bytes = b"", method: bytes = b"POST") -> bytes:
    return (
        method
        + b" /m HTTP/1.1\r\nHost: svc\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + (b"\r\n" + body)
    )


CHUNKED = b"Transfer-Encoding: chunked"
GET = b"GET / HTTP/1.1\r\nHost: svc\r\n"

CASES = [
    # request smuggling: framing that two parsers could read two ways
    case("cl-and-te", post(b"Content-Length: 5", CHUNKED, body=b"0\r\n\r\n")),
    case("te-and-cl", post(CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n")),
    case("duplicate-cl", post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello")),
    case("conflicting-cl", post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!")),
    case("cl-list", post(b"Content-Length: 5, 5", body=b"hello")),
    case("cl-negative", post(b"Content-Length: -1")),
    case("cl-plus-sign", post(b"Content-Length: +5", body=b"hello")),
    case("cl-hex", post(b"Content-Length: 0x5", body=b"hello")),
    case("cl-inner-space", post(b"Content-Length: 1 0", body=b"0123456789")),
    case("cl-not-a-number", post(b"Content-Length: abc")),
    case("te-chunked-twice", post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n")),
    case("te-chunked-not-last", post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n")),
    case("te-unknown-coding", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    case("te-xchunked", post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n")),
    case("te-in-http-1.0", b"POST /m HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    case("te-obs-fold", post(b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n")),
    # field syntax
    case("obs-fold", GET + b"X-A: a\r\n b\r\n\r\n"),
    case("bare-cr-in-value", GET + b"X-A: a\rb\r\n\r\n"),
    case("bare-lf-line-endings", b"GET / HTTP/1.1\nHost: svc\n\n"),
    case("bare-lf-in-head", GET + b"X-A: b\nX-B: c\r\n\r\n"),
    case("nul-in-value", GET + b"X-A: a\x00b\r\n\r\n"),
    case("nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: svc\r\n\r\n"),
    case("space-before-colon", GET + b"X-A : b\r\n\r\n"),
    case("bad-field-name", GET + b"X(A): b\r\n\r\n"),
    case("field-without-colon", GET + b"NoColonHere\r\n\r\n"),
    case("empty-field-name", GET + b": value\r\n\r\n"),
    case("missing-host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n"),
    case("duplicate-host", GET + b"Host: other\r\n\r\n"),
    case("invalid-host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    case("bare-lf-before-request-line", b"\nGET / HTTP/1.1\r\nHost: svc\r\n\r\n"),
    # request line
    case("unsupported-version", b"GET / HTTP/2.0\r\nHost: svc\r\n\r\n", 505),
    case("lowercase-version", b"GET / http/1.1\r\nHost: svc\r\n\r\n"),
    case("http-0.9", b"GET /\r\n\r\n"),
    case("connect", b"CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n", 405),
    case("bad-method", b"G(T / HTTP/1.1\r\nHost: svc\r\n\r\n"),
    case("userinfo-in-target", b"GET http://user@svc/ HTTP/1.1\r\nHost: svc\r\n\r\n"),
    case("ftp-target", b"GET ftp://svc/ HTTP/1.1\r\nHost: svc\r\n\r\n"),
    case("fragment-in-target", b"GET /a#b HTTP/1.1\r\nHost: svc\r\n\r\n"),
    case("asterisk-with-get", b"GET * HTTP/1.1\r\nHost: svc\r\n\r\n"),
    # garbage
    case("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))),
    case("garbage-line", b"hello world\r\n\r\n"),
    case("binary-garbage", b"\xff\xfe\x00\x01" * 16),
    # sizes: 414, 431, 413
    case(
        "request-line-too-long",
        b"GET /" + b"a" * (2 * KIB) + b" HTTP/1.1\r\nHost: svc\r\n\r\n",
        414,
    ),
    case("too-many-fields", GET + b"".join(b"X-%d: v\r\n" % i for i in range(40)) + b"\r\n", 431),
    case("header-section-too-large", GET + b"X-Big: " + b"v" * (6 * KIB) + b"\r\n\r\n", 431),
    case("body-too-large-cl", post(b"Content-Length: 100000"), 413),
    case("body-too-large-chunked", post(CHUNKED, body=b"20000\r\n"), 413, head_ok=True),
    # chunked bodies (valid heads: a POST streams, so its head may already be upstream)
    case("chunk-size-not-hex", post(CHUNKED, body=b"zz\r\nhello\r\n0\r\n\r\n"), head_ok=True),
    case(
        "chunk-size-trailing-space", post(CHUNKED, body=b"5 \r\nhello\r\n0\r\n\r\n"), head_ok=True
    ),
    case("chunk-size-overflow", post(CHUNKED, body=b"1" + b"0" * 16 + b"\r\n"), head_ok=True),
    case("chunk-size-negative", post(CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n"), head_ok=True),
    case("chunk-data-too-long", post(CHUNKED, body=b"5\r\nhelloXX\r\n0\r\n\r\n"), head_ok=True),
    case("chunk-bare-lf", post(CHUNKED, body=b"5\nhello\n0\n\n"), head_ok=True),
    case("chunk-bad-trailer", post(CHUNKED, body=b"0\r\nbad trailer\r\n\r\n"), head_ok=True),
    # slow and early-closing clients
    case("slowloris-head", b"GET / HTTP/1.1\r\nHost: svc\r\nX-A: b\r\n", 408),
    case("stalled-body", post(b"Content-Length: 10", body=b"he", method=b"PUT"), 408),
    case(
        "close-mid-body",
        post(b"Content-Length: 100", body=b"0123456789", method=b"PUT"),
        400,
        None,
        shutdown=True,
    ),
    case(
        "close-mid-chunked-body",
        post(CHUNKED, body=b"a\r\n01234"),
        400,
        None,
        head_ok=True,
        shutdown=True,
    ),
    case("close-mid-head", b"GET / HTTP/1.1\r\nHost: s", 400, None, shutdown=True),
]
assert len({c.id for c in CASES}) == len(CASES) >= 30


class Target:
    def __init__(self, sidecar: SidecarProcess, backend: Backend) -> None:
        self.sidecar = sidecar
        self.backend = backend
        self.port = sidecar.upstream("svc")


@pytest.fixture(scope="module")
def sidecar_strict(
    sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A sidecar with small limits and short timeouts, in front of one echoing backend."""
    backend = sidecar_loop.backend("svc", Echo())
    mesh = Mesh(
        backend,
        limits={
            "max_request_line": "1KiB",
            "max_header_count": 20,
            "max_header_bytes": "4KiB",
            "max_body_bytes": "64KiB",
            "header_timeout": "500ms",
            "body_timeout": "500ms",
        },
    )
    mesh.destination("svc", [backend], {"retry": {"attempts": 2}}, upstream_port=True)
    # two hops in one process: out through "hop", whose endpoint is this
    # sidecar's own inbound listener, which forwards to the app (backend)
    mesh.destination("hop", [mesh.inbound], upstream_port=True)
    process = SidecarProcess(mesh, tmp_path_factory.mktemp("strict"))
    try:
        yield Target(process.start(), backend)
    finally:
        process.stop()


def send(port: int, c: Case) -> tuple[int | None, bool]:
    """Send a case; return (the status answered or None, whether the connection closed)."""
    with RawConn(port, timeout=3) as conn:
        conn.send(c.data)
        if c.shutdown:
            conn.sock.shutdown(socket.SHUT_WR)
        resp = conn.response_or_close(timeout=3)
        closed = resp is None or conn.closed(timeout=2)
    return (None if resp is None else resp.status), closed


def test_a_refused_request_gets_a_reason_phrase_and_a_json_body(sidecar_strict: Target) -> None:
    with RawConn(sidecar_strict.port, timeout=3) as conn:
        conn.send(GET + b"Host: other\r\n\r\n")
        resp = conn.response()
    assert (resp.status, resp.reason) == (400, "Bad Request")
    assert resp.header("content-type") == "application/json"
    assert json.loads(resp.body) == {
        "error": "bad_request",
        "destination": None,
        "reason": "duplicate Host",
    }


def good_request(target: Target) -> None:
    r = httpx.get(f"http://127.0.0.1:{target.port}/good", timeout=5)
    assert r.status_code == 200
    assert r.json()["target"] == "/good"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_malformed_request_is_refused_and_never_forwarded(sidecar_strict: Target, c: Case) -> None:
    backend = sidecar_strict.backend.script(Echo())
    status, closed = send(sidecar_strict.port, c)
    assert status in c.expect, f"{c.id}: got {status}, expected one of {set(c.expect)}"
    assert closed, f"{c.id}: the connection stayed open"
    time.sleep(0.02)  # a forwarded request would be at the backend by now
    assert backend.hits == 0, f"{c.id}: reached the backend: {backend.seen}"
    if not c.head_ok:
        assert backend.heads == 0, f"{c.id}: its head reached the backend"
    sidecar_strict.sidecar.assert_alive()
    good_request(sidecar_strict)


def test_malformed_requests_leak_no_connection_and_crash_no_task(sidecar_strict: Target) -> None:
    sidecar, backend = sidecar_strict.sidecar, sidecar_strict.backend.script(Echo())
    good_request(sidecar_strict)
    time.sleep(0.1)
    fds, upstream = sidecar.fd_count(), backend.open_connections
    for _ in range(2):
        for c in CASES:
            send(sidecar_strict.port, c)
    good_request(sidecar_strict)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if sidecar.fd_count() <= fds and backend.open_connections <= upstream:
            break
        time.sleep(0.02)
    assert (sidecar.fd_count(), backend.open_connections) <= (fds, upstream), (
        f"sidecar fds {fds} -> {sidecar.fd_count()}, "
        f"upstream connections {upstream} -> {backend.open_connections}"
    )
    assert [s.target for s in backend.seen] == ["/good", "/good"]
    err = sidecar.stderr()
    assert "Traceback" not in err, err[-3000:]


def test_a_request_within_the_limits_gets_through_the_next_sidecar_too(
    sidecar_strict: Target,
) -> None:
    """The fields a sidecar adds (Via, X-Forwarded-For, the trace, the deadline)
    do not take a request over the limits at the destination's sidecar: an
    inbound listener has room for them (found by the request_head fuzz target)."""
    backend = sidecar_strict.backend.script(Echo())
    hop = sidecar_strict.sidecar.upstream("hop")
    # 20 fields (max_header_count) and close to 4 KiB (max_header_bytes)
    fields = [b"Host: hop"] + [b"X-F%02d: %s" % (i, b"v" * 200) for i in range(19)]
    head = b"GET /full HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    assert 3900 < len(head) <= 4096
    with RawConn(hop, timeout=5) as conn:
        conn.send(head)
        resp = conn.response()
    assert resp.status == 200, resp
    seen = backend.seen[-1]
    assert seen.target == "/full"
    assert seen.header("x-f18") == "v" * 200
    assert ",".join(seen.all("via")).count("seawall") == 2  # both hops
    # the limits still hold for what a client sends
    with RawConn(hop, timeout=5) as conn:
        conn.send(head[:-2] + b"X-F19: one too many\r\n\r\n")
        assert conn.response().status == 431
