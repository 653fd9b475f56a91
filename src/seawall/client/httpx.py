"""httpx transports that run every request through a per-host seawall policy.

Usage::

    import httpx
    from seawall.client.httpx import SeawallTransport

    with httpx.Client(transport=SeawallTransport()) as client:
        client.get("http://orders.internal/v1/orders/42")

:class:`SeawallTransport` (sync) and :class:`AsyncSeawallTransport` (asyncio)
wrap an inner httpx transport (by default a plain ``httpx.HTTPTransport()`` /
``httpx.AsyncHTTPTransport()``). For each host they ask ``policies(host)``
once, lazily, for a :class:`~seawall.policy._policy.Policy` (typically a
:class:`~seawall.policy.pipeline.Pipeline`) and keep it in the transport
instance: there is no global registry, and two transports never share a breaker
unless your factory returns the same object to both. The default factory is
:func:`default_policies`: retry (connect errors and 5xx, honouring
``Retry-After``) around a circuit breaker.

"Host" means the URL's ``host[:port]`` as httpx normalizes it (the port only
when it is not the scheme's default), so two services on one machine get two
breakers.

:func:`from_mesh` (and :func:`async_from_mesh`) builds a client whose
transport, :class:`MeshTransport`, takes its policies from mesh.yaml instead:
per destination service and route, exactly what the caller's sidecar would
apply (``docs/client/httpx.md`` says what a sidecar does that it cannot).

What one request goes through, top to bottom:

1. **Replay safety** picks the pipeline: the full one, or the same pipeline
   with its retries and hedges removed (see "Non-idempotent requests").
2. **Span** (with OpenTelemetry installed): the call's CLIENT span, whose
   parent is the request's own ``traceparent``, else OpenTelemetry's current
   span, else :func:`~seawall.telemetry.tracecontext.current_trace`; the
   policies' decisions become its events (``docs/telemetry/spans.md``).
3. **Deadline**: if the deadline in force
   (:func:`seawall.policy.deadline.current_deadline`) has already passed, the
   request is not sent: :class:`~seawall.policy.errors.DeadlineExceeded`.
4. **Policy**: the pipeline runs the attempt(s). Each attempt:

   a. begins its own CLIENT span, a child of the call's (with OpenTelemetry);
      closes the responses of earlier attempts (a failure being retried);
   b. sends a copy of the request with the mesh's headers: ``traceparent``
      (the attempt span's context, or a new child of the call's trace)
      (and ``tracestate``), ``x-request-id``, ``x-seawall-attempt``
      (:func:`seawall.policy.retry.current_attempt`) and, when a deadline is in
      force, ``x-seawall-deadline-ms``; the request's httpx timeouts (connect,
      read, write, pool) are cut to the time left, so no socket operation
      waits past the deadline;
   c. when the attempt may be retried and the response is a failure (5xx), reads
      up to 64 KiB of its body so the connection goes back to the pool before
      the retry's sleep (see "Responses").

Classification
--------------
A 5xx response is a failure (:func:`is_failure_response`); it is retried
unless it carries ``x-seawall-overloaded: 1``, the mesh's "do not retry" mark
(:func:`is_retryable_response`). Exceptions retried are the connect-phase
errors :data:`CONNECT_ERRORS` plus the server closing a connection without
sending a single byte of response (:func:`is_retryable_error`).
``Retry-After`` is honoured: :func:`retry_after` parses it for the Retry's
``retry_after_from_result``; an exception's ``retry_after`` attribute (seawall's
``CircuitOpenError`` has one) is the Retry's default hint.

Non-idempotent requests
-----------------------
Methods outside RFC 9110's idempotent set (GET, HEAD, OPTIONS, TRACE, PUT,
DELETE), such as POST, PATCH and CONNECT, are sent once, unless one of these
allows retries: ``retry_non_idempotent=True`` on the transport, an
``Idempotency-Key`` header on the request, or the request extension
``{"seawall_retry": True}``. ``{"seawall_retry": False}`` turns retries off for
any request. A request whose body is a one-shot stream (anything but bytes in
memory, e.g. a generator or multipart upload) is never retried: it cannot be
sent twice.

How "sent once" is done: for each host the transport keeps two wrapped forms of
the same policy object, the whole pipeline and a copy of its structure with
every :class:`~seawall.policy.retry.Retry` and :class:`~seawall.policy.hedge.Hedge`
removed (found through nested ``Pipeline`` objects). Both forms share the very
same breaker, bulkhead and timeout instances, so a POST still counts in the
breaker and takes a bulkhead slot; it simply has no retry around it. This keeps
the decision outside the policies and works with any pipeline the factory
builds, without a context variable that every ``on=`` predicate would have to
consult. Limit: a retry hidden inside a custom ``Policy`` subclass (not a
``Pipeline``) is not found; such a policy must not retry non-idempotent calls.

Responses
---------
The response returned to the caller is intact and readable, and streams
(``client.stream(...)``) when it was not drained. Every other response an
attempt produced (a retried failure, a hedge's loser) is closed, so its
connection is released: a pool of one connection keeps working through any
number of retries. A failure that may be retried has its body read (up to
64 KiB, kept in memory and replayed to the caller if it ends up being the final
response) and its connection released at once; a larger body stays on its
connection until the next attempt starts.

Errors
------
At this boundary the caller sees httpx's own exceptions for anything the
network or the server did (``httpx.ConnectError`` after the retries gave up,
with the Retry's note added, ``httpx.ReadTimeout``...), exactly as without
seawall. What the policies decide themselves is raised as seawall's errors,
which all derive from :class:`~seawall.policy.errors.SeawallError` and are not
httpx exceptions: :class:`~seawall.policy.errors.CircuitOpenError` (the request
was not sent), ``BulkheadFullError``, :class:`~seawall.policy.errors.DeadlineExceeded`
(the deadline passed before sending; it is also a ``TimeoutError``). Catch both
families.

Spans
-----
With the OpenTelemetry API installed, each request is a CLIENT span and each
attempt a child CLIENT span (``tracer_provider=``, default the global one);
without it, nothing of this runs and nothing is imported. The shared parts of
every seawall transport (per-host routes, replay safety, the call's state and
spans) are in :mod:`seawall.client._call`.

Time
----
Deadlines are absolute times on the transport's ``clock`` (monotonic; the same
clock the deadline was set with). The only wall-clock use is converting a
``Retry-After`` HTTP-date into seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from seawall.policy._observe import OBSERVER
from seawall.policy._policy import Policy
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.clock import MONOTONIC, Clock
from seawall.policy.errors import DeadlineExceeded
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry
from seawall.telemetry.tracecontext import TRACESTATE

from . import _call
from ._call import (
    DRAIN_LIMIT,
    IDEMPOTENCY_KEY,
    OVERLOADED_HEADER,
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

    from seawall.config import MeshConfig
    from seawall.telemetry.otel import ClientSpans, ClientTracing

    from ._mesh import AsyncMeshTransport, MeshTransport

__all__ = [
    "CONNECT_ERRORS",
    "IDEMPOTENT_METHODS",
    "RETRY_EXTENSION",
    "AsyncMeshTransport",
    "AsyncSeawallTransport",
    "MeshTransport",
    "PolicyFactory",
    "SeawallTransport",
    "async_from_mesh",
    "default_policies",
    "from_mesh",
    "is_failure_response",
    "is_retryable_error",
    "is_retryable_response",
    "retry_after",
]

CONNECT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
)
"""Errors of the connect phase (DNS, refused, TLS handshake, connect timeout).

