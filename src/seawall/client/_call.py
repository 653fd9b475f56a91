"""What every seawall client transport shares, whatever its HTTP library.

:mod:`seawall.client.httpx` (sync and asyncio) and :mod:`seawall.client.requests`
run a request the same way; only the objects differ. Here, independent of both
libraries:

* the per-host policies (:class:`Routes`): ``policies(host)`` called once per
  host, wrapped twice, as given and without its retries (:func:`without_retries`),
  for the requests that may not be sent twice;
* the retry decisions that are not a policy's: :func:`may_retry` (replay
  safety: the method, ``Idempotency-Key``, an override, a one-shot body),
  :func:`parse_retry_after`, :func:`is_overloaded`;
* the state of one logical request, :class:`CallState`: the deadline checked
  before anything is sent, the trace context and correlation id decided once,
  the mesh's headers of each attempt (:meth:`CallState.mesh_headers`), and the
  responses of the attempts, to close all but the one returned;
* its spans, when OpenTelemetry is installed: :func:`tracing_for` (at
  construction), then per call, when spans may be real
  (:meth:`~seawall.telemetry.otel.ClientTracing.active`),
  :class:`seawall.telemetry.otel.ClientSpans`.

The order of one request, the same in every transport::

    key, route = host, routes.get(host)         # the host's policy
    retry = may_retry(...)                      # the full pipeline, or the one without retries
    [spans = tracing.begin(...)]                # spans may be real: the call's span, its context
    call = CallState(...)                       # the deadline checked; trace and request id fixed
    [call.adopt(spans); OBSERVER.set(spans)]    # the policies' decisions become the span's events
    response = route.retrying(call) or route.single(call)
        # each attempt: [its span;] earlier responses closed; the request sent
        # with call.mesh_headers(); a failure that may be retried drained
    close every other response; [end the call's span]
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

from seawall.policy._policy import Policy
from seawall.policy.clock import Clock
from seawall.policy.deadline import HEADER as DEADLINE_HEADER
from seawall.policy.deadline import current_deadline, encode_deadline
from seawall.policy.errors import DeadlineExceeded
from seawall.policy.hedge import Hedge
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry, current_attempt
from seawall.telemetry.tracecontext import (
    REQUEST_ID_HEADER,
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    current_request_id,
    current_trace,
    current_tracestate,
    new_request_id,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from seawall.telemetry.otel import ClientSpans, ClientTracing

__all__ = [
    "traced_attempt",
    "ATTEMPT_HEADER",
    "DRAIN_LIMIT",
    "IDEMPOTENCY_KEY",
    "IDEMPOTENT_METHODS",
    "OVERLOADED_HEADER",
    "RETRY_EXTENSION",
    "CallState",
    "PolicyFactory",
    "Route",
    "Routes",
    "check_options",
    "has_retry",
    "is_overloaded",
    "may_retry",
    "parse_retry_after",
    "tracing_for",
    "without_retries",
]

PolicyFactory: TypeAlias = Callable[[str], Policy]
"""What ``policies=`` accepts: called once per host (``host[:port]``), returns its policy."""

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110's idempotent methods: retried by default; any other method is sent once."""

RETRY_EXTENSION = "seawall_retry"
"""Request extension (httpx) overriding the retry decision."""

IDEMPOTENCY_KEY = "idempotency-key"
"""A request carrying this header may be retried whatever its method."""

ATTEMPT_HEADER = "x-seawall-attempt"
OVERLOADED_HEADER = "x-seawall-overloaded"
DRAIN_LIMIT = 64 * 1024
"""Bytes of a failure's body read before a retry's sleep, to release its connection."""

_MAX_RETRY_AFTER = 10 * 24 * 3600.0  # a delta larger than this is capped (10 days)


# --- classification that is not a library's ------------------------------------------


def is_overloaded(headers: Mapping[str, str]) -> bool:
    """Whether a response carries ``x-seawall-overloaded: 1``: the mesh asks not to retry it."""
    return headers.get(OVERLOADED_HEADER, "").strip() == "1"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait; ``None`` if absent or malformed.

    Accepts delta-seconds (ASCII digits; capped at 10 days) and an HTTP-date,
    which is converted with the wall clock (:func:`time.time`, the one
    wall-clock use in seawall: the header is a wall-clock date) and is ``0.0``
    when already past.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if text.isascii() and text.isdigit():
        return min(float(text), _MAX_RETRY_AFTER)  # float() of huge digits is inf, not an error
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        seconds = when.timestamp() - time.time()
    except (OverflowError, ValueError, OSError):
        return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), _MAX_RETRY_AFTER)


