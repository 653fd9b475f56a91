"""Spans from the data plane (issue 10, part 1), end to end over real sockets.

Two sidecar processes (``app`` calling ``orders``), the orders app a scripted
backend that fails once with 503, and a real ``seawall traces`` collector
that the sidecars export to over OTLP/HTTP. The test plays the ``app``
application: it records its own CLIENT span with the OpenTelemetry SDK
(exported to the same collector) and calls ``http://orders/checkout``
through its sidecar with that span's ``traceparent``. One connected trace
must come out: app span → app's sidecar CLIENT span → one CLIENT span per
attempt → orders' sidecar SERVER span → (the orders app, which received
the SERVER span's id as its parent). Policy decisions are events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import Backend, BackendLoop, Echo, Fail, free_ports, wait_until
from conftest import OFF, SidecarProcess
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
from collector_util import RunningCollector, running_collector  # noqa: E402
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as openmetrics_families,
)


class TwoServices:
    """mesh.yaml for ``app`` → ``orders``, each with its sidecar, exporting to ``url``."""

    def __init__(self, app: Backend, orders: Backend, url: str, **tracing: Any) -> None:
        ports = iter(free_ports(8))
        self.sidecars = {
            name: {"inbound": next(ports), "outbound": next(ports), "admin": next(ports)}
            for name in ("app", "orders")
        }
        self.doc: dict[str, Any] = {
            "mesh": "t",
            "services": {
                "app": {"port": app.port, "sidecar": self.sidecars["app"]},
                "orders": {"port": orders.port, "sidecar": self.sidecars["orders"]},
            },
            "policies": {
                "orders": {
                    "retry": {"attempts": 2, "on": ["5xx"], "backoff": {"base": "1ms"}},
                    "circuit_breaker": OFF,
                    "outlier": OFF,
                },
                "app": {"circuit_breaker": OFF, "outlier": OFF},
            },
            "tracing": {"endpoint": f"{url}/v1/traces", "interval": "50ms"} | tracing,
        }

    def view(self, service: str) -> Any:
        """What :class:`SidecarProcess` reads of a mesh, for one service's sidecar."""
        doc, ports = self.doc, self.sidecars[service]

        class View:
            outbound, inbound, admin = ports["outbound"], ports["inbound"], ports["admin"]
            upstreams: dict[str, int] = {}

            def yaml(self) -> str:
                return yaml.safe_dump(doc, sort_keys=False)

        return View()


