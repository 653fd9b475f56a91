"""OpenTelemetry glue: the one module of seawall that speaks the OpenTelemetry API.

OpenTelemetry is optional (``pip install seawall[otel]``). This module imports
``opentelemetry`` guarded, once: :data:`AVAILABLE` says whether it could. The
client transports and the middleware import this module only when they are
constructed, ask :func:`tracer` for a tracer, and get ``None`` when the API is
absent: then they do exactly what they did before spans existed, and a call
pays nothing for them. When the API is installed but no SDK is configured,
the API's no-op tracer is used: its spans record nothing and have no ids of
their own, and seawall's own trace context (:mod:`seawall.telemetry.tracecontext`)
goes on as before.

What is here, for ``seawall.client`` and the ASGI/WSGI middleware:

* :func:`tracer` (with an explicit ``TracerProvider`` for tests, or the global one);
* :func:`start_client_span`, :func:`start_server_span`, :func:`add_event`,
  :func:`end_span`: spans with the attributes of OpenTelemetry's HTTP
  conventions (stable names) and seawall's;
* :func:`own_traceparent` (inject: the span's context as a ``traceparent``, when
  the tracer made a span of its own), :func:`current_traceparent` and
  :func:`context_of` (extract: a ``TraceParent`` as a remote parent context),
  :func:`activate` / :func:`deactivate` (the span as OpenTelemetry's current one);
* :class:`Inbound` and :func:`inbound`, the inbound step of every hop, shared
  by :mod:`seawall.telemetry.asgi` and :mod:`seawall.telemetry.wsgi`;
* :func:`setup`: the SDK, exporting to the mesh's collector.

How OpenTelemetry's context and seawall's context variables agree is written
in ``docs/telemetry/spans.md`` ("One trace context"); in short: on the inbound
step both are set from one SERVER span, and a span made by a real tracer (the
SDK's, sampled or not) is the source of every ``traceparent`` sent under it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from seawall.policy.breaker import BreakerState
from seawall.policy.clock import Clock
from seawall.policy.deadline import MAX_HEADER_MS, current_deadline
from seawall.policy.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
)
from seawall.policy.retry import RetryDetails, StopReason, current_attempt

from .tracecontext import (
    REQUEST_ID_HEADER,
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    TraceState,
    _traceparent,
    continue_trace,
    current_trace,
    current_tracestate,
    new_request_id,
)

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
    from opentelemetry.context import Context
    from opentelemetry.trace import (
        NonRecordingSpan,
        Span,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )
except ImportError:  # the otel extra is not installed: every caller checks AVAILABLE first
    AVAILABLE = False
else:
    AVAILABLE = True
"""Whether the OpenTelemetry API could be imported (checked once, when this module loads)."""

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "AVAILABLE",
    "DEFAULT_ENDPOINT",
    "AttemptSpan",
    "ClientErrors",
    "ClientSpans",
    "ClientTracing",
    "Handle",
    "Inbound",
    "ProviderAlreadySet",
    "activate",
    "active",
    "add_event",
    "context_of",
    "current_traceparent",
    "deactivate",
    "end_span",
    "inbound",
    "own_traceparent",
    "setup",
    "start_client_span",
    "start_server_span",
    "tracer",
]

INSTRUMENTATION = "seawall"
"""The instrumentation scope name of every span seawall makes."""

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
"""Where :func:`setup` exports by default: the mesh's embedded collector (OTLP/HTTP)."""

_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_REDACTED_QUERY_KEYS = ("AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature")
_FLAGS_MASK = 0x03  # sampled and random: the flags OpenTelemetry and seawall both know
_PEER_HEADER = "x-seawall-peer"
_DEADLINE_HEADER = "x-seawall-deadline-ms"
_OVERLOADED_HEADER = "x-seawall-overloaded"


# --- tracers and contexts ---------------------------------------------------------------


def tracer(provider: TracerProvider | None = None) -> Tracer | None:
    """seawall's tracer from ``provider`` (default: the global one), or ``None`` without the API.

    With no provider given, the tracer is the API's proxy: it records nothing
    until an SDK provider is set globally (by :func:`setup` or any other code),
    and follows it from then on, so a transport made before ``setup`` traces too.
    """
    if not AVAILABLE:
        return None
    if provider is None:
        return _otel_trace.get_tracer(INSTRUMENTATION)
    return provider.get_tracer(INSTRUMENTATION)


