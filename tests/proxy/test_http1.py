"""Tests for seawall.proxy.http1: parsing, pausing, framing, serialization, round trips.

As in h11's tests, every valid input is fed whole, one byte at a time, and
split at random points (hypothesis), and must give the same events each way.
The refusals are in test_http1_malformed.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.proxy.http1 import (
    DEFAULT_LIMITS,
    HOP_BY_HOP,
    LAST_CHUNK,
    VIA,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    encode_chunk,
    encode_last_chunk,
    encode_request_head,
    encode_response_head,
    error_response,
    normalize_path,
    remove_hop_by_hop,
)

# --------------------------------------------------------------------------- helpers

Event = tuple[Any, ...]


class Recorder:
    """A RequestHandler and ResponseHandler that records what it is told."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.parser: RequestParser | ResponseParser | None = None
        self.methods: list[bytes] = []  # responses: start() the next one on completion

    def on_request(self, head: RequestHead) -> None:
        self.events.append(("request", head))

    def on_informational(self, head: ResponseHead) -> None:
        self.events.append(("info", head))

    def on_response(self, head: ResponseHead) -> None:
        self.events.append(("response", head))

    def on_body(self, data: bytes) -> None:
        assert data, "on_body is never called with nothing"
        assert type(data) is bytes
        self.events.append(("data", data))

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.events.append(("end", list(self.parser.trailers)))
        if isinstance(self.parser, ResponseParser) and self.methods and self.parser.idle:
            self.parser.start(self.methods.pop(0))

    def on_upgrade(self, head: ResponseHead, data: bytes) -> None:
        self.events.append(("upgrade", head, data))


def merged(events: list[Event]) -> list[Event]:
    """Join consecutive body pieces: how a body is cut depends on how it arrived."""
    out: list[Event] = []
    for event in events:
        if event[0] == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + event[1])
        else:
            out.append(event)
    return out


def parse_requests(
    chunks: list[bytes], limits: Limits = DEFAULT_LIMITS, *, eof: bool = False
) -> tuple[list[Event], RequestParser]:
    recorder = Recorder()
    parser = RequestParser(recorder, limits)
    recorder.parser = parser
    for chunk in chunks:
        parser.feed(chunk)
        while parser.paused and parser.buffered:
            parser.resume()
        if parser.paused:
            parser.resume()
    if eof:
        parser.feed_eof()
    return merged(recorder.events), parser


def parse_responses(
    chunks: list[bytes], methods: list[bytes], *, eof: bool = False, upgrade: bool = False
) -> tuple[list[Event], ResponseParser]:
    recorder = Recorder()
    parser = ResponseParser(recorder)
    recorder.parser = parser
    recorder.methods = list(methods[1:])
    parser.start(methods[0], upgrade=upgrade)
    for chunk in chunks:
        parser.feed(chunk)
    if eof:
        parser.feed_eof()
    return merged(recorder.events), parser


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def requests_of(events: list[Event]) -> list[RequestHead]:
    return [e[1] for e in events if e[0] == "request"]


# --------------------------------------------------------------------------- valid inputs

GET = (
    b"GET /api/v1/orders/12?expand=items HTTP/1.1\r\nHost: orders.shop:8080\r\nAccept: */*\r\n\r\n"
)
POST_LENGTH = b"POST /orders HTTP/1.1\r\nHost: orders\r\nContent-Length: 11\r\n\r\nhello world"
POST_CHUNKED = (
    b"POST /upload HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5\r\nhello\r\n6;name=value;q="a \\" b"\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n'
)
VALID_STREAMS = {
    "get": GET,
    "post-content-length": POST_LENGTH,
    "post-chunked-extensions-trailers": POST_CHUNKED,
    "pipelined-mix": GET + POST_LENGTH + POST_CHUNKED + GET,
    "http10-keep-alive": (
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    ),
    "absolute-form": b"GET http://orders:8002/x?y=1 HTTP/1.1\r\nHost: orders:8002\r\n\r\n",
    "asterisk-form": b"OPTIONS * HTTP/1.1\r\nHost: orders\r\n\r\n",
    "leading-empty-lines": b"\r\n\r\n" + GET,
    "expect-continue": (
        b"PUT /f HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "zero-length-and-empty-chunked": (
        b"POST /a HTTP/1.1\r\nHost: o\r\nContent-Length: 0\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "uppercase-chunk-size-and-leading-zeros": (
        b"POST /a HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"00A\r\n0123456789\r\n000\r\n\r\n"
    ),
    "obs-text-and-empty-values": (
        b"GET / HTTP/1.1\r\nHost: o\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n"
    ),
    "close-then-ignored": b"GET / HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\nGARBAGE!",
}


