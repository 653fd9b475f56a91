"""Spans of the client transports (httpx sync and asyncio, requests), against real servers.

Each test gives the transport its own SDK ``TracerProvider`` exporting to an
``InMemorySpanExporter`` (the global provider can be set only once per
process), and reads the spans back: the call's CLIENT span, a child CLIENT
span per attempt, the policies' decisions as events, and the ``traceparent``
each attempt sent, as the scripted server received it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode
from scripted_server import ScriptedServer

from seawall.client import requests as seawall_requests
from seawall.client.httpx import (
    AsyncSeawallTransport,
    SeawallTransport,
    is_failure_response,
    is_retryable_error,
    is_retryable_response,
    retry_after,
)
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.budget import RetryBudget
from seawall.policy.bulkhead import Bulkhead
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import deadline_scope
from seawall.policy.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
)
from seawall.policy.hedge import Hedge
from seawall.policy.pipeline import Pipeline
from seawall.policy.ratelimit import RateLimiter
from seawall.policy.retry import Retry
from seawall.telemetry.tracecontext import (
    TraceParent,
    TraceState,
    request_id_scope,
    trace_scope,
)

# --- helpers -------------------------------------------------------------------------


class Recorded:
    """An SDK provider whose finished spans the test reads."""

    def __init__(self, sampler: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def call(self) -> ReadableSpan:
        """The one call span (a CLIENT span without ``seawall.attempt``)."""
        (span,) = [
            s
            for s in self.spans()
            if s.kind is SpanKind.CLIENT and "seawall.attempt" not in attrs(s)
        ]
        return span

    def attempts(self) -> list[ReadableSpan]:
        found = [s for s in self.spans() if "seawall.attempt" in attrs(s)]
        return sorted(found, key=lambda s: attrs(s)["seawall.attempt"])


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    rec = Recorded()
    yield rec
    rec.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, dict(e.attributes or {})) for e in span.events if e.name != "exception"]


def hexid(span_id: int) -> str:
    return f"{span_id:016x}"


def sent_parent(seen_headers: dict[str, str]) -> TraceParent:
    tp = TraceParent.parse(seen_headers["traceparent"])
    assert tp is not None
    return tp


def retry(clock: FakeClock, attempts: int = 3, **kwargs: Any) -> Retry:
    return Retry(
        on=is_retryable_error,
        on_result=is_retryable_response,
        retry_after_from_result=retry_after,
        attempts=attempts,
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        **kwargs,
    )


def client(rec: Recorded, *policies: Any, **kwargs: Any) -> httpx.Client:
    transport = SeawallTransport(
        policies=lambda host: Pipeline(*policies), tracer_provider=rec.provider, **kwargs
    )
    return httpx.Client(transport=transport, timeout=5.0)


# --- one call, its attempts, what was sent ------------------------------------------------


def test_a_call_is_a_client_span_with_a_child_span_per_attempt(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c:
        response = c.get(client_server.url("/ok?x=1"))
    assert response.status_code == 200
    call = recorded.call()
    (attempt,) = recorded.attempts()
    assert call.name == attempt.name == "GET"
    assert call.parent is None  # nothing current: a root
    assert attempt.parent is not None
    assert attempt.parent.span_id == call.context.span_id
    assert attempt.context.trace_id == call.context.trace_id
    a = attrs(call)
    assert a["http.request.method"] == "GET"
    assert a["url.full"] == client_server.url("/ok?x=1")
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == client_server.port
    assert a["url.scheme"] == "http"
    assert a["http.response.status_code"] == 200
    assert a["seawall.destination"] == client_server.host
    assert "seawall.attempt" not in a
    assert "error.type" not in a
    assert attrs(attempt)["seawall.attempt"] == 1
    assert "http.request.resend_count" not in attrs(attempt)
    assert call.status.status_code is StatusCode.UNSET
    # the server continues the trace under the attempt's span
    sent = sent_parent(client_server.seen("/ok")[0].headers)
    assert sent.trace_id == f"{call.context.trace_id:032x}"
    assert sent.parent_id == hexid(attempt.context.span_id)
    assert sent.sampled
    assert sent.random_trace_id


def test_retries_are_attempt_spans_and_retry_events(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c, request_id_scope("rid-1"):
        assert c.get(client_server.url("/ok/r?fail=2&retry_after=1")).status_code == 200
    call = recorded.call()
    attempts = recorded.attempts()
    assert [attrs(a)["seawall.attempt"] for a in attempts] == [1, 2, 3]
    assert [attrs(a).get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert [attrs(a)["http.response.status_code"] for a in attempts] == [503, 503, 200]
    assert [a.status.status_code for a in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert attrs(attempts[0])["error.type"] == "503"
    assert events(call) == [
        (
            "seawall.retry",
            {
                "seawall.attempt": 2,
                "seawall.retry.reason": "status 503",
                "seawall.retry.delay_ms": 1000.0,
            },
        ),
        (
            "seawall.retry",
            {
                "seawall.attempt": 3,
                "seawall.retry.reason": "status 503",
                "seawall.retry.delay_ms": 1000.0,
            },
        ),
    ]
    assert client_clock.sleeps == [1.0, 1.0]
    seen = client_server.seen("/ok/r")
    assert [sent_parent(s.headers).parent_id for s in seen] == [
        hexid(a.context.span_id) for a in attempts
    ]
    assert {s.headers["x-request-id"] for s in seen} == {"rid-1"}
    assert [s.headers["x-seawall-attempt"] for s in seen] == ["1", "2", "3"]


def test_connect_failures_read_as_connect_failure_then_attempts_exhausted(
    client_closed_port: int, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c, pytest.raises(httpx.ConnectError):
        c.get(f"http://127.0.0.1:{client_closed_port}/")
    call = recorded.call()
    names = [(name, a.get("seawall.retry.reason")) for name, a in events(call)]
    assert names == [
        ("seawall.retry", "connect-failure"),
        ("seawall.retry", "connect-failure"),
        ("seawall.retry.skipped", "attempts exhausted"),
    ]
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == "httpx.ConnectError"
    assert "http.response.status_code" not in attrs(call)
    assert any(e.name == "exception" for e in call.events)
    attempts = recorded.attempts()
    assert len(attempts) == 3
    assert all(attrs(a)["error.type"] == "httpx.ConnectError" for a in attempts)


def test_an_overloaded_503_is_not_retried_and_says_so(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c:
        assert c.get(client_server.url("/ok/o?fail=1&overloaded=1")).status_code == 503
    call = recorded.call()
    assert events(call) == [("seawall.retry.skipped", {"seawall.retry.reason": "overloaded"})]
    assert len(recorded.attempts()) == 1
    assert attrs(call)["error.type"] == "503"


def test_a_post_that_failed_is_not_idempotent(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c:
        assert c.post(client_server.url("/fail"), content=b"body").status_code == 503
    call = recorded.call()
    assert events(call) == [("seawall.retry.skipped", {"seawall.retry.reason": "not idempotent"})]
    assert attrs(call)["http.request.body.size"] == 4
    assert attrs(call)["http.request.method"] == "POST"


def test_a_4xx_is_an_error_of_a_client_span(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock)) as c:
        assert c.get(client_server.url("/nothing-here")).status_code == 404
    call = recorded.call()
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)["error.type"] == "404"
    assert events(call) == []


def test_an_exhausted_budget_says_so(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    budget = RetryBudget(ratio=0.001, min_per_second=0.0, clock=client_clock)
    with client(recorded, retry(client_clock, budget=budget)) as c:
        assert c.get(client_server.url("/ok/b?fail=1")).status_code == 503
    assert events(recorded.call()) == [
        ("seawall.retry.skipped", {"seawall.retry.reason": "budget exhausted"})
    ]


def test_the_breaker_refusing_and_admitting_a_probe(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    breaker = CircuitBreaker(
        "b",
        window_size=2,
        minimum_calls=2,
        open_for=5.0,
        half_open_calls=1,
        failure_on_result=is_failure_response,
        clock=client_clock,
    )
    with client(recorded, breaker) as c:
        c.get(client_server.url("/fail"))
        c.get(client_server.url("/fail"))  # 2 of 2 failed: open
        recorded.exporter.clear()
        with pytest.raises(CircuitOpenError):
            c.get(client_server.url("/ok"))
        assert events(recorded.call()) == [
            ("seawall.breaker.rejected", {"seawall.breaker.state": "open"})
        ]
        assert recorded.attempts() == []  # nothing was sent
        assert attrs(recorded.call())["error.type"] == "seawall.policy.errors.CircuitOpenError"
        recorded.exporter.clear()
        client_clock.advance(6.0)
        assert c.get(client_server.url("/ok")).status_code == 200  # the probe
        assert events(recorded.call()) == [
            ("seawall.breaker", {"seawall.breaker.state": "half_open"})
        ]
    assert client_server.hits("/ok") == 1


def test_a_refusal_a_retry_retries_is_an_event_too(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    breaker = CircuitBreaker("b", clock=client_clock)
    breaker.transition_to_forced_open()
    retrying = Retry(on=CircuitOpenError, attempts=2, clock=client_clock, sleep=client_clock.sleep)
    with client(recorded, retrying, breaker) as c:
        with pytest.raises(CircuitOpenError):
            c.get(client_server.url("/ok"))
    assert [name for name, _ in events(recorded.call())] == [
        "seawall.breaker.rejected",
        "seawall.retry",
        "seawall.breaker.rejected",
        "seawall.retry.skipped",
    ]
    assert events(recorded.call())[1][1]["seawall.retry.reason"] == "circuit-open"


def test_a_full_bulkhead_and_a_refusing_rate_limiter(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    bulkhead = Bulkhead(1, max_waiting=0, clock=client_clock)
    assert bulkhead.try_acquire()  # the one slot is taken
    with client(recorded, bulkhead) as c, pytest.raises(BulkheadFullError):
        c.get(client_server.url("/ok"))
    assert events(recorded.call()) == [
        ("seawall.bulkhead.full", {"seawall.bulkhead.max_in_flight": 1})
    ]
    recorded.exporter.clear()
    limiter = RateLimiter(1.0, 1, max_wait=0.0, clock=client_clock)
    with client(recorded, limiter) as c:
        c.get(client_server.url("/ok"))
        with pytest.raises(RateLimitedError):
            c.get(client_server.url("/ok"))
    refused = [s for s in recorded.spans() if attrs(s).get("error.type")]
    assert [events(s) for s in refused] == [[("seawall.ratelimit.refused", {})]]


def test_the_deadline_at_the_start_and_an_expired_one(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    with client(recorded, retry(client_clock), clock=client_clock) as c:
        with deadline_scope(2.0, clock=client_clock):
            c.get(client_server.url("/ok"))
        assert events(recorded.call()) == [
            ("seawall.deadline", {"seawall.deadline.left_ms": 2000.0})
        ]
        assert client_server.seen("/ok")[0].headers["x-seawall-deadline-ms"] == "2000"
        recorded.exporter.clear()
        with (
            deadline_scope(at=client_clock() - 1.0, clock=client_clock),
            pytest.raises(DeadlineExceeded),
        ):
            c.get(client_server.url("/ok/late"))
    call = recorded.call()
    assert [name for name, _ in events(call)] == ["seawall.deadline", "seawall.deadline.expired"]
    assert events(call)[0][1]["seawall.deadline.left_ms"] == -1000.0
    assert attrs(call)["error.type"] == "seawall.policy.errors.DeadlineExceeded"
    assert recorded.attempts() == []
    assert client_server.hits("/ok/late") == 0


def test_a_timeout_at_the_deadline_is_a_deadline_expired(
    client_server: ScriptedServer, recorded: Recorded
) -> None:
    with client(recorded) as c, deadline_scope(0.2), pytest.raises(httpx.ReadTimeout):
        c.get(client_server.url("/hang"))
    names = [name for name, _ in events(recorded.call())]
    assert names == ["seawall.deadline", "seawall.deadline.expired"]
    (attempt,) = recorded.attempts()
    assert attrs(attempt)["error.type"] == "httpx.ReadTimeout"


# --- where the trace comes from ----------------------------------------------------------------


def test_opentelemetry_s_current_span_is_the_parent(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    tracer = recorded.provider.get_tracer("test")
    with tracer.start_as_current_span("work") as work, client(recorded) as c:
        c.get(client_server.url("/ok"))
    call = recorded.call()
    assert call.parent is not None
    assert call.parent.span_id == work.get_span_context().span_id
    assert call.context.trace_id == work.get_span_context().trace_id


def test_seawall_s_current_trace_is_the_parent_and_its_tracestate_goes_on(
    client_server: ScriptedServer, recorded: Recorded
) -> None:
    parent = TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
    assert parent is not None
    state = TraceState.parse("rojo=1,congo=2")
    with trace_scope(parent, state), client(recorded) as c:
        c.get(client_server.url("/ok"))
    call = recorded.call()
    assert call.parent is not None
    assert hexid(call.parent.span_id) == "00f067aa0ba902b7"
    assert f"{call.context.trace_id:032x}" == parent.trace_id
    seen = client_server.seen("/ok")[0].headers
    assert seen["tracestate"] == "rojo=1,congo=2"
    assert sent_parent(seen).parent_id == hexid(recorded.attempts()[0].context.span_id)


def test_the_request_s_own_traceparent_wins(
    client_server: ScriptedServer, recorded: Recorded
) -> None:
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tracer = recorded.provider.get_tracer("test")
    with tracer.start_as_current_span("work"), client(recorded) as c:
        c.get(client_server.url("/ok"), headers={"traceparent": own, "tracestate": "a=b"})
    call = recorded.call()
    assert call.parent is not None
    assert hexid(call.parent.span_id) == "b7ad6b7169203331"
    seen = client_server.seen("/ok")[0].headers
    assert sent_parent(seen).trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert seen["tracestate"] == "a=b"


def test_a_trace_sampled_out_records_nothing_and_says_so_downstream(
    client_server: ScriptedServer,
) -> None:
    rec = Recorded(sampler=ParentBased(ALWAYS_OFF))
    with client(rec) as c:
        c.get(client_server.url("/ok"))
    assert rec.spans() == []
    sent = sent_parent(client_server.seen("/ok")[0].headers)
    assert not sent.sampled


def test_without_an_sdk_the_headers_are_seawall_s_as_before(client_server: ScriptedServer) -> None:
    # The global provider is the API's proxy (no SDK set in this process): no spans,
    # and the trace context is seawall's own, exactly as without OpenTelemetry.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    parent = TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent is not None
    with trace_scope(parent), httpx.Client(transport=SeawallTransport()) as c:
        c.get(client_server.url("/ok"))
    sent = sent_parent(client_server.seen("/ok")[0].headers)
    assert sent.trace_id == parent.trace_id
    assert sent.parent_id != parent.parent_id


# --- asyncio, hedges -------------------------------------------------------------------------


def test_async_spans_and_a_hedge(client_server: ScriptedServer, recorded: Recorded) -> None:
    async def main() -> None:
        transport = AsyncSeawallTransport(
            policies=lambda host: Pipeline(Hedge(delay=0.05)), tracer_provider=recorded.provider
        )
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as c:
            # the first attempt hangs; the hedge started 50 ms later answers
            assert (await c.get(client_server.url("/ok/h?fail=1&how=hang"))).status_code == 200

    asyncio.run(main())
    call = recorded.call()
    assert events(call) == [("seawall.hedge", {"seawall.attempt": 2})]
    first, second = recorded.attempts()
    assert attrs(second)["http.response.status_code"] == 200
    assert first.status.status_code is StatusCode.ERROR  # the loser, cancelled
    assert attrs(first)["error.type"] == "asyncio.exceptions.CancelledError"
    assert first.parent is not None
    assert first.parent.span_id == call.context.span_id
    sent = {sent_parent(s.headers).parent_id for s in client_server.seen("/ok/h")}
    assert sent == {hexid(first.context.span_id), hexid(second.context.span_id)}


def test_async_retries(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    async def main() -> None:
        transport = AsyncSeawallTransport(
            policies=lambda host: Pipeline(retry(client_clock)), tracer_provider=recorded.provider
        )
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as c:
            assert (await c.get(client_server.url("/ok/a?fail=1"))).status_code == 200

    asyncio.run(main())
    assert [name for name, _ in events(recorded.call())] == ["seawall.retry"]
    assert len(recorded.attempts()) == 2


# --- requests ------------------------------------------------------------------------------------


def test_requests_adapter_spans_are_the_same(
    client_server: ScriptedServer, client_clock: FakeClock, recorded: Recorded
) -> None:
    def policies(host: str) -> Pipeline:
        return Pipeline(
            Retry(
                on=seawall_requests.is_retryable_error,
                on_result=seawall_requests.is_retryable_response,
                clock=client_clock,
                sleep=client_clock.sleep,
            )
        )

    adapter = seawall_requests.SeawallAdapter(policies=policies, tracer_provider=recorded.provider)
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(client_server.url("/ok/q?fail=1"), timeout=5).status_code == 200
    call = recorded.call()
    attempts = recorded.attempts()
    assert [attrs(a)["seawall.attempt"] for a in attempts] == [1, 2]
    assert all(a.parent is not None and a.parent.span_id == call.context.span_id for a in attempts)
    (retried,) = events(call)
    assert retried[0] == "seawall.retry"
    assert retried[1]["seawall.retry.reason"] == "status 503"
    a = attrs(call)
    assert a["http.response.status_code"] == 200
    assert a["seawall.destination"] == client_server.host
    assert a["url.full"] == client_server.url("/ok/q?fail=1")
    seen = client_server.seen("/ok/q")
    assert [sent_parent(s.headers).parent_id for s in seen] == [
        hexid(x.context.span_id) for x in attempts
    ]


def test_requests_connect_failures_read_as_connect_failure(
    client_closed_port: int, client_clock: FakeClock, recorded: Recorded
) -> None:
    def policies(host: str) -> Pipeline:
        return Pipeline(
            Retry(
                on=seawall_requests.is_retryable_error,
                attempts=2,
                clock=client_clock,
                sleep=client_clock.sleep,
            )
        )

    adapter = seawall_requests.SeawallAdapter(policies=policies, tracer_provider=recorded.provider)
    with requests.Session() as session:
        session.mount("http://", adapter)
        with pytest.raises(requests.ConnectionError):
            session.get(f"http://127.0.0.1:{client_closed_port}/", timeout=5)
    names = [(name, a.get("seawall.retry.reason")) for name, a in events(recorded.call())]
    assert names == [
        ("seawall.retry", "connect-failure"),
        ("seawall.retry.skipped", "attempts exhausted"),
    ]
    assert attrs(recorded.call())["error.type"] == "requests.exceptions.ConnectionError"


def test_url_credentials_are_redacted(client_server: ScriptedServer, recorded: Recorded) -> None:
    with client(recorded) as c:
        c.get(f"http://user:secret@127.0.0.1:{client_server.port}/ok?sig=abc&x=1")
    assert attrs(recorded.call())["url.full"] == (
        f"http://REDACTED:REDACTED@127.0.0.1:{client_server.port}/ok?sig=REDACTED&x=1"
    )


FROM_MESH = """
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from seawall.client.httpx import from_mesh
from seawall.config import load_mesh

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # from_mesh's transport follows the global provider
hits = []

class Payments(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        hits.append(self.headers["traceparent"])
        self.send_response(503 if len(hits) == 1 else 200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Payments)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
mesh = load_mesh(f'''
mesh: shop
services:
  gateway:  {{port: 8000, sidecar: {{inbound: 18000, outbound: 15000, admin: 19000}}}}
  payments: {{port: {port}, sidecar: {{inbound: 18001, outbound: 15001, admin: 19001}}}}
policies:
  payments:
    retry: {{attempts: 3, on: [gateway-error]}}
''')
with from_mesh(mesh, service="gateway") as client:
    assert client.get("http://payments/charges").status_code == 200
spans = exporter.get_finished_spans()
(call,) = [s for s in spans if "seawall.attempt" not in s.attributes]
attempts = [s for s in spans if "seawall.attempt" in s.attributes]
assert call.attributes["seawall.service"] == "gateway", call.attributes
assert call.attributes["seawall.destination"] == "payments", call.attributes
assert [e.name for e in call.events] == ["seawall.retry"], call.events
assert [f"{a.context.span_id:016x}" for a in attempts] == [h.split("-")[2] for h in hits]
print("ok")
"""


def test_from_mesh_records_the_same_spans() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FROM_MESH], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
