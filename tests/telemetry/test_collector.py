"""``seawall traces`` over real HTTP: the official OpenTelemetry SDK exporter in,
Jaeger's api_v3 and HTTP JSON API out, and every kind of bad input refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from collector_util import running_collector
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def export_with_sdk(url: str, *, compression: Compression = Compression.NoCompression) -> str:
    """A trace of two services through the SDK's own OTLP/HTTP exporter; its trace id."""
    ids: list[str] = []
    for service in ("gateway", "payments"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("tests", "1.0")
        if service == "gateway":
            with tracer.start_as_current_span(
                "POST /checkout",
                kind=SpanKind.SERVER,
                attributes={"http.route": "/checkout", "http.response.status_code": 200},
            ) as root:
                ids.append(f"{root.get_span_context().trace_id:032x}")
                carrier = root.get_span_context()
                with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as client:
                    client.add_event("seawall.retry", {"seawall.attempt": 2})
                    parent = client.get_span_context()
        else:
            from opentelemetry import trace as api  # noqa: PLC0415

            ctx = api.set_span_in_context(api.NonRecordingSpan(parent))
            with tracer.start_as_current_span(
                "POST /charge",
                context=ctx,
                kind=SpanKind.SERVER,
                links=[Link(carrier, {"why": "audit"})],
            ) as server:
                server.set_status(Status(StatusCode.ERROR, "card declined"))
        provider.shutdown()
    return ids[0]


def test_the_sdk_exporter_stores_a_trace_that_both_apis_give_back(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        trace_id = export_with_sdk(c.url)
        c.flush()
        v3 = httpx.get(f"{c.url}/api/v3/traces/{trace_id}")
        assert v3.status_code == 200, v3.text
        spans = [
            (rs["resource"], s)
            for rs in v3.json()["result"]["resourceSpans"]
            for ss in rs["scopeSpans"]
            for s in ss["spans"]
        ]
        assert sorted(s["name"] for _, s in spans) == ["POST", "POST /charge", "POST /checkout"]
        charge = next(s for _, s in spans if s["name"] == "POST /charge")
        assert charge["status"] == {"code": 2, "message": "card declined"}
        assert charge["kind"] == 2
        assert charge["links"][0]["attributes"] == [
            {"key": "why", "value": {"stringValue": "audit"}}
        ]
        client = next(s for _, s in spans if s["name"] == "POST")
        assert charge["parentSpanId"] == client["spanId"]
        assert client["events"][0]["name"] == "seawall.retry"
        assert client["events"][0]["attributes"] == [
            {"key": "seawall.attempt", "value": {"intValue": "2"}}
        ]

        services = httpx.get(f"{c.url}/api/services").json()
        assert services["data"] == ["gateway", "payments"]
        assert services["total"] == 2
        assert httpx.get(f"{c.url}/api/v3/services").json() == {"services": ["gateway", "payments"]}
        found = httpx.get(
            f"{c.url}/api/traces", params={"service": "payments", "limit": "5"}
        ).json()
        assert found["errors"] is None
        (trace,) = found["data"]
        assert trace["traceID"] == trace_id
        assert len(trace["spans"]) == 3
        assert sorted(p["serviceName"] for p in trace["processes"].values()) == [
            "gateway",
            "payments",
        ]
        ops = httpx.get(f"{c.url}/api/operations", params={"service": "gateway"}).json()
        assert sorted((o["name"], o["spanKind"]) for o in ops["data"]) == [
            ("POST", "client"),
            ("POST /checkout", "server"),
        ]


def test_gzip_from_the_sdk_and_json_by_hand_are_received(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        trace_id = export_with_sdk(c.url, compression=Compression.Gzip)
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "GET /",
                                    "kind": 2,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": 1700000000500000000,
                                    "unknownField": {"ignored": True},
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        r = httpx.post(
            f"{c.url}/v1/traces",
            content=gzip.compress(json.dumps(body).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {}
        c.flush()
        assert httpx.get(f"{c.url}/api/v3/traces/{trace_id}").status_code == 200
        got = httpx.get(f"{c.url}/api/traces/5b8efff798038103d269b633813fc60c").json()
        assert got["data"][0]["spans"][0]["duration"] == 500_000


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    with running_collector(tmp_path, max_body=4096) as c:
        url = f"{c.url}/v1/traces"
        # malformed protobuf: a google.rpc.Status in protobuf, naming what is wrong
        r = httpx.post(url, content=b"\x0a\xff", headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/x-protobuf"
        assert b"malformed protobuf" in r.content
        r = httpx.post(
            url, content=b'{"resourceSpans": 7}', headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["code"] == 3
        assert "resourceSpans" in r.json()["message"]
        r = httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        r = httpx.post(
            url,
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Encoding": "br"},
        )
        assert r.status_code == 415
        # over the limit, as sent and once inflated (a small gzip bomb)
        r = httpx.post(
            url, content=b"{" + b" " * 5000 + b"}", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413
        bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")
        r = httpx.post(
            url,
            content=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 413
        assert "decompressed" in r.json()["message"]
        assert httpx.get(url).status_code == 405


def test_invalid_spans_are_rejected_one_by_one_as_partial_success(tmp_path: Path) -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    ss = rs.scope_spans.add()
    good = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="ok")
    good.start_time_unix_nano, good.end_time_unix_nano = 10, 20
    ss.spans.add(trace_id=b"\x00" * 16, span_id=b"\x02" * 8, name="zero trace id")
    with running_collector(tmp_path) as c:
        r = httpx.post(
            f"{c.url}/v1/traces",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        answer = ExportTraceServiceResponse.FromString(r.content)
        assert answer.partial_success.rejected_spans == 1
        assert "traceId" in answer.partial_success.error_message
        c.flush()
        assert c.store.span_count() == 1


def test_query_parameters_are_checked_and_named(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        r = httpx.get(f"{c.url}/api/traces", params={"service": "x", "limit": "-3"})
        assert r.status_code == 400
        body = r.json()
        assert body["data"] is None
        assert body["errors"][0]["code"] == 400
        assert "limit" in body["errors"][0]["msg"]
        r = httpx.get(f"{c.url}/api/traces", params={"service": "x", "minDuration": "fast"})
        assert r.status_code == 400
        assert "minDuration" in r.json()["errors"][0]["msg"]
        r = httpx.get(f"{c.url}/api/traces/nothex")
        assert r.status_code == 400
        r = httpx.get(f"{c.url}/api/traces/0123456789abcdef0123456789abcdef")
        assert r.status_code == 404
        assert r.json()["errors"][0]["msg"] == "trace not found"
        r = httpx.get(f"{c.url}/api/v3/traces", params={"query.service_name": "x"})
        assert r.status_code == 400
        assert "query.start_time_min" in r.json()["error"]["message"]
        r = httpx.get(
            f"{c.url}/api/v3/operations", params={"service": "x", "span_kind": "sideways"}
        )
        assert r.status_code == 400
        assert "span_kind" in r.json()["error"]["message"]
        # several ids: the one not found is an error of its own, not of the call
        r = httpx.get(
            f"{c.url}/api/traces",
            params=[("traceID", "0123456789abcdef0123456789abcdef")],
        )
        assert r.status_code == 200
        assert r.json()["data"] == []
        assert r.json()["errors"][0]["traceID"] == "0123456789abcdef0123456789abcdef"


def test_the_collectors_metrics_count_what_it_received(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    with running_collector(tmp_path) as c:
        export_with_sdk(c.url)
        c.flush()
        text = httpx.get(f"{c.url}/metrics").text
        samples = {
            s.name + json.dumps(s.labels, sort_keys=True): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        assert samples["seawall_traces_spans_received_total{}"] == 3
        assert samples["seawall_traces_spans_stored_total{}"] == 3


@pytest.mark.parametrize("path", ["/v1/traces/", "/api/nothing", "/nowhere"])
def test_unknown_routes_are_404(tmp_path: Path, path: str) -> None:
    with running_collector(tmp_path) as c:
        assert httpx.get(c.url + path).status_code in (404, 405)


# ------------------------------------------------ issue 16 over real HTTP

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_body(name: str) -> tuple[str, bytes]:
    """One of the hand-written fixture traces as an OTLP JSON export request."""
    from fixture_rows import load_rows  # noqa: PLC0415

    from seawall.telemetry.otlpjson import resource_spans  # noqa: PLC0415

    rows = load_rows(name)
    body = json.dumps({"resourceSpans": resource_spans(rows)}).encode()
    return rows[0].trace_id.hex(), body


@pytest.mark.parametrize("name", ["checkout", "retry", "error_events", "link"])
def test_a_trace_fetched_over_http_is_the_hand_written_jaeger_model(
    tmp_path: Path, name: str
) -> None:
    expected = json.loads((FIXTURES / "jaeger_traces.json").read_text())[name]
    trace_id, body = _fixture_body(name)
    with running_collector(tmp_path) as c:
        r = httpx.post(
            f"{c.url}/v1/traces", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 200, r.text
        c.flush()
        got = httpx.get(f"{c.url}/api/traces/{trace_id}").json()
        assert got["errors"] is None
        assert (got["total"], got["limit"], got["offset"]) == (0, 0, 0)
        (trace,) = got["data"]
        assert sorted(trace["spans"], key=lambda s: s["spanID"]) == sorted(
            expected["spans"], key=lambda s: s["spanID"]
        )
        assert trace["processes"] == expected["processes"]
        assert trace["traceID"] == expected["traceID"]


def test_dependencies_and_the_monitor_tabs_metrics_over_http(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        for name in ("checkout", "retry"):
            _, body = _fixture_body(name)
            httpx.post(
                f"{c.url}/v1/traces", content=body, headers={"Content-Type": "application/json"}
            )
        c.flush()
        # the fixtures are in 2023: look back from then
        end_ms = 1_700_000_100_000
        deps = httpx.get(
            f"{c.url}/api/dependencies", params={"endTs": end_ms, "lookback": 3_600_000}
        ).json()
        assert deps["errors"] is None
        links = {(d["parent"], d["child"]): d["callCount"] for d in deps["data"]}
        assert links, deps
        assert all(n >= 1 for n in links.values())
        bad = httpx.get(f"{c.url}/api/dependencies", params={"endTs": "soon"})
        assert bad.status_code == 400
        assert "endTs" in bad.json()["errors"][0]["msg"]

        assert httpx.get(f"{c.url}/api/metrics/minstep").json()["data"] == 1
        service = next(iter(links))[1]
        calls = httpx.get(
            f"{c.url}/api/metrics/calls",
            params={"service": service, "endTs": end_ms, "lookback": 3_600_000, "step": 60_000},
        )
        assert calls.status_code == 200, calls.text
        family = calls.json()
        assert family["name"] == "service_call_rate"
        assert family["type"] == "GAUGE"
        (series,) = family["metrics"]
        assert {"name": "service_name", "value": service} in series["labels"]
        assert len(series["metricPoints"]) == 61
        lat = httpx.get(
            f"{c.url}/api/metrics/latencies", params={"service": service, "quantile": "2"}
        )
        assert lat.status_code == 400
        assert "quantile" in lat.json()["errors"][0]["msg"]
        missing = httpx.get(f"{c.url}/api/metrics/errors")
        assert missing.status_code == 400
        assert "service" in missing.json()["errors"][0]["msg"]