@pytest.mark.parametrize("name", sorted(VALID_STREAMS))
def test_whole_and_bytewise_give_the_same_events(name: str) -> None:
    data = VALID_STREAMS[name]
    expected, _ = parse_requests(whole(data))
    assert expected[-1][0] == "end"
    assert parse_requests(bytewise(data))[0] == expected


TRAILING = b"POST /next HTTP/1.1\r\nHost: o\r\nContent-Len"


@pytest.mark.parametrize("name", sorted(VALID_STREAMS))
@pytest.mark.parametrize("feed", [whole, bytewise])
def test_trailing_data_is_kept_not_parsed(name: str, feed: Any) -> None:
    """The start of a next request after the stream: no event, and it waits."""
    data = VALID_STREAMS[name]
    expected, _ = parse_requests(whole(data))
    recorder = Recorder()
    parser = RequestParser(recorder)
    recorder.parser = parser
    parser.feed(data + TRAILING)
    requests = 0
    while parser.paused:
        requests += 1
        if requests == len(requests_of(expected)):
            assert parser.buffered == len(TRAILING)  # the last request's trailing data
        parser.resume()
    assert merged(recorder.events) == expected
    if parser.closed:  # after "Connection: close" what follows is dropped
        return
    for chunk in feed(b"gth: 2\r\n\r\nok"):
        parser.feed(chunk)
    tail = merged(recorder.events)[len(expected) :]
    assert [e[0] for e in tail] == ["request", "data", "end"]
    assert (tail[0][1].path, tail[1][1], tail[2][1]) == (b"/next", b"ok", [])


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(VALID_STREAMS)), cuts=st.lists(st.integers(0, 600)))
def test_random_splits_give_the_same_events(name: str, cuts: list[int]) -> None:
    data = VALID_STREAMS[name]
    assert parse_requests(split_at(data, cuts))[0] == parse_requests(whole(data))[0]


def test_get_head() -> None:
    events, parser = parse_requests([GET])
    [(_, head), end] = events
    assert end == ("end", [])
    assert head == RequestHead(
        method=b"GET",
        target=b"/api/v1/orders/12?expand=items",
        version=b"1.1",
        headers=[(b"host", b"orders.shop:8080"), (b"accept", b"*/*")],
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
        upgrade=None,
        scheme=None,
        host=b"orders.shop",
        port=8080,
        path=b"/api/v1/orders/12?expand=items",
    )
    assert not head.has_body
    assert head.authority == b"orders.shop:8080"
    assert head.get(b"accept") == b"*/*"
    assert head.get(b"missing") is None
    assert not parser.paused  # the driver resumed it


def test_bodies_are_delivered_exactly() -> None:
    events, _ = parse_requests([POST_LENGTH + POST_CHUNKED])
    assert [e[0] for e in events] == ["request", "data", "end", "request", "data", "end"]
    assert events[1] == ("data", b"hello world")
    assert events[4] == ("data", b"hello world")
    assert events[5] == ("end", [(b"x-checksum", b"abc")])
    assert events[0][1].content_length == 11
    assert events[3][1].chunked
    assert events[3][1].content_length is None