def may_retry(
    method: str,
    headers: Mapping[str, object],
    *,
    replayable: bool,
    override: object,
    retry_non_idempotent: bool,
) -> bool:
    """Whether a request may be sent more than once.

    Never when its body is a one-shot stream (``replayable`` false); else as
    ``override`` says when it is not ``None`` (it must be a bool); else for an
    idempotent method, an ``Idempotency-Key`` header, or ``retry_non_idempotent``.
    """
    if not replayable:
        return False
    if override is not None:
        if not isinstance(override, bool):
            raise ValueError(
                f"request extension {RETRY_EXTENSION!r} must be True or False, got {override!r}"
            )
        return override
    if method in IDEMPOTENT_METHODS:
        return True
    return retry_non_idempotent or IDEMPOTENCY_KEY in headers


# --- per-host policies ----------------------------------------------------------------


def without_retries(policy: Policy) -> Policy:
    """``policy`` with every Retry and Hedge removed, through nested Pipelines.

    Returns ``policy`` itself when there is nothing to remove; the other
    policies are the same instances (their state is shared).
    """
    if isinstance(policy, Retry | Hedge):
        return Pipeline()
    if not isinstance(policy, Pipeline):
        return policy
    kept: list[Policy] = []
    changed = False
    for inner in policy.policies:
        if isinstance(inner, Retry | Hedge):
            changed = True
            continue
        stripped = without_retries(inner)
        changed = changed or stripped is not inner
        kept.append(stripped)
    return Pipeline(*kept) if changed else policy


def has_retry(policy: Policy) -> bool:
    """Whether ``policy`` has a Retry, through nested Pipelines (failures may be retried)."""
    if isinstance(policy, Pipeline):
        return any(has_retry(inner) for inner in policy.policies)
    return isinstance(policy, Retry)


_W = TypeVar("_W")


@dataclass(frozen=True, slots=True)
class Route(Generic[_W]):
    """A host's policy, wrapped around the transport's attempt in both forms."""

    policy: Policy
    retrying: _W
    single: _W
    drain: bool  # the retrying form may retry: drain failures before its sleep


class Routes(Generic[_W]):
    """The per-host cache of a transport: ``factory(host)`` called once per host."""

    __slots__ = ("_factory", "_lock", "_routes", "_wrap")

    def __init__(self, factory: PolicyFactory, wrap: Callable[[Policy], _W]) -> None:
        self._factory = factory
        self._wrap = wrap
        self._routes: dict[str, Route[_W]] = {}
        self._lock = threading.Lock()

    def get(self, host: str) -> Route[_W]:
        """The route of ``host``, built on first use."""
        route = self._routes.get(host)
        if route is None:
            # The factory runs under the lock so that it is called exactly once
            # per host (a second breaker for the same host would split its
            # state). It builds objects; it does no I/O and calls no request.
            with self._lock:
                route = self._routes.get(host)
                if route is None:
                    route = self._build(host)
                    self._routes[host] = route
        return route

    def _build(self, host: str) -> Route[_W]:
        policy = self._factory(host)
        if not isinstance(policy, Policy):
            raise ValueError(f"policies({host!r}) must return a seawall Policy, got {policy!r}")
        single = without_retries(policy)
        retrying = self._wrap(policy)
        if single is policy:
            return Route(policy, retrying, retrying, drain=False)
        return Route(policy, retrying, self._wrap(single), drain=has_retry(policy))


def check_options(policies: object, retry_non_idempotent: object, clock: object) -> None:
    """Validate a transport's options, naming the one that is wrong."""
    if not callable(policies):
        raise ValueError(f"policies must be a callable host -> Policy, got {policies!r}")
    if not isinstance(retry_non_idempotent, bool):
        raise ValueError(
            f"retry_non_idempotent must be True or False, got {retry_non_idempotent!r}"
        )
    if not callable(clock):
        raise ValueError(f"clock must be a callable returning monotonic seconds, got {clock!r}")


# --- one logical request ----------------------------------------------------------------

_R = TypeVar("_R")