@pytest.fixture
def traced(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> Iterator[tuple[RunningCollector, Backend, dict[str, SidecarProcess]]]:
    orders = sidecar_loop.backend("traced-orders", Echo())
    app = sidecar_loop.backend("traced-app", Echo())
    with running_collector(tmp_path) as collector:
        mesh = TwoServices(app, orders, collector.url)
        sidecars: dict[str, SidecarProcess] = {}
        try:
            for service in ("orders", "app"):
                process = SidecarProcess(mesh.view(service), tmp_path / service)  # type: ignore[arg-type]
                process.service = service
                sidecars[service] = process.start()
            yield collector, orders, sidecars
        finally:
            for process in sidecars.values():
                process.stop()


def spans_of(collector: RunningCollector, trace_id: str, count: int) -> list[dict[str, Any]]:
    """The trace's spans from api_v3 once ``count`` have arrived, each with its service."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        collector.flush()
        r = httpx.get(f"{collector.url}/api/v3/traces/{trace_id}")
        if r.status_code != 200:
            return False
        found[:] = [
            s | {"service": _service(rs), "scope": ss.get("scope", {}).get("name", "")}
            for rs in r.json()["result"]["resourceSpans"]
            for ss in rs["scopeSpans"]
            for s in ss["spans"]
        ]
        return len(found) >= count

    wait_until(arrived, 30, f"{count} spans of trace {trace_id}")
    return found


def _service(resource_spans: dict[str, Any]) -> str:
    for kv in resource_spans["resource"]["attributes"]:
        if kv["key"] == "service.name":
            return str(kv["value"]["stringValue"])
    return ""


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: next(iter(kv["value"].values()), None) for kv in span.get("attributes", [])}


def test_one_connected_trace_from_the_app_through_both_sidecars(
    traced: tuple[RunningCollector, Backend, dict[str, SidecarProcess]],
) -> None:
    collector, orders, sidecars = traced
    orders.script(Echo(), queue=[Fail(503)])
    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.url}/v1/traces"))
    )
    tracer = provider.get_tracer("the app")
    with tracer.start_as_current_span("GET orders", kind=SpanKind.CLIENT) as app_span:
        headers: dict[str, str] = {}
        inject(headers)
        r = httpx.get(
            "http://orders/checkout?item=7",
            headers=headers,
            proxy=sidecars["app"].proxy,
            timeout=10,
        )
        trace_id = f"{app_span.get_span_context().trace_id:032x}"
        app_span_id = f"{app_span.get_span_context().span_id:016x}"
    provider.shutdown()
    assert r.status_code == 200, r.text
    # app span, sidecar client span, 2 attempts, 2 orders' sidecar server spans
    spans = spans_of(collector, trace_id, 6)
    by_id = {s["spanId"]: s for s in spans}
    (hop,) = [s for s in spans if s.get("parentSpanId") == app_span_id]
    assert hop["service"] == "app"
    assert hop["scope"] == "seawall-sidecar"
    assert hop["kind"] == 3  # CLIENT
    assert hop["name"] == "GET default"
    hop_attrs = attrs(hop)
    assert hop_attrs["seawall.destination"] == "orders"
    assert hop_attrs["http.request.method"] == "GET"
    assert hop_attrs["url.path"] == "/checkout"
    assert hop_attrs["http.response.status_code"] == "200"
    assert "status" not in hop or hop["status"].get("code", 0) != 2
    retry = [e for e in hop["events"] if e["name"] == "seawall.retry"]
    assert len(retry) == 1
    assert {kv["key"]: kv["value"] for kv in retry[0]["attributes"]}["seawall.retry.reason"] == {
        "stringValue": "status 503"
    }
    attempts = sorted(
        (s for s in spans if s.get("parentSpanId") == hop["spanId"]),
        key=lambda s: int(attrs(s)["seawall.attempt"]),
    )
    assert [attrs(a)["seawall.attempt"] for a in attempts] == ["1", "2"]
    assert attempts[0]["status"]["code"] == 2  # the 503
    assert attrs(attempts[0])["http.response.status_code"] == "503"
    assert attrs(attempts[1])["http.response.status_code"] == "200"
    port = sidecars["orders"].inbound
    assert attrs(attempts[0])["seawall.endpoint"] == f"127.0.0.1:{port}"
    # each attempt reached the orders sidecar: its SERVER span is the attempt's child
    servers = [s for s in spans if s["service"] == "orders"]
    assert sorted(by_id[s.get("parentSpanId")]["spanId"] for s in servers) == sorted(
        a["spanId"] for a in attempts
    )
    for s in servers:
        assert s["kind"] == 2
        assert attrs(s)["http.route"] == "inbound"  # the inbound route's name
    # and the orders app continued the trace under the SERVER span of its own request
    seen = [req.header("traceparent") for req in orders.seen[-2:]]
    assert all(tp is not None and tp.split("-")[1] == trace_id for tp in seen)
    assert {tp.split("-")[2] for tp in seen if tp} == {s["spanId"] for s in servers}
    # the caller's sidecar counted what it exported
    wait_until(
        lambda: sidecars["app"].metric("seawall_trace_spans_total", outcome="exported") >= 3,
        10,
        "the export counted",
    )


def test_an_unsampled_request_records_no_span_and_keeps_its_flag(
    traced: tuple[RunningCollector, Backend, dict[str, SidecarProcess]],
) -> None:
    collector, orders, sidecars = traced
    orders.script(Echo())
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = httpx.get(
        "http://orders/unsampled",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"},
        proxy=sidecars["app"].proxy,
        timeout=10,
    )
    assert r.status_code == 200
    (seen,) = orders.seen
    tp = seen.header("traceparent") or ""
    assert tp.startswith(f"00-{trace_id}-")
    assert tp.endswith("-00")
    # a sampled request after it: once its spans are in, the unsampled one's would be too
    r = httpx.get("http://orders/sampled", proxy=sidecars["app"].proxy, timeout=10)
    sampled = orders.seen[-1].header("traceparent") or ""
    spans_of(collector, sampled.split("-")[1], 2)
    assert httpx.get(f"{collector.url}/api/v3/traces/{trace_id}").status_code == 404


def test_a_sampled_request_is_an_exemplar_on_the_openmetrics_page(
    traced: tuple[RunningCollector, Backend, dict[str, SidecarProcess]],
) -> None:
    """Scraped as OpenMetrics (what the SLO monitor asks for), the sidecar's request
    counters and latency buckets carry the trace id of the last sampled request counted
    there: a link from a bad minute to a trace of it. The page parses with
    prometheus_client's strict OpenMetrics parser; the Prometheus text has none."""
    collector, orders, sidecars = traced
    orders.script(Echo(), paths={"/broken": Fail(500)})
    r = httpx.get("http://orders/broken", proxy=sidecars["app"].proxy, timeout=10)
    assert r.status_code == 500
    trace_id = (orders.seen[-1].header("traceparent") or "").split("-")[1]
    admin = f"http://127.0.0.1:{sidecars['app'].admin}/metrics"
    page = httpx.get(admin, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert page.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = {
        (s.name, s.labels.get("status_class") or s.labels.get("le")): s.exemplar
        for family in openmetrics_families(page.text)
        for s in family.samples
        if s.labels.get("destination") == "orders" and s.exemplar is not None
    }
    errors = exemplars[("seawall_requests_total", "5xx")]
    assert errors.labels == {"trace_id": trace_id}
    assert errors.value == 1
    slow = [e for (name, _), e in exemplars.items() if name.endswith("_bucket")]
    assert slow
    assert all(e.labels == {"trace_id": trace_id} and e.value > 0 for e in slow)
    plain = httpx.get(admin).text
    assert " # {" not in plain
    assert "# EOF" not in plain


def test_a_collector_that_cannot_keep_up_costs_dropped_spans_not_requests(
    sidecar_loop: BackendLoop, tmp_path: Path
) -> None:
    orders = sidecar_loop.backend("untraced-orders", Echo())
    app = sidecar_loop.backend("untraced-app", Echo())
    dead = free_ports(1)[0]  # nothing listens: every export is refused, then retried
    mesh = TwoServices(app, orders, f"http://127.0.0.1:{dead}", queue=2)
    process = SidecarProcess(mesh.view("app"), tmp_path / "app")  # type: ignore[arg-type]
    try:
        process.start()
        statuses = []
        with httpx.Client(proxy=process.proxy, timeout=10) as client:
            # the first request's span sets the exporter retrying (seconds of backoff);
            # then the queue (one request's spans) fills and the rest are dropped
            statuses.append(client.get(f"http://127.0.0.1:{orders.port}/x").status_code)
            wait_until(lambda: process.metric("seawall_trace_spans_total") == 0, 1, "")
            time.sleep(0.3)
            for n in range(6):
                statuses.append(client.get(f"http://127.0.0.1:{orders.port}/x{n}").status_code)
        # egress to the orders app (not a mesh name): one span per request, all sampled;
        # every request answered as if nothing were wrong
        assert statuses == [200] * 7
        wait_until(
            lambda: process.metric("seawall_trace_spans_total", outcome="dropped_queue_full") >= 4,
            10,
            "the dropped spans counted",
        )
        process.assert_alive()
    finally:
        process.stop()