def test_headers_keep_order_duplicates_and_trim_whitespace() -> None:
    data = b"GET / HTTP/1.1\r\nHost: o\r\nX-A: 1\r\nx-a:2 \t\r\nCookie: a=1\r\nCOOKIE: b=2\r\n\r\n"
    [(_, head), _end] = parse_requests([data])[0]
    assert head.headers == [
        (b"host", b"o"),
        (b"x-a", b"1"),
        (b"x-a", b"2"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    ]


@pytest.mark.parametrize(
    ("target", "scheme", "host", "port", "path"),
    [
        (b"http://orders/path", b"http", b"orders", None, b"/path"),
        (b"http://Orders.Shop:8002/a/b?c=d", b"http", b"orders.shop", 8002, b"/a/b?c=d"),
        (b"HTTPS://orders:443", b"https", b"orders", 443, b"/"),
        (b"http://orders?q=1", b"http", b"orders", None, b"/?q=1"),
        (b"http://10.0.0.7:80/x", b"http", b"10.0.0.7", 80, b"/x"),
        (b"http://[::1]:8080/x", b"http", b"[::1]", 8080, b"/x"),
        (b"http://orders:/x", b"http", b"orders", None, b"/x"),
    ],
)
def test_absolute_form_targets(
    target: bytes, scheme: bytes, host: bytes, port: int | None, path: bytes
) -> None:
    data = b"GET " + target + b" HTTP/1.1\r\nHost: whatever\r\n\r\n"
    [head] = requests_of(parse_requests([data])[0])
    assert (head.scheme, head.host, head.port, head.path) == (scheme, host, port, path)
    assert head.target == target


@pytest.mark.parametrize(
    ("host_field", "host", "port"),
    [
        (b"orders", b"orders", None),
        (b"ORDERS:8002", b"orders", 8002),
        (b"[2001:db8::1]:443", b"[2001:db8::1]", 443),
        (b"", b"", None),  # allowed: an empty authority (RFC 9112 §3.2)
    ],
)
def test_origin_form_takes_host_from_the_host_field(
    host_field: bytes, host: bytes, port: int | None
) -> None:
    data = b"GET /x HTTP/1.1\r\nHost: " + host_field + b"\r\n\r\n"
    [head] = requests_of(parse_requests([data])[0])
    assert (head.scheme, head.host, head.port, head.path) == (None, host, port, b"/x")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (b"/a/b/c/./../../g", b"/a/g"),  # RFC 3986 §5.4.2
        (b"/a/..", b"/"),
        (b"/a/.", b"/a/"),
        (b"/../../x", b"/x"),  # never above the root
        (b"/a//b/", b"/a//b/"),  # empty segments are kept
        (b"/%61dmin", b"/admin"),  # unreserved characters are decoded
        (b"/%2e%2E/admin", b"/admin"),  # ... before dot segments are removed
        (b"/%7euser", b"/~user"),
        (b"/a%2fb%3a", b"/a%2Fb%3A"),  # reserved ones are not, hex is upper-cased
        (b"/x/../admin?next=/../y&q=%61", b"/admin?next=/../y&q=%61"),  # query untouched
        (b"/a/.hidden/..b", b"/a/.hidden/..b"),
    ],
)
def test_paths_are_normalized_for_routing_and_upstream(raw: bytes, normal: bytes) -> None:
    assert normalize_path(raw) == normal
    [head] = requests_of(parse_requests([b"GET " + raw + b" HTTP/1.1\r\nHost: o\r\n\r\n"])[0])
    assert (head.target, head.path) == (raw, normal)
    absolute = b"GET http://o" + raw + b" HTTP/1.1\r\nHost: o\r\n\r\n"
    assert requests_of(parse_requests([absolute])[0])[0].path == normal


def test_http10_without_host_is_accepted() -> None:
    [head] = requests_of(parse_requests([b"GET /x HTTP/1.0\r\n\r\n"])[0])
    assert (head.version, head.host, head.keep_alive) == (b"1.0", b"", False)


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"keep-alive, CLOSE", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: o\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    [head] = requests_of(parse_requests([data + b"\r\n"])[0])
    assert head.keep_alive is keep_alive


# --------------------------------------------------------------------------- pausing, pipelining


