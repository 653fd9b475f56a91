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

import json
from collections.abc import Callable

import pytest
from backends import BackendLoop, RawConn, SwitchWhenAsked, wait_until
from conftest import MainMesh, Mesh, SidecarProcess


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


WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_a_tunnel_holds_a_bulkhead_slot_ends_when_idle_and_is_counted(
    sidecar_start: Callable[[Mesh], SidecarProcess], sidecar_loop: BackendLoop
) -> None:
    """A tunnel counts against ``max_in_flight`` for as long as it is open; silence for
    ``tunnel_idle_timeout`` closes both sides; its bytes, duration and end go to the
    metrics and to the access log line of the request that opened it."""
    app = sidecar_loop.backend("tunnels", SwitchWhenAsked())
    mesh = Mesh(app)
    mesh.destination(
        "chat",
        [app],
        {"bulkhead": {"max_in_flight": 1}, "tunnel_idle_timeout": "300ms"},
        upstream_port=True,
    )
    mesh.doc["sidecar"]["access_log"] = True
    sidecar = sidecar_start(mesh)
    port = sidecar.upstream("chat")

    def open_() -> float:
        return sidecar.metric("seawall_tunnels_open", destination="chat")

    with RawConn(port) as tunnel:
        tunnel.send(request("/chat", WEBSOCKET))
        assert tunnel.response().status == 101
        tunnel.send(b"ping")
        assert tunnel.exactly(4) == b"ping"
        assert open_() == 1
        # the tunnel holds the destination's only slot: another request overflows
        with RawConn(port) as other:
            other.send(request("/other", {}))
            refused = other.response()
        assert refused.status == 503
        assert refused.header("x-seawall-overflow") == "in_flight"
        # no byte either way for 300 ms: the sidecar closes the tunnel
        assert tunnel.closed(timeout=10)
    wait_until(lambda: open_() == 0)
    # ... which gave the slot back
    with RawConn(port) as other:
        other.send(request("/other", {}))
        assert other.response().status == 200
    # a second tunnel, ended by its client
    with RawConn(port) as tunnel:
        tunnel.send(request("/chat2", WEBSOCKET))
        assert tunnel.response().status == 101
        tunnel.send(b"hello!")
        assert tunnel.exactly(6) == b"hello!"
    wait_until(lambda: open_() == 0)

    labels = {"destination": "chat", "route": "default"}
    assert sidecar.metric("seawall_tunnel_bytes_total", to="upstream", **labels) == 10
    assert sidecar.metric("seawall_tunnel_bytes_total", to="client", **labels) == 10
    assert sidecar.metric("seawall_tunnels_closed_total", closed_by="idle", **labels) == 1
    assert sidecar.metric("seawall_tunnels_closed_total", closed_by="client", **labels) == 1
    assert sidecar.metric("seawall_tunnel_duration_seconds_count", **labels) == 2
    assert sidecar.metric("seawall_tunnel_duration_seconds_sum", **labels) >= 0.3
    # the requests that opened them count to their 101, not for the tunnel's life
    assert sidecar.metric("seawall_requests_total", status_class="1xx", **labels) == 2
    sidecar.terminate()
    records = [json.loads(line) for line in sidecar.stdout().splitlines() if line.strip()]
    by_path = {r["path"]: r for r in records}
    idle, closed = by_path["/chat"], by_path["/chat2"]
    assert idle["status"] == 101
    assert idle["tunnel"]["protocol"] == "websocket"
    assert idle["tunnel"]["closed_by"] == "idle"
    assert idle["tunnel"]["bytes_to_upstream"] == idle["tunnel"]["bytes_to_client"] == 4
    assert idle["tunnel"]["duration_ms"] >= 300
    assert closed["tunnel"]["closed_by"] == "client"
    assert closed["tunnel"]["bytes_to_upstream"] == 6
    assert by_path["/other"]["status"] in (200, 503)
    assert "tunnel" not in by_path["/other"]
