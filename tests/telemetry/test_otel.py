"""seawall.telemetry.otel: the inbound step, span helpers, and setup() with the real exporter.

setup() is checked against a tiny OTLP/HTTP receiver on loopback that keeps
the protobuf bodies it is sent, parsed with opentelemetry-proto. Setting the
global provider can only be done once per process: that part runs in a
subprocess.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import seawall.telemetry
from seawall.policy.clock import FakeClock
from seawall.telemetry import otel
from seawall.telemetry.tracecontext import TraceParent

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"


class Recorded:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = otel.tracer(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    rec = Recorded()
    yield rec
    rec.provider.shutdown()


def inbound(
    headers: dict[str, str], tracer: Any = None, clock: Any = None, **kw: Any
) -> otel.Inbound:
    options: dict[str, Any] = {
        "method": "GET",
        "scheme": "http",
        "path": "/items/7",
        "query": "",
        "client_address": "10.0.0.9",
        "protocol_version": "1.1",
    }
    options.update(kw)
    return otel.inbound(
        headers, tracer=tracer, clock=clock if clock is not None else FakeClock(100.0), **options
    )


# --- the inbound step ---------------------------------------------------------------------------


def test_the_request_id_is_kept_or_made() -> None:
    assert inbound({"x-request-id": "abc"}).request_id == "abc"
    made = inbound({}).request_id
    assert len(made) == 32
    assert made != inbound({}).request_id


@pytest.mark.parametrize(
    ("value", "left"),
    [
        ("1500", 1.5),
        (" 7\t", 0.007),
        ("2000,500", 0.5),  # sent twice: the soonest
        ("soon,300", 0.3),  # a malformed one is ignored
        ("864000000", 864000.0),
        ("+5", None),
        ("", None),
        ("1.5", None),
        ("864000001", None),
        ("99999999999999999999", None),
        ("٣", None),  # a non-ASCII digit
    ],
)
def test_the_deadline_header_is_read_as_the_sidecar_reads_it(
    value: str, left: float | None
) -> None:
    clock = FakeClock(100.0)
    step = inbound({"x-seawall-deadline-ms": value}, clock=clock)
    if left is None:
        assert step.deadline is None
    else:
        assert step.deadline == pytest.approx(100.0 + left)
    assert not step.expired


def test_a_zero_deadline_is_expired() -> None:
    assert inbound({"x-seawall-deadline-ms": "0"}).expired
    assert not inbound({"x-seawall-deadline-ms": "1"}).expired


def test_without_a_tracer_the_trace_is_continue_trace_s() -> None:
    step = inbound({"traceparent": CALLER, "tracestate": "a=1"})
    assert step.span is None
    assert step.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert step.trace.parent_id != "00f067aa0ba902b7"
    assert step.tracestate is not None
    assert step.tracestate.format() == "a=1"


def test_the_no_op_tracer_makes_no_span_of_its_own() -> None:
    noop = trace.NoOpTracerProvider().get_tracer("x")
    step = inbound({"traceparent": CALLER}, tracer=noop)
    assert step.span is None  # seawall's own context goes on
    assert step.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    span = noop.start_span("x", context=otel.context_of(TraceParent.parse(CALLER)))
    assert otel.own_traceparent(span, TraceParent.parse(CALLER)) is None


def test_a_server_span_continues_the_caller_and_is_the_trace(recorded: Recorded) -> None:
    step = inbound(
        {
            "traceparent": CALLER,
            "host": "orders.internal:8080",
            "user-agent": "ua/1",
            "x-seawall-peer": "spiffe://shop/service/gateway",
            "x-seawall-deadline-ms": "250",
            "content-length": "12",
        },
        tracer=recorded.tracer,
        query="q=1",
    )
    assert step.span is not None
    context = step.span.get_span_context()
    assert step.trace.trace_id == f"{context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert step.trace.parent_id == f"{context.span_id:016x}"
    assert step.trace.sampled
    assert step.trace.random_trace_id
    step.finish(404, route="/items/{id}", response_size=3)
    (span,) = recorded.spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{id}"
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.parent.is_remote
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "url.scheme": "http",
        "url.query": "q=1",
        "server.address": "orders.internal",
        "server.port": 8080,
        "client.address": "10.0.0.9",
        "user_agent.original": "ua/1",
        "network.protocol.version": "1.1",
        "seawall.peer.spiffe_id": "spiffe://shop/service/gateway",
        "seawall.service": "gateway",
        "http.request.body.size": 12,
        "http.route": "/items/{id}",
        "http.response.body.size": 3,
        "http.response.status_code": 404,
    }
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's, on a server
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("seawall.deadline", {"seawall.deadline.left_ms": 250.0})
    ]


def test_a_5xx_and_an_exception_are_errors_of_a_server_span(recorded: Recorded) -> None:
    inbound({}, tracer=recorded.tracer).finish(503)
    inbound({}, tracer=recorded.tracer).finish(500, RuntimeError("boom"))
    first, second = recorded.spans()
    assert first.status.status_code is StatusCode.ERROR
    assert dict(first.attributes or {})["error.type"] == "503"
    assert second.status.status_code is StatusCode.ERROR
    assert dict(second.attributes or {})["error.type"] == "RuntimeError"
    assert [e.name for e in second.events] == ["exception"]
    assert first.parent is None  # no traceparent: a root


def test_an_expired_deadline_is_an_event(recorded: Recorded) -> None:
    step = inbound({"x-seawall-deadline-ms": "0"}, tracer=recorded.tracer)
    step.finish(504)
    (span,) = recorded.spans()
    assert [e.name for e in span.events] == ["seawall.deadline.expired"]


def test_unknown_methods_and_host_forms(recorded: Recorded) -> None:
    inbound({"host": "[::1]:9000"}, tracer=recorded.tracer, method="PURGE").finish(200)
    inbound({"host": "example.com"}, tracer=recorded.tracer, scheme="https").finish(200)
    first, second = recorded.spans()
    assert first.name == "HTTP"
    a = dict(first.attributes or {})
    assert a["http.request.method"] == "_OTHER"
    assert a["http.request.method_original"] == "PURGE"
    assert (a["server.address"], a["server.port"]) == ("::1", 9000)
    b = dict(second.attributes or {})
    assert (b["server.address"], b["server.port"]) == ("example.com", 443)


# --- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://a.b/x?y=1", "http://a.b/x?y=1"),
        ("https://u:p@a.b:8443/x", "https://REDACTED:REDACTED@a.b:8443/x"),
        (
            "http://a.b/x?sig=s3&AWSAccessKeyId=k&z=1",
            "http://a.b/x?sig=REDACTED&AWSAccessKeyId=REDACTED&z=1",
        ),
        ("http://a.b/Signatures?q=Signature", "http://a.b/Signatures?q=Signature"),
    ],
)
def test_urls_are_redacted(url: str, shown: str) -> None:
    assert otel.redact_url(url) == shown


def test_the_default_tracer_is_the_api_s_proxy() -> None:
    tracer = otel.tracer()
    assert tracer is not None
    assert isinstance(tracer, trace.ProxyTracer)


def test_traceparents_of_contexts(recorded: Recorded) -> None:
    parent = TraceParent.parse(CALLER)
    assert parent is not None
    with recorded.tracer.start_as_current_span("x", context=otel.context_of(parent)) as span:  # type: ignore[union-attr]
        current = otel.current_traceparent()
        assert current is not None
        assert current.trace_id == parent.trace_id
        assert current.parent_id == f"{span.get_span_context().span_id:016x}"
        assert otel.own_traceparent(span, parent) == current
    assert otel.current_traceparent() is None


# --- setup --------------------------------------------------------------------------------------


class Receiver:
    """A tiny OTLP/HTTP receiver: keeps each POST's path, headers and decoded request."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.posts.append((self.path, headers, request))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_setup_exports_to_the_collector(receiver: Receiver) -> None:
    handle = seawall.telemetry.setup(
        "orders", endpoint=receiver.url, headers={"x-token": "t1"}, install=False
    )
    try:
        assert (handle.service, handle.endpoint) == ("orders", receiver.url)
        tracer = handle.provider.get_tracer("test")
        with tracer.start_as_current_span("work"):
            pass
        assert handle.force_flush(10_000)
    finally:
        handle.shutdown()
    assert receiver.arrived.wait(10)
    path, headers, request = receiver.posts[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-token"] == "t1"
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "orders"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["work"]
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # not installed


def test_the_endpoint_s_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    handles = [seawall.telemetry.setup("a", install=False)]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://otel:4318/v1/traces")
    handles.append(seawall.telemetry.setup("a", install=False))
    monkeypatch.setenv("SEAWALL_TRACES_ENDPOINT", "http://mesh:4318/v1/traces")
    handles.append(seawall.telemetry.setup("a", install=False))
    handles.append(seawall.telemetry.setup("a", endpoint="http://given/v1/traces", install=False))
    for handle in handles:
        handle.shutdown()
    assert [h.endpoint for h in handles] == [
        otel.DEFAULT_ENDPOINT,
        "http://otel:4318/v1/traces",
        "http://mesh:4318/v1/traces",
        "http://given/v1/traces",
    ]
    assert otel.DEFAULT_ENDPOINT == "http://127.0.0.1:4318/v1/traces"


@pytest.mark.parametrize(
    ("service", "sample"), [("", 1.0), ("a", 1.5), ("a", -0.1), ("a", float("nan")), ("a", True)]
)
def test_setup_checks_its_arguments(service: str, sample: float) -> None:
    with pytest.raises(ValueError, match="service|sample"):
        seawall.telemetry.setup(service, sample=sample, install=False)


GLOBAL_SETUP = """
import sys, threading, gzip
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import seawall.telemetry
from seawall.client.httpx import SeawallTransport
from seawall.telemetry.otel import ProviderAlreadySet

posts = []

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        posts.append(request)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"

client = httpx.Client(transport=SeawallTransport())     # made before setup: follows it
handle = seawall.telemetry.setup("checkout", endpoint=base + "/v1/traces")
assert trace.get_tracer_provider() is handle.provider
try:
    seawall.telemetry.setup("again", endpoint=base + "/v1/traces")
except ProviderAlreadySet:
    pass
else:
    raise AssertionError("a second setup replaced the provider")
assert trace.get_tracer_provider() is handle.provider

assert client.get(base + "/ok").status_code == 200
handle.shutdown()
spans = [
    (s.name, s.kind, {a.key for a in s.attributes})
    for request in posts
    for rs in request.resource_spans
    if {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"] == "checkout"
    for ss in rs.scope_spans
    for s in ss.spans
]
assert len(spans) == 2, spans
assert all(name == "GET" and kind == 3 for name, kind, _ in spans), spans  # CLIENT
assert sum("seawall.attempt" in keys for _, _, keys in spans) == 1
print("ok")
"""


def test_setup_installs_once_and_never_replaces() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(GLOBAL_SETUP)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