def test_pipelined_requests_wait_for_resume_in_order() -> None:
    recorder = Recorder()
    parser = RequestParser(recorder)
    recorder.parser = parser
    third = b"GET /3 HTTP/1.1\r\nHost: o\r\n"  # incomplete: trailing data
    second = b"POST /2 HTTP/1.1\r\nHost: o\r\nContent-Length: 2\r\n\r\nok"
    parser.feed(b"GET /1 HTTP/1.1\r\nHost: o\r\n\r\n" + second + third)
    assert [e[0] for e in recorder.events] == ["request", "end"]
    assert parser.paused
    assert parser.buffered == len(second) + len(third)
    parser.feed(b"\r\n")  # still paused: kept, not parsed
    assert parser.buffered == len(second) + len(third) + 2
    assert len(recorder.events) == 2
    parser.resume()
    assert [e[0] for e in recorder.events] == ["request", "end", "request", "data", "end"]
    assert recorder.events[2][1].path == b"/2"
    assert parser.paused
    parser.resume()
    assert [e[1].path for e in recorder.events if e[0] == "request"] == [b"/1", b"/2", b"/3"]
    parser.resume()
    assert not parser.paused
    assert parser.buffered == 0


def test_resume_from_inside_on_message_complete() -> None:
    class Eager(Recorder):
        def on_message_complete(self) -> None:
            super().on_message_complete()
            assert isinstance(self.parser, RequestParser)
            self.parser.resume()

    recorder = Eager()
    parser = RequestParser(recorder)
    recorder.parser = parser
    parser.feed(GET + POST_LENGTH + POST_CHUNKED)
    assert [e[1].path for e in recorder.events if e[0] == "request"] == [
        b"/api/v1/orders/12?expand=items",
        b"/orders",
        b"/upload",
    ]
    assert not parser.paused


def test_resume_in_the_wrong_state_is_a_local_error() -> None:
    parser = RequestParser(Recorder())
    with pytest.raises(LocalProtocolError):
        parser.resume()
    with pytest.raises(LocalProtocolError):
        parser.switch_protocols()


def test_after_connection_close_later_bytes_are_dropped() -> None:
    events, parser = parse_requests(
        [b"GET /1 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n"]
    )
    assert [e[0] for e in events] == ["request", "end"]
    assert parser.closed
    parser.feed(b"more garbage\r\n\r\n")
    assert parser.buffered == 0
    with pytest.raises(LocalProtocolError):
        parser.resume()


def test_eof() -> None:
    _, parser = parse_requests([GET], eof=True)
    assert parser.closed
    _, parser = parse_requests([], eof=True)
    assert parser.closed
    for cut in (GET[:10], POST_LENGTH[:-3], POST_CHUNKED[:-2]):
        with pytest.raises(RemoteProtocolError) as info:
            parse_requests([cut], eof=True)
        assert info.value.status_hint == 400


def test_errors_leave_the_parser_unusable() -> None:
    parser = RequestParser(Recorder())
    with pytest.raises(RemoteProtocolError):
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        parser.feed(GET)


def test_a_handler_exception_propagates_and_stops_the_parser() -> None:
    class Boom(Recorder):
        def on_request(self, head: RequestHead) -> None:
            raise KeyError("handler bug")

    parser = RequestParser(Boom())
    with pytest.raises(KeyError):
        parser.feed(GET)
    with pytest.raises(LocalProtocolError):
        parser.feed(GET)


# --------------------------------------------------------------------------- 100-continue, upgrade


@pytest.mark.parametrize(
    ("version", "expect", "detected"),
    [
        (b"1.1", b"100-continue", True),
        (b"1.1", b"100-Continue", True),
        (b"1.0", b"100-continue", False),  # a server MUST ignore it in 1.0 (RFC 9110 §10.1.1)
        (b"1.1", b"something-else", False),
    ],
)
def test_expect_continue(version: bytes, expect: bytes, detected: bool) -> None:
    data = b"PUT /f HTTP/" + version + b"\r\nHost: o\r\nExpect: " + expect
    data += b"\r\nContent-Length: 1\r\n\r\nx"
    [head] = requests_of(parse_requests([data])[0])
    assert head.expect_continue is detected


