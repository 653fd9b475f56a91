"""The control API's HTTP server (aiohttp): limits, disconnects, many long-polls, shutdown.

Real sockets on loopback against an in-process replica. Raw bytes where the
test is about what the server does with them (an oversized or malformed
request), httpx where it is about the API.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from control_server import InProcessControl, applied

from seawall.control import http_server
from seawall.control.api import MAX_BODY
from seawall.control.store import ConfigRecord
from seawall.control.store.sqlite import SqliteStore

MESH = """\
mesh: shop
services:
  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
policies:
  orders: {timeout: 2s}
"""


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    with applied(tmp_path / "state", MESH) as server:
        yield server


def _exchange(control: InProcessControl, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; the response (head and body) that comes back."""
    host, port = control.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := s.recv(65536)):
            received += chunk
        head = received.partition(b"\r\n\r\n")[0].lower()
        length = int(head.partition(b"content-length: ")[2].partition(b"\r\n")[0] or 0)
        while len(received) < len(head) + 4 + length and (chunk := s.recv(65536)):
            received += chunk
        return received


def _closes(control: InProcessControl, data: bytes) -> bool:
    """Whether the server closes the connection after answering ``data``."""
    host, port = control.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        while s.recv(65536):
            pass
        return True  # (a server that kept it open would have timed the recv out)


def _wait_for(what: str, check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# ------------------------------------------------------------------ limits


def test_an_oversized_content_length_is_a_413_before_the_body_is_read(
    control: InProcessControl,
) -> None:
    head = (
        f"PUT /v1/config HTTP/1.1\r\nHost: control\r\nContent-Length: {MAX_BODY + 1}\r\n"
        f"Authorization: Bearer {control.tokens.admin}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = _exchange(control, head)  # no body sent: the answer cannot wait for it
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert b"application/json" in rest.lower()
    assert rest.endswith(b'{"error": "body: larger than 4194304 bytes"}')


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_body_is_a_413_and_nothing_is_applied(
    control: InProcessControl, framing: str
) -> None:
    body = b"#" * (MAX_BODY + 1)
    with control.client(**control.admin) as c:
        if framing == "chunked":
            r = c.put("/v1/config", content=iter([body[:65536], body[65536:]]))
        else:
            r = c.put("/v1/config", content=body)
        assert r.status_code == 413
        assert r.json() == {"error": f"body: larger than {MAX_BODY} bytes"}
        assert c.get("/v1/config").json()["version"] == 1
        # a body of exactly the limit is read (and refused as a config, not as a size)
        assert c.put("/v1/config", content=b"#" * MAX_BODY).status_code == 422


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"this is not HTTP\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: control\r\nContent-Length: x\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: control\r\n\r\n",  # request line
        b"GET /v1/health HTTP/1.1\r\n" + b"x-h: 1\r\n" * 101 + b"\r\n",
        b"GET /v1/health HTTP/1.1\r\nx-big: " + b"a" * 9000 + b"\r\n\r\n",  # one header line
    ],
    ids=["garbage", "bad-length", "bad-header", "long-line", "101-headers", "long-header"],
)
def test_a_malformed_request_is_a_400_and_the_connection_is_closed(
    control: InProcessControl, request_bytes: bytes
) -> None:
    answer = _exchange(control, request_bytes)
    assert answer.split(b" ", 2)[1] == b"400"  # (HTTP/1.0 when not even the version parsed)
    assert _closes(control, request_bytes)
    with control.client() as c:  # and the server is fine
        assert c.get("/v1/health").status_code == 200


def test_a_stalled_body_is_a_408(
    control: InProcessControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "BODY_TIMEOUT", 0.3)
    head = (
        b"PUT /v1/config HTTP/1.1\r\nHost: control\r\nContent-Length: 100\r\n"
        b"Authorization: Bearer " + control.tokens.admin.encode() + b"\r\n\r\nmesh: "
    )
    started = time.monotonic()
    answer = _exchange(control, head)
    assert time.monotonic() - started < 3
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"error": "body: not received in 0.3 s"}')


def test_keep_alive_head_and_the_answer_headers(control: InProcessControl) -> None:
    with control.client() as c:
        first = c.get("/v1/health")
        second = c.get("/v1/ca")
        head = c.head("/v1/health")
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "no-store"
    assert second.headers["content-type"] == "application/x-pem-file"
    assert second.text.startswith("-----BEGIN CERTIFICATE-----")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0


# ------------------------------------------------------------------ long-polls