The request never reached the server, so retrying them is safe for any method.
"""

IDEMPOTENT_METHODS: frozenset[str] = _call.IDEMPOTENT_METHODS
"""RFC 9110's idempotent methods: retried by default; any other method is sent once."""

RETRY_EXTENSION = _call.RETRY_EXTENSION
"""Request extension overriding the retry decision: ``extensions={"seawall_retry": True}``."""

_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY  # these three are the mesh transports' too
_OVERLOADED_HEADER = OVERLOADED_HEADER
_DRAIN_LIMIT = DRAIN_LIMIT
_NO_RESPONSE = "Server disconnected without sending a response"  # httpcore's message
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


# --- classification -----------------------------------------------------------


def is_failure_response(response: httpx.Response) -> bool:
    """Whether ``response`` is a failure of the server: status 500 or above.

    For the breaker's ``failure_on_result``. 4xx are the caller's errors and
    count as successes of the dependency.
    """
    return response.status_code >= 500


def is_retryable_response(response: httpx.Response) -> bool:
    """Whether a retry should try again after ``response``: a 5xx not marked overloaded.

    For the Retry's ``on_result``. A response carrying ``x-seawall-overloaded: 1``
    was made by the mesh because of overload (breaker open, overflow, load
    shed): the mesh asks callers not to retry it.
    """
    return response.status_code >= 500 and not is_overloaded(response.headers)


