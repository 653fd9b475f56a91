"""The control API over HTTP/1.1: aiohttp's web server in front of :class:`ControlAPI`.

aiohttp parses requests, keeps connections alive, bounds what a client may
send and shuts down gracefully; this module turns one request into one
:meth:`ControlAPI.answer` call and the :class:`Answer` back into a response.
What the API says (statuses, JSON bodies, error messages) is decided in
:mod:`seawall.control.api` alone. It is aiohttp's low-level server
(``web.Server``): no router, middlewares, signals or access log run per
request (measured: an ``Application`` with one catch-all route cost 15-20 us
more per request, on a path where the old codec's whole request cost 55 us).

What a client may send, and what it gets past that:

===========================  ===========  ==========================================
request body                 4 MiB        413 ``{"error": "body: larger than ..."}``;
                                          a larger Content-Length is refused unread
body arriving                30 s         408 ``{"error": "body: not received ..."}``
request line, header line    8190 bytes   400 (aiohttp's text/plain answer)
header lines                 100          400
a malformed request          --           400 (aiohttp's text/plain answer), closed
idle keep-alive connection   120 s        closed; a connection that has not sent a
                                          whole request head by then too
===========================  ===========  ==========================================

A client that goes away cancels its request (``handler_cancellation``): a
long-poll whose sidecar is gone holds nothing until its wait runs out.
:meth:`HttpServer.stop` stops accepting, answers every long-poll (with what
is current: 304 for an unchanged etag), lets requests in flight finish (up to
``shutdown_grace`` seconds) and closes the connections.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import StreamReader, web
from aiohttp.http import HttpProcessingError

from .api import MAX_BODY, Answer, ControlAPI

__all__ = ["BODY_TIMEOUT", "IDLE_TIMEOUT", "SHUTDOWN_GRACE", "HttpServer"]

BODY_TIMEOUT = 30.0
"""Seconds for a request body to arrive whole."""
IDLE_TIMEOUT = 120.0
"""Seconds a keep-alive connection may wait for its next request."""
SHUTDOWN_GRACE = 5.0
"""Seconds requests in flight get to finish when the server stops."""
MAX_LINE = 8190  # request line, and each header line (aiohttp's default)
MAX_HEADERS = 100


class _NotTheClientsErrors(logging.Filter):
    """Keeps aiohttp's reports of what went wrong in the server, and drops those of
    malformed requests: they are the client's, answered 400, and would fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], HttpProcessingError))


_log = logging.getLogger("seawall.control.http")
_log.addFilter(_NotTheClientsErrors())


class HttpServer:
    """:class:`ControlAPI` served on one TCP listener."""

    def __init__(self, api: ControlAPI, *, shutdown_grace: float = SHUTDOWN_GRACE) -> None:
        self.api = api
        # aiohttp's low-level server: no router, middlewares or signals per request
        # (ControlAPI routes, and answers 404 and 405 itself), and no access log.
        server = web.Server(
            self._handle,
            handler_cancellation=True,  # a client gone: its request is cancelled
            access_log=None,
            logger=_log,
            keepalive_timeout=IDLE_TIMEOUT,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
            auto_decompress=False,  # bodies are taken as sent, as they always were
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=shutdown_grace)
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` (0: any free port, then :attr:`port` says which)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop accepting, end the long-polls, let requests in flight finish, close."""
        self.api.close()  # long-polls answer now, and later ones do not wait
        await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        answer, close = await self._answer(request)
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if close:  # the rest of the body is not worth waiting for
            response.force_close()
        return response

    async def _answer(self, request: web.BaseRequest) -> tuple[Answer, bool]:
        """The API's answer, and whether to close the connection after it."""
        api = self.api
        body = b""
        if request.body_exists:  # (a GET, a long-poll, has none: no read, no timer)
            length = request.content_length
            if length is not None and length > MAX_BODY:  # refused before any of it is read
                return api.refuse(413, f"body: larger than {MAX_BODY} bytes"), False
            try:
                async with asyncio.timeout(BODY_TIMEOUT):
                    data = await _read_body(request.content, MAX_BODY)
            except TimeoutError:
                return api.refuse(408, f"body: not received in {BODY_TIMEOUT:g} s"), True
            except web.RequestPayloadError as exc:  # broken framing (chunks, length)
                return api.refuse(400, f"body: {exc}"), True
            if data is None:  # a chunked body past the limit
                return api.refuse(413, f"body: larger than {MAX_BODY} bytes"), False
            body = data
        authorization = request.headers.getall("Authorization", ())
        return await api.answer(request.method, request.raw_path, authorization, body), False


async def _read_body(content: StreamReader, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it is known to exceed ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
