"""WSGI middleware: the inbound step of every hop, done for the app.

The WSGI twin of :mod:`seawall.telemetry.asgi`, for Flask, Django (WSGI),
Pyramid, Bottle or a bare WSGI callable::

    from flask import Flask
    from seawall.telemetry.wsgi import SeawallWSGIMiddleware

    app = Flask(__name__)
    app.wsgi_app = SeawallWSGIMiddleware(app.wsgi_app)

For each request, before the app runs: the request id (``x-request-id`` or a
new one, echoed in the response), the deadline (``x-seawall-deadline-ms``; an
expired one is answered 504 at once, without calling the app; a malformed one
is ignored), the trace continued, and with OpenTelemetry a SERVER span
(:func:`seawall.telemetry.otel.inbound`). The span is named ``{method} {route}``
when the app is Werkzeug-based (Flask) and matched a URL rule
(``request.url_rule``, read when the app starts its response), and ends when
the server closes the response body, with the status answered and the bytes
sent.

The scopes (trace, request id, deadline, OpenTelemetry's current span) are set
in a context of the request's own, in which the app runs *and* its body is
iterated: a streamed response generator sees them too, which a plain ``with``
around the app call could not give.

An exception that escapes the app before its body is returned is recorded on
the span, logged (``seawall.telemetry.wsgi``) and answered 500. One raised
while the body streams is recorded and propagates to the server.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from seawall.policy.clock import MONOTONIC, Clock
from seawall.policy.deadline import deadline_scope

from . import otel
from .tracecontext import REQUEST_ID_HEADER, request_id_scope, trace_scope

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["SeawallWSGIMiddleware", "WSGIApp"]

_ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
"""A WSGI application: ``app(environ, start_response) -> iterable of bytes``."""

_LOG = logging.getLogger(__name__)
_ENVIRON = {
    "traceparent": "HTTP_TRACEPARENT",
    "tracestate": "HTTP_TRACESTATE",
    "x-request-id": "HTTP_X_REQUEST_ID",
    "x-seawall-deadline-ms": "HTTP_X_SEAWALL_DEADLINE_MS",
    "host": "HTTP_HOST",
    "user-agent": "HTTP_USER_AGENT",
    "x-seawall-peer": "HTTP_X_SEAWALL_PEER",
    "content-length": "CONTENT_LENGTH",
}
_ERROR_BODY = b"Internal Server Error"


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The headers the inbound step reads, by lower-case name (the server joined repeats)."""
    return {name: value for name, key in _ENVIRON.items() if (value := environ.get(key))}


def _route(environ: dict[str, Any]) -> str | None:
    """The URL rule a Werkzeug-based app (Flask) matched, while its request is current."""
    rule = getattr(getattr(environ.get("werkzeug.request"), "url_rule", None), "rule", None)
    return rule if isinstance(rule, str) else None


class _Exchange:
    """One request's response as it goes out: its status, route, size; the end of its span."""

    __slots__ = ("route", "size", "status", "step")

    def __init__(self, step: otel.Inbound) -> None:
        self.step = step
        self.status: int | None = None
        self.route: str | None = None
        self.size = 0

    def finish(self, error: BaseException | None = None) -> None:
        self.step.finish(self.status, error, route=self.route, response_size=self.size)


class _Body:
    """The app's response body, iterated and closed in the request's context."""

    def __init__(
        self,
        result: Iterable[bytes],
        context: contextvars.Context,
        scopes: contextlib.ExitStack,
        exchange: _Exchange,
    ) -> None:
        self._result = result
        self._context = context
        self._scopes = scopes
        self._exchange = exchange
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        context = self._context
        iterator = context.run(iter, self._result)
        while True:
            try:
                chunk = context.run(next, iterator)
            except StopIteration:
                return
            except BaseException as exc:
                self._error = exc
                raise
            self._exchange.size += len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the app's body (PEP 3333), then end the span and leave the scopes."""
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._context.run(self._end)

    def _end(self) -> None:
        try:
            self._exchange.finish(self._error)
        finally:
            self._scopes.close()


class SeawallWSGIMiddleware:
    """WSGI middleware doing the inbound step of every hop (see the module documentation).

    Args:
        app: the WSGI application (for Flask, wrap ``app.wsgi_app``).
        tracer_provider: the OpenTelemetry ``TracerProvider`` of the SERVER
            spans (default: the global one; ignored without the API).
        clock: the monotonic clock the deadline is set on. Default
            :func:`time.monotonic`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        tracer_provider: TracerProvider | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.app = app
        self._tracer = otel.tracer(tracer_provider)
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request, in a context of its own (see the module documentation)."""
        context = contextvars.copy_context()
        return context.run(self._handle, context, environ, start_response)

    def _handle(
        self, context: contextvars.Context, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        protocol = environ.get("SERVER_PROTOCOL", "")
        step = otel.inbound(
            _headers(environ),
            method=environ.get("REQUEST_METHOD", "GET"),
            scheme=environ.get("wsgi.url_scheme", "http"),
            path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            query=environ.get("QUERY_STRING", ""),
            client_address=environ.get("REMOTE_ADDR") or None,
            protocol_version=protocol[5:] if protocol.startswith("HTTP/") else None,
            tracer=self._tracer if self._tracer is None or otel.active(self._tracer) else None,
            clock=self._clock,
        )
        rid = step.request_id
        if step.expired:
            body = otel.EXPIRED_BODY
            start_response(
                "504 Gateway Timeout",
                [
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    (REQUEST_ID_HEADER, rid),
                ],
            )
            step.finish(504, response_size=len(body))
            return [body]

        exchange = _Exchange(step)

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            code = status[:3]
            exchange.status = int(code) if code.isdigit() else None
            exchange.route = _route(environ)
            if not any(name.lower() == REQUEST_ID_HEADER for name, _ in headers):
                headers = [*headers, (REQUEST_ID_HEADER, rid)]
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        scopes = contextlib.ExitStack()
        scopes.enter_context(trace_scope(step.trace, step.tracestate))
        scopes.enter_context(request_id_scope(rid))
        scopes.enter_context(deadline_scope(at=step.deadline, clock=self._clock))
        if step.span is not None:
            scopes.callback(otel.deactivate, otel.activate(step.span))
        try:
            result = self.app(environ, start)
        except Exception as exc:
            _LOG.error("exception in the WSGI application", exc_info=exc)
            start_response(
                "500 Internal Server Error",
                [
                    ("content-type", "text/plain; charset=utf-8"),
                    ("content-length", str(len(_ERROR_BODY))),
                    (REQUEST_ID_HEADER, rid),
                ],
                sys.exc_info(),
            )
            exchange.status, exchange.size = 500, len(_ERROR_BODY)
            try:
                exchange.finish(exc)
            finally:
                scopes.close()
            return [_ERROR_BODY]
        except BaseException as exc:
            try:
                exchange.finish(exc)
            finally:
                scopes.close()
            raise
        return _Body(result, context, scopes, exchange)