_GLOBAL_SET = False  # a global provider, once set, cannot be unset: remembered


def active(tracer: Tracer) -> bool:
    """Whether ``tracer`` may make spans of its own now.

    An explicit provider's tracer may. The global proxy (``tracer()`` without a
    provider) may once a global provider is set: until then, seawall's
    transports and middleware skip OpenTelemetry on each call entirely, and
    behave as without it (the no-op tracer would only return its parent).
    """
    global _GLOBAL_SET
    if _GLOBAL_SET or not isinstance(tracer, _otel_trace.ProxyTracer):
        return True
    if isinstance(_otel_trace.get_tracer_provider(), _otel_trace.ProxyTracerProvider):
        return False
    _GLOBAL_SET = True
    return True


def _span_context(parent: TraceParent) -> SpanContext:
    return SpanContext(
        int(parent.trace_id, 16),
        int(parent.parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(parent.flags & _FLAGS_MASK),
    )


def context_of(parent: TraceParent | None) -> Context:
    """An OpenTelemetry context whose span is ``parent`` (remote), or an empty one: a root.

    ``parent.parent_id`` is the id of the parent's span, as ``traceparent``
    carries it. The tracestate stays on seawall's side (OpenTelemetry's
    ``TraceState`` follows Level 1's key grammar; seawall's is Level 2's).
    """
    if parent is None:
        return Context()
    return _otel_trace.set_span_in_context(NonRecordingSpan(_span_context(parent)), Context())


def current_traceparent() -> TraceParent | None:
    """OpenTelemetry's current span as a ``TraceParent`` (its id as ``parent_id``), if valid."""
    context = _otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return _traceparent(
        0, f"{context.trace_id:032x}", f"{context.span_id:016x}", context.trace_flags & _FLAGS_MASK
    )


def own_traceparent(span: Span, parent: TraceParent | None) -> TraceParent | None:
    """``span``'s context as the ``traceparent`` to send under it, or ``None`` when the tracer
    made no span of its own.

    The API's no-op tracer (no SDK configured) returns the parent's span or an
    invalid one: then the caller goes on with seawall's own ids. A span of the
    SDK has its own id, sampled or not, and is the source of the context.
    """
    context = span.get_span_context()
    if not context.is_valid:
        return None
    span_id = f"{context.span_id:016x}"
    if parent is not None and span_id == parent.parent_id:
        return None
    return _traceparent(0, f"{context.trace_id:032x}", span_id, context.trace_flags & _FLAGS_MASK)


def activate(span: Span) -> object:
    """Make ``span`` OpenTelemetry's current span in this context; returns the token to
    hand to :func:`deactivate` (in the same context)."""
    return _otel_context.attach(_otel_trace.set_span_in_context(span))


def deactivate(token: object) -> None:
    """Undo :func:`activate`."""
    _otel_context.detach(token)  # type: ignore[arg-type]


# --- attributes --------------------------------------------------------------------------


def _method(method: str) -> tuple[str, dict[str, Any]]:
    """The span name's method and the method attributes (``_OTHER`` for an unknown one)."""
    if method in _KNOWN_METHODS:
        return method, {"http.request.method": method}
    return "HTTP", {"http.request.method": "_OTHER", "http.request.method_original": method}


def redact_url(url: str) -> str:
    """``url`` for ``url.full``: credentials and the conventions' signed query keys redacted."""
    if "@" not in url and not any(key in url for key in _REDACTED_QUERY_KEYS):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "REDACTED:REDACTED@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            key, eq, _ = pair.partition("=")
            pairs.append(f"{key}=REDACTED" if eq and key in _REDACTED_QUERY_KEYS else pair)
        query = "&".join(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def error_type(exc: BaseException) -> str:
    """``error.type`` of an exception: its class's fully qualified name (``builtins`` left out)."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def start_client_span(
    tracer: Tracer,
    method: str,
    url: str,
    *,
    scheme: str,
    host: str,
    port: int | None,
    parent: TraceParent | None,
    parent_context: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """Begin a CLIENT span for a request (or one attempt of it).

    Named ``{method}`` (the conventions' name for a client without a URL
    template); ``http.request.method``, ``url.full`` (redacted), ``server.address``
    and ``server.port`` are given at creation, where samplers see them. The
    parent is ``parent_context`` when given, else ``parent`` (a remote parent),
    else none: a root.
    """
    name, attrs = _method(method)
    attrs["url.full"] = redact_url(url)
    attrs["server.address"] = host
    attrs["server.port"] = port if port is not None else _DEFAULT_PORTS.get(scheme, 80)
    if attributes:
        attrs.update(attributes)
    context = parent_context if parent_context is not None else context_of(parent)
    return tracer.start_span(name, context=context, kind=SpanKind.CLIENT, attributes=attrs)


def start_server_span(
    tracer: Tracer, method: str, parent: TraceParent | None, attributes: Mapping[str, Any]
) -> Span:
    """Begin a SERVER span for an incoming request whose caller's span is ``parent``."""
    name, attrs = _method(method)
    attrs.update(attributes)
    return tracer.start_span(
        name, context=context_of(parent), kind=SpanKind.SERVER, attributes=attrs
    )


def add_event(span: Span, name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """An event on ``span`` (a policy decision: ``docs/telemetry/spans.md`` has the table)."""
    span.add_event(name, attributes or {})


def milliseconds(seconds: float) -> float:
    """``seconds`` in milliseconds, rounded to the microsecond (as the sidecar writes them)."""
    return round(seconds * 1e6) / 1e3


def end_span(
    span: Span,
    *,
    status: int | None = None,
    error: BaseException | None = None,
    client: bool,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Close ``span`` with its outcome: the status code received or answered, or the exception.

    The span's status is ``ERROR`` for a 5xx, for a 4xx on a CLIENT span (the
    HTTP conventions; a SERVER span leaves 4xx unset), and for an exception,
    which is also recorded as an ``exception`` event; ``error.type`` is the
    status code or the exception's class. Attributes are only set when the span
    records.
    """
    if span.is_recording():
        if attributes:
            span.set_attributes(attributes)
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error is not None:
            span.set_attribute("error.type", error_type(error))
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif status is not None and (status >= 500 or (client and status >= 400)):
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
    span.end()


# --- the spans of one outgoing call (the client transports) -------------------------------

_ATTEMPT_TRACE: ContextVar[TraceParent | None] = ContextVar("seawall_attempt_trace", default=None)
"""The ``traceparent`` of the attempt span running in this context (a hedge's attempts
run concurrently, each in its own context)."""

_GAVE_UP = {
    StopReason.ATTEMPTS: "attempts exhausted",
    StopReason.BUDGET: "budget exhausted",
    StopReason.DEADLINE: "deadline",
    StopReason.TIMEOUT: "deadline",  # the retry's own time bound: a deadline of its own
}


@dataclass(frozen=True, slots=True)
class ClientErrors:
    """How a client library's exceptions read in spans (``seawall.client.httpx``'s, ``requests``').

    Attributes:
        describe: the ``seawall.retry.reason`` of a retry after the exception
            (``connect-failure``, ``timeout``, ``reset``...).
        retryable: whether the library's default policies retry it (to say
            ``not idempotent`` when a request that may not be retried failed so).
        timeouts: the library's timeout exceptions (a timeout past the deadline
            is a ``seawall.deadline.expired``).
    """

    describe: Callable[[BaseException], str]
    retryable: Callable[[BaseException], bool]
    timeouts: tuple[type[BaseException], ...]


def refusal_reason(exc: BaseException) -> str | None:
    """A retry's reason for one of seawall's refusals, or ``None`` for another exception."""
    if isinstance(exc, CircuitOpenError):
        return "circuit-open"
    if isinstance(exc, BulkheadFullError):
        return "bulkhead-full"
    if isinstance(exc, RateLimitedError):
        return "rate-limited"
    if isinstance(exc, DeadlineExceeded):
        return "deadline"
    return None


def _overloaded(response: object) -> bool:
    headers = getattr(response, "headers", None)
    return headers is not None and headers.get(_OVERLOADED_HEADER, "").strip() == "1"


def _content_length(message: object) -> int | None:
    headers = getattr(message, "headers", None)
    value = None if headers is None else headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class ClientTracing:
    """What a client transport keeps of OpenTelemetry: its tracer and how its library's
    errors read (:func:`seawall.client._call.tracing_for` makes it)."""

    __slots__ = ("errors", "tracer")

    def __init__(self, tracer: Tracer, errors: ClientErrors) -> None:
        self.tracer = tracer
        self.errors = errors

    def active(self) -> bool:
        """Whether a call made now may have spans (see :func:`active`)."""
        return active(self.tracer)

    def begin(
        self,
        *,
        method: str,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        headers: Mapping[str, str],
        clock: Clock,
        attributes: Mapping[str, Any],
    ) -> ClientSpans:
        """The call's CLIENT span and trace context (:meth:`ClientSpans.begin`)."""
        return ClientSpans.begin(
            self.tracer,
            method=method,
            url=url,
            scheme=scheme,
            host=host,
            port=port,
            headers=headers,
            clock=clock,
            errors=self.errors,
            attributes=attributes,
        )


class AttemptSpan:
    """The CLIENT span of one attempt, current while it runs (:meth:`ClientSpans.attempt`)."""

    __slots__ = ("_call", "_otel_token", "_token", "span")

    def __init__(self, call: ClientSpans, span: Span, own: TraceParent | None) -> None:
        self._call = call
        self.span = span
        self._token = _ATTEMPT_TRACE.set(own)
        self._otel_token = None if own is None else activate(span)

    def end(self, response: object | None, error: BaseException | None = None) -> None:
        """End the attempt's span with the response it got, or the exception it raised."""
        if self._otel_token is not None:
            deactivate(self._otel_token)
        with contextlib.suppress(ValueError):  # ended from another context (a GC'd coroutine)
            _ATTEMPT_TRACE.reset(self._token)
        call = self._call
        if error is not None and isinstance(error, call.errors.timeouts):
            deadline = current_deadline()  # the attempt's own, a Timeout's included
            if deadline is not None and deadline <= call.clock():
                call.event("seawall.deadline.expired")
        size = None if response is None else _content_length(response)
        end_span(
            self.span,
            status=getattr(response, "status_code", None),
            error=error,
            client=True,
            attributes=None if size is None else {"http.response.body.size": size},
        )


class ClientSpans:
    """The spans of one outgoing call: a CLIENT span for the whole call, policies included,
    and a child CLIENT span per attempt; the policies' decisions as events on the former.

    Made by :meth:`begin`, which also decides the call's trace context (see
    ``docs/telemetry/spans.md``). It is the call's
    :class:`~seawall.policy._observe.PolicyObserver` while the policy runs.
    Only a recording call (:attr:`recording`) needs it after :meth:`begin`.
    """

    __slots__ = (
        "_context",
        "_method",
        "_port",
        "_reported",
        "_scheme",
        "_url",
        "clock",
        "errors",
        "host",
        "recording",
        "span",
        "trace",
        "tracer",
        "tracestate",
    )

    def __init__(
        self,
        tracer: Tracer,
        span: Span,
        trace: TraceParent,
        tracestate: str | None,
        *,
        method: str,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        clock: Clock,
        errors: ClientErrors,
    ) -> None:
        self.tracer = tracer
        self.span = span
        """The call's CLIENT span."""
        self.trace = trace
        """The trace context the attempts are sent under (see :meth:`begin`)."""
        self.tracestate = tracestate
        """The ``tracestate`` sent with it, formatted, or ``None``."""
        self.recording = span.is_recording()
        """Whether the span records: only then are attempt spans and events made."""
        self.clock = clock
        self.errors = errors
        self._method = method
        self._url = url
        self._scheme = scheme
        self.host = host
        self._port = port
        self._context = _otel_trace.set_span_in_context(span, Context())
        self._reported: BaseException | None = None  # a refusal already on the span

    @classmethod
    def begin(
        cls,
        tracer: Tracer,
        *,
        method: str,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        headers: Mapping[str, str],
        clock: Clock,
        errors: ClientErrors,
        attributes: Mapping[str, Any],
    ) -> ClientSpans:
        """Start the call's span; decide the trace context its attempts are sent under.

        The parent, first that applies: the request's own valid ``traceparent``
        (with its ``tracestate``); OpenTelemetry's current span; seawall's
        :func:`~seawall.telemetry.tracecontext.current_trace`; none (a root). The
        ``tracestate`` is seawall's (:func:`current_tracestate`) when it goes with
        that trace. :attr:`trace` is the call span's own context when the tracer
        made one, else the parent (or a new trace), as without OpenTelemetry.
        """
        raw = headers.get(TRACEPARENT)
        given = None if raw is None else TraceParent.parse(raw)
        parent: TraceParent | None
        tracestate: str | None
        if given is not None:
            parent, tracestate = given, headers.get(TRACESTATE)
        else:
            mine = current_trace()
            parent = current_traceparent()
            if parent is None:
                parent = mine
            state = current_tracestate() if mine is not None else None
            tracestate = (
                state.format()
                if state
                and parent is not None
                and mine is not None
                and mine.trace_id == parent.trace_id
                else None
            )
        span = start_client_span(
            tracer, method, url, scheme=scheme, host=host, port=port, parent=parent
        )
        own = own_traceparent(span, parent)
        if own is not None:
            trace = own
        elif parent is not None:
            trace = parent
        else:
            trace = TraceParent.new()
        spans = cls(
            tracer,
            span,
            trace,
            tracestate,
            method=method,
            url=url,
            scheme=scheme,
            host=host,
            port=port,
            clock=clock,
            errors=errors,
        )
        if spans.recording:
            extra = {key: value for key, value in attributes.items() if value is not None}
            extra["url.scheme"] = scheme
            span.set_attributes(extra)
            deadline = current_deadline()
            if deadline is not None:
                left = milliseconds(deadline - clock())
                span.add_event("seawall.deadline", {"seawall.deadline.left_ms": left})
        return spans

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """A policy decision on the call's span."""
        self.span.add_event(name, attributes or {})

    def annotate(self, attributes: Mapping[str, Any]) -> None:
        """Add attributes to the call's span (those whose value is ``None`` are left out)."""
        if self.recording:
            self.span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    # -- attempts --

    def attempt(self) -> AttemptSpan:
        """Begin the span of the attempt starting in this context (the policies numbered it)."""
        number = current_attempt()
        extra: dict[str, Any] = {"seawall.attempt": number}
        if number > 1:
            extra["http.request.resend_count"] = number - 1
        span = start_client_span(
            self.tracer,
            self._method,
            self._url,
            scheme=self._scheme,
            host=self.host,
            port=self._port,
            parent=None,
            parent_context=self._context,
            attributes=extra,
        )
        return AttemptSpan(self, span, own_traceparent(span, self.trace))

    @staticmethod
    def attempt_traceparent(trace: TraceParent) -> TraceParent:
        """The ``traceparent`` the attempt running in this context sends: its span's, or a
        new child of ``trace`` (no span of its own)."""
        own = _ATTEMPT_TRACE.get()
        return trace.child() if own is None else own

    # -- the policies' decisions (PolicyObserver) --

    def retrying(self, details: RetryDetails) -> None:
        """``seawall.retry``: the attempt about to start, why, and after how long."""
        exc = details.exception
        if exc is not None:
            self._refused(exc)
            reason = refusal_reason(exc) or self.errors.describe(exc)
        else:
            status = getattr(details.result, "status_code", None)
            reason = "result" if status is None else f"status {status}"
        self.event(
            "seawall.retry",
            {
                "seawall.attempt": details.attempt + 1,
                "seawall.retry.reason": reason,
                "seawall.retry.delay_ms": milliseconds(details.delay),
            },
        )

    def gave_up(self, reason: StopReason, exception: BaseException | None) -> None:
        """``seawall.retry.skipped``: a failure a retry would retry, not retried (a refusal
        given up on is recorded first, once)."""
        if exception is not None:
            self._refused(exception)
            self._reported = exception
        self.event("seawall.retry.skipped", {"seawall.retry.reason": _GAVE_UP[reason]})

    def hedging(self, attempt: int) -> None:
        """``seawall.hedge``: a hedged copy starts."""
        self.event("seawall.hedge", {"seawall.attempt": attempt})

    def admitted(self, state: BreakerState) -> None:
        """``seawall.breaker``: the breaker admitted the call while not closed (a probe)."""
        self.event("seawall.breaker", {"seawall.breaker.state": state.value})

    def _refused(self, exc: BaseException) -> None:
        if isinstance(exc, CircuitOpenError):
            self.event("seawall.breaker.rejected", {"seawall.breaker.state": exc.state})
        elif isinstance(exc, BulkheadFullError):
            self.event(
                "seawall.bulkhead.full", {"seawall.bulkhead.max_in_flight": exc.max_in_flight}
            )
        elif isinstance(exc, RateLimitedError):
            self.event("seawall.ratelimit.refused")
        elif isinstance(exc, DeadlineExceeded):
            self.event("seawall.deadline.expired")

    # -- the end --

    def finish(
        self,
        response: object | None,
        error: BaseException | None = None,
        *,
        retryable: bool = True,
        retries: bool = False,
    ) -> None:
        """End the call's span with its outcome.

        ``retryable``: the request could be sent more than once; ``retries``:
        its policy has a retry. With both known, a failure that was not retried
        for a reason only the transport knows says so (``seawall.retry.skipped``:
        ``overloaded``, ``not idempotent``).
        """
        if not self.recording:
            self.span.end()
            return
        if error is not None and error is not self._reported:
            self._refused(error)
        if retries:
            status = getattr(response, "status_code", None)
            failed = status is not None and status >= 500
            if failed and _overloaded(response):
                self.event("seawall.retry.skipped", {"seawall.retry.reason": "overloaded"})
            elif not retryable and (failed or (error is not None and self.errors.retryable(error))):
                self.event("seawall.retry.skipped", {"seawall.retry.reason": "not idempotent"})
        size = None if response is None else _content_length(response)
        end_span(
            self.span,
            status=getattr(response, "status_code", None),
            error=error,
            client=True,
            attributes=None if size is None else {"http.response.body.size": size},
        )


# --- the inbound step of every hop (both middleware) -----------------------------------------


def _deadline(values: str | None, clock: Clock) -> float | None:
    """The absolute deadline ``x-seawall-deadline-ms`` asks for: the soonest of its values.

    As the sidecar (``forward.rs``): each value is ASCII digits (spaces and
    tabs around it ignored), at most 10 days; a malformed one is ignored; a
    header sent several times (joined with ``,``) gives the soonest.
    """
    if values is None:
        return None
    soonest: int | None = None
    for raw in values.split(","):
        text = raw.strip(" \t")
        if not text or not (text.isascii() and text.isdigit()) or len(text) > 12:
            continue
        ms = int(text)
        if ms <= MAX_HEADER_MS and (soonest is None or ms < soonest):
            soonest = ms
    return None if soonest is None else clock() + soonest / 1000.0


def _host_and_port(host: str | None, scheme: str) -> tuple[str | None, int | None]:
    if not host:
        return None, None
    name, port = host, None
    if host.startswith("["):  # an IPv6 literal
        end = host.find("]")
        name = host[1:end] if end > 0 else host
        rest = host[end + 1 :] if end > 0 else ""
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif ":" in host:
        name, _, digits = host.rpartition(":")
        if digits.isdigit():
            port = int(digits)
        else:
            name = host
    return name, port if port is not None else _DEFAULT_PORTS.get(scheme)


EXPIRED_BODY = b'{"error":"timeout","destination":null,"reason":"deadline already expired"}\n'
"""What an inbound hop answers (504) to a request whose deadline has already passed:
the sidecar's own answer, word for word."""


@dataclass(slots=True)
class Inbound:
    """The inbound step of one request, decided before the app runs (:func:`inbound`).

    Attributes:
        request_id: the request's ``x-request-id``, or a new one.
        trace: the trace context of the work done for the request: the SERVER
            span's own, when a real tracer made one, else seawall's
            ``continue_trace`` child of the caller's.
        tracestate: the incoming ``tracestate`` (parsed), with a valid ``traceparent``.
        deadline: the absolute deadline from ``x-seawall-deadline-ms``, or ``None``.
        expired: the deadline has already passed: answer 504 without calling the app.
        span: the SERVER span, or ``None`` without OpenTelemetry (or with its no-op
            tracer). Current in OpenTelemetry's context while the app runs.
        name: the span's name before the route is known (``{method}``).
    """

    request_id: str
    trace: TraceParent
    tracestate: TraceState | None
    deadline: float | None
    expired: bool
    span: Span | None
    name: str = ""

    def finish(
        self,
        status: int | None,
        error: BaseException | None = None,
        *,
        route: str | None = None,
        response_size: int | None = None,
    ) -> None:
        """End the SERVER span (if any) with the status answered, or the exception that escaped.

        ``route`` (``http.route``, the framework's template) renames the span
        ``{method} {route}``.
        """
        span = self.span
        if span is None:
            return
        self.span = None
        attributes: dict[str, Any] = {}
        if route and span.is_recording():
            attributes["http.route"] = route
            span.update_name(f"{self.name} {route}")
        if response_size is not None:
            attributes["http.response.body.size"] = response_size
        end_span(span, status=status, error=error, client=False, attributes=attributes)


def inbound(
    headers: Mapping[str, str],
    *,
    method: str,
    scheme: str,
    path: str,
    query: str,
    client_address: str | None,
    protocol_version: str | None,
    tracer: Tracer | None,
    clock: Clock,
) -> Inbound:
    """What ``docs/telemetry/tracecontext.md`` asks each app to do on an incoming request.

    ``headers`` are the request's, with lower-case names and a header sent
    several times joined with ``,``. In order: the request id (kept, or a new
    one); the deadline (the soonest valid ``x-seawall-deadline-ms``; expired
    when it is not in the future, so ``0`` is expired); the trace (seawall's
    :func:`~seawall.telemetry.tracecontext.continue_trace`; with a tracer, a
    SERVER span whose parent is the caller's span, and whose own context
    becomes the trace when the tracer made one); the arrival's events on the
    span (``seawall.deadline``, or ``seawall.deadline.expired``).
    """
    request_id = headers.get(REQUEST_ID_HEADER) or new_request_id()
    deadline = _deadline(headers.get(_DEADLINE_HEADER), clock)
    now = clock() if deadline is not None else 0.0
    expired = deadline is not None and deadline <= now
    trace, state = continue_trace(headers)
    span: Span | None = None
    if tracer is not None:
        raw = headers.get(TRACEPARENT)
        caller = None if raw is None else TraceParent.parse(raw)
        host, port = _host_and_port(headers.get("host"), scheme)
        attributes: dict[str, Any] = {"url.path": path, "url.scheme": scheme}
        if query:
            attributes["url.query"] = query
        if host is not None:
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        if client_address:
            attributes["client.address"] = client_address
        agent = headers.get("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        if protocol_version:
            attributes["network.protocol.version"] = protocol_version
        peer = headers.get(_PEER_HEADER)
        if peer:
            attributes["seawall.peer.spiffe_id"] = peer
            _, marker, caller_service = peer.rpartition("/service/")
            if marker and caller_service:
                attributes["seawall.service"] = caller_service
        length = headers.get("content-length")
        if length and length.isdigit():
            attributes["http.request.body.size"] = int(length)
        span = start_server_span(tracer, method, caller, attributes)
        own = own_traceparent(span, caller)
        if own is None:
            span = None  # the no-op tracer's: seawall's own context goes on, as without the API
        else:
            trace = own
    if span is not None:
        if expired:
            add_event(span, "seawall.deadline.expired")
        elif deadline is not None:
            add_event(
                span, "seawall.deadline", {"seawall.deadline.left_ms": milliseconds(deadline - now)}
            )
    return Inbound(request_id, trace, state, deadline, expired, span, _method(method)[0])


# --- setup: the SDK, exporting to the mesh's collector --------------------------------------


class ProviderAlreadySet(RuntimeError):
    """:func:`setup` found a global ``TracerProvider`` already set, and does not replace it.

    OpenTelemetry allows one global provider per process; replacing it would
    silently cut the spans of whoever set it (including an earlier ``setup``).
    Configure that provider instead, or call ``setup(..., install=False)`` and
    pass ``handle.provider`` as ``tracer_provider=`` where you want it.
    """


@dataclass(frozen=True, slots=True)
class Handle:
    """What :func:`setup` configured: the provider, and how to flush and stop it.

    Attributes:
        provider: the SDK ``TracerProvider``.
        service: the ``service.name`` of its resource.
        endpoint: where its spans are exported.
    """

    provider: SdkTracerProvider
    service: str
    endpoint: str

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export the spans ended so far now; ``False`` if that did not finish in time."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the exporter (call it when the process ends; once)."""
        self.provider.shutdown()


def _endpoint(endpoint: str | None) -> str:
    if endpoint is not None:
        return endpoint
    for name in ("SEAWALL_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return DEFAULT_ENDPOINT


def setup(
    service: str,
    *,
    endpoint: str | None = None,
    sample: float = 1.0,
    headers: Mapping[str, str] | None = None,
    install: bool = True,
) -> Handle:
    """Configure the OpenTelemetry SDK to export this process's spans to the mesh's collector.

    A ``TracerProvider`` whose resource says ``service.name=service`` (plus
    what ``OTEL_RESOURCE_ATTRIBUTES`` adds), sampling parent-based (a trace
    continued keeps its caller's decision; a trace started here is kept with
    probability ``sample``), and a batch span processor over the OTLP/HTTP
    (protobuf) exporter.

    Args:
        service: this app's service name, as in mesh.yaml.
        endpoint: the OTLP/HTTP traces URL. Default: ``$SEAWALL_TRACES_ENDPOINT``,
            else ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
            :data:`DEFAULT_ENDPOINT` (the embedded collector of the mesh).
        sample: the ratio of new traces kept, in ``[0, 1]``.
        headers: HTTP headers sent with each export (e.g. an authorization).
        install: set the provider as OpenTelemetry's global one (the default,
            so that every instrumented library records into it). ``False``
            leaves the global alone: pass ``handle.provider`` as
            ``tracer_provider=`` to seawall's transports and middleware.

    Returns:
        a :class:`Handle`: call ``handle.shutdown()`` at exit (queued spans are
        exported then); ``handle.force_flush()`` exports now.

    Raises:
        ProviderAlreadySet: ``install`` and a global provider is already set
            (by an earlier ``setup`` or by other code): it is not replaced.
        ValueError: ``service`` is empty or ``sample`` is outside ``[0, 1]``.
        ImportError: the SDK or the exporter is not installed (``pip install seawall[otel]``).
    """
    if not isinstance(service, str) or not service:
        raise ValueError(f"setup: service must be a non-empty string, got {service!r}")
    if (
        isinstance(sample, bool)
        or not isinstance(sample, int | float)
        or math.isnan(sample)
        or not 0.0 <= sample <= 1.0
    ):
        raise ValueError(f"setup: sample must be a number in [0, 1], got {sample!r}")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
            ParentBased,
            TraceIdRatioBased,
        )
    except ImportError as exc:
        raise ImportError(
            f"seawall.telemetry.setup needs the OpenTelemetry SDK and its OTLP/HTTP exporter "
            f"(pip install seawall[otel]): {exc}"
        ) from exc
    if install and not isinstance(
        _otel_trace.get_tracer_provider(), _otel_trace.ProxyTracerProvider
    ):
        raise ProviderAlreadySet(
            f"a global TracerProvider is already set ({_otel_trace.get_tracer_provider()!r}); "
            "seawall.telemetry.setup does not replace it (use install=False, or configure it)"
        )
    url = _endpoint(endpoint)
    provider = SdkProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(float(sample))),
    )
    exporter = OTLPSpanExporter(endpoint=url, headers=dict(headers) if headers else None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if install:
        _otel_trace.set_tracer_provider(provider)
        if _otel_trace.get_tracer_provider() is not provider:  # another thread set one first
            provider.shutdown()
            raise ProviderAlreadySet(
                "a global TracerProvider was set while seawall.telemetry.setup ran; "
                "it was not replaced"
            )
    return Handle(provider, service, url)
