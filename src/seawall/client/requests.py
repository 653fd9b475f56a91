"""A requests transport adapter that runs every request through a per-host seawall policy.

Usage::

    import requests
    from seawall.client.requests import SeawallAdapter

    session = requests.Session()
    adapter = SeawallAdapter()
    session.mount("http://", adapter)     # one adapter for both schemes: one set of breakers
    session.mount("https://", adapter)
    session.get("http://orders.internal/v1/orders/42")

:class:`SeawallAdapter` is a ``requests.adapters.HTTPAdapter`` that does, for
the requests a ``Session`` sends through it, what
:class:`seawall.client.httpx.SeawallTransport` does for httpx, with the same
code (:mod:`seawall.client._call`): the same per-host policies (asked once per
``host[:port]`` from ``policies=``, default :func:`default_policies`: retry
around a circuit breaker), the same replay safety (only idempotent methods,
an ``Idempotency-Key`` or ``retry_non_idempotent=True`` are retried; a body
that is a generator or a file is never sent twice), the same headers on every
attempt (``traceparent``, ``tracestate``, ``x-request-id``,
``x-seawall-attempt``, ``x-seawall-deadline-ms``; the timeouts cut to the
deadline), and the same spans with OpenTelemetry installed: a CLIENT span per
request, a child CLIENT span per attempt, the policies' decisions as events
(``docs/telemetry/spans.md``).

Classification, as for httpx: a 5xx response is a failure, retried unless it
carries ``x-seawall-overloaded: 1``; ``Retry-After`` is honoured. Errors
retried are those of the connect phase (refused, DNS, connect timeout: the
request never left) and the server closing the connection without sending a
byte of response (``RemoteDisconnected``). A read timeout, a reset in the
middle of a response and a TLS failure are not: the server may have acted, or
another try cannot help.

The session still follows redirects, runs hooks and reads the body (unless
``stream=True``) after the adapter returned: each redirect is a request of its
own. Responses of attempts that were retried are closed; a failure that may
be retried has its body read first when it is at most 64 KiB long
(``Content-Length``), so its connection goes back to the pool before the sleep.

The adapter's own ``max_retries`` is 0 (seawall retries); the pool settings of
``HTTPAdapter`` are keyword arguments. Errors: requests' own exceptions for
what the network or the server did; seawall's
(:class:`~seawall.policy.errors.SeawallError`) for what a policy decided.
"""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProtocolError

from seawall.policy._observe import OBSERVER
from seawall.policy._policy import Policy
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.clock import MONOTONIC, Clock
from seawall.policy.errors import DeadlineExceeded
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry
from seawall.telemetry.tracecontext import REQUEST_ID_HEADER, TRACEPARENT, TRACESTATE