def is_retryable_error(exc: BaseException) -> bool:
    """Whether an exception raised by the transport is worth another attempt.

    For the Retry's ``on=``. True for :data:`CONNECT_ERRORS` and for an
    ``httpx.RemoteProtocolError`` saying the server disconnected without
    sending a response (not one byte of it: typically a keep-alive connection
    the server closed as the request went out). Timeouts after connecting,
    resets in the middle of a response and local errors are not retried: the
    server may have acted on the request.
    """
    if isinstance(exc, CONNECT_ERRORS):
        return True
    return isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith(_NO_RESPONSE)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait, from ``response``'s ``Retry-After``; ``None`` if absent.

    Accepts delta-seconds (ASCII digits; capped at 10 days) and an HTTP-date,
    which is converted with the wall clock (:func:`time.time`, the one
    wall-clock use in seawall: the header is a wall-clock date) and is ``0.0``
    when already past. A malformed value gives ``None``. For the Retry's
    ``retry_after_from_result``.
    """
    return parse_retry_after(response.headers.get("retry-after"))


def default_policies(host: str) -> Policy:
    """The pipeline a transport uses for ``host`` when no ``policies=`` is given.

    Top to bottom (the first is the outermost)::

        Pipeline(
            # retry connect errors and 5xx (not marked overloaded), 3 attempts,
            # at most 10 s in all, honouring Retry-After
            Retry(on=is_retryable_error, on_result=is_retryable_response,
                  retry_after_from_result=retry_after, attempts=3, name=host),
            # count each attempt; transport errors and 5xx are failures
            CircuitBreaker(host, failure_on_result=is_failure_response,
                           record_on=httpx.TransportError,
                           ignore_on=(httpx.PoolTimeout, DeadlineExceeded)),
        )

    The breaker ignores a local pool timeout (this client is saturated, the
    server is not failing) and a deadline that passed before sending. Build
    your own pipeline from the same helpers to change any of it.
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
            record_on=httpx.TransportError,
            ignore_on=(httpx.PoolTimeout, DeadlineExceeded),
        ),
    )


# --- one logical request ----------------------------------------------------------


def _host(request: httpx.Request) -> str:
    return request.url.netloc.decode("ascii")


def _may_retry(request: httpx.Request, retry_non_idempotent: bool) -> bool:
    """Whether ``request`` may be sent more than once (a one-shot body stream cannot)."""
    return may_retry(
        request.method,
        request.headers,
        replayable=isinstance(request.stream, httpx.ByteStream),
        override=request.extensions.get(RETRY_EXTENSION),
        retry_non_idempotent=retry_non_idempotent,
    )


def _reduced_timeouts(timeout: Mapping[str, Any] | None, left: float) -> dict[str, Any]:
    """httpx's per-request timeouts, each cut to ``left`` seconds (``None`` means unbounded)."""
    reduced = dict(timeout) if timeout else {}
    for key in _TIMEOUT_KEYS:
        value = reduced.get(key)
        reduced[key] = left if value is None else min(value, left)
    return reduced


