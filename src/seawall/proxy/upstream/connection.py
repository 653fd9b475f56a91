"""Upstream connections and the exchanges they carry.

An :class:`UpstreamConnection` is an asyncio protocol with a
:class:`~seawall.proxy.http1.ResponseParser`; it carries one
:class:`Exchange` (request, then response) at a time, never pipelined.

The forwarder awaits :attr:`Exchange.head`. Body bytes that arrive before it
has decided what to do with the response (forward it, or drop it and retry)
are held in the exchange; once it attaches a sink they flow straight from the
upstream's ``data_received`` to the downstream transport, without a task or an
await per chunk. Back-pressure: the downstream side pauses this connection's
reading while its own write buffer is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from ..http1 import RESPONSE_LIMITS, Limits, RemoteProtocolError, ResponseHead, ResponseParser

__all__ = ["Exchange", "UpstreamConnection", "UpstreamError"]


class UpstreamError(Exception):
    """The upstream failed the exchange.

    Attributes:
        kind: ``"connect"`` (no connection), ``"reset"`` (closed or reset
            before the response head: nothing was received), ``"protocol"``
            (an invalid response) or ``"cut"`` (closed mid-body).
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"upstream {kind}: {detail}")


class Exchange:
    """One request/response on an upstream connection."""

    __slots__ = (
        "_held",
        "_sink",
        "_sink_end",
        "complete",
        "done",
        "head",
        "progress",
        "upgrade_data",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[ResponseHead] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.complete = False
        self.progress = 0  # body chunks received (the idle timeout watches it)
        self.upgrade_data: bytes | None = None
        self._held: list[bytes] = []
        self._sink: Callable[[bytes], object] | None = None
        self._sink_end: Callable[[], object] | None = None

    def attach(self, sink: Callable[[bytes], object], end: Callable[[], object]) -> None:
        """Send the body to ``sink`` (held bytes first); call ``end`` when it is complete."""
        held, self._held = self._held, []
        for data in held:
            sink(data)
        self._sink = sink
        self._sink_end = end
        if self.complete:
            end()
            if not self.done.done():
                self.done.set_result(None)

    def take_complete_body(self) -> bytes | None:
        """The whole body, if it has all arrived and nobody attached yet (else ``None``).

        Lets the forwarder send a small response's head and body in one write.
        """
        if not self.complete or self._sink is not None:
            return None
        held, self._held = self._held, []
        self._sink = _drop
        if not self.done.done():
            self.done.set_result(None)
        return held[0] if len(held) == 1 else b"".join(held)

    def discard(self) -> None:
        """Drop the body (the response is not forwarded, e.g. before a retry)."""
        self._held = []
        self.done.add_done_callback(_retrieve)  # nobody awaits a dropped body
        self.attach(_drop, _nothing)

    # -- from the connection --

    def on_head(self, head: ResponseHead) -> None:
        if not self.head.done():
            self.head.set_result(head)

    def on_body(self, data: bytes) -> None:
        self.progress += 1
        sink = self._sink
        if sink is not None:
            sink(data)
        else:
            self._held.append(data)

    def on_complete(self) -> None:
        self.complete = True
        end = self._sink_end
        if end is not None:
            end()
            if not self.done.done():
                self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.head.done():
            self.head.set_exception(exc)
            self.done.cancel()  # nobody waits for it yet
        elif not self.done.done():
            self.done.set_exception(exc)
            # The forwarder may have given up on this exchange (a timeout): then
            # nobody awaits ``done``; mark its exception as seen either way.
            self.done.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _drop(data: bytes) -> None:
    return None


def _nothing() -> None:
    return None


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one upstream endpoint."""

    __slots__ = (
        "_on_close",
        "closed",
        "counted",
        "exchange",
        "idle_since",
        "key",
        "parser",
        "transport",
    )

    def __init__(
        self,
        key: object,
        on_close: Callable[[UpstreamConnection], None],
        limits: Limits = RESPONSE_LIMITS,
    ) -> None:
        self.key = key
        self._on_close = on_close
        self.parser = ResponseParser(self, limits)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.counted = True  # still counted among the pool's open connections
        self.idle_since = 0.0

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except RemoteProtocolError as exc:
            self._abort(UpstreamError("protocol", exc.reason))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self.exchange
        if exchange is not None and not exchange.complete:
            try:
                self.parser.feed_eof()  # completes a body delimited by the close
            except RemoteProtocolError as error:
                started = exchange.head.done()
                exchange.fail(UpstreamError("cut" if started else "reset", error.reason))
        self._on_close(self)

    # -- ResponseHandler --

    def on_informational(self, head: ResponseHead) -> None:
        return None  # 100 Continue and friends: the proxy answers the client itself

    def on_response(self, head: ResponseHead) -> None:
        if self.exchange is not None:
            self.exchange.on_head(head)

    def on_body(self, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_body(data)

    def on_message_complete(self) -> None:
        if self.exchange is not None:
            self.exchange.on_complete()

    def on_upgrade(self, head: ResponseHead, data: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.upgrade_data = data
            exchange.on_head(head)

    # -- used by the pool and the forwarder --

    @property
    def reusable(self) -> bool:
        """Open, and the last response allowed keep-alive and was read whole."""
        return not self.closed and self.parser.idle

    def begin(
        self, loop: asyncio.AbstractEventLoop, method: bytes, *, upgrade: bool = False
    ) -> Exchange:
        """Start an exchange: the response parser now expects a response to ``method``."""
        exchange = Exchange(loop)
        self.exchange = exchange
        self.parser.start(method, upgrade=upgrade)
        return exchange

    def write(self, data: bytes) -> None:
        """Send bytes upstream."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def close(self) -> None:
        """Close the connection now (an exchange in progress fails)."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _abort(self, exc: UpstreamError) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.fail(exc)
        if self.transport is not None:
            self.transport.abort()