class CallState(Generic[_R]):
    """What every attempt of one request shares, and the responses the attempts produced.

    The trace, the correlation id and the deadline check are decided once, at
    construction; each attempt asks :meth:`mesh_headers` for its headers (the
    attempt number and the time left change). ``_R`` is the library's response.
    """

    __slots__ = (
        "_clock",
        "_done",
        "_lock",
        "_responses",
        "drain",
        "host",
        "request_id",
        "spans",
        "trace",
        "tracestate",
    )

    def __init__(self, headers: Mapping[str, str], host: str, clock: Clock, drain: bool) -> None:
        deadline = current_deadline()
        if deadline is not None and deadline <= clock():
            raise DeadlineExceeded(f"deadline passed before the request to {host!r} was sent")
        self.host = host
        self.drain = drain
        self._clock = clock
        raw = headers.get(TRACEPARENT)
        given = None if raw is None else TraceParent.parse(raw)
        self.tracestate: str | None
        if given is not None:
            # The caller's valid traceparent is continued, with its tracestate as is.
            self.trace = given
            self.tracestate = headers.get(TRACESTATE)
        else:
            current = current_trace()
            if current is not None:
                self.trace = current
                state = current_tracestate()
                self.tracestate = state.format() if state else None
            else:
                self.trace = TraceParent.new()
                self.tracestate = None
        self.request_id = headers.get(REQUEST_ID_HEADER) or current_request_id() or new_request_id()
        self.spans: ClientSpans | None = None
        self._lock = threading.Lock()
        self._responses: list[_R] = []
        self._done = False

    def adopt(self, spans: ClientSpans) -> None:
        """Send the attempts under the trace context ``spans`` decided; keep them for the
        attempts' spans when they record."""
        self.trace = spans.trace
        self.tracestate = spans.tracestate
        self.spans = spans if spans.recording else None

    def mesh_headers(self) -> tuple[dict[str, str], float | None]:
        """The mesh's headers for the attempt running in this context, and the seconds left
        before the deadline in force (``None``: no deadline).

        ``traceparent`` (the attempt's span, or a new child of the call's trace),
        ``tracestate`` (absent when there is none: remove the request's own),
        ``x-request-id``, ``x-seawall-attempt`` and, with a deadline,
        ``x-seawall-deadline-ms``. Raises :class:`DeadlineExceeded` when the
        deadline (a ``Timeout`` inside the pipeline may have set a sooner one)
        has passed: the attempt is not sent.
        """
        spans = self.spans
        traceparent = self.trace.child() if spans is None else spans.attempt_traceparent(self.trace)
        headers = {TRACEPARENT: traceparent.format()}
        if self.tracestate is not None:
            headers[TRACESTATE] = self.tracestate
        headers[REQUEST_ID_HEADER] = self.request_id
        headers[ATTEMPT_HEADER] = str(current_attempt())
        deadline = current_deadline()
        if deadline is None:
            return headers, None
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded(f"deadline passed before the request to {self.host!r} was sent")
        value = encode_deadline(self._clock, deadline)
        assert value is not None
        headers[DEADLINE_HEADER] = value
        return headers, left

    def add(self, response: _R) -> bool:
        """Keep ``response`` for cleanup; ``False`` if the call is over (close it yourself)."""
        with self._lock:
            if self._done:
                return False
            self._responses.append(response)
            return True

    def take_earlier(self) -> list[_R]:
        """The responses of earlier attempts, to close before a new attempt."""
        with self._lock:
            earlier, self._responses = self._responses, []
        return earlier

    def finish(self, keep: _R | None) -> list[_R]:
        """End the call: the responses to close (all but ``keep``, the one returned)."""
        with self._lock:
            self._done = True
            rest = [r for r in self._responses if r is not keep]
            self._responses = []
        return rest


# --- spans (OpenTelemetry, when installed) --------------------------------------------------


def tracing_for(
    provider: TracerProvider | None,
    *,
    describe: Callable[[BaseException], str],
    retryable: Callable[[BaseException], bool],
    timeouts: tuple[type[BaseException], ...],
) -> ClientTracing | None:
    """The tracing of a transport made with ``tracer_provider=provider``; ``None`` without
    OpenTelemetry (the transport then runs exactly as it did before spans existed).

    ``describe``, ``retryable`` and ``timeouts`` say how the library's
    exceptions read in spans (:class:`~seawall.telemetry.otel.ClientErrors`).
    Imports :mod:`seawall.telemetry.otel`, which imports the OpenTelemetry API
    when it is installed: the first transport made pays for it, not ``import
    seawall.client.httpx``.
    """
    from seawall.telemetry import otel  # noqa: PLC0415 - see the docstring

    tracer = otel.tracer(provider)
    if tracer is None:
        return None
    errors = otel.ClientErrors(describe=describe, retryable=retryable, timeouts=timeouts)
    return otel.ClientTracing(tracer, errors)


def traced_attempt(spans: ClientSpans | None, attempt: Callable[[], _R]) -> _R:
    """Run one attempt in its own CLIENT span when the call's span records
    (``spans``), ending the span with the response or the exception."""
    if spans is None:
        return attempt()
    span = spans.attempt()
    try:
        response = attempt()
    except BaseException as exc:
        span.end(None, exc)
        raise
    span.end(response)
    return response
