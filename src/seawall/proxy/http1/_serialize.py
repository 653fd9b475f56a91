"""Bytes to send: heads for each hop, chunked bodies, error responses (private).

A proxy forwards end-to-end fields and replaces the hop-by-hop ones (RFC 9110
§7.6.1): Connection and every field it lists, Keep-Alive, TE, Trailer,
Transfer-Encoding, Upgrade and Proxy-*. It then adds its own: Via, the
client's address to X-Forwarded-For, and the framing of *this* hop
(``transfer-encoding: chunked`` when the body is streamed with no known
length, ``connection: close``, or the Upgrade pair for a protocol switch).

The header list given is assumed valid: it comes from a parser. Everything
else (method, target, host, reason, added fields) is checked, and a value that
would break the framing (a CR, LF or NUL) raises :class:`LocalProtocolError`.
Output field names are as given (lowercase from the parsers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus

from ._errors import LocalProtocolError

__all__ = [
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "VIA",
    "encode_chunk",
    "encode_last_chunk",
    "encode_request_head",
    "encode_response_head",
    "error_response",
    "remove_hop_by_hop",
]

VIA = b"1.1 seawall"
"""The Via entry the sidecar adds (RFC 9110 §7.6.3: received protocol, pseudonym).

Pass ``via=b"1.0 seawall"`` when the message was received as HTTP/1.0."""

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
"""Fields never forwarded (with every ``proxy-*`` field and those Connection lists)."""

LAST_CHUNK = b"0\r\n\r\n"
"""The end of a chunked body with no trailer fields."""

# Connection may list fields to drop, but never the ones that frame the
# message or name its destination: a client listing Content-Length there
# would otherwise strip the upstream's framing and smuggle its body.
_NEVER_LISTED = frozenset({b"host", b"content-length"})
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_START = re.compile(rb"[\x00-\x20\x7f]")
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}
_ALLOW = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE"


def _listed(connection: bytes) -> frozenset[bytes]:
    names = {token.strip(b" \t") for token in connection.lower().split(b",")}
    return frozenset(names - _NEVER_LISTED)


_lists_more_memo: dict[bytes, bool] = {}


def _lists_more(connection: bytes) -> bool:
    """Connection names fields beyond the standard hop-by-hop ones (rare)."""
    known = _lists_more_memo.get(connection)
    if known is None:
        known = bool(_listed(connection) - HOP_BY_HOP - {b"close", b"keep-alive"})
        if len(_lists_more_memo) >= 1024:
            _lists_more_memo.clear()
        _lists_more_memo[connection] = known
    return known


# What a field name means to the encoders, memoized (names repeat on every request).
_PLAIN, _LENGTH, _HOP, _CONNECTION, _FORWARDED, _HOST = range(6)
_kind_memo: dict[bytes, int] = {}


def _kind(name: bytes) -> int:
    if name == b"connection":
        kind = _CONNECTION
    elif name in HOP_BY_HOP or name.startswith(b"proxy-"):
        kind = _HOP
    elif name == b"content-length":
        kind = _LENGTH
    elif name == b"x-forwarded-for":
        kind = _FORWARDED
    elif name == b"host":
        kind = _HOST
    else:
        kind = _PLAIN
    if len(_kind_memo) >= 1024:
        _kind_memo.clear()
    _kind_memo[name] = kind
    return kind


def remove_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without the hop-by-hop fields (lowercase names expected)."""
    listed: frozenset[bytes] = frozenset()
    for name, value in headers:
        if name == b"connection":
            listed |= _listed(value)
    return [
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP and not name.startswith(b"proxy-") and name not in listed
    ]


def _check_extra(fields: Sequence[tuple[bytes, bytes]]) -> None:
    for name, value in fields:
        if _FIELD_NAME.fullmatch(name) is None:
            raise LocalProtocolError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise LocalProtocolError(f"CR, LF or NUL in the value of {name!r}")


def _check_value(what: str, value: bytes) -> None:
    if _BAD_VALUE.search(value):
        raise LocalProtocolError(f"CR, LF or NUL in {what}")