def test_500_long_polls_wait_cheaply_and_all_get_the_change(control: InProcessControl) -> None:
    token = control.tokens.join_token("orders")
    with control.client(**control.join("orders")) as c:
        etag = c.get("/v1/snapshot").json()["etag"]
    host, port = control.url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"GET /v1/snapshot?known={etag}&wait=30 HTTP/1.1\r\nHost: control\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()

    async def run() -> list[int]:
        conns = [await asyncio.open_connection(host, int(port)) for _ in range(500)]
        for _, writer in conns:
            writer.write(request)
        api = control.server.api
        assert api is not None
        deadline = time.monotonic() + 10
        while api.subscribers < 500:
            assert time.monotonic() < deadline, f"{api.subscribers} of 500 waiting"
            await asyncio.sleep(0.02)
        changed = asyncio.get_running_loop().run_in_executor(
            None, lambda: _apply(control, MESH.replace("2s", "3s"))
        )
        started = time.monotonic()
        heads = await asyncio.gather(*(r.readuntil(b"\r\n\r\n") for r, _ in conns))
        elapsed = time.monotonic() - started
        await changed
        for _, writer in conns:
            writer.close()
        assert elapsed < 2.0, elapsed
        return [int(h.split(b" ", 2)[1]) for h in heads]

    assert set(asyncio.run(run())) == {200}


def _apply(control: InProcessControl, mesh: str) -> int:
    with control.client(**control.admin) as c:
        r = c.put("/v1/config", content=mesh)
        assert r.status_code == 200, r.text
        return int(r.json()["version"])


def test_a_long_poll_whose_client_left_holds_nothing(control: InProcessControl) -> None:
    api = control.server.api
    assert api is not None
    with control.client(**control.join("orders")) as c:
        etag = c.get("/v1/snapshot").json()["etag"]
    token = control.tokens.join_token("orders")
    host, port = control.url.removeprefix("http://").rsplit(":", 1)
    socks = []
    for _ in range(50):
        s = socket.create_connection((host, int(port)))
        s.sendall(
            f"GET /v1/snapshot?known={etag}&wait=60 HTTP/1.1\r\nHost: control\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        socks.append(s)
    _wait_for("the long-polls never started waiting", lambda: api.subscribers == 50)
    for s in socks:
        s.close()
    _wait_for("the long-polls of closed connections still wait", lambda: api.subscribers == 0)


# ------------------------------------------------------------------ shutdown


class _SlowStore(SqliteStore):
    """A SQLite store whose config writes take a while (a request in flight at shutdown)."""

    writing = threading.Event()

    async def put_config(self, document: str, digest: str) -> ConfigRecord:
        self.writing.set()
        await asyncio.sleep(0.5)
        return await super().put_config(document, digest)


def test_stop_finishes_requests_in_flight_and_ends_long_polls(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = _SlowStore(state / "seawall.db")
    control = InProcessControl(state, store=store)
    try:
        assert _apply(control, MESH) == 1
        with control.client(**control.join("orders")) as c:
            etag = c.get("/v1/snapshot").json()["etag"]
        polls: list[httpx.Response] = []
        applies: list[httpx.Response] = []

        def poll() -> None:
            with control.client(**control.join("orders")) as c:
                polls.append(c.get("/v1/snapshot", params={"known": etag, "wait": "60"}))

        def apply() -> None:
            with control.client(**control.admin) as c:
                applies.append(c.put("/v1/config", content=MESH.replace("2s", "3s")))

        threads = [threading.Thread(target=poll) for _ in range(5)]
        for t in threads:
            t.start()
        api = control.server.api
        assert api is not None
        _wait_for("the long-polls never started waiting", lambda: api.subscribers == 5)
        store.writing.clear()
        writer = threading.Thread(target=apply)
        writer.start()
        assert store.writing.wait(5)
        started = time.monotonic()
        control.run(control.server.stop())
        stopped = time.monotonic() - started
        writer.join(5)
        for t in threads:
            t.join(5)
        assert stopped < 3.0, stopped
        # the apply in flight finished and answered; the long-polls were answered
        assert [r.status_code for r in applies] == [200]
        assert applies[0].json()["version"] == 2
        assert len(polls) == 5
        assert all(r.status_code in (200, 304) for r in polls)
        # and nothing listens any more
        with pytest.raises(httpx.ConnectError), control.client() as c:
            c.get("/v1/health")
    finally:
        control.close()


def test_a_connection_that_sends_no_whole_request_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle keep-alive connections, and ones that never finish a request head, are closed
    after the idle timeout (a slow-loris client cannot hold a connection forever)."""
    monkeypatch.setattr(http_server, "IDLE_TIMEOUT", 0.5)
    control = InProcessControl(tmp_path / "state")
    try:
        host, port = control.url.removeprefix("http://").rsplit(":", 1)
        for sent in (b"", b"GET /v1/health HTTP/1.1\r\nHost: con"):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(sent)
                started = time.monotonic()
                assert s.recv(65536) == b""  # closed by the server, not timed out here
                assert time.monotonic() - started < 3
    finally:
        control.close()