class _Call(CallState[httpx.Response]):
    """One httpx request: what its attempts share (:class:`~seawall.client._call.CallState`).

    Each attempt sends a fresh copy of the request (the caller's object is
    never modified, and hedged attempts on other threads do not race on it).
    """

    __slots__ = ("request", "timeout")

    def __init__(self, request: httpx.Request, host: str, clock: Clock, drain: bool) -> None:
        super().__init__(request.headers, host, clock, drain)
        self.request = request
        self.timeout: Mapping[str, Any] | None = request.extensions.get("timeout")

    def attempt_request(self) -> httpx.Request:
        """The request to send for the attempt running in this context."""
        request = self.request
        mesh, left = self.mesh_headers()
        headers = request.headers.copy()
        for name, value in mesh.items():
            headers[name] = value
        if TRACESTATE not in mesh:
            headers.pop(TRACESTATE, None)
        extensions: Mapping[str, Any] = request.extensions
        if left is not None:
            extensions = {**extensions, "timeout": _reduced_timeouts(self.timeout, left)}
        return httpx.Request(
            request.method,
            request.url,
            headers=headers,
            stream=request.stream,
            extensions=extensions,
        )


# --- draining failures -------------------------------------------------------------


class _ReplayStream(httpx.SyncByteStream):
    """A response body whose first chunks were already read: those, then the rest."""

    def __init__(
        self, head: list[bytes], rest: Iterator[bytes], stream: httpx.SyncByteStream
    ) -> None:
        self._head = head
        self._rest = rest
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        """The buffered chunks, then the remaining ones from the connection."""
        head, self._head = self._head, []
        yield from head
        yield from self._rest

    def close(self) -> None:
        """Release the connection."""
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()
        self._stream.close()


class _AsyncReplayStream(httpx.AsyncByteStream):
    """The asyncio twin of :class:`_ReplayStream`."""

    def __init__(
        self, head: list[bytes], rest: AsyncIterator[bytes], stream: httpx.AsyncByteStream
    ) -> None:
        self._head = head
        self._rest = rest
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """The buffered chunks, then the remaining ones from the connection."""
        head, self._head = self._head, []
        for chunk in head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        """Release the connection."""
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._stream.aclose()


def _drain(response: httpx.Response) -> None:
    """Read up to ``_DRAIN_LIMIT`` bytes of the body; release the connection if that was all."""
    stream = response.stream
    if isinstance(stream, httpx.ByteStream) or not isinstance(stream, httpx.SyncByteStream):
        return
    head: list[bytes] = []
    size = 0
    rest = iter(stream)
    for chunk in rest:
        head.append(chunk)
        size += len(chunk)
        if size > _DRAIN_LIMIT:
            response.stream = _ReplayStream(head, rest, stream)
            return
    stream.close()
    response.stream = httpx.ByteStream(b"".join(head))


async def _adrain(response: httpx.Response) -> None:
    """The asyncio twin of :func:`_drain`."""
    stream = response.stream
    if isinstance(stream, httpx.ByteStream) or not isinstance(stream, httpx.AsyncByteStream):
        return
    head: list[bytes] = []
    size = 0
    rest = stream.__aiter__()
    async for chunk in rest:
        head.append(chunk)
        size += len(chunk)
        if size > _DRAIN_LIMIT:
            response.stream = _AsyncReplayStream(head, rest, stream)
            return
    await stream.aclose()
    response.stream = httpx.ByteStream(b"".join(head))


def _close(responses: list[httpx.Response]) -> None:
    for response in responses:
        # A discarded response failing to close must not fail the call.
        with contextlib.suppress(httpx.HTTPError, OSError):
            response.close()


async def _aclose(responses: list[httpx.Response]) -> None:
    for response in responses:
        with contextlib.suppress(httpx.HTTPError, OSError):
            await response.aclose()


def _keep(call: _Call, response: httpx.Response) -> httpx.Response:
    """An attempt's response, handed to its call: closed if it is a hedge that
    lost after the call returned, else a failure's small body read (so that a
    retry can release the connection)."""
    if not call.add(response):
        _close([response])  # a hedge that lost after the call returned
    elif call.drain and is_failure_response(response):
        _drain(response)
    return response


async def _akeep(call: _Call, response: httpx.Response) -> httpx.Response:
    """The asyncio twin of :func:`_keep`."""
    if not call.add(response):
        await _aclose([response])
    elif call.drain and is_failure_response(response):
        await _adrain(response)
    return response


