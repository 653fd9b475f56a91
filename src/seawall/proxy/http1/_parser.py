"""The HTTP/1.1 parsers: one state machine, a request side and a response side (private).

Bytes in (:meth:`feed`, :meth:`feed_eof`), calls on a handler out. No I/O, no
clock, no task: the proxy feeds what it reads and writes what the handler
decides. httptools (llhttp) checks the syntax of each head; this module finds
where heads and bodies begin and end, so it always knows where one message
stops and the next begins. That is what makes pausing after a message,
HEAD/1xx/204/304 responses, strict chunk parsing and trailing data exact.

States and transitions (one parser per connection; ``next`` is PAUSED for a
request and IDLE for a response when the message allows keep-alive, else
CLOSED)::

    state        on                              do                                  then
    -----------  ------------------------------  ----------------------------------  ----------
    IDLE         start(method)  (response only)                                      HEAD
    IDLE         bytes                           RemoteProtocolError (unsolicited)   ERROR
    HEAD         head, no body                   on_request|on_response,             next
                                                 on_message_complete
    HEAD         head, Content-Length n > 0      on_request|on_response              LENGTH
    HEAD         head, chunked                   on_request|on_response              CHUNK_SIZE
    HEAD         response head, no length        on_response                         UNTIL_EOF
    HEAD         1xx response (not 101)          on_informational                    HEAD
    HEAD         101 response (upgrade asked)    on_upgrade(head, rest of bytes)     SWITCHED
    LENGTH       bytes                           on_body; at n: on_message_complete  next
    CHUNK_SIZE   size line, size > 0             (body limit checked here)           CHUNK_DATA
    CHUNK_SIZE   size line, size 0                                                   TRAILERS
    CHUNK_DATA   bytes                           on_body                             CHUNK_CRLF
    CHUNK_CRLF   CRLF                                                                CHUNK_SIZE
    TRAILERS     blank line                      .trailers set; on_message_complete  next
    UNTIL_EOF    bytes / feed_eof()              on_body / on_message_complete       CLOSED
    PAUSED       bytes                           kept, unparsed (pipelining)
    PAUSED       resume()                        parse what was kept                 HEAD
    PAUSED       switch_protocols()              return what was kept                SWITCHED
    CLOSED       bytes                           dropped (the connection must close)
    any          invalid input                   RemoteProtocolError                 ERROR
    any          handler raises                  the exception propagates            ERROR
    ERROR, SWITCHED  feed()                      LocalProtocolError

A request parser pauses after every request: the proxy answers it, then calls
:meth:`RequestParser.resume`, so pipelined requests are answered in order and
their bytes wait (see :attr:`~RequestParser.buffered`, for flow control).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from . import _httptools
from ._errors import LocalProtocolError, RemoteProtocolError
from ._heads import (
    SPECIAL_HEADERS,
    Headers,
    RequestHead,
    ResponseHead,
    build_request_head,
    build_response_head,
    is_token,
    parse_request_line,
    parse_status_line,
)
from ._limits import DEFAULT_LIMITS, RESPONSE_LIMITS, Limits

__all__ = ["RequestHandler", "RequestParser", "ResponseHandler", "ResponseParser"]

# States. Plain ints, ordered: everything from PAUSED up does not parse.
HEAD = 0
LENGTH = 1
CHUNK_SIZE = 2
CHUNK_DATA = 3
CHUNK_CRLF = 4
TRAILERS = 5
UNTIL_EOF = 6
PAUSED = 7
IDLE = 8
CLOSED = 9
SWITCHED = 10
ERROR = 11

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t !-~\x80-\xff])*"'
# chunk-size [chunk-ext] CRLF, RFC 9112 §7.1.1 (BWS allowed only around ";" and "=").
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*)\r\n"
)
_MAX_CHUNK_DIGITS = 16  # 64 bits; anything longer is an overflow attempt
_PREFIX_CHECKED = 256  # how much of an incomplete start line is checked for garbage
# A trailer field line: token ":" OWS value OWS, value without CTLs (RFC 9112 §5).
_FIELD_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[!-~\x80-\xff](?:[ \t!-~\x80-\xff]*[!-~\x80-\xff])?)?)[ \t]*"
)
# What the start of a request line may look like before its CRLF has arrived:
# a method token, then a target, then a version. Refuses garbage (a TLS
# ClientHello on the plain-text port, say) at once instead of at the limit.
_REQUEST_PREFIX = re.compile(rb"(?:" + _TOKEN + rb"(?: [!-~\x80-\xff]*(?: [!-~]*\r?)?)?)?")


class RequestHandler(Protocol):
    """What a :class:`RequestParser` calls, in this order per request:
    ``on_request``, ``on_body`` zero or more times, ``on_message_complete``."""

    def on_request(self, head: RequestHead) -> None:
        """A valid request head arrived (the body, if any, follows)."""

    def on_body(self, data: bytes) -> None:
        """A piece of the body, de-chunked. Never empty."""

    def on_message_complete(self) -> None:
        """The request is complete. The parser is now paused (or closed)."""


class ResponseHandler(Protocol):
    """What a :class:`ResponseParser` calls for each :meth:`~ResponseParser.start`:
    ``on_informational`` for each 1xx, then either ``on_upgrade`` (101) or
    ``on_response``, ``on_body`` zero or more times, ``on_message_complete``."""

    def on_informational(self, head: ResponseHead) -> None:
        """An interim 1xx response other than 101 (100 Continue, 103 Early Hints)."""

    def on_response(self, head: ResponseHead) -> None:
        """The final response head arrived (the body, if any, follows)."""

    def on_body(self, data: bytes) -> None:
        """A piece of the body, de-chunked. Never empty."""

    def on_message_complete(self) -> None:
        """The response is complete."""

    def on_upgrade(self, head: ResponseHead, data: bytes) -> None:
        """A 101 switched protocols; ``data`` is what followed its head (tunnel bytes)."""


class _HeaderSink:
    """What llhttp reports header lines to: all of them, and the special ones aside."""

    __slots__ = ("headers", "special")

    def __init__(self) -> None:
        self.headers: Headers = []
        self.special: Headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp has stripped leading whitespace from the value; strip the end.
        name = name.lower()
        value = value.rstrip(b" \t")
        self.headers.append((name, value))
        if name in SPECIAL_HEADERS:
            self.special.append((name, value))


class _Parser(ABC):
    """The framing shared by both sides: heads, Content-Length, chunked, limits."""

    __slots__ = (
        "_buf",
        "_busy",
        "_dirty",
        "_ext_budget",
        "_hp",
        "_left",
        "_limits",
        "_line",
        "_line_checked",
        "_next",
        "_on_body",
        "_on_complete",
        "_partial",
        "_seen",
        "_sink",
        "_state",
        "trailers",
    )

    def __init__(
        self,
        on_body: Callable[[bytes], None],
        on_complete: Callable[[], None],
        limits: Limits,
        state: int,
    ) -> None:
        self._on_body = on_body
        self._on_complete = on_complete
        self._limits = limits
        self._state = state
        self._next = CLOSED
        self._buf = bytearray()  # bytes held while PAUSED
        self._partial = bytearray()  # a head that is not complete yet
        self._line_checked = False  # its start line has been checked
        self._line = bytearray()  # a chunk line, a CRLF or a trailer section in progress
        self._left = 0
        self._seen = 0
        self._ext_budget = 0
        self._busy = False
        self._sink = _HeaderSink()
        self._dirty = True  # llhttp is mid-message: make a new one before the next head
        self._hp: _httptools.LLParser | None = None
        self.trailers: Sequence[tuple[bytes, bytes]] = ()

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling the handler for what it completes.

        Raises :class:`RemoteProtocolError` when the peer's bytes are invalid
        or over a limit (the parser is then unusable), and
        :class:`LocalProtocolError` when called after an error or a switch of
        protocols. An exception raised by the handler propagates and also
        leaves the parser unusable.
        """
        if self._state >= PAUSED:
            self._feed_waiting(data)
        elif data:
            self._run(data, 0)

    def _feed_waiting(self, data: bytes) -> None:
        state = self._state
        if state == PAUSED:
            self._buf += data
        elif state == IDLE:
            if data:
                self._state = ERROR
                raise RemoteProtocolError("unsolicited data from upstream", 502)
        elif state != CLOSED:
            raise LocalProtocolError(
                "feed() after a protocol switch" if state == SWITCHED else "feed() after an error"
            )

    def _run(self, data: bytes, pos: int) -> None:
        end = len(data)
        self._busy = True
        try:
            while pos < end:
                state = self._state
                if state == HEAD:
                    pos = self._head(data, pos)
                elif state == LENGTH:
                    left = self._left
                    if end - pos < left:
                        self._left = left - (end - pos)
                        self._on_body(data[pos:] if pos else data)
                        return
                    chunk = data[pos : pos + left]
                    pos += left
                    self._left = 0
                    self._on_body(chunk)
                    self._complete()
                elif state <= TRAILERS:
                    pos = self._chunked(data, pos)
                elif state == UNTIL_EOF:
                    self._on_body(data[pos:] if pos else data)
                    return
                else:
                    self._feed_waiting(data[pos:])
                    return
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self._busy = False

    def _fail(self, exc: BaseException) -> None:
        self._state = ERROR

    def _complete(self) -> None:
        self._state = self._next
        self._on_complete()

    # ------------------------------------------------------------------ heads

    def _head(self, data: bytes, pos: int) -> int:
        partial = self._partial
        if not partial:
            first = data[pos]
            if first in {13, 10}:
                # Empty lines before a start line are ignored (RFC 9112 §2.2);
                # a bare CR or LF there is not (llhttp would skip it).
                while data.startswith(b"\r\n", pos):
                    pos += 2
                if pos == len(data):
                    return pos
                first = data[pos]
                if first == 10 or (first == 13 and pos + 1 < len(data)):
                    raise RemoteProtocolError("bare CR or LF before the start line")
            end = data.find(b"\r\n\r\n", pos)
            if end >= 0:
                return self._process_head(data[pos : end + 4], data, end + 4)
            self._grow_partial(data, pos)
            return len(data)
        # The head began in an earlier feed: look for its end across the seam.
        tail = bytes(partial[-3:])
        seam = (tail + data[pos : pos + 3]).find(b"\r\n\r\n")
        if seam >= 0:
            end = pos + seam + 4 - len(tail)
        else:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                self._grow_partial(data, pos)
                return len(data)
            end += 4
        head = bytes(partial) + data[pos:end]
        partial.clear()
        self._line_checked = False
        while head.startswith(b"\r\n"):
            head = head[2:]
        if not head:
            return end
        if head[0] in {13, 10}:  # llhttp would skip it: refuse, as the fast path does
            raise RemoteProtocolError("bare CR or LF before the start line")
        return self._process_head(head, data, end)

    def _grow_partial(self, data: bytes, pos: int) -> None:
        """Keep an incomplete head, refusing early what can never become valid."""
        partial = self._partial
        new = data[pos:]
        lf = new.count(b"\n")
        if lf:
            crlf = new.count(b"\r\n")
            if new[0] == 10 and partial[-1:] == b"\r":
                crlf += 1
            if crlf != lf:
                raise RemoteProtocolError("bare LF in head")
        partial += new
        while partial[:2] == b"\r\n":
            del partial[:2]
        limits = self._limits
        if not self._line_checked:
            # Only the new bytes are searched, and only the first bytes of the
            # line are checked: a line trickling in costs O(n), not O(n²).
            newline = partial.find(b"\n", max(0, len(partial) - len(new) - 1))
            if newline >= 0:
                self._check_start_line(bytes(partial[: newline - 1]))
                self._line_checked = True
            elif len(partial) > limits.max_request_line + 1:
                raise RemoteProtocolError("request line too long", 414)
            elif len(partial) - len(new) < _PREFIX_CHECKED and partial != b"\r":
                # (a CR alone may begin an empty line)
                self._check_line_prefix(bytes(partial[:_PREFIX_CHECKED]))
        if len(partial) >= limits.max_header_bytes:
            raise RemoteProtocolError("header section too large", 431)

    def _feed_llhttp(self, head: bytes, limits: Limits) -> Headers:
        """Have llhttp check the head's syntax; return (and keep aside) its fields."""
        if len(head) > limits.max_header_bytes:
            raise RemoteProtocolError("header section too large", 431)
        sink = self._sink
        headers: Headers = []
        sink.headers = headers
        sink.special = []
        hp = self._hp
        if self._dirty or hp is None:
            hp = self._hp = self._new_llhttp(sink)
            self._dirty = False
        try:
            hp.feed_data(head)
        except _httptools.ParserUpgrade:
            self._dirty = True
        if len(headers) > limits.max_headers:
            raise RemoteProtocolError("too many header fields", 431)
        return headers

    # ------------------------------------------------------------------ bodies

    def _start_chunked(self) -> None:
        self._state = CHUNK_SIZE
        self._seen = 0
        self._ext_budget = self._limits.max_chunk_ext_bytes
        self._dirty = True

    def _chunked(self, data: bytes, pos: int) -> int:
        end = len(data)
        while pos < end:
            state = self._state
            if state == CHUNK_DATA:
                left = self._left
                avail = end - pos
                if avail <= left:
                    self._left = left - avail
                    if avail == left:
                        self._state = CHUNK_CRLF
                    self._on_body(data[pos:] if pos else data)
                    return end
                self._state = CHUNK_CRLF
                self._on_body(data[pos : pos + left])
                pos += left
            elif state == CHUNK_CRLF:
                line = self._line
                if not line and data.startswith(b"\r\n", pos):
                    pos += 2
                else:
                    piece = data[pos : pos + 2 - len(line)]
                    line += piece
                    pos += len(piece)
                    if len(line) < 2:
                        return pos
                    if line != b"\r\n":
                        raise RemoteProtocolError("missing CRLF after chunk data")
                    line.clear()
                self._state = CHUNK_SIZE
            elif state == CHUNK_SIZE:
                pos = self._chunk_size(data, pos)
            else:
                return self._trailers(data, pos)
        return pos

    def _chunk_size(self, data: bytes, pos: int) -> int:
        line = self._line
        newline = data.find(b"\n", pos)
        if newline < 0:
            line += data[pos:]
            if len(line) > _MAX_CHUNK_DIGITS + 1 + max(self._ext_budget, 0):
                raise RemoteProtocolError("chunk size line too long")
            return len(data)
        if line:
            raw = bytes(line) + data[pos : newline + 1]
            line.clear()
        else:
            raw = data[pos : newline + 1]
        match = _CHUNK_LINE.fullmatch(raw)
        if match is None:
            raise RemoteProtocolError("invalid chunk size line")
        digits, ext = match.groups()
        if len(digits) > _MAX_CHUNK_DIGITS:
            raise RemoteProtocolError("chunk size overflow")
        if ext:
            self._ext_budget -= len(ext)
            if self._ext_budget < 0:
                raise RemoteProtocolError("chunk extensions too long")
        size = int(digits, 16)
        if size == 0:
            self._state = TRAILERS
        else:
            seen = self._seen + size
            limit = self._limits.max_body_size
            if limit is not None and seen > limit:
                raise RemoteProtocolError("body too large", 413)
            self._seen = seen
            self._left = size
            self._state = CHUNK_DATA
        return newline + 1

    def _trailers(self, data: bytes, pos: int) -> int:
        line = self._line
        if not line and data.startswith(b"\r\n", pos):
            self.trailers = ()
            self._complete()
            return pos + 2
        before = len(line)
        line += data[pos:]
        if line[:2] == b"\r\n":
            end = 2
        else:
            end = line.find(b"\r\n\r\n", max(0, before - 3))
            if end >= 0:
                end += 4
        limits = self._limits
        if end < 0:
            if line.count(b"\n") != line.count(b"\r\n"):
                raise RemoteProtocolError("bare LF in trailer section")
            if len(line) >= limits.max_header_bytes:
                raise RemoteProtocolError("trailer section too large", 431)
            return len(data)
        if end > limits.max_header_bytes:
            raise RemoteProtocolError("trailer section too large", 431)
        section = bytes(line[:end])
        line.clear()
        fields: Headers = []
        if end > 2:
            lines = section[:-4].split(b"\r\n")
            if len(lines) > limits.max_headers:
                raise RemoteProtocolError("too many trailer fields", 431)
            for field in lines:
                match = _FIELD_LINE.fullmatch(field)
                if match is None:
                    raise RemoteProtocolError("malformed trailer field")
                fields.append((match.group(1).lower(), match.group(2)))
        self.trailers = fields
        self._complete()
        return pos + end - before

    # ------------------------------------------------------------------ per side

    @abstractmethod
    def _new_llhttp(self, sink: _HeaderSink) -> _httptools.LLParser:
        """A new llhttp parser of this side, feeding ``sink``."""

    @abstractmethod
    def _check_start_line(self, line: bytes) -> None:
        """Raise if ``line`` is not a valid start line of this side."""

    @abstractmethod
    def _check_line_prefix(self, partial: bytes) -> None:
        """Raise as soon as an incomplete start line cannot become valid."""

    @abstractmethod
    def _process_head(self, head: bytes, data: bytes, pos: int) -> int:
        """Handle a complete head; return where the body starts in ``data``."""


