"""Issue 16: a Jaeger HTTP API client from PyPI, which seawall did not write
(``jaeger-mcp``'s ``JaegerClient``: it calls ``/api/services``,
``/api/traces``, ``/api/traces/{id}`` and ``/api/dependencies``), reads
seawall's collector and gets the same services and traces that api_v3 gives.

The spans are exported by the official OpenTelemetry SDK exporter: a trace
of three services (gateway → orders → payments), the orders → payments call
retried once (its first attempt an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_util import RunningCollector, running_collector
from opentelemetry import trace as api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

jaeger_mcp = pytest.importorskip("jaeger_mcp")


def _provider(url: str, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    return provider


def export_three_services(url: str) -> str:
    """gateway → orders → payments, the payments call retried; the trace id."""
    providers = {s: _provider(url, s) for s in ("gateway", "orders", "payments")}
    tracer = {s: p.get_tracer("tests") for s, p in providers.items()}
    with tracer["gateway"].start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        trace_id = f"{root.get_span_context().trace_id:032x}"
        with tracer["gateway"].start_as_current_span("POST orders", kind=SpanKind.CLIENT) as c:
            parent = api.set_span_in_context(api.NonRecordingSpan(c.get_span_context()))
            with tracer["orders"].start_as_current_span(
                "POST /orders", context=parent, kind=SpanKind.SERVER
            ):
                for attempt in (1, 2):
                    with tracer["orders"].start_as_current_span(
                        "POST payments",
                        kind=SpanKind.CLIENT,
                        attributes={"seawall.attempt": attempt},
                    ) as call:
                        callee = api.set_span_in_context(
                            api.NonRecordingSpan(call.get_span_context())
                        )
                        with tracer["payments"].start_as_current_span(
                            "POST /charge", context=callee, kind=SpanKind.SERVER
                        ) as charge:
                            if attempt == 1:
                                charge.set_status(Status(StatusCode.ERROR, "503"))
                                call.set_status(Status(StatusCode.ERROR))
    for p in providers.values():
        p.shutdown()
    return trace_id


def v3_spans(c: RunningCollector, trace_id: str) -> dict[str, tuple[str, str]]:
    """span id → (service, name), from api_v3."""
    body = httpx.get(f"{c.url}/api/v3/traces/{trace_id}").json()
    out: dict[str, tuple[str, str]] = {}
    for rs in body["result"]["resourceSpans"]:
        service = next(
            kv["value"]["stringValue"]
            for kv in rs["resource"]["attributes"]
            if kv["key"] == "service.name"
        )
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                out[s["spanId"]] = (service, s["name"])
    return out


def test_a_jaeger_client_from_pypi_reads_what_api_v3_gives(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        trace_id = export_three_services(c.url)
        c.flush()

        def client() -> Any:
            # One client per call: its sync methods each run their own event loop
            # (asyncio.run) around a connection pool made in the first one, so a
            # second call on one client fails with "Event loop is closed" (the
            # client's bug, not the server's).
            return jaeger_mcp.JaegerClient.from_env(url=c.url)

        services = client().list_services()
        assert sorted(services) == sorted(httpx.get(f"{c.url}/api/v3/services").json()["services"])
        assert sorted(services) == ["gateway", "orders", "payments"]

        found = client().search_traces("payments", limit=5)
        assert [t.trace_id for t in found] == [trace_id]
        summary = found[0]
        assert summary.span_count == 7
        assert summary.service_count == 3
        assert summary.root_service == "gateway"
        assert summary.root_operation == "POST /checkout"
        assert summary.errors_count >= 1

        trace = client().get_trace(trace_id)
        by_id = {s.span_id: (s.service_name, s.operation) for s in trace.spans}
        assert by_id == v3_spans(c, trace_id)
        failed = [s for s in trace.spans if s.error]
        assert {s.operation for s in failed} >= {"POST /charge"}
        (both,) = client().fetch_traces([trace_id])
        assert len(both.spans) == 7

        deps = {(d.parent, d.child): d.call_count for d in client().get_dependencies()}
        assert deps == {("gateway", "orders"): 1, ("orders", "payments"): 2}

        # a filter the client sends as Jaeger's `tags` JSON
        tagged = client().search_traces("orders", tags={"seawall.attempt": "2"}, limit=5)
        assert [t.trace_id for t in tagged] == [trace_id]
        assert client().search_traces("orders", tags={"seawall.attempt": "9"}) == []