WEBSOCKET = (
    b"GET /chat HTTP/1.1\r\nHost: o\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize(
    ("data", "upgrade"),
    [
        (WEBSOCKET, b"websocket"),
        (b"GET / HTTP/1.1\r\nHost: o\r\nUpgrade: websocket\r\n\r\n", None),  # not in Connection
        (b"GET / HTTP/1.0\r\nHost: o\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: o\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", b"h2c"),
    ],
)
def test_upgrade_detection(data: bytes, upgrade: bytes | None) -> None:
    [head] = requests_of(parse_requests([data])[0])
    assert head.upgrade == upgrade


def test_switch_protocols_hands_over_the_bytes_that_followed() -> None:
    recorder = Recorder()
    parser = RequestParser(recorder)
    recorder.parser = parser
    parser.feed(WEBSOCKET + b"\x81\x05hel")
    parser.feed(b"lo")
    assert [e[0] for e in recorder.events] == ["request", "end"]
    assert parser.switch_protocols() == b"\x81\x05hello"
    with pytest.raises(LocalProtocolError):
        parser.feed(b"more")


def test_a_refused_upgrade_continues_as_http() -> None:
    events, _ = parse_requests([WEBSOCKET + GET])
    assert [e[0] for e in events] == ["request", "end", "request", "end"]
    assert events[2][1].upgrade is None


def test_switch_protocols_needs_an_upgrade_request() -> None:
    recorder = Recorder()
    parser = RequestParser(recorder)
    recorder.parser = parser
    parser.feed(GET)
    with pytest.raises(LocalProtocolError):
        parser.switch_protocols()


# --------------------------------------------------------------------------- responses


def test_response_with_length_then_chunked_on_one_connection() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    )
    for chunks in (whole(data), bytewise(data)):
        events, parser = parse_responses(chunks, [b"GET", b"POST"])
        assert [e[0] for e in events] == ["response", "data", "end", "response", "data", "end"]
        first, second = events[0][1], events[3][1]
        assert (first.status, first.reason, first.content_length, first.has_body) == (
            200,
            b"OK",
            5,
            True,
        )
        assert first.headers == [(b"content-length", b"5"), (b"server", b"x")]
        assert (second.status, second.chunked, second.keep_alive) == (201, True, True)
        assert events[1] == ("data", b"hello")
        assert events[4] == ("data", b"abc")
        assert events[5] == ("end", [(b"x-t", b"1")])
        assert parser.idle


