"""Upgrades through the sidecar: h2c is never tunnelled, a tunnel opens only on the app's
101 to a protocol the request offered, and only protocols the route allows are offered
(issue 15, part 1: h2c smuggling; ``upgrades:`` in mesh.yaml).

An HTTP/2-capable app (hypercorn, for one) answers ``Upgrade: h2c`` with 101; a
proxy that tunnelled it would pass every later request on that connection to
the app unparsed, past authorization, breakers and metrics. The sidecar strips
``Upgrade: h2c`` and ``HTTP2-Settings`` from every request it forwards, so the
request goes on as plain HTTP/1.1. The apps here are scripted to accept any
upgrade they are offered (``backends.SwitchWhenAsked``).
"""

from __future__ import annotations

import pytest
from backends import RawConn, SwitchWhenAsked
from conftest import MainMesh


@pytest.fixture
def plain(sidecar_main: MainMesh) -> MainMesh:
    sidecar_main.sidecar.assert_alive()
    sidecar_main.b["plain"].script(SwitchWhenAsked(), paths={})
    return sidecar_main


def request(target: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: plain"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


H2C = {
    "Connection": "Upgrade, HTTP2-Settings",
    "Upgrade": "h2c",
    "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
}


def test_an_h2c_upgrade_goes_on_as_plain_http11(plain: MainMesh) -> None:
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/h2c", H2C))
        resp = conn.response()
        assert resp.status == 200  # the app would have switched: it was never asked
        assert resp.body == b"plain http/1.1"
        # the connection is still HTTP/1.1 and parsed: a second request is a request
        conn.send(request("/again", {}))
        assert conn.response().status == 200
    seen = plain.b["plain"].seen[0]
    assert seen.header("upgrade") is None
    assert seen.header("http2-settings") is None
    assert "upgrade" not in (seen.header("connection") or "").lower()


def test_h2c_is_dropped_from_a_list_of_protocols(plain: MainMesh) -> None:
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/ws", {"Connection": "Upgrade", "Upgrade": "h2c, echo-proto"}))
        resp = conn.response()
        assert resp.status == 101
        assert (resp.header("upgrade") or "").lower() == "echo-proto"
        conn.send(b"ping")
        assert conn.exactly(4) == b"ping"
    assert plain.b["plain"].seen[0].header("upgrade") == "echo-proto"


def test_a_refused_upgrade_keeps_the_connection_in_http(plain: MainMesh) -> None:
    """The app answers 426 instead of 101: the bytes the client sends next are parsed as
    HTTP (and refused, being garbage), never passed to the app as a tunnel."""
    plain.b["plain"].script(SwitchWhenAsked(refuse=426), paths={})
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/ws", {"Connection": "Upgrade", "Upgrade": "websocket"}))
        assert conn.response().status == 426
        conn.send(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58 not http\r\n\r\n")
        resp = conn.response()
        assert resp.status == 400
        assert conn.closed()
    assert len(plain.b["plain"].seen) == 1  # the garbage never reached the app


def test_a_switch_to_a_protocol_not_offered_is_a_502(plain: MainMesh) -> None:
    plain.b["plain"].script(SwitchWhenAsked(answer_with="h2c"), paths={})
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/ws", {"Connection": "Upgrade", "Upgrade": "websocket"}))
        assert conn.response().status == 502


def test_a_protocol_the_route_does_not_list_is_refused(plain: MainMesh) -> None:
    """``plain`` allows websocket and echo-proto: another protocol is a 400 that names
    the route and what it allows, and the app never sees the request."""
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/ws", {"Connection": "Upgrade", "Upgrade": "irc"}))
        resp = conn.response()
    assert resp.status == 400
    assert b"upgrade to 'irc' refused: route 'default' allows websocket, echo-proto" in resp.body
    assert plain.b["plain"].seen == []


def test_upgrades_off_on_a_route(plain: MainMesh) -> None:
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/no-up/ws", {"Connection": "Upgrade", "Upgrade": "websocket"}))
        resp = conn.response()
        assert resp.status == 400
        assert b"upgrades are off for route 'no-upgrades'" in resp.body
        # h2c alone is not refused: it is dropped, and the request goes on
        conn.send(request("/no-up/h2c", H2C))
        assert conn.response().status == 200
    assert [s.target for s in plain.b["plain"].seen] == ["/no-up/h2c"]


def test_a_websocket_tunnel_carries_frames_both_ways(plain: MainMesh) -> None:
    """The default allowed protocol: the handshake's fields reach the app, the 101 comes
    back with them, and frames then pass unparsed both ways (the app echoes them)."""
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    # a masked text frame "Hello" (RFC 6455 §5.7), then a masked close frame
    hello = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    close = b"\x88\x80\x00\x00\x00\x00"
    with RawConn(plain.sidecar.upstream("plain")) as conn:
        conn.send(request("/chat", handshake))
        resp = conn.response()
        assert resp.status == 101
        assert (resp.header("upgrade") or "").lower() == "websocket"
        for frame in (hello, hello * 50, close):
            conn.send(frame)
            assert conn.exactly(len(frame)) == frame
    seen = plain.b["plain"].seen[0]
    assert seen.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert seen.header("upgrade") == "websocket"