def encode_request_head(
    method: bytes,
    target: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    host: bytes | None = None,
    chunked: bool = False,
    content_length: int | None = None,
    keep_alive: bool = True,
    upgrade: bytes | None = None,
    forwarded_for: bytes | None = None,
    via: bytes | None = VIA,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """The request head to send upstream, as HTTP/1.1.

    Args:
        method, target: the request line (send an origin-form target,
            :attr:`RequestHead.path`, even when the client used absolute-form).
        headers: the received fields; hop-by-hop ones are dropped.
        host: when given, replaces every Host field (for an absolute-form
            request, pass :attr:`RequestHead.authority`: RFC 9112 §3.2.2).
        chunked: the body is sent chunked (:func:`encode_chunk`), adding
            ``transfer-encoding: chunked``.
        content_length: the body is sent whole, with this length (a body
            buffered for retries, say), adding ``content-length``.
            With neither, a received Content-Length is forwarded as is; with
            either, it is dropped (only one framing may be sent).
        keep_alive: ``False`` adds ``connection: close``.
        upgrade: forward a protocol-switch request: adds ``connection: upgrade``
            and ``upgrade: <value>`` (:attr:`RequestHead.upgrade`).
        forwarded_for: the client's address, appended to X-Forwarded-For (all
            received X-Forwarded-For fields are merged into one, in order).
        via: the entry appended after any received Via fields; ``None`` adds none.
        extra: more fields, appended last (checked: token names, no CR/LF/NUL).
    """
    if not method or not target or _BAD_START.search(method) or _BAD_START.search(target):
        raise LocalProtocolError("invalid method or request-target")
    reframe = chunked or content_length is not None
    lines = [method + b" " + target + b" HTTP/1.1"]
    if host is not None:
        _check_value("host", host)
        lines.append(b"host: " + host)
    forwarded: list[bytes] = []
    connection: bytes | None = None
    kind_of = _kind_memo.get
    for field in headers:
        kind = kind_of(field[0])
        if kind is None:
            kind = _kind(field[0])
        if not kind or (kind == _LENGTH and not reframe) or (kind == _HOST and host is None):
            lines.append(b": ".join(field))
        elif kind == _FORWARDED:
            forwarded.append(field[1])
        elif kind == _CONNECTION:
            connection = field[1] if connection is None else connection + b"," + field[1]
    if connection is not None and _lists_more(connection):
        # Connection names more fields to drop: start again without them.
        return encode_request_head(
            method,
            target,
            remove_hop_by_hop(headers),
            host=host,
            chunked=chunked,
            content_length=content_length,
            keep_alive=keep_alive,
            upgrade=upgrade,
            forwarded_for=forwarded_for,
            via=via,
            extra=extra,
        )
    if forwarded_for is not None:
        _check_value("forwarded_for", forwarded_for)
        forwarded.append(forwarded_for)
    if forwarded:
        lines.append(b"x-forwarded-for: " + b", ".join(forwarded))
    return _finish(lines, chunked, content_length, keep_alive, upgrade, via, extra)


def encode_response_head(
    status: int,
    reason: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    chunked: bool = False,
    content_length: int | None = None,
    keep_alive: bool = True,
    upgrade: bytes | None = None,
    via: bytes | None = VIA,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """The response head to send downstream, as HTTP/1.1.

    Hop-by-hop fields are dropped; a 1xx or 204 also loses Content-Length
    (RFC 9110 §8.6). ``chunked`` adds ``transfer-encoding: chunked`` and is
    refused for 1xx, 204 and 304, which carry no body; for a response to
    HEAD, pass ``chunked=False`` and send no body. ``content_length`` sets
    Content-Length (replacing a received one), as on the request side. ``upgrade`` (for a 101)
    adds ``connection: upgrade`` and ``upgrade: <value>``; ``keep_alive=False``
    adds ``connection: close``. ``reason`` may be empty.
    """
    if not 100 <= status <= 999:
        raise LocalProtocolError(f"invalid status code {status!r}")
    no_length = status < 200 or status == 204
    if chunked and (no_length or status == 304):
        raise LocalProtocolError(f"a {status} response has no body to chunk")
    if no_length and content_length is not None:
        raise LocalProtocolError(f"a {status} response has no Content-Length")
    drop_length = no_length or chunked or content_length is not None
    if _BAD_VALUE.search(reason):
        raise LocalProtocolError("CR, LF or NUL in the reason phrase")
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    connection: bytes | None = None
    kind_of = _kind_memo.get
    for field in headers:
        kind = kind_of(field[0])
        if kind is None:
            kind = _kind(field[0])
        if kind == _PLAIN or kind >= _FORWARDED or (kind == _LENGTH and not drop_length):
            lines.append(b": ".join(field))
        elif kind == _CONNECTION:
            connection = field[1] if connection is None else connection + b"," + field[1]
    if connection is not None and _lists_more(connection):
        return encode_response_head(
            status,
            reason,
            remove_hop_by_hop(headers),
            chunked=chunked,
            content_length=content_length,
            keep_alive=keep_alive,
            upgrade=upgrade,
            via=via,
            extra=extra,
        )
    return _finish(lines, chunked, content_length, keep_alive, upgrade, via, extra)


def _finish(  # noqa: PLR0917 - private, on the hot path: positional is cheaper
    lines: list[bytes],
    chunked: bool,
    content_length: int | None,
    keep_alive: bool,
    upgrade: bytes | None,
    via: bytes | None,
    extra: Sequence[tuple[bytes, bytes]],
) -> bytes:
    """Add this hop's fields and join the head."""
    if via is not None:
        lines.append(b"via: " + via)
    if chunked:
        if content_length is not None:
            raise LocalProtocolError("both chunked and content_length")
        lines.append(b"transfer-encoding: chunked")
    elif content_length is not None:
        if content_length < 0:
            raise LocalProtocolError(f"invalid content_length {content_length!r}")
        lines.append(b"content-length: %d" % content_length)
    if upgrade is not None:
        _check_value("upgrade", upgrade)
        lines.append(b"connection: upgrade")
        lines.append(b"upgrade: " + upgrade)
    elif not keep_alive:
        lines.append(b"connection: close")
    if extra:
        _check_extra(extra)
        lines.extend(b": ".join(field) for field in extra)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body. Empty ``data`` gives ``b""`` (an empty
    chunk would end the body: send :data:`LAST_CHUNK` for that)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The last chunk, with optional trailer fields (checked like ``extra``)."""
    if not trailers:
        return LAST_CHUNK
    _check_extra(trailers)
    return b"0\r\n" + b"".join(b"%s: %s\r\n" % field for field in trailers) + b"\r\n"


def error_response(status: int, detail: str = "") -> bytes:
    """A complete ``text/plain`` response that closes the connection.

    For answering a :class:`ProtocolError` (``error_response(exc.status_hint,
    exc.reason)``) or any response the proxy makes itself. A 405 lists the
    methods the proxy forwards in Allow.
    """
    line = _STATUS_LINES.get(status)
    if line is None:
        raise LocalProtocolError(f"unknown status code {status!r}")
    body = (detail or HTTPStatus(status).phrase).encode("utf-8", "replace") + b"\n"
    allow = b"allow: %s\r\n" % _ALLOW if status == 405 else b""
    return b"%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n%s%s%s" % (
        line,
        len(body),
        allow,
        b"connection: close\r\n\r\n",
        body,
    )
