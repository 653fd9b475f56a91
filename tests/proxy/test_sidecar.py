"""The sidecar forwards HTTP/1.1 correctly (RFC 9110/9112), over real sockets.

Real clients (httpx sync and async, requests, urllib through HTTP_PROXY, raw
sockets for what clients will not send) talk to a real sidecar process, which
talks to scripted backends (see ``conftest.py`` and ``backends.py``).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from backends import Chunked, Echo, Hang, Ok, RawConn, Trickle, Upgrade, wait_until
from conftest import MainMesh

Json = dict[str, Any]


@pytest.fixture
def plain(sidecar_main: MainMesh) -> MainMesh:
    """The shared sidecar, with the ``plain`` backend echoing and its counts reset."""
    sidecar_main.sidecar.assert_alive()
    sidecar_main.b["plain"].script(Echo(), paths={})
    return sidecar_main


def echo_headers(doc: Json) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in doc["headers"]:
        out.setdefault(name, []).append(value)
    return out


def request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: plain"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --------------------------------------------------------------------------- forwarding


def test_forwards_through_the_destination_port(plain: MainMesh) -> None:
    port = plain.sidecar.upstream("plain")
    r = httpx.get(f"http://127.0.0.1:{port}/hello?x=1", timeout=5)
    assert r.status_code == 200
    doc = r.json()
    assert (doc["backend"], doc["method"], doc["target"]) == ("plain", "GET", "/hello?x=1")
    assert plain.b["plain"].hits == 1


def test_forwards_absolute_form_through_http_proxy(
    plain: MainMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = plain.sidecar.proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)  # as an unmodified app would be configured
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    r = requests.get("http://plain/x?y=2", timeout=5)
    assert r.status_code == 200
    doc = r.json()
    # absolute-form in, origin-form out, Host from the target's authority
    assert doc["target"] == "/x?y=2"
    assert echo_headers(doc)["host"] == ["plain"]

    assert requests.get("http://plain/p", proxies={"http": proxy}, timeout=5).status_code == 200
    with httpx.Client(proxy=proxy, timeout=5) as client:
        assert client.get("http://plain/httpx").json()["target"] == "/httpx"

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    with opener.open("http://plain/urllib", timeout=5) as resp:
        assert resp.status == 200
        assert b'"/urllib"' in resp.read()
    assert plain.b["plain"].hits == 4


def test_async_client_concurrent_requests(plain: MainMesh) -> None:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(proxy=plain.sidecar.proxy, timeout=5) as client:
            return await asyncio.gather(*(client.get(f"http://plain/n{i}") for i in range(40)))

    responses = asyncio.run(main())
    assert [r.json()["target"] for r in responses] == [f"/n{i}" for i in range(40)]
    assert plain.b["plain"].hits == 40


def test_keep_alive_reuses_connections_on_both_sides(plain: MainMesh) -> None:
    backend = plain.b["plain"]
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        for i in range(6):
            conn.send(request("GET", f"/ka{i}"))
            assert conn.response().json()["target"] == f"/ka{i}"
    # six requests on one client connection went over one pooled upstream connection
    assert backend.hits == 6
    assert len({seen.connection for seen in backend.seen}) == 1
    assert backend.connections <= 1


def test_pipelined_requests_are_answered_in_order(plain: MainMesh) -> None:
    backend = plain.b["plain"]
    backend.script(Echo(), paths={"/slow": Ok(b"slow", delay=0.2)})
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(
            request("GET", "/slow") + request("POST", "/p2", body=b"two") + request("GET", "/p3")
        )
        first, second, third = conn.response(), conn.response(), conn.response()
    assert first.body == b"slow"
    assert second.json()["target"] == "/p2"
    assert base64.b64decode(second.json()["body_b64"]) == b"two"
    assert third.json()["target"] == "/p3"
    assert [s.target for s in backend.seen] == ["/slow", "/p2", "/p3"]


def test_a_client_that_goes_away_closes_the_upstream_connection(plain: MainMesh) -> None:
    backend = plain.b["plain"].script(Hang())
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("GET", "/hang"))
        backend.wait_heads(1)
        during = backend.open_connections
        conn.abort()  # RST: the client is gone
    # the request is cancelled: its upstream connection must be closed, not orphaned
    # (well before the route's 2 s timeout would end the exchange anyway)
    wait_until(
        lambda: backend.open_connections < during, timeout=1, what="the upstream connection closed"
    )


# --------------------------------------------------------------------------- headers


def test_via_and_x_forwarded_for_are_added(plain: MainMesh) -> None:
    port = plain.sidecar.upstream("plain")
    r = httpx.get(f"http://127.0.0.1:{port}/", headers={"x-forwarded-for": "10.1.2.3"}, timeout=5)
    headers = echo_headers(r.json())
    assert "1.1 seawall" in ", ".join(headers["via"])
    assert headers["x-forwarded-for"] == ["10.1.2.3, 127.0.0.1"]
    assert "seawall" in r.headers["via"]  # on the response too (RFC 9110 §7.6.3)


def test_hop_by_hop_request_headers_are_not_forwarded(plain: MainMesh) -> None:
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(
            request(
                "GET",
                "/hop",
                {
                    "Connection": "keep-alive, X-Secret",
                    "X-Secret": "listed in Connection",
                    "Keep-Alive": "timeout=5",
                    "TE": "trailers",
                    "Trailer": "x-checksum",
                    "Upgrade": "h2c",  # not an upgrade: Connection does not list it
                    "Proxy-Authorization": "Basic abc",
                    "Proxy-Connection": "keep-alive",
                    "X-End-To-End": "kept",
                },
            )
        )
        resp = conn.response()
    assert resp.status == 200
    headers = echo_headers(resp.json())
    for name in (
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ):
        assert name not in headers, name
    assert "x-secret" not in ",".join(headers.get("connection", [])).lower()
    assert headers["x-end-to-end"] == ["kept"]


def test_hop_by_hop_response_headers_are_not_forwarded(plain: MainMesh) -> None:
    hop = [
        ("connection", "x-resp-secret"),
        ("x-resp-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic"),
        ("upgrade", "h2c"),
        ("trailer", "x-t"),
        ("x-end", "kept"),
    ]
    plain.b["plain"].script(Ok(b"body", headers=hop))
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("GET", "/resp-hop"))
        resp = conn.response()
    names = {n for n, _ in resp.headers}
    assert resp.body == b"body"
    assert resp.header("x-end") == "kept"
    assert not names & {"x-resp-secret", "keep-alive", "proxy-authenticate", "upgrade", "trailer"}


def test_retry_after_reaches_the_client(plain: MainMesh) -> None:
    plain.b["plain"].script(Ok(b"busy", 503, headers=[("retry-after", "7")]))
    r = httpx.get(f"http://127.0.0.1:{plain.sidecar.upstream('plain')}/ra", timeout=5)
    assert (r.status_code, r.headers["retry-after"], r.content) == (503, "7", b"busy")


# --------------------------------------------------------------------------- bodies

SIZES = [0, 1, 1000, 65_535, 65_536, 65_537, 300_000]


def chunks_of(data: bytes, rng: random.Random) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 7, 100, 4096, 70_000])
        yield data[pos : pos + step]
        pos += step


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("method", ["POST", "PUT"])  # POST streams; PUT is buffered for retry
def test_request_body_arrives_byte_exact(
    plain: MainMesh, size: int, framing: str, method: str
) -> None:
    rng = random.Random(size * 31 + len(framing) + len(method))
    body = rng.randbytes(size)
    content: bytes | Iterator[bytes] = body if framing == "content-length" else chunks_of(body, rng)
    url = f"http://127.0.0.1:{plain.sidecar.upstream('plain')}/body"
    r = httpx.request(method, url, content=content, timeout=5)
    assert r.status_code == 200
    assert base64.b64decode(r.json()["body_b64"]) == body
    backend = plain.b["plain"]
    assert backend.hits == 1
    assert backend.seen[0].body == body


def test_a_chunked_body_is_never_read_as_another_request(plain: MainMesh) -> None:
    # PUT may be retried, so the sidecar buffers its (small) body: it must still
    # frame it upstream, or the body becomes a request of its own (smuggling).
    backend = plain.b["plain"]
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: plain\r\n\r\n"
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(
            b"PUT /put HTTP/1.1\r\nHost: plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%b\r\n0\r\n\r\n" % (len(smuggled), smuggled)
        )
        resp = conn.response()
    time.sleep(0.2)  # room for a stray request to arrive
    assert resp.status == 200
    assert [s.target for s in backend.seen] == ["/put"]
    assert backend.seen[0].body == smuggled


@pytest.mark.parametrize("size", [0, 1, 5000, 65_536, 300_000])
def test_chunked_response_arrives_byte_exact(plain: MainMesh, size: int) -> None:
    rng = random.Random(size)
    body = rng.randbytes(size)
    plain.b["plain"].script(Chunked(list(chunks_of(body, rng))))
    r = requests.get(
        "http://plain/chunked", proxies={"http": plain.sidecar.proxy}, timeout=5, stream=False
    )
    assert r.status_code == 200
    assert r.content == body
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("GET", "/chunked"))
        resp = conn.response()
    assert resp.chunked
    assert resp.body == body


def test_trickled_response_arrives_whole(plain: MainMesh) -> None:
    body = random.Random(5).randbytes(20_000)
    plain.b["plain"].script(Trickle(body, pieces=10, interval=0.02))
    r = httpx.get(f"http://127.0.0.1:{plain.sidecar.upstream('plain')}/trickle", timeout=5)
    assert r.content == body


def test_head_204_and_304_carry_no_body(plain: MainMesh) -> None:
    plain.b["plain"].script(
        Echo(),
        paths={
            "/head": Ok(b"hello world"),
            "/204": Ok(b"", 204),
            "/304": Ok(b"cached body", 304, headers=[("etag", '"v1"')]),
        },
    )
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        # One connection: a body sent where none belongs would be read as the next response.
        conn.send(request("HEAD", "/head"))
        head = conn.response(method="HEAD")
        assert head.status == 200
        assert head.header("content-length") == "11"
        assert head.header("transfer-encoding") is None
        conn.send(request("GET", "/204"))
        no_content = conn.response()
        assert no_content.status == 204
        assert no_content.header("transfer-encoding") is None
        assert no_content.header("content-length") is None
        conn.send(request("GET", "/304"))
        not_modified = conn.response()
        assert not_modified.status == 304
        assert not_modified.header("etag") == '"v1"'
        assert not_modified.header("transfer-encoding") is None
        conn.send(request("GET", "/after"))
        after = conn.response()
        assert after.json()["target"] == "/after"
        assert conn.buf == b""


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_expect_100_continue(plain: MainMesh, method: str) -> None:
    with RawConn(plain.sidecar.upstream("plain"), timeout=2) as conn:
        conn.send(request(method, "/continue", {"Expect": "100-continue", "Content-Length": "5"}))
        interim = conn.head()  # the client waits for it before sending the body
        assert interim.startswith(b"HTTP/1.1 100")
        assert plain.b["plain"].hits == 0
        conn.send(b"hello")
        resp = conn.response()
    assert resp.status == 200
    assert base64.b64decode(resp.json()["body_b64"]) == b"hello"


def test_upgrade_becomes_a_tunnel(plain: MainMesh) -> None:
    plain.b["plain"].script(Upgrade())
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("GET", "/ws", {"Connection": "Upgrade", "Upgrade": "echo-proto"}))
        resp = conn.response()
        assert resp.status == 101
        assert (resp.header("upgrade") or "").lower() == "echo-proto"
        conn.send(b"ping")
        assert conn.exactly(4) == b"ping"
        blob = random.Random(1).randbytes(200_000)
        conn.send(blob)
        assert conn.exactly(len(blob)) == blob
    seen = plain.b["plain"].seen[0]
    assert seen.header("upgrade") == "echo-proto"
    assert "upgrade" in (seen.header("connection") or "").lower()