# --- the transports ------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """The ``seawall.retry.reason`` of a retry after ``exc`` (the sidecar's condition names)."""
    if isinstance(exc, CONNECT_ERRORS):
        return "connect-failure"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "reset"
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _tracing(provider: TracerProvider | None) -> ClientTracing | None:
    """A transport's spans, or ``None`` without OpenTelemetry."""
    return tracing_for(
        provider,
        describe=_describe,
        retryable=is_retryable_error,
        timeouts=(httpx.TimeoutException,),
    )


class _Dispatch:
    """What both transports decide before a request's policy runs (the mesh transports
    of :func:`from_mesh` override ``_key``, ``_retryable`` and ``_call``)."""

    _clock: Clock
    _retry_non_idempotent: bool
    _tracing: ClientTracing | None

    def _key(self, request: httpx.Request) -> str:
        """Which policy ``request`` goes through: its host's (``host[:port]``)."""
        return _host(request)

    def _retryable(self, request: httpx.Request, key: str) -> bool:
        """Whether ``request`` may be sent more than once."""
        return _may_retry(request, self._retry_non_idempotent)

    def _call(self, request: httpx.Request, key: str, drain: bool) -> _Call:
        """What the attempts of ``request`` share."""
        return _Call(request, key, self._clock, drain)

    def _spans(self, tracing: ClientTracing, request: httpx.Request) -> ClientSpans:
        """The CLIENT span of ``request`` (the policy's time included) and its trace context."""
        url = request.url
        # A mesh transport (._mesh) sets its _mesh before this class's __init__ runs:
        # the calling service is known there.
        mesh = getattr(self, "_mesh", None)
        return tracing.begin(
            method=request.method,
            url=str(url),
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            headers=request.headers,
            clock=self._clock,
            attributes={
                "seawall.service": getattr(mesh, "service", None),
                "http.request.body.size": _body_size(request),
            },
        )


def _body_size(request: httpx.Request) -> int | None:
    """``http.request.body.size``: the body's length when known, none for an empty body."""
    if isinstance(request.stream, httpx.ByteStream):
        return len(request.content) or None
    length = request.headers.get("content-length")
    return int(length) if length is not None and length.isdigit() else None


def _adopt(call: _Call, spans: ClientSpans) -> ClientSpans | None:
    """``call`` sent under the trace ``spans`` decided; the spans if they record."""
    call.adopt(spans)
    if call.spans is not None:
        subset = getattr(call, "subset", None)  # a mesh call's split subset
        spans.annotate({"seawall.destination": call.host, "seawall.subset": subset})
    return call.spans


