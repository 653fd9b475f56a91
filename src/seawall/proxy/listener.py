"""Downstream connections: bytes from a client in, one request at a time to the forwarder.

A :class:`DownstreamConnection` owns a :class:`~seawall.proxy.http1.RequestParser`.
For each request it hands the head and a :class:`RequestBody` to the
forwarder (a task per request); pipelined requests wait in the parser, which
pauses after each one, and are answered in order. It enforces the slowloris
timeouts (header, body, idle), answers protocol errors with their status and
closes, and passes write back-pressure to whichever upstream is streaming to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias, cast

from .http1 import Limits, RemoteProtocolError, RequestHead, RequestParser, error_response

__all__ = ["ConnectionTimeouts", "DownstreamConnection", "RequestBody", "Serve"]

_MAX_PIPELINED = 1 << 20  # bytes kept unparsed while a request is served; then stop reading

# Connection phases, for the timeouts: waiting for a request, reading its head,
# reading its body (stalls time out), serving it (the route's timeouts apply).
_IDLE, _HEAD, _BODY, _BUSY = 0, 1, 2, 3


Serve: TypeAlias = Callable[
    ["DownstreamConnection", RequestHead, "RequestBody"], Coroutine[Any, Any, None]
]
"""The forwarder as the listener sees it: serve one request, write its response."""


class ConnectionTimeouts:
    """Seconds: for a request head to arrive, between body bytes, and idle keep-alive."""

    __slots__ = ("body", "header", "idle")

    def __init__(self, header: float = 10.0, body: float = 30.0, idle: float = 60.0) -> None:
        self.header = header
        self.body = body
        self.idle = idle


class RequestBody:
    """The body of the request being served, arriving from the parser.

    The forwarder either waits for all of it (:meth:`read_all`, to buffer a body
    it may re-send) or streams it (:meth:`stream_to`).
    """

    __slots__ = ("_end", "_sink", "_waiter", "chunks", "complete", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], object] | None = None
        self._end: Callable[[], object] | None = None

    def feed(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink(data)
            return
        self.chunks.append(data)
        self.size += len(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        if self._end is not None:
            self._end()
        self._wake()

    def abort(self) -> None:
        """The client went away or broke the protocol mid-body."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("client closed mid-body"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read_all(self, limit: int) -> bytes | None:
        """The whole body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
        while not self.complete:
            if self.size > limit:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        if self.size > limit:
            return None
        return b"".join(self.chunks)

    def stream_to(self, sink: Callable[[bytes], object], end: Callable[[], object]) -> None:
        """Send what arrived so far to ``sink``, then every later chunk; ``end`` at the end."""
        held, self.chunks = self.chunks, []
        for data in held:
            sink(data)
        if self.complete:
            end()
        else:
            self._sink = sink
            self._end = end

    async def wait_complete(self) -> None:
        """Wait until the last body byte has been received."""
        while not self.complete:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


class DownstreamConnection(asyncio.Protocol):
    """One client connection to a sidecar listener.

    On an mTLS connection (see :mod:`seawall.proxy.tls`), ``peer_service`` is
    the calling service and ``peer_id`` its SPIFFE ID, both taken from its
    certificate; they stay ``None`` on plaintext connections. ``peer`` is the
    client's IP address (for ``X-Forwarded-For``).
    """

    # Class-level defaults: a plaintext connection never sets them, and pays nothing.
    peer_service: str | None = None
    peer_id: bytes | None = None
    accept_peer: Callable[[DownstreamConnection], bool] | None = None
    """Set by the mTLS listener: decides, once the handshake is done and before any
    request is read, whether the peer may talk to this sidecar at all."""

    def __init__(
        self,
        serve: Serve,
        limits: Limits,
        timeouts: ConnectionTimeouts,
        *,
        destination: str | None = None,
        inbound: bool = False,
        on_close: Callable[[DownstreamConnection], None] | None = None,
    ) -> None:
        self.serve = serve
        self.destination = destination  # fixed destination (per-destination port)
        self.inbound = inbound
        self.timeouts = timeouts
        self.parser = RequestParser(self, limits)
        self.transport: asyncio.Transport | None = None
        self.peer: bytes | None = None
        self.closed = False
        self.body: RequestBody | None = None
        self.task: asyncio.Task[None] | None = None
        self.response_started = False
        self.streaming_from: asyncio.Transport | None = None  # upstream to throttle
        self._write_paused = False
        self._loop = asyncio.get_event_loop()
        # Slowloris timeouts without a timer per request: the connection notes its
        # phase and since when; the sidecar's sweeper calls check() periodically.
        self.phase = _IDLE
        self.since = self._loop.time()
        self._on_close = on_close

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.peer = str(peer[0]).encode("ascii", "replace")
        accept = self.accept_peer
        if accept is not None and not accept(self):
            # Not a peer of this mesh: read nothing of what it sent, close now.
            self.transport.pause_reading()
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _IDLE:  # the first bytes of a request head: its time starts now
            self.phase = _HEAD
            self.since = self._loop.time()
        elif phase == _BODY:  # progress on the body
            self.since = self._loop.time()
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            self._refuse(exc.status_hint, exc.reason)
            return
        if self.parser.buffered > _MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        try:
            self.parser.feed_eof()
        except RemoteProtocolError:
            if self.body is not None:
                self.body.abort()
        # An HTTP/1.1 client that closes its side has given up (Envoy's default
        # too): stop the upstream work rather than hold its slot until a timeout.
        if self.task is not None and not self.task.done():
            self.task.cancel()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.body is not None and not self.body.complete:
            self.body.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client is gone: stop the upstream work too
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.streaming_from is not None:
            self.streaming_from.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.streaming_from is not None:
            self.streaming_from.resume_reading()

    # -- RequestHandler ---------------------------------------------------

    def on_request(self, head: RequestHead) -> None:
        body = RequestBody()
        self.body = body
        self.response_started = False
        if head.has_body:
            self.phase = _BODY
            self.since = self._loop.time()
        else:
            self.phase = _BUSY
            body.complete = True
        self.task = self._loop.create_task(self.serve(self, head, body))

    def on_body(self, data: bytes) -> None:
        if self.body is not None:
            self.body.feed(data)

    def on_message_complete(self) -> None:
        self.phase = _BUSY
        body = self.body
        if body is not None and not body.complete:
            body.finish()

    # -- used by the forwarder --------------------------------------------

    def write(self, data: bytes) -> None:
        """Send response bytes to the client."""
        self.response_started = True
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def write_interim(self, data: bytes) -> None:
        """Send an interim (1xx) response: the final response is still to come."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def finish(self, keep_alive: bool) -> None:
        """The response is complete: read the next request, or close."""
        self.body = None
        self.task = None
        self.streaming_from = None
        if self.closed:
            return
        if not keep_alive or self.parser.closed or not self.parser.paused:
            # (not paused: the request was not read whole, e.g. an early answer)
            assert self.transport is not None
            self.transport.close()
            return
        self.phase = _IDLE
        self.since = self._loop.time()
        if self.transport is not None:
            self.transport.resume_reading()
        try:
            self.parser.resume()
        except RemoteProtocolError as exc:
            self._refuse(exc.status_hint, exc.reason)

    def close(self) -> None:
        """Close the connection at once."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- timeouts and refusals --------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a protocol error (if nothing was sent yet) and close."""
        if self.body is not None and not self.body.complete:
            self.body.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if not self.response_started:
            self.write(error_response(status, reason))
        self.close()

    def check(self, now: float) -> None:
        """Enforce the header, body and idle timeouts (called by the sidecar's sweeper)."""
        phase = self.phase
        waited = now - self.since
        if phase == _IDLE:
            if waited >= self.timeouts.idle and self.task is None:
                self.close()
        elif phase == _HEAD:
            if waited >= self.timeouts.header:
                self._refuse(408, "request head not received in time")
        elif phase == _BODY and waited >= self.timeouts.body:
            self._refuse(408, "request body stalled")
