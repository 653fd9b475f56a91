"""Malformed responses from an upstream: the hyper client side of the framing advisories.

The sidecar reads upstream responses with hyper's client, pinned at 1.13 for
the Content-Length-before-Transfer-Encoding fix (hyper#4123, client side PR
#4181) and the earlier advisories (RUSTSEC-2021-0020, -0078, -0079). Each case
here is a raw upstream that answers with crafted bytes; the client behind the
sidecar must get either one well-framed response or a 502, never two
responses or bytes of one spilling into the next, and a connection whose
framing was in doubt (a cut body) is never reused.
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
