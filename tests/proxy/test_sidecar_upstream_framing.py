"""Responses from an upstream, well-formed and not: the client side of the framing rules.

The sidecar reads upstream responses with seawall-h1's response parser
(`parse_response_head`, which alone decides how a body is delimited) on the
request's own task. The cases of hyper's client advisories are kept:
Content-Length before Transfer-Encoding (hyper#4123), and RUSTSEC-2021-0020,
-0078, -0079. Each case here is a raw upstream that answers with crafted
bytes; the client behind the sidecar must get either one well-framed response
or a 502, never two responses or bytes of one spilling into the next, and a
connection whose framing was in doubt (a cut body) is never reused.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from backends import BackendLoop, RawConn
from conftest import Mesh, SidecarProcess

Start = Callable[[Mesh], SidecarProcess]


def request(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: raw\r\n\r\n".encode()


class RawUpstream:
    """Answers every request on a connection with ``answer``, then (optionally) closes."""

    def __init__(self, answer: bytes, *, close: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buf = b""
        with conn:
            for _ in range(100):  # bounded: at most 100 requests per connection
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)  # the tests send no request bodies
                self.requests += 1
                try:
                    conn.sendall(self.answer)
                except OSError:
                    return
                if self.close:
                    return

    def stop(self) -> None:
        self._stop = True
        self.listener.close()


Fixture = tuple[Mesh, list[RawUpstream], Start]


@pytest.fixture
def upstream_mesh(sidecar_start: Start, sidecar_loop: BackendLoop) -> Iterator[Fixture]:
    ups: list[RawUpstream] = []
    yield Mesh(sidecar_loop.backend("svc")), ups, sidecar_start
    for u in ups:
        u.stop()


def start(fixture: Fixture, answer: bytes, *, close: bool = False) -> tuple[
    SidecarProcess, RawUpstream
]:
    mesh, ups, sidecar_start = fixture
    up = RawUpstream(answer, close=close)
    ups.append(up)
    mesh.destination("raw", [up.port], upstream_port=True)
    return sidecar_start(mesh), up


def test_content_length_before_transfer_encoding_is_not_trusted(upstream_mesh: Fixture) -> None:
    """CL then TE (hyper#4123): Transfer-Encoding wins and Content-Length is dropped, as
    RFC 9112 §6.3 asks of an intermediary that forwards such a message: the client gets
    the chunked body, framed anew, and the next exchange on the connection is intact."""
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        for _ in range(2):
            conn.send(request("GET", "/x"))
            resp = conn.response()
            assert resp.status == 200
            assert resp.body == b"abc"
    assert up.requests == 2


@pytest.mark.parametrize(
    ("case", "answer"),
    [
        (
            "duplicate-content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        # RUSTSEC-2021-0078
        ("content-length-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
        ("content-length-junk", b"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc"),
        ("bad-status-line", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
        ("nul-in-header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ],
)
def test_an_unreadable_response_head_is_a_502(
    upstream_mesh: Fixture, case: str, answer: bytes
) -> None:
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        resp = conn.response()
    assert resp.status == 502, case


def test_a_chunk_size_overflow_cuts_the_response(upstream_mesh: Fixture) -> None:
    """RUSTSEC-2021-0079: a chunk size beyond 64 bits is an error, not a wrapped size."""
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"
    )
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        head = conn.head()
        assert head.startswith(b"HTTP/1.1 200")
        assert conn.closed()  # the body is cut and the client's connection closed: no desync


def test_multiple_transfer_encodings_are_not_smuggled(upstream_mesh: Fixture) -> None:
    """RUSTSEC-2021-0020: `chunked` then another coding: the body is read to the close,
    never as chunked (a second response hidden in it is not a response)."""
    smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhidden"
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
        b"0\r\n\r\n" + smuggled
    )
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        resp = conn.response_or_close()
        if resp is not None and resp.status == 200:
            assert b"hidden" in resp.body  # part of the one body, not a second response
        conn.send(request("GET", "/y"))
        again = conn.response_or_close()
        assert again is None or again.status in (200, 502)


def test_trailers_are_forwarded_with_a_chunked_body(upstream_mesh: Fixture) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nx-checksum: 900150983cd24fb0\r\n\r\n"
    )
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        head = conn.head()
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head.lower()
        rest = conn.exactly(len(b"3\r\nabc\r\n0\r\nx-checksum: 900150983cd24fb0\r\n\r\n"))
        assert rest == b"3\r\nabc\r\n0\r\nx-checksum: 900150983cd24fb0\r\n\r\n"
        conn.send(request("GET", "/y"))  # the connection is intact after the trailers
        assert conn.response().body == b"abc"
    assert up.connections == 1  # and so was the upstream's: it was reused


def test_an_interim_response_is_skipped(upstream_mesh: Fixture) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        head = conn.head()
        assert head.startswith(b"HTTP/1.1 200"), head
        assert conn.exactly(2) == b"ok"


def test_a_close_delimited_body_is_read_to_the_end_and_not_reused(
    upstream_mesh: Fixture,
) -> None:
    answer = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100_000
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        for _ in range(2):
            conn.send(request("GET", "/x"))
            resp = conn.response()
            assert resp.status == 200
            assert resp.body == b"x" * 100_000
            assert resp.chunked  # framed anew for the client, whose connection is kept
    assert up.connections == 2


def test_an_http10_upstream_is_not_reused_without_keep_alive(upstream_mesh: Fixture) -> None:
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        for _ in range(3):
            conn.send(request("GET", "/x"))
            assert conn.response().body == b"ok"
    assert up.connections == 3


def test_a_response_head_over_64_kib_is_a_502(upstream_mesh: Fixture) -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 70_000 + b"\r\n\r\n"
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        resp = conn.response()
    assert resp.status == 502


def test_a_pooled_connection_the_upstream_closed_is_not_used(upstream_mesh: Fixture) -> None:
    """The upstream closes each connection after answering (without saying so): the next
    request must not fail on the dead pooled connection, nor count as a retry."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        for _ in range(5):
            conn.send(request("GET", "/x"))
            resp = conn.response()
            assert resp.status == 200, resp.body
    assert up.requests == 5


def test_an_early_answer_to_a_streamed_upload_is_forwarded(upstream_mesh: Fixture) -> None:
    """The upstream answers 413 as soon as it sees the head of a 10 MB upload: the client
    gets that answer while it is still sending (the body is streamed, not buffered), and
    its connection is closed after it, since the rest of its body will not be read."""
    answer = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n"
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: raw\r\nContent-Length: 10000000\r\n\r\n")
        conn.send(b"x" * 1_000_000)  # a tenth of it, more than the retry buffer
        resp = conn.response()
        assert resp.status == 413
        assert resp.body == b"too big\n"
        assert resp.header("connection") == "close"


def test_a_switch_nobody_asked_for_is_a_502(upstream_mesh: Fixture) -> None:
    """A 101 to a request without Upgrade would turn the pooled connection into a raw
    tunnel: it is a protocol error, and the connection is not used again."""
    answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    sidecar, up = start(upstream_mesh, answer)
    with RawConn(sidecar.upstream("raw")) as conn:
        conn.send(request("GET", "/x"))
        assert conn.response().status == 502


def test_sends_again_after_stale_connections_leave_the_balancer_even(
    upstream_mesh: Fixture,
) -> None:
    """Each request counts once for the balancer, however many dead pooled connections
    it met on the way: when all are answered, no endpoint has a request active."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    sidecar, up = start(upstream_mesh, answer, close=True)
    with RawConn(sidecar.upstream("raw")) as conn:
        for _ in range(20):
            conn.send(request("GET", "/x"))
            assert conn.response().status == 200
    clusters = sidecar.admin_get("/clusters").json()["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == "raw"]
    (endpoint,) = cluster["endpoints"]
    assert endpoint["requests_active"] == 0
    assert endpoint["requests_total"] == 20
    assert endpoint["requests_failed"] == 0
