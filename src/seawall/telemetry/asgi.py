"""ASGI middleware: the inbound step of every hop, done for the app.

``docs/telemetry/tracecontext.md`` asks each app to do, on every request it
receives: continue the trace, set the request id, open the deadline scope.
:class:`SeawallMiddleware` does it for any ASGI 3 application (Starlette,
FastAPI, Quart, a bare ASGI callable)::

    from starlette.applications import Starlette
    from seawall.telemetry.asgi import SeawallMiddleware

    app = SeawallMiddleware(Starlette(routes=...))
    # or, with Starlette / FastAPI: app.add_middleware(SeawallMiddleware)

For each HTTP request, before the app runs (:func:`seawall.telemetry.otel.inbound`):

1. the request id: ``x-request-id``, or a new one; :func:`current_request_id`
   gives it inside, and the response carries it back (unless the app set one);
2. the deadline: ``x-seawall-deadline-ms`` (the soonest, when sent twice; a
   malformed value is ignored, as the sidecar ignores it). An expired one
   (``0``) is answered 504 at once, the sidecar's answer, and the app is not
   called; otherwise it is the deadline in force inside
   (:func:`~seawall.policy.deadline.current_deadline`, sent on by seawall's
   clients);
3. the trace: the caller's ``traceparent`` continued
   (:func:`~seawall.telemetry.tracecontext.continue_trace`), and with
   OpenTelemetry, a SERVER span whose parent is the caller's span, current in
   OpenTelemetry's context and in seawall's (:func:`current_trace`) while the
   app runs. The span is named ``{method} {route}`` once the app has routed
   the request (Starlette and FastAPI put the route in the scope), and ends
   with the status answered: ``ERROR`` for a 5xx.

An exception that escapes the app is recorded on the span; if the response
had not started, the middleware answers 500 itself, then lets the exception
propagate so that the server logs it (as Starlette's own error middleware
does). Lifespan and WebSocket scopes pass through untouched; a streaming
response streams (the middleware only looks at the messages it forwards).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

from seawall.policy.clock import MONOTONIC, Clock
from seawall.policy.deadline import deadline_scope

from . import otel
from .tracecontext import REQUEST_ID_HEADER, request_id_scope, trace_scope

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["ASGIApp", "SeawallMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``async def app(scope, receive, send)``."""

_WANTED = frozenset(
    {
        b"traceparent",
        b"tracestate",
        b"x-request-id",
        b"x-seawall-deadline-ms",
        b"host",
        b"user-agent",
        b"x-seawall-peer",
        b"content-length",
    }
)
_REQUEST_ID = REQUEST_ID_HEADER.encode("ascii")
_ERROR_BODY = b"Internal Server Error"


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers the inbound step reads, by lower-case name; repeated ones joined with ``,``."""
    found: dict[str, str] = {}
    for raw_name, value in raw:
        name = raw_name.lower()  # lower case by the ASGI spec; a server may not comply
        if name in _WANTED:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            found[key] = f"{found[key]},{text}" if key in found else text
    return found


def _route(scope: Scope) -> str | None:
    """The route template the framework matched (Starlette and FastAPI set ``scope["route"]``)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


async def _answer(send: Send, status: int, body: bytes, content_type: bytes, rid: bytes) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (_REQUEST_ID, rid),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SeawallMiddleware:
    """ASGI middleware doing the inbound step of every hop (see the module documentation).

    Args:
        app: the ASGI 3 application.
        tracer_provider: the OpenTelemetry ``TracerProvider`` of the SERVER
            spans. Default: the global one (set by :func:`seawall.telemetry.setup`).
            Ignored without the OpenTelemetry API: then there are no spans, and
            the rest is done all the same.
        clock: the monotonic clock the deadline is set on (the one seawall's
            clients are given). Default :func:`time.monotonic`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: TracerProvider | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.app = app
        self._tracer = otel.tracer(tracer_provider)
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":  # lifespan, websocket: not ours
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        step = otel.inbound(
            _headers(scope.get("headers", [])),
            method=scope.get("method", "GET"),
            scheme=scope.get("scheme", "http"),
            path=scope.get("path", "/"),
            query=scope.get("query_string", b"").decode("latin-1"),
            client_address=None if not client else str(client[0]),
            protocol_version=scope.get("http_version"),
            tracer=self._tracer if self._tracer is None or otel.active(self._tracer) else None,
            clock=self._clock,
        )
        rid = step.request_id.encode("latin-1")
        if step.expired:
            await _answer(send, 504, otel.EXPIRED_BODY, b"application/json", rid)
            step.finish(504, response_size=len(otel.EXPIRED_BODY))
            return

        status: int | None = None
        size = 0

        async def forward(message: Message) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", ()))
                if not any(name.lower() == _REQUEST_ID for name, _ in headers):
                    headers.append((_REQUEST_ID, rid))
                message = {**message, "headers": headers}
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        with (
            trace_scope(step.trace, step.tracestate),
            request_id_scope(step.request_id),
            deadline_scope(at=step.deadline, clock=self._clock),
        ):
            token = None if step.span is None else otel.activate(step.span)
            try:
                await self.app(scope, receive, forward)
            except Exception as exc:
                if status is None:  # nothing sent yet: the client gets a 500, not a reset
                    await _answer(send, 500, _ERROR_BODY, b"text/plain; charset=utf-8", rid)
                    status, size = 500, len(_ERROR_BODY)
                step.finish(status, exc, route=_route(scope), response_size=size)
                raise
            except BaseException as exc:  # cancelled: the client went away
                step.finish(status, exc, route=_route(scope), response_size=size)
                raise
            finally:
                if token is not None:
                    otel.deactivate(token)
            step.finish(status, route=_route(scope), response_size=size)