@pytest.mark.parametrize(
    ("method", "head"),
    [
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n"),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    ],
)
def test_head_204_304_have_no_body(method: bytes, head: bytes) -> None:
    follow = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    data = head + follow
    for chunks in (whole(data), bytewise(data)):
        events, parser = parse_responses(chunks, [method, b"GET"])
        assert [e[0] for e in events] == ["response", "end", "response", "data", "end"]
        assert events[0][1].has_body is False
        assert events[3] == ("data", b"ok")
        assert parser.idle


def test_informational_responses_come_before_the_final_one() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    for chunks in (whole(data), bytewise(data)):
        events, _ = parse_responses(chunks, [b"POST"])
        assert [e[0] for e in events] == ["info", "info", "response", "data", "end"]
        assert [events[0][1].status, events[1][1].status, events[2][1].status] == [100, 103, 200]


def test_response_until_close() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this, until EOF"
    events, parser = parse_responses(bytewise(data), [b"GET"], eof=True)
    assert [e[0] for e in events] == ["response", "data", "end"]
    assert events[1][1] == b"all of this, until EOF"
    assert events[0][1].keep_alive is False
    assert parser.closed


def test_response_101_switches_protocols() -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    events, parser = parse_responses([data + b"\x81\x02hi"], [b"GET"], upgrade=True)
    [(kind, head, rest)] = events
    assert (kind, head.status, head.upgrade, rest) == ("upgrade", 101, b"websocket", b"\x81\x02hi")
    with pytest.raises(LocalProtocolError):
        parser.feed(b"x")
    with pytest.raises(RemoteProtocolError) as info:
        parse_responses([data], [b"GET"], upgrade=False)
    assert info.value.status_hint == 502


def test_response_keep_alive() -> None:
    def head(raw: bytes) -> ResponseHead:
        head: ResponseHead = parse_responses([raw], [b"GET"])[0][0][1]
        return head

    assert head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").keep_alive
    assert not head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert head(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    ).keep_alive
    assert head(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").reason == b""


def test_response_parser_states() -> None:
    parser = ResponseParser(Recorder())
    with pytest.raises(RemoteProtocolError) as info:
        parser.feed(b"HTTP/1.1 200 OK\r\n\r\n")  # nothing was asked
    assert info.value.status_hint == 502
    parser = ResponseParser(Recorder())
    parser.start(b"GET")
    with pytest.raises(LocalProtocolError):
        parser.start(b"GET")  # no pipelining upstream


def test_response_eof_cases() -> None:
    with pytest.raises(RemoteProtocolError, match="before responding") as info:
        parse_responses([], [b"GET"], eof=True)
    assert info.value.status_hint == 502
    with pytest.raises(RemoteProtocolError, match="mid-response"):
        parse_responses([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"], [b"GET"], eof=True)
    parser = ResponseParser(Recorder())
    parser.feed_eof()  # an idle connection closing is normal
    assert parser.closed


def test_data_after_a_complete_response_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_responses([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA"], [b"GET"])
    assert info.value.status_hint == 502


# --------------------------------------------------------------------------- serialization


def test_upstream_request_head() -> None:
    headers = [
        (b"host", b"orders"),
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-hop", b"secret"),
        (b"te", b"trailers"),
        (b"proxy-authorization", b"Basic abc"),
        (b"proxy-connection", b"keep-alive"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"2.2.2.2, 3.3.3.3"),
        (b"via", b"1.1 edge"),
        (b"content-length", b"3"),
    ]
    head = encode_request_head(b"POST", b"/x", headers, forwarded_for=b"10.0.0.7")
    assert head == (
        b"POST /x HTTP/1.1\r\n"
        b"host: orders\r\n"
        b"accept: */*\r\n"
        b"via: 1.1 edge\r\n"
        b"content-length: 3\r\n"
        b"x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7\r\n"
        b"via: 1.1 seawall\r\n"
        b"\r\n"
    )


def test_upstream_request_head_options() -> None:
    head = encode_request_head(
        b"GET",
        b"/x",
        [(b"host", b"old"), (b"transfer-encoding", b"chunked"), (b"upgrade", b"websocket")],
        host=b"orders:8002",
        chunked=True,
        upgrade=b"websocket",
        via=None,
        extra=[(b"x-request-id", b"abc")],
    )
    assert head == (
        b"GET /x HTTP/1.1\r\nhost: orders:8002\r\ntransfer-encoding: chunked\r\n"
        b"connection: upgrade\r\nupgrade: websocket\r\nx-request-id: abc\r\n\r\n"
    )
    closing = encode_request_head(b"GET", b"/", [(b"host", b"o")], keep_alive=False, via=None)
    assert closing == b"GET / HTTP/1.1\r\nhost: o\r\nconnection: close\r\n\r\n"


def test_the_framing_of_this_hop_replaces_the_received_one() -> None:
    received = [(b"host", b"o"), (b"content-length", b"999"), (b"x-a", b"1")]
    # a chunked body buffered for a retry goes out whole, with its real length
    assert encode_request_head(b"PUT", b"/", received, content_length=5, via=None) == (
        b"PUT / HTTP/1.1\r\nhost: o\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
    )
    assert encode_request_head(b"PUT", b"/", received, chunked=True, via=None) == (
        b"PUT / HTTP/1.1\r\nhost: o\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert encode_response_head(200, b"OK", received[1:], content_length=0, via=None) == (
        b"HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
    )
    with pytest.raises(LocalProtocolError):
        encode_request_head(b"PUT", b"/", received, chunked=True, content_length=5)
    with pytest.raises(LocalProtocolError):
        encode_request_head(b"PUT", b"/", received, content_length=-1)
    with pytest.raises(LocalProtocolError):
        encode_response_head(204, b"No Content", [], content_length=0)


def test_connection_cannot_strip_framing_or_host() -> None:
    headers = [
        (b"host", b"o"),
        (b"connection", b"content-length, host, x-a"),
        (b"content-length", b"3"),
        (b"x-a", b"1"),
    ]
    head = encode_request_head(b"POST", b"/", headers, via=None)
    assert head == b"POST / HTTP/1.1\r\nhost: o\r\ncontent-length: 3\r\n\r\n"
    assert remove_hop_by_hop(headers) == [(b"host", b"o"), (b"content-length", b"3")]


def test_hop_by_hop_set() -> None:
    assert {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"} == (
        HOP_BY_HOP
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": b"GET /", "target": b"/"},
        {"method": b"GET", "target": b"/a b"},
        {"method": b"GET", "target": b"/\r\nx"},
        {"method": b"GET", "target": b""},
        {"extra": [(b"x-a", b"1\r\nx-b: 2")]},
        {"extra": [(b"x a", b"1")]},
        {"extra": [(b"", b"1")]},
        {"host": b"a\r\nb"},
        {"forwarded_for": b"1.2.3.4\n"},
    ],
)
def test_request_head_refuses_injection(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"method": b"GET", "target": b"/", "headers": [(b"host", b"o")]}
    args.update(kwargs)
    with pytest.raises(LocalProtocolError):
        encode_request_head(**args)


def test_downstream_response_head() -> None:
    headers = [
        (b"content-type", b"text/plain"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"close"),
        (b"trailer", b"x-t"),
    ]
    assert encode_response_head(200, b"OK", headers, chunked=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nvia: 1.1 seawall\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    assert encode_response_head(503, b"", [], keep_alive=False, via=None) == (
        b"HTTP/1.1 503 \r\nconnection: close\r\n\r\n"
    )
    # 1xx and 204 never carry Content-Length; 304 and HEAD responses keep it.
    assert b"content-length" not in encode_response_head(
        204, b"No Content", [(b"content-length", b"5")]
    )
    assert b"content-length: 5" in encode_response_head(304, b"", [(b"content-length", b"5")])
    switching = encode_response_head(
        101, b"Switching Protocols", [], upgrade=b"websocket", via=None
    )
    assert switching == (
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("status", "kwargs"),
    [
        (204, {"chunked": True}),
        (304, {"chunked": True}),
        (100, {"chunked": True}),
        (99, {}),
        (1000, {}),
        (200, {"reason": b"O\r\nK"}),
        (200, {"extra": [(b"x", b"\x00")]}),
    ],
)
def test_response_head_refusals(status: int, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"reason": b"X", "headers": []}
    args.update(kwargs)
    with pytest.raises(LocalProtocolError):
        encode_response_head(status, **args)


def test_chunks() -> None:
    assert encode_chunk(b"") == b""
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert encode_last_chunk() == LAST_CHUNK == b"0\r\n\r\n"
    assert encode_last_chunk([(b"x-sum", b"1")]) == b"0\r\nx-sum: 1\r\n\r\n"
    with pytest.raises(LocalProtocolError):
        encode_last_chunk([(b"x-sum", b"1\r\n")])


def test_error_response_is_a_valid_closing_response() -> None:
    raw = error_response(431, "too many header fields")
    events, parser = parse_responses([raw], [b"GET"])
    [(_, head), (_, body), _end] = events
    assert (head.status, head.reason, head.keep_alive) == (
        431,
        b"Request Header Fields Too Large",
        False,
    )
    assert body == b"too many header fields\n"
    assert parser.closed
    assert b"allow: GET" in error_response(405)
    assert error_response(400).endswith(b"\r\n\r\nBad Request\n")
    with pytest.raises(LocalProtocolError):
        error_response(299)


def test_via_constant() -> None:
    assert VIA == b"1.1 seawall"


# --------------------------------------------------------------------------- round trips

bodies = st.binary(max_size=3000)
cut_lists = st.lists(st.integers(0, 3000), max_size=12)


def _chunked(body: bytes, cuts: list[int]) -> bytes:
    return b"".join(encode_chunk(piece) for piece in split_at(body, cuts)) + encode_last_chunk()


@settings(max_examples=200, deadline=None)
@given(body=bodies, chunk_cuts=cut_lists, feed_cuts=cut_lists, chunked=st.booleans())
def test_request_bodies_round_trip(
    body: bytes, chunk_cuts: list[int], feed_cuts: list[int], chunked: bool
) -> None:
    headers = [(b"host", b"orders")]
    if chunked:
        wire = encode_request_head(b"POST", b"/x", headers, chunked=True) + _chunked(
            body, chunk_cuts
        )
    else:
        headers.append((b"content-length", b"%d" % len(body)))
        wire = encode_request_head(b"POST", b"/x", headers) + body
    wire += encode_request_head(b"GET", b"/next", [(b"host", b"orders")])
    events, _ = parse_requests(split_at(wire, feed_cuts))
    kinds = [e[0] for e in events]
    assert kinds == (["request", "data", "end"] if body else ["request", "end"]) + [
        "request",
        "end",
    ]
    assert (events[1][1] if body else b"") == body
    assert events[0][1].chunked is chunked
    assert events[-2][1].path == b"/next"


@settings(max_examples=200, deadline=None)
@given(
    body=bodies,
    chunk_cuts=cut_lists,
    feed_cuts=cut_lists,
    framing=st.sampled_from(["chunked", "length", "close"]),
)
def test_response_bodies_round_trip(
    body: bytes, chunk_cuts: list[int], feed_cuts: list[int], framing: str
) -> None:
    if framing == "chunked":
        wire = encode_response_head(200, b"OK", [], chunked=True) + _chunked(body, chunk_cuts)
    elif framing == "length":
        wire = encode_response_head(200, b"OK", [(b"content-length", b"%d" % len(body))]) + body
    else:
        wire = encode_response_head(200, b"OK", [], keep_alive=False) + body
    events, _ = parse_responses(split_at(wire, feed_cuts), [b"GET"], eof=framing == "close")
    assert merged(events)[-1][0] == "end"
    received = b"".join(e[1] for e in events if e[0] == "data")
    assert received == body


@settings(max_examples=100, deadline=None)
@given(body=bodies, chunk_cuts=cut_lists, feed_cuts=cut_lists)
def test_a_request_forwarded_through_the_codec_arrives_intact(
    body: bytes, chunk_cuts: list[int], feed_cuts: list[int]
) -> None:
    """Client → RequestParser → encode_request_head/encode_chunk → RequestParser upstream."""
    client = (
        b"PUT http://orders:8002/items/7?x=1 HTTP/1.1\r\nHost: orders:8002\r\n"
        b"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nX-Keep: yes\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body, chunk_cuts)
    )
    events, _ = parse_requests(split_at(client, feed_cuts))
    head = events[0][1]
    received = b"".join(e[1] for e in events if e[0] == "data")
    upstream = (
        encode_request_head(
            head.method,
            head.path,
            head.headers,
            host=head.authority,
            chunked=head.chunked,
            forwarded_for=b"127.0.0.1",
        )
        + encode_chunk(received)
        + encode_last_chunk()
    )
    events2, _ = parse_requests(split_at(upstream, feed_cuts))
    head2 = events2[0][1]
    assert (head2.method, head2.target, head2.host, head2.port) == (
        b"PUT",
        b"/items/7?x=1",
        b"orders",
        8002,
    )
    assert head2.get(b"x-keep") == b"yes"
    assert head2.get(b"x-private") is None
    assert head2.get(b"x-forwarded-for") == b"127.0.0.1"
    assert head2.get(b"via") == VIA
    assert b"".join(e[1] for e in events2 if e[0] == "data") == body