from ._call import (
    DRAIN_LIMIT,
    CallState,
    PolicyFactory,
    Routes,
    check_options,
    is_overloaded,
    may_retry,
    parse_retry_after,
    traced_attempt,
    tracing_for,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from requests import _types as _t

    from seawall.telemetry.otel import ClientSpans, ClientTracing

__all__ = [
    "PolicyFactory",
    "SeawallAdapter",
    "default_policies",
    "is_failure_response",
    "is_retryable_error",
    "is_retryable_response",
    "retry_after",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_Timeout = float | tuple[float | None, float | None] | None


# --- classification -----------------------------------------------------------


def is_failure_response(response: Response) -> bool:
    """Whether ``response`` is a failure of the server: status 500 or above (breaker)."""
    return response.status_code >= 500


def is_retryable_response(response: Response) -> bool:
    """Whether a retry should try again after ``response``: a 5xx not marked overloaded."""
    return response.status_code >= 500 and not is_overloaded(response.headers)


def _connect_failure(exc: BaseException) -> bool:
    """The connection was never made (refused, DNS, connect timeout): the request never left."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError) or not exc.args:
        return False
    reason = exc.args[0]
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def is_retryable_error(exc: BaseException) -> bool:
    """Whether an exception the adapter raised is worth another attempt.

    For the Retry's ``on=``. True for connect failures (``ConnectTimeout``,
    and a ``ConnectionError`` caused by urllib3's ``NewConnectionError``:
    refused, DNS) and for the server closing the connection without sending a
    byte of response (``RemoteDisconnected``: typically a keep-alive connection
    it had closed). Read timeouts, resets mid-response and TLS errors are not.
    """
    if _connect_failure(exc):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        reason = exc.args[0]
        return (
            isinstance(reason, ProtocolError)
            and len(reason.args) > 1
            and isinstance(reason.args[1], http.client.RemoteDisconnected)
        )
    return False


def retry_after(response: Response) -> float | None:
    """Seconds the server asks to wait, from ``Retry-After``; ``None`` if absent or malformed.

    As :func:`seawall.client.httpx.retry_after` (delta-seconds, or an HTTP-date).
    """
    return parse_retry_after(response.headers.get("retry-after"))


def default_policies(host: str) -> Policy:
    """The pipeline an adapter uses for ``host`` when no ``policies=`` is given::

        Pipeline(
            Retry(on=is_retryable_error, on_result=is_retryable_response,
                  retry_after_from_result=retry_after, attempts=3, name=host),
            CircuitBreaker(host, failure_on_result=is_failure_response,
                           record_on=(requests.ConnectionError, requests.Timeout),
                           ignore_on=DeadlineExceeded),
        )

    The httpx transport's default, with requests' exceptions.
    """
    return Pipeline(
        # 1. Retry: connect errors and retryable 5xx; Retry-After honoured.
        Retry(
            on=is_retryable_error,
            on_result=is_retryable_response,
            retry_after_from_result=retry_after,
            attempts=3,
            name=host,
        ),
        # 2. Circuit breaker: counts every attempt, rejects while open.
        CircuitBreaker(
            host,
            failure_on_result=is_failure_response,
            record_on=(requests.exceptions.ConnectionError, requests.exceptions.Timeout),
            ignore_on=DeadlineExceeded,
        ),
    )


def _describe(exc: BaseException) -> str:
    """The ``seawall.retry.reason`` of a retry after ``exc``."""
    if _connect_failure(exc):
        return "connect-failure"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
    ):
        return "reset"
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


# --- one logical request ---------------------------------------------------------


def _host(url: str) -> str:
    """``host[:port]`` of ``url``, the port only when it is not the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def _cut(timeout: object, left: float) -> object:
    """requests' ``timeout`` (seconds, or ``(connect, read)``) cut to ``left`` seconds."""
    if timeout is None:
        return left
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        return (
            left if connect is None else min(connect, left),
            left if read is None else min(read, left),
        )
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return min(float(timeout), left)
    return timeout  # a urllib3 Timeout object: as given


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class _Call(CallState[Response]):
    """One request sent through the adapter: what its attempts share."""

    __slots__ = ("options", "request", "timeout")

    def __init__(
        self,
        request: PreparedRequest,
        host: str,
        clock: Clock,
        drain: bool,
        *,
        timeout: object,
        options: dict[str, object],
    ) -> None:
        headers = request.headers
        mesh = {
            name: value
            for name in (TRACEPARENT, TRACESTATE, REQUEST_ID_HEADER)
            if (value := _text(headers.get(name))) is not None
        }
        super().__init__(mesh, host, clock, drain)
        self.request = request
        self.timeout = timeout
        self.options = options

    def attempt_request(self) -> tuple[PreparedRequest, object]:
        """The request to send for the attempt running in this context, and its timeout."""
        mesh, left = self.mesh_headers()
        prepared = self.request.copy()
        prepared.headers.update(mesh)
        if TRACESTATE not in mesh:
            prepared.headers.pop(TRACESTATE, None)
        return prepared, self.timeout if left is None else _cut(self.timeout, left)


def _close(responses: Iterable[Response]) -> None:
    for response in responses:
        # A discarded response failing to close must not fail the call.
        with contextlib.suppress(requests.RequestException, OSError):
            response.close()


def _keep(call: _Call, response: Response) -> Response:
    """An attempt's response, handed to its call: closed if it is a hedge that lost after
    the call returned; a small failure's body read (its connection back in the pool)."""
    if not call.add(response):
        _close([response])
    elif call.drain and is_failure_response(response):
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= DRAIN_LIMIT:
            with contextlib.suppress(requests.RequestException, OSError):
                _ = response.content  # read whole: urllib3 releases the connection
    return response


class SeawallAdapter(HTTPAdapter):
    """A requests transport adapter applying a per-host seawall policy to every request.

    Args:
        policies: ``host -> Policy``, called once per host (``host[:port]``) on
            first use; the result is kept in this adapter. Default
            :func:`default_policies`.
        retry_non_idempotent: retry requests whose method is not idempotent
            (POST, PATCH...) as well. Default ``False``: they are sent once
            unless the request has an ``Idempotency-Key`` header.
        clock: the monotonic clock deadlines are expressed on. Default
            :func:`time.monotonic`.
        tracer_provider: the OpenTelemetry ``TracerProvider`` of the spans
            (default: the global one; ignored without the OpenTelemetry API).
        pool_connections, pool_maxsize, pool_block: ``HTTPAdapter``'s pool settings.

    Mount one adapter on both schemes of a session (``session.mount("http://",
    adapter)``, ``session.mount("https://", adapter)``) so that a host has one
    breaker. See the module documentation.
    """

    def __init__(
        self,
        *,
        policies: PolicyFactory = default_policies,
        retry_non_idempotent: bool = False,
        clock: Clock = MONOTONIC,
        tracer_provider: TracerProvider | None = None,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        pool_block: bool = False,
    ) -> None:
        check_options(policies, retry_non_idempotent, clock)
        super().__init__(
            pool_connections=pool_connections,
            pool_maxsize=pool_maxsize,
            max_retries=0,
            pool_block=pool_block,
        )
        self._retry_non_idempotent = retry_non_idempotent
        self._clock = clock
        self._tracing = tracing_for(
            tracer_provider,
            describe=_describe,
            retryable=is_retryable_error,
            timeouts=(requests.exceptions.Timeout,),
        )
        attempt = self._attempt if self._tracing is None else self._traced_attempt
        self._routes: Routes[Callable[[_Call], Response]] = Routes(
            policies, lambda policy: policy.wrap_sync(attempt)
        )

    def __repr__(self) -> str:
        return f"SeawallAdapter(retry_non_idempotent={self._retry_non_idempotent!r})"

    def policy_for(self, host: str) -> Policy:
        """The policy this adapter uses for ``host`` (``host[:port]``), built if need be."""
        return self._routes.get(host).policy

    def send(  # noqa: PLR0917 - HTTPAdapter.send's signature
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: _t.TimeoutType = None,
        verify: _t.VerifyType = True,
        cert: _t.CertType = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        """Send ``request`` through its host's policy; see the module documentation."""
        url = request.url or ""
        key = _host(url)
        route = self._routes.get(key)
        body = request.body
        retry = may_retry(
            request.method or "GET",
            request.headers,
            replayable=body is None or isinstance(body, bytes | str),
            override=None,
            retry_non_idempotent=self._retry_non_idempotent,
        )
        send = route.retrying if retry else route.single
        options: dict[str, object] = {
            "stream": stream,
            "verify": verify,
            "cert": cert,
            "proxies": proxies,
        }
        drain = retry and route.drain
        tracing = self._tracing
        if tracing is None or not tracing.active():  # no OpenTelemetry (or no SDK): as before
            call = _Call(request, key, self._clock, drain, timeout=timeout, options=options)
            try:
                response = send(call)
            except BaseException:
                _close(call.finish(None))
                raise
            _close(call.finish(response))
            return response
        spans = self._spans(tracing, request, url)
        try:
            call = _Call(request, key, self._clock, drain, timeout=timeout, options=options)
        except BaseException as exc:
            spans.finish(None, exc)
            raise
        call.adopt(spans)
        recording = call.spans
        observing = None
        if recording is not None:
            recording.annotate({"seawall.destination": key})
            observing = OBSERVER.set(recording)
        try:
            response = send(call)
        except BaseException as exc:
            _close(call.finish(None))
            spans.finish(None, exc, retryable=retry, retries=route.drain)
            raise
        finally:
            if observing is not None:
                OBSERVER.reset(observing)
        _close(call.finish(response))
        spans.finish(response, retryable=retry, retries=route.drain)
        return response

    def _spans(self, tracing: ClientTracing, request: PreparedRequest, url: str) -> ClientSpans:
        parts = urlsplit(url)
        body = request.body
        size = len(body) or None if isinstance(body, bytes | str) else None
        return tracing.begin(
            method=request.method or "GET",
            url=url,
            scheme=parts.scheme,
            host=parts.hostname or "",
            port=parts.port,
            headers={
                name: value
                for name in (TRACEPARENT, TRACESTATE)
                if (value := _text(request.headers.get(name))) is not None
            },
            clock=self._clock,
            attributes={"http.request.body.size": size},
        )

    def _attempt(self, call: _Call) -> Response:
        """One attempt: the function the policies wrap."""
        _close(call.take_earlier())
        prepared, timeout = call.attempt_request()
        options = call.options
        response = super().send(
            prepared,
            stream=bool(options["stream"]),
            timeout=timeout,  # type: ignore[arg-type]
            verify=options["verify"],  # type: ignore[arg-type]
            cert=options["cert"],  # type: ignore[arg-type]
            proxies=options["proxies"],  # type: ignore[arg-type]
        )
        return _keep(call, response)

    def _traced_attempt(self, call: _Call) -> Response:
        """One attempt in its own CLIENT span (when the call's span records)."""
        return traced_attempt(call.spans, lambda: self._attempt(call))
