"""Message heads and their meaning (private; re-exported by :mod:`seawall.proxy.http1`).

A head is what the parser hands over once the start line and the header
section are complete and valid: a frozen, slotted dataclass with the raw
header list and the facts the proxy acts on (framing, persistence, target,
100-continue, upgrade), worked out once here so that nobody downstream parses
a header again.

The functions below turn the pieces llhttp has validated syntactically into a
head, applying the rules llhttp does not (or does not with the status we
want): the version, Host, request-target forms, Content-Length and
Transfer-Encoding semantics and the body limit. Each refusal raises
:class:`RemoteProtocolError` with its status hint. They run once per message,
so they are written for the common case: a few comparisons when the only
special headers are Host and Connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import RemoteProtocolError
from ._limits import Limits

__all__ = [
    "SPECIAL_HEADERS",
    "Headers",
    "RequestHead",
    "ResponseHead",
    "build_request_head",
    "build_response_head",
    "is_token",
    "normalize_path",
    "parse_request_line",
    "parse_status_line",
]

Headers = list[tuple[bytes, bytes]]
"""Header fields in arrival order, duplicates kept: ``(lowercased name, value)``."""

SPECIAL_HEADERS = frozenset(
    {b"host", b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}
)
"""The fields whose meaning the codec works out (the parser collects them aside)."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request's start line and header section, validated.

    Attributes:
        method: e.g. ``b"GET"`` (case-sensitive, as received).
        target: the request-target exactly as received.
        version: ``b"1.1"`` or ``b"1.0"``.
        headers: every field line, in order, duplicates kept, names lowercased,
            values without surrounding whitespace.
        keep_alive: the client allows the connection to be reused after this
            exchange (1.1 without ``Connection: close``, or 1.0 with
            ``Connection: keep-alive``).
        content_length: the body length from Content-Length, or ``None``.
        chunked: the body is chunked (``Transfer-Encoding: chunked``).
        expect_continue: an HTTP/1.1 request with ``Expect: 100-continue``.
        upgrade: the Upgrade field value when the request asks to switch
            protocols (HTTP/1.1, ``Connection: upgrade`` and Upgrade), else ``None``.
        scheme: ``b"http"`` or ``b"https"`` for an absolute-form target
            (``GET http://orders/x``, as sent to an HTTP proxy); ``None`` for
            origin-form and asterisk-form.
        host: the destination host, lowercased: from an absolute-form target's
            authority, else from the Host field; ``b""`` when neither gives one
            (an HTTP/1.0 request without Host). IPv6 literals keep their brackets.
        port: the port given with that host, or ``None`` (the scheme's default).
        path: the origin-form target to route on and send upstream: path and
            query (``b"/"`` at least), the path normalized by
            :func:`~seawall.proxy.http1.normalize_path`; or ``b"*"`` for ``OPTIONS *``.
    """

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bytes | None
    scheme: bytes | None
    host: bytes
    port: int | None
    path: bytes

    @property
    def has_body(self) -> bool:
        """Whether body bytes follow the head (chunked, or Content-Length > 0)."""
        return self.chunked or bool(self.content_length)

    @property
    def authority(self) -> bytes:
        """``host[:port]``: the Host field value to send upstream."""
        return self.host if self.port is None else b"%s:%d" % (self.host, self.port)

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of the lowercase field ``name``, or ``default``."""
        for field, value in self.headers:
            if field == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response's status line and header section, validated.

    Attributes:
        status: the status code (100-999).
        reason: the reason phrase (may be empty).
        version: ``b"1.1"`` or ``b"1.0"``.
        headers: as in :class:`RequestHead`.
        keep_alive: the connection may be reused once this response is read
            (never for a body delimited by the connection closing).
        content_length: Content-Length, or ``None``. A response to HEAD and a
            304 may carry one without having a body.
        chunked: the body is chunked.
        has_body: body bytes follow the head: false for a response to HEAD
            and for 1xx, 204 and 304, whatever the headers say. A body that is
            neither chunked nor of known length ends when the upstream closes.
        upgrade: for a 101, the Upgrade field value (the protocol switched to).
    """

    status: int
    reason: bytes
    version: bytes
    headers: Headers
    keep_alive: bool
    content_length: int | None
    chunked: bool
    has_body: bool
    upgrade: bytes | None

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """The first value of the lowercase field ``name``, or ``default``."""
        for field, value in self.headers:
            if field == name:
                return value
        return default


# --------------------------------------------------------------------------- start lines

_VERSIONS = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
_ANY_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A reason phrase: HTAB, SP, VCHAR, obs-text (RFC 9112 §4).
_REASON = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def parse_request_line(line: bytes, limits: Limits) -> tuple[bytes, bytes, bytes]:
    """``method SP request-target SP HTTP-version`` → (method, target, version).

    Checked before llhttp sees the line, so that the length (414), the
    version (505) and CONNECT (405) get their own statuses.
    """
    if len(line) > limits.max_request_line:
        raise RemoteProtocolError("request line too long", 414)
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise RemoteProtocolError("malformed request line")
    method, target, version = parts
    short = _VERSIONS.get(version)
    if short is None:
        if _ANY_VERSION.fullmatch(version):
            raise RemoteProtocolError("HTTP version not supported", 505)
        raise RemoteProtocolError("malformed request line")
    if method == b"CONNECT":
        raise RemoteProtocolError("CONNECT is not supported", 405)
    return method, target, short


def parse_status_line(line: bytes, limits: Limits) -> tuple[int, bytes, bytes]:
    """``HTTP-version SP status-code SP [reason]`` → (status, reason, version).

    The second space is optional (many servers send ``HTTP/1.1 200``).
    """
    if len(line) > limits.max_request_line:
        raise RemoteProtocolError("status line too long", 502)
    version, _, rest = line.partition(b" ")
    short = _VERSIONS.get(version)
    if short is None:
        raise RemoteProtocolError("unsupported or malformed HTTP version in status line", 502)
    code, _, reason = rest.partition(b" ")
    if len(code) != 3 or not code.isdigit() or code[0] == 0x30:
        raise RemoteProtocolError("malformed status code", 502)
    if reason and not _REASON.fullmatch(reason):
        raise RemoteProtocolError("invalid character in reason phrase", 502)
    return int(code), reason, short


def is_token(value: bytes) -> bool:
    """Whether ``value`` is an RFC 9110 token (a valid method or field name)."""
    return _TOKEN.fullmatch(value) is not None


# --------------------------------------------------------------------------- paths

_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(match: re.Match[bytes]) -> bytes:
    code = int(match.group(1), 16)
    return bytes((code,)) if code in _UNRESERVED else b"%" + match.group(1).upper()


def normalize_path(path: bytes) -> bytes:
    """RFC 3986 §6.2.2 normalization of an origin-form target's path; the query is kept as is.

    Percent-encoded unreserved characters are decoded (``%7E`` → ``~``, ``%2e`` → ``.``),
    other percent-encodings get upper-case hex (``%2f`` → ``%2F``, never decoded),
    and dot segments are removed (``/a/./b/../c`` → ``/a/c``; ``..`` never climbs
    above ``/``). So routing and the upstream see the same path, and
    ``/%61dmin`` or ``/x/../admin`` cannot slip past a route for ``/admin``.
    Raises :class:`RemoteProtocolError` (400) for a ``%`` not followed by two hex digits.
    """
    raw, mark, query = path.partition(b"?")
    if b"%" in raw:
        decoded = _PERCENT.sub(_percent, raw)
        if decoded.count(b"%") != len(_PERCENT.findall(decoded)):
            raise RemoteProtocolError("invalid percent-encoding in path")
        raw = decoded
    if b"/." in raw:
        segments: list[bytes] = []
        for segment in raw.split(b"/")[1:]:
            if segment == b"..":
                if segments:
                    segments.pop()
            elif segment != b".":
                segments.append(segment)
        last = raw.rsplit(b"/", 1)[-1]
        raw = b"/" + b"/".join(segments)
        if last in {b".", b".."} and not raw.endswith(b"/"):
            raw += b"/"
    return raw + mark + query


# --------------------------------------------------------------------------- fields

# host [":" port]: an IP literal in brackets, or a reg-name / IPv4 address.
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::([0-9]*))?")


# Pure functions of a field value, called for nearly every request with the
# same few values (a mesh has few hosts): memoized in small dicts that are
# emptied when full, so a client sending many distinct values cannot grow them.
_MEMO_SIZE = 1024
_authority_memo: dict[bytes, tuple[bytes, int | None]] = {}
_connection_memo: dict[bytes, tuple[bool, bool, bool]] = {}


def _authority(value: bytes, what: str) -> tuple[bytes, int | None]:
    """``host[:port]`` → (lowercased host, port or None)."""
    known = _authority_memo.get(value)
    if known is not None:
        return known
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        raise RemoteProtocolError(f"invalid {what}")
    host, port = match.groups()
    if port and (len(port) > 5 or int(port) > 65535):
        raise RemoteProtocolError(f"invalid port in {what}")
    result = (host.lower(), int(port) if port else None)
    if len(_authority_memo) >= _MEMO_SIZE:
        _authority_memo.clear()
    _authority_memo[value] = result
    return result


def _absolute_target(target: bytes) -> tuple[bytes, bytes, int | None, bytes]:
    """``http://host[:port][/path][?query]`` → (scheme, host, port, path)."""
    scheme, _, rest = target.partition(b"://")
    scheme = scheme.lower()
    if scheme not in {b"http", b"https"}:
        raise RemoteProtocolError("unsupported request-target")
    cut = len(rest)
    for stop in (b"/", b"?"):
        i = rest.find(stop)
        if 0 <= i < cut:
            cut = i
    authority, path = rest[:cut], rest[cut:]
    if b"@" in authority:
        raise RemoteProtocolError("userinfo in request-target")
    host, port = _authority(authority, "authority in request-target")
    if not host:
        raise RemoteProtocolError("empty host in request-target")
    if not path:
        path = b"/"
    elif path[0] == 0x3F:  # "?"
        path = b"/" + path
    return scheme, host, port, path


def _content_length(value: bytes, status: int) -> int:
    # 1*DIGIT, nothing else: no sign, no inner space, no list, no "_" (which
    # int() would accept), at most 18 digits (no overflow anywhere).
    if not value.isdigit() or len(value) > 18:
        raise RemoteProtocolError("invalid Content-Length", status)
    return int(value)


def _check_chunked(value: bytes, *, request: bool) -> None:
    """Transfer-Encoding must be exactly ``chunked`` (RFC 9112 §6.1, §6.3).

    Requests: chunked not last (or repeated, or an empty member) → 400, since
    the length cannot be determined; another coding before chunked → 501 (we
    implement no other transfer coding). Responses: anything else → 502.
    """
    if value.lower() == b"chunked":
        return
    if not request:
        raise RemoteProtocolError("unsupported Transfer-Encoding", 502)
    codings = [coding.strip(b" \t").lower() for coding in value.split(b",")]
    if codings[-1] != b"chunked" or codings.count(b"chunked") > 1 or b"" in codings:
        raise RemoteProtocolError("Transfer-Encoding must end with a single chunked")
    raise RemoteProtocolError("transfer coding not implemented", 501)


def _connection(value: bytes) -> tuple[bool, bool, bool]:
    """A Connection value → whether it lists (close, keep-alive, upgrade)."""
    known = _connection_memo.get(value)
    if known is not None:
        return known
    tokens = {token.strip(b" \t") for token in value.lower().split(b",")}
    result = (b"close" in tokens, b"keep-alive" in tokens, b"upgrade" in tokens)
    if len(_connection_memo) >= _MEMO_SIZE:
        _connection_memo.clear()
    _connection_memo[value] = result
    return result


def build_request_head(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: Headers,
    special: Headers,
    *,
    limits: Limits,
) -> RequestHead:
    """Apply the request rules to a syntactically valid head (see the docs page)."""
    hosts: list[bytes] = []
    content_length: int | None = None
    te: bytes | None = None
    connection: bytes | None = None
    upgrade: bytes | None = None
    expect_continue = False
    for name, value in special:
        if name == b"host":
            hosts.append(value)
        elif name == b"connection":
            connection = value if connection is None else connection + b"," + value
        elif name == b"content-length":
            if content_length is not None:
                raise RemoteProtocolError("duplicate Content-Length")
            content_length = _content_length(value, 400)
        elif name == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
        else:  # upgrade
            upgrade = value if upgrade is None else upgrade + b", " + value

    # Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in 1.0.
    if len(hosts) != 1 and (hosts or version == b"1.1"):
        raise RemoteProtocolError("missing Host" if not hosts else "duplicate Host")

    # Request-target forms (RFC 9112 §3.2).
    first = target[0]
    if first == 0x2F:  # origin-form "/path?query"
        scheme: bytes | None = None
        path = normalize_path(target) if b"%" in target or b"/." in target else target
        host, port = _authority(hosts[0], "Host") if hosts else (b"", None)
    elif target == b"*":
        if method != b"OPTIONS":
            raise RemoteProtocolError("asterisk-form target is only for OPTIONS")
        scheme, path = None, target
        host, port = _authority(hosts[0], "Host") if hosts else (b"", None)
    elif b"://" in target:  # absolute-form, from HTTP_PROXY clients
        scheme, host, port, path = _absolute_target(target)
        path = normalize_path(path)
        if hosts:
            _authority(hosts[0], "Host")  # must still be valid; the target wins
    else:  # authority-form is for CONNECT only, which is refused earlier
        raise RemoteProtocolError("malformed request-target")
    if b"#" in target:
        raise RemoteProtocolError("fragment in request-target")

    # Framing (RFC 9112 §6): exactly one of Content-Length, chunked, or nothing.
    chunked = False
    if te is not None:
        if version == b"1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        _check_chunked(te, request=True)
        chunked = True
    elif (
        content_length is not None
        and limits.max_body_size is not None
        and content_length > limits.max_body_size
    ):
        raise RemoteProtocolError("body too large", 413)

    if version == b"1.1":
        if connection is None:
            keep_alive = True
            upgrade = None  # Upgrade counts only with "Connection: upgrade"
        else:
            close, _, upgrade_listed = _connection(connection)
            keep_alive = not close
            if not upgrade_listed:
                upgrade = None
    else:  # HTTP/1.0: no 100-continue, no upgrade, keep-alive only if asked
        keep_alive = connection is not None and _connection(connection)[1]
        expect_continue = False
        upgrade = None

    return RequestHead(
        method,
        target,
        version,
        headers,
        keep_alive,
        content_length,
        chunked,
        expect_continue,
        upgrade,
        scheme,
        host,
        port,
        path,
    )


def build_response_head(
    status: int,
    reason: bytes,
    version: bytes,
    headers: Headers,
    special: Headers,
    *,
    request_method: bytes,
) -> ResponseHead:
    """Apply the response rules (RFC 9112 §6.3); every refusal is a 502."""
    content_length: int | None = None
    te: bytes | None = None
    connection: bytes | None = None
    upgrade: bytes | None = None
    for name, value in special:
        if name == b"content-length":
            if content_length is not None:
                raise RemoteProtocolError("duplicate Content-Length", 502)
            content_length = _content_length(value, 502)
        elif name == b"transfer-encoding":
            te = value if te is None else te + b"," + value
        elif name == b"connection":
            connection = value if connection is None else connection + b"," + value
        elif name == b"upgrade":
            upgrade = value if upgrade is None else upgrade + b", " + value
        # Host and Expect mean nothing in a response.

    chunked = False
    if te is not None:
        if content_length is not None:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding", 502)
        _check_chunked(te, request=False)
        chunked = True

    has_body = not (status < 200 or status in {204, 304} or request_method == b"HEAD")
    if connection is None:
        keep_alive = version == b"1.1"
    else:
        close, keep_alive_listed, _ = _connection(connection)
        keep_alive = not close if version == b"1.1" else keep_alive_listed
    if has_body and not chunked and content_length is None:
        keep_alive = False  # the body ends when the upstream closes
    return ResponseHead(
        status,
        reason,
        version,
        headers,
        keep_alive,
        content_length,
        chunked,
        has_body,
        upgrade if status == 101 else None,
    )