class RequestParser(_Parser):
    """The server side of a connection: parses the requests a client sends.

    Feed it what the connection reads; it calls ``handler.on_request(head)``,
    ``handler.on_body(data)`` and ``handler.on_message_complete()``. After each
    request it pauses: bytes that follow (pipelined requests) are kept until
    :meth:`resume`. A request that does not allow keep-alive closes it
    instead (later bytes are dropped).

    Attributes:
        trailers: the trailer fields of the last chunked request (set just
            before ``on_message_complete``; empty otherwise).
    """

    __slots__ = ("_on_request", "_upgrade_pending")

    def __init__(self, handler: RequestHandler, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(handler.on_body, handler.on_message_complete, limits, HEAD)
        self._on_request = handler.on_request
        self._upgrade_pending = False

    @property
    def paused(self) -> bool:
        """A request is complete and the parser waits for :meth:`resume`."""
        return self._state == PAUSED

    @property
    def closed(self) -> bool:
        """The last request did not allow keep-alive, or the client closed."""
        return self._state == CLOSED

    @property
    def buffered(self) -> int:
        """Bytes received while paused and not parsed yet.

        The parser keeps all of them. Stop reading from the connection when
        this grows (``transport.pause_reading()``) and read again after
        :meth:`resume`.
        """
        return len(self._buf)

    def resume(self) -> None:
        """The response to the last request is sent: parse the next one.

        Parses the bytes kept while paused right away (which may call the
        handler before this returns). May be called from
        ``on_message_complete`` itself.
        """
        if self._state != PAUSED:
            raise LocalProtocolError("resume() when no request is complete")
        self._state = HEAD
        self._upgrade_pending = False
        if self._buf and not self._busy:
            data = bytes(self._buf)
            self._buf.clear()
            self._run(data, 0)

    def switch_protocols(self) -> bytes:
        """The upstream accepted the last request's Upgrade (it answered 101).

        Returns the bytes the client sent after that request (the start of
        the tunnel) and retires the parser: from now on the connection carries
        the new protocol, not HTTP/1.1.
        """
        if self._state != PAUSED or not self._upgrade_pending:
            raise LocalProtocolError("switch_protocols() without a completed Upgrade request")
        self._state = SWITCHED
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def feed_eof(self) -> None:
        """The client closed its side. Raises if it did so in the middle of a request."""
        state = self._state
        if state == HEAD and not self._partial:
            self._state = CLOSED
        elif state < PAUSED:
            self._state = ERROR
            raise RemoteProtocolError("connection closed in the middle of a request")
        elif state == PAUSED:
            self._state = CLOSED
            self._buf.clear()

    def _new_llhttp(self, sink: _HeaderSink) -> _httptools.LLParser:
        return _httptools.new_request_parser(sink)

    def _check_start_line(self, line: bytes) -> None:
        parse_request_line(line, self._limits)

    def _check_line_prefix(self, partial: bytes) -> None:
        if _REQUEST_PREFIX.fullmatch(partial) is None:
            raise RemoteProtocolError("malformed request line")

    def _process_head(self, head: bytes, data: bytes, pos: int) -> int:
        limits = self._limits
        method, target, version = parse_request_line(head[: head.find(b"\r\n")], limits)
        try:
            headers = self._feed_llhttp(head, limits)
        except _httptools.ParserError as exc:
            raise _llhttp_error(exc, method) from None
        request = build_request_head(
            method, target, version, headers, self._sink.special, limits=limits
        )
        self._next = PAUSED if request.keep_alive else CLOSED
        self._upgrade_pending = request.upgrade is not None
        if self.trailers:
            self.trailers = ()
        if request.chunked:
            self._start_chunked()
        elif request.content_length:
            self._state = LENGTH
            self._left = request.content_length
            self._dirty = True
        else:
            self._on_request(request)
            self._complete()
            return pos
        self._on_request(request)
        return pos


class ResponseParser(_Parser):
    """The client side of an upstream connection: parses the responses it sends.

    Call :meth:`start` with the request's method before writing each request
    (the method decides whether a body can follow: never after HEAD); then
    feed what the connection reads. One request at a time: the upstream
    connection is not pipelined. Every error is a :class:`RemoteProtocolError`
    with ``status_hint`` 502 (the proxy answers its client 502 Bad Gateway).

    Attributes:
        trailers: the trailer fields of the last chunked response.
    """

    __slots__ = ("_method", "_on_informational", "_on_response", "_on_upgrade", "_upgrade_ok")

    def __init__(self, handler: ResponseHandler, limits: Limits = RESPONSE_LIMITS) -> None:
        super().__init__(handler.on_body, handler.on_message_complete, limits, IDLE)
        self._on_response = handler.on_response
        self._on_informational = handler.on_informational
        self._on_upgrade = handler.on_upgrade
        self._method = b"GET"
        self._upgrade_ok = False

    @property
    def idle(self) -> bool:
        """No response is expected and the connection may be reused."""
        return self._state == IDLE

    @property
    def closed(self) -> bool:
        """The last response did not allow keep-alive, or the upstream closed."""
        return self._state == CLOSED

    def start(self, method: bytes, *, upgrade: bool = False) -> None:
        """Expect the response to a request with ``method``.

        ``upgrade=True`` when the request asked to switch protocols: a 101
        is then accepted (and reported with ``on_upgrade``); otherwise a 101
        is a protocol error.
        """
        if self._state != IDLE:
            raise LocalProtocolError(
                "start() while a response is expected, or after the connection is done"
            )
        self._method = method
        self._upgrade_ok = upgrade
        self._state = HEAD

    def feed_eof(self) -> None:
        """The upstream closed. Completes a body that ends at close; raises if
        a response was expected and is missing or cut short."""
        state = self._state
        if state == UNTIL_EOF:
            self._state = CLOSED
            self._on_complete()
        elif state == HEAD and not self._partial:
            self._state = ERROR
            raise RemoteProtocolError("upstream closed the connection before responding", 502)
        elif state < PAUSED:
            self._state = ERROR
            raise RemoteProtocolError("upstream closed the connection mid-response", 502)
        elif state == IDLE:
            self._state = CLOSED

    def _fail(self, exc: BaseException) -> None:
        self._state = ERROR
        if isinstance(exc, RemoteProtocolError):
            exc.status_hint = 502

    def _new_llhttp(self, sink: _HeaderSink) -> _httptools.LLParser:
        return _httptools.new_response_parser(sink)

    def _check_start_line(self, line: bytes) -> None:
        parse_status_line(line, self._limits)

    def _check_line_prefix(self, partial: bytes) -> None:
        if not b"HTTP/".startswith(partial[:5]):
            raise RemoteProtocolError("not an HTTP/1.x response", 502)

    def _process_head(self, head: bytes, data: bytes, pos: int) -> int:
        limits = self._limits
        status, reason, version = parse_status_line(head[: head.find(b"\r\n")], limits)
        try:
            headers = self._feed_llhttp(head, limits)
        except _httptools.ParserError as exc:
            raise RemoteProtocolError(f"malformed response head: {exc}", 502) from None
        response = build_response_head(
            status, reason, version, headers, self._sink.special, request_method=self._method
        )
        if status < 200:
            if status != 101:
                self._on_informational(response)
                return pos
            if not self._upgrade_ok:
                raise RemoteProtocolError("101 Switching Protocols without an Upgrade request", 502)
            self._state = SWITCHED
            self._on_upgrade(response, data[pos:])
            return len(data)
        self._dirty = True
        self._next = IDLE if response.keep_alive else CLOSED
        if self.trailers:
            self.trailers = ()
        if not response.has_body:
            self._on_response(response)
            self._complete()
            return pos
        if response.chunked:
            self._start_chunked()
        elif response.content_length is not None:
            limit = limits.max_body_size
            if limit is not None and response.content_length > limit:
                raise RemoteProtocolError("response body too large", 502)
            if not response.content_length:
                self._on_response(response)
                self._complete()
                return pos
            self._state = LENGTH
            self._left = response.content_length
        else:
            self._state = UNTIL_EOF
        self._on_response(response)
        return pos


def _llhttp_error(exc: Exception, method: bytes) -> RemoteProtocolError:
    """Map an llhttp error on a request head to a status (501 for an unknown method)."""
    if isinstance(exc, _httptools.ParserInvalidMethodError) and is_token(method):
        return RemoteProtocolError("method not implemented", 501)
    return RemoteProtocolError(f"malformed request head: {exc}")