class SeawallTransport(_Dispatch, httpx.BaseTransport):
    """A sync httpx transport applying a per-host seawall policy to every request.

    Args:
        transport: the transport that does the I/O. Default ``httpx.HTTPTransport()``.
            Closed with this one.
        policies: ``host -> Policy``, called once per host (``host[:port]``)
            on first use; the result is kept in this transport. Default
            :func:`default_policies`.
        retry_non_idempotent: retry requests whose method is not idempotent
            (POST, PATCH...) as well. Default ``False``: they are sent once
            unless the request has an ``Idempotency-Key`` header or the
            ``seawall_retry`` extension.
        clock: the monotonic clock deadlines are expressed on. Default
            :func:`time.monotonic`.
        tracer_provider: the OpenTelemetry ``TracerProvider`` of the spans.
            Default: the global one (nothing is recorded until an SDK provider
            is set, e.g. by :func:`seawall.telemetry.setup`). Ignored without
            the OpenTelemetry API.

    See the module documentation for the headers sent, classification, errors
    and how responses are released.

    >>> client = httpx.Client(transport=SeawallTransport())
    >>> client.close()
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        policies: PolicyFactory = default_policies,
        retry_non_idempotent: bool = False,
        clock: Clock = MONOTONIC,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        check_options(policies, retry_non_idempotent, clock)
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self._retry_non_idempotent = retry_non_idempotent
        self._clock = clock
        self._tracing = _tracing(tracer_provider)
        attempt = self._attempt if self._tracing is None else self._traced_attempt
        self._routes: Routes[Callable[[_Call], httpx.Response]] = Routes(
            policies, lambda policy: policy.wrap_sync(attempt)
        )

    def __repr__(self) -> str:
        return f"SeawallTransport({self._transport!r})"

    def policy_for(self, host: str) -> Policy:
        """The policy this transport uses for ``host`` (``host[:port]``), built if need be.

        For inspection, e.g. a breaker's metrics.
        """
        return self._routes.get(host).policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its host's policy; see the module documentation."""
        key = self._key(request)
        route = self._routes.get(key)
        retry = self._retryable(request, key)
        send = route.retrying if retry else route.single
        tracing = self._tracing
        if tracing is None or not tracing.active():  # no OpenTelemetry (or no SDK): as before
            call = self._call(request, key, drain=retry and route.drain)
            try:
                response = send(call)
            except BaseException:
                _close(call.finish(None))
                raise
            _close(call.finish(response))
            return response
        spans = self._spans(tracing, request)
        try:
            call = self._call(request, key, drain=retry and route.drain)
        except BaseException as exc:
            spans.finish(None, exc)
            raise
        recording = _adopt(call, spans)
        observing = None if recording is None else OBSERVER.set(recording)
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

    def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt: the function the policies wrap."""
        _close(call.take_earlier())
        return _keep(call, self._transport.handle_request(call.attempt_request()))

    def _traced_attempt(self, call: _Call) -> httpx.Response:
        """One attempt in its own CLIENT span (when the call's span records)."""
        return traced_attempt(call.spans, lambda: self._attempt(call))

    def close(self) -> None:
        """Close the inner transport."""
        self._transport.close()


class AsyncSeawallTransport(_Dispatch, httpx.AsyncBaseTransport):
    """An asyncio httpx transport applying a per-host seawall policy to every request.

    Args:
        transport: the transport that does the I/O. Default
            ``httpx.AsyncHTTPTransport()``. Closed with this one.
        policies: ``host -> Policy``, called once per host (``host[:port]``)
            on first use; the result is kept in this transport. Default
            :func:`default_policies`.
        retry_non_idempotent: retry requests whose method is not idempotent
            as well. Default ``False``.
        clock: the monotonic clock deadlines are expressed on. Default
            :func:`time.monotonic` (also the clock of asyncio's loop).
        tracer_provider: the OpenTelemetry ``TracerProvider`` of the spans
            (default: the global one).

    Everything else is as for :class:`SeawallTransport`.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policies: PolicyFactory = default_policies,
        retry_non_idempotent: bool = False,
        clock: Clock = MONOTONIC,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        check_options(policies, retry_non_idempotent, clock)
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._retry_non_idempotent = retry_non_idempotent
        self._clock = clock
        self._tracing = _tracing(tracer_provider)
        attempt = self._attempt if self._tracing is None else self._traced_attempt
        self._routes: Routes[Callable[[_Call], Coroutine[Any, Any, httpx.Response]]] = Routes(
            policies, lambda policy: policy.wrap_async(attempt)
        )

    def __repr__(self) -> str:
        return f"AsyncSeawallTransport({self._transport!r})"

    def policy_for(self, host: str) -> Policy:
        """The policy this transport uses for ``host`` (``host[:port]``), built if need be."""
        return self._routes.get(host).policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its host's policy; see the module documentation."""
        key = self._key(request)
        route = self._routes.get(key)
        retry = self._retryable(request, key)
        send = route.retrying if retry else route.single
        tracing = self._tracing
        if tracing is None or not tracing.active():  # no OpenTelemetry (or no SDK): as before
            call = self._call(request, key, drain=retry and route.drain)
            try:
                response = await send(call)
            except BaseException:
                await _aclose(call.finish(None))
                raise
            await _aclose(call.finish(response))
            return response
        spans = self._spans(tracing, request)
        try:
            call = self._call(request, key, drain=retry and route.drain)
        except BaseException as exc:
            spans.finish(None, exc)
            raise
        recording = _adopt(call, spans)
        observing = None if recording is None else OBSERVER.set(recording)
        try:
            response = await send(call)
        except BaseException as exc:
            await _aclose(call.finish(None))
            spans.finish(None, exc, retryable=retry, retries=route.drain)
            raise
        finally:
            if observing is not None:
                with contextlib.suppress(ValueError):  # reset from another context (GC)
                    OBSERVER.reset(observing)
        await _aclose(call.finish(response))
        spans.finish(response, retryable=retry, retries=route.drain)
        return response

    async def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt: the coroutine function the policies wrap."""
        await _aclose(call.take_earlier())
        response = await self._transport.handle_async_request(call.attempt_request())
        return await _akeep(call, response)

    async def _traced_attempt(self, call: _Call) -> httpx.Response:
        """One attempt in its own CLIENT span (when the call's span records)."""
        spans = call.spans
        if spans is None:
            return await self._attempt(call)
        attempt = spans.attempt()
        try:
            response = await self._attempt(call)
        except BaseException as exc:
            attempt.end(None, exc)
            raise
        attempt.end(response)
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._transport.aclose()


# --- from mesh.yaml -------------------------------------------------------------------
#
# The mesh transports live in ._mesh (they subclass the transports above); they need
# the mesh.yaml model (pydantic, the `mesh` extra), so they are imported on first use.


def __getattr__(name: str) -> Any:
    if name in ("MeshTransport", "AsyncMeshTransport"):
        from . import _mesh  # noqa: PLC0415 - it needs the mesh extra (pydantic)

        return getattr(_mesh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_mesh(
    config: str | os.PathLike[str] | MeshConfig,
    *,
    service: str,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = MONOTONIC,
    **client_options: Any,
) -> httpx.Client:
    """An ``httpx.Client`` applying mesh.yaml's policies as ``service``'s sidecar would.

    Requests name their destination by service: ``client.get("http://payments/v1/x")``
    (``payments.svc`` and any port too; another host is egress, as for the
    sidecar). Each request goes to one of the destination's ``endpoints`` (or
    to its app at ``host:port``) through the policy mesh.yaml gives it, derived
    by :mod:`seawall.config.effective` as the sidecar's spec is: the matching
    route's timeout and retries (conditions, methods, backoff, the destination's
    retry budget), hedges, the circuit breaker, ``bulkhead.max_in_flight``, the
    outbound rate limit, ``per_try_timeout`` and ``connect_timeout``, outlier
    detection among the endpoints, a route's split. What a sidecar does and this
    client does not (mTLS, peak-EWMA balancing, pool limits, mirrors, faults)
    is listed in ``docs/client/httpx.md``.

    A decision of a policy is raised as seawall's error where the sidecar would
    answer: :class:`~seawall.policy.errors.CircuitOpenError` (sidecar: 503),
    ``BulkheadFullError`` (503), ``RateLimitedError`` (429),
    :class:`~seawall.policy.errors.DeadlineExceeded` (504).

    Args:
        config: a path to mesh.yaml, or a loaded :class:`~seawall.config.MeshConfig`.
        service: the calling service, one of the mesh's.
        transport: the transport that does the I/O. Default ``httpx.HTTPTransport()``.
        clock: the monotonic clock of the deadlines and policies.
        client_options: passed to ``httpx.Client`` (``headers``, ``limits``...);
            ``timeout`` defaults to ``None``: mesh.yaml's timeouts bound each request.

    Needs the ``mesh`` extra (the mesh.yaml model) as well as httpx.
    """
    from ._mesh import MeshTransport  # noqa: PLC0415 - it needs the mesh extra (pydantic)

    client_options.setdefault("timeout", None)
    return httpx.Client(
        transport=MeshTransport(config, service=service, transport=transport, clock=clock),
        **client_options,
    )


def async_from_mesh(
    config: str | os.PathLike[str] | MeshConfig,
    *,
    service: str,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = MONOTONIC,
    **client_options: Any,
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of :func:`from_mesh` (same arguments)."""
    from ._mesh import AsyncMeshTransport  # noqa: PLC0415 - it needs the mesh extra

    client_options.setdefault("timeout", None)
    return httpx.AsyncClient(
        transport=AsyncMeshTransport(config, service=service, transport=transport, clock=clock),
        **client_options,
    )
