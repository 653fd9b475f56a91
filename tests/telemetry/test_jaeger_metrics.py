"""Jaeger's dependencies and Monitor-tab APIs (seawall.telemetry.jaeger_metrics).

The parameters follow Jaeger's ``query_parser.go`` (``parseMetricsQueryParams``,
``parseDependenciesQueryParams``) and its messages; the answers are written
as gogo ``jsonpb`` writes Jaeger's ``MetricFamily`` (names in lowerCamelCase,
the enum by name, NaN as a string, timestamps in RFC 3339 with 0, 3, 6 or 9
fractional digits, empty lists left out). The end-to-end cases read a real
``TraceStore`` in ``tmp_path``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from seawall.telemetry.analytics import (
    EdgeStats,
    SpanMetrics,
    SpanMetricSeries,
    SpanMetricsQuery,
    graph,
    span_metrics,
)
from seawall.telemetry.jaeger import ParameterError
from seawall.telemetry.jaeger_metrics import (
    DEFAULT_DEPENDENCY_LOOKBACK_MS,
    DependenciesQuery,
    _double,
    _timestamp,
    dependencies_response,
    metric_family,
    metric_family_json,
    minstep_response,
    parse_dependencies_query,
    parse_metrics_query,
)
from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode
from seawall.telemetry.store import TraceStore

MS = 1_000_000
SECOND = 1_000 * MS
NOW_MS = 1_700_000_001_500  # 2023-11-14T22:13:21.500Z

NAN = math.nan


def params(**values: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in values.items()}


# ------------------------------------------------------------ parameters


def test_metrics_defaults() -> None:
    q = parse_metrics_query("calls", params(service="api"), NOW_MS)
    assert q == SpanMetricsQuery(
        services=("api",),
        end_ns=NOW_MS * MS,
        lookback_ns=3600 * SECOND,
        step_ns=5 * SECOND,
        rate_per_ns=600 * SECOND,
        group_by_operation=False,
        span_kinds=(SpanKind.SERVER,),
    )


def test_metrics_parameters() -> None:
    q = parse_metrics_query(
        "latencies",
        params(
            service=["api", "web"],
            quantile="0.99",
            groupByOperation="T",
            spanKind=["client", "SERVER", "client"],
            endTs="1700000000000",
            lookback="60000",
            step="1000",
            ratePer="30000",
        ),
        NOW_MS,
    )
    assert q.services == ("api", "web")
    assert (q.quantile, q.group_by_operation) == (0.99, True)
    assert q.span_kinds == (SpanKind.CLIENT, SpanKind.SERVER)
    assert (q.end_ns, q.lookback_ns, q.step_ns, q.rate_per_ns) == (
        1_700_000_000_000 * MS,
        60 * SECOND,
        SECOND,
        30 * SECOND,
    )
    # Go's ParseFloat forms; an empty service name is still a service (query["service"])
    for text, value in ((".5", 0.5), ("5e-1", 0.5), ("0x1p-2", 0.25), ("+0.75", 0.75)):
        assert (
            parse_metrics_query("latencies", params(service="", quantile=text), 0).quantile == value
        )
    assert parse_metrics_query("calls", params(service=""), NOW_MS).services == ("",)
    assert not parse_metrics_query(
        "errors", params(service="a", groupByOperation="0"), 0
    ).group_by_operation


@pytest.mark.parametrize(
    ("metric", "query", "param", "message"),
    [
        (
            "latencies",
            {},
            "quantile",
            "unable to parse param 'quantile': strconv.ParseFloat: parsing \"\": invalid syntax",
        ),
        (
            "latencies",
            {"service": "a", "quantile": "high"},
            "quantile",
            "unable to parse param 'quantile': strconv.ParseFloat: parsing \"high\": "
            "invalid syntax",
        ),
        (
            "latencies",
            {"service": "a", "quantile": "1e400"},
            "quantile",
            "unable to parse param 'quantile': strconv.ParseFloat: parsing \"1e400\": "
            "value out of range",
        ),
        (
            "latencies",
            {"service": "a", "quantile": "1.5"},
            "quantile",
            "invalid parameter: quantile must be between 0 and 1 (exclusive), got 1.5",
        ),
        (
            "calls",
            {},
            "service",
            "unable to parse param 'service': please provide at least one service name",
        ),
        (
            "errors",
            {"service": "a", "groupByOperation": "yes"},
            "groupByOperation",
            "unable to parse param 'groupByOperation': strconv.ParseBool: parsing \"yes\": "
            "invalid syntax",
        ),
        (
            "calls",
            {"service": "a", "spanKind": "rpc"},
            "spanKind",
            "unable to parse param 'spanKind': unsupported span kind: 'rpc'",
        ),
        (
            "calls",
            {"service": "a", "endTs": "now"},
            "endTs",
            "unable to parse param 'endTs': strconv.ParseInt: parsing \"now\": invalid syntax",
        ),
        (
            "calls",
            {"service": "a", "endTs": "99999999999999999999"},
            "endTs",
            "unable to parse param 'endTs': strconv.ParseInt: parsing \"99999999999999999999\": "
            "value out of range",
        ),
        (
            "calls",
            {"service": "a", "lookback": "1h"},
            "lookback",
            "unable to parse param 'lookback': strconv.ParseInt: parsing \"1h\": invalid syntax",
        ),
        (
            "calls",
            {"service": "a", "step": "0"},
            "step",
            "invalid parameter: step must be greater than 0",
        ),
        (
            "calls",
            {"service": "a", "ratePer": "-1"},
            "ratePer",
            "invalid parameter: ratePer must be greater than 0",
        ),
        (
            "calls",
            {"service": "a", "lookback": "-1"},
            "lookback",
            "invalid parameter: lookback must not be negative",
        ),
        (
            "calls",
            {"service": "a", "step": "100"},
            "step",
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)",
        ),
    ],
)
def test_metrics_parameter_errors(
    metric: str, query: dict[str, str], param: str, message: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_metrics_query(metric, params(**query), NOW_MS)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert str(caught.value) == message
    assert caught.value.error_status_hint == 400


def test_quantile_is_read_before_the_rest() -> None:
    # Jaeger's latencies handler parses the quantile before the other parameters
    with pytest.raises(ParameterError) as caught:
        parse_metrics_query("latencies", params(spanKind="rpc"), NOW_MS)
    assert caught.value.param == "quantile"


# --------------------------------------------------------------- answers


def small() -> SpanMetrics:
    query = SpanMetricsQuery(
        ("api",), end_ns=NOW_MS * MS, lookback_ns=1000 * MS, step_ns=500 * MS, rate_per_ns=SECOND
    )
    series = SpanMetricSeries(
        service="api",
        operation=None,
        calls=(0, 1, 4),
        errors=(0, 0, 1),
        call_rate=(0.0, 0.5, 2.0),
        error_rate=(NAN, 0.0, 0.25),
        latency_ms=(NAN, 12.5, 1e-07),
    )
    return SpanMetrics(query, query.timestamps_ns, query.window_ns, (series,))


STAMPS = ("2023-11-14T22:13:20.500Z", "2023-11-14T22:13:21Z", "2023-11-14T22:13:21.500Z")


def points(*values: str) -> str:
    return ",".join(
        f'{{"gaugeValue":{{"doubleValue":{v}}},"timestamp":"{t}"}}'
        for v, t in zip(values, STAMPS, strict=True)
    )


def test_metric_family_json_byte_for_byte() -> None:
    def series(*values: str) -> str:
        label = '"labels":[{"name":"service_name","value":"api"}]'
        return '"metrics":[{' + label + ',"metricPoints":[' + points(*values) + "]}]}"

    assert metric_family_json("calls", small()) == (
        '{"name":"service_call_rate","type":"GAUGE","help":"calls/sec, grouped by service",'
        + series("0", "0.5", "2")
    )
    assert metric_family_json("errors", small()) == (
        '{"name":"service_error_rate","type":"GAUGE","help":"error rate, computed as a '
        'fraction of errors/sec over calls/sec, grouped by service",' + series('"NaN"', "0", "0.25")
    )
    assert metric_family_json("latencies", small()) == (
        '{"name":"service_latencies","type":"GAUGE","help":"0.95th quantile latency, '
        'grouped by service",' + series('"NaN"', "12.5", "1e-7")
    )


def test_metric_family_grouped_by_operation_and_empty() -> None:
    m = small()
    query = SpanMetricsQuery(
        ("api",),
        end_ns=m.query.end_ns,
        lookback_ns=m.query.lookback_ns,
        step_ns=m.query.step_ns,
        group_by_operation=True,
        quantile=0.5,
    )
    one = m.series[0]
    by_route = SpanMetricSeries(
        "api", "GET /", one.calls, one.errors, one.call_rate, one.error_rate, one.latency_ms
    )
    grouped = SpanMetrics(query, m.timestamps_ns, m.window_ns, (by_route,))
    family = metric_family("latencies", grouped)
    assert family["name"] == "service_operation_latencies"
    assert family["help"] == "0.50th quantile latency, grouped by service & operation"
    assert family["metrics"][0]["labels"] == [
        {"name": "service_name", "value": "api"},
        {"name": "operation", "value": "GET /"},
    ]
    assert family["metrics"][0]["metricPoints"][0]["gaugeValue"] == {"doubleValue": "NaN"}
    assert metric_family("errors", grouped)["name"] == "service_operation_error_rate"
    # no series: jsonpb leaves the empty list out
    empty = SpanMetrics(query, m.timestamps_ns, m.window_ns, ())
    assert metric_family("calls", empty) == {
        "name": "service_operation_call_rate",
        "type": "GAUGE",
        "help": "calls/sec, grouped by service & operation",
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (2.0, "2"),
        (0.1, "0.1"),
        (123.456, "123.456"),
        (1e-06, "0.000001"),
        (1e-07, "1e-7"),
        (1.5e-10, "1.5e-10"),
        (1e16, "10000000000000000"),
        (1.2345678901234568e20, "123456789012345680000"),
        (1e21, "1e+21"),
        (math.inf, '"Infinity"'),
        (-math.inf, '"-Infinity"'),
        (math.nan, '"NaN"'),
    ],
)
def test_doubles_as_jsonpb_writes_them(value: float, text: str) -> None:
    assert _double(value) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000 * SECOND, "2023-11-14T22:13:20Z"),
        (1_700_000_000 * SECOND + 500 * MS, "2023-11-14T22:13:20.500Z"),
        (1_700_000_000 * SECOND + 1_500, "2023-11-14T22:13:20.000001500Z"),
        (1_700_000_000 * SECOND + 120_000, "2023-11-14T22:13:20.000120Z"),
    ],
)
def test_timestamps_as_jsonpb_writes_them(ns: int, text: str) -> None:
    assert _timestamp(ns) == text


def test_minstep() -> None:
    assert minstep_response() == {"data": 1, "total": 0, "limit": 0, "offset": 0, "errors": None}


# ----------------------------------------------------------- dependencies


def test_dependencies_parameters() -> None:
    q = parse_dependencies_query({}, NOW_MS)
    assert q == DependenciesQuery(NOW_MS * MS, DEFAULT_DEPENDENCY_LOOKBACK_MS * MS, None)
    assert q.start_ns == (NOW_MS - DEFAULT_DEPENDENCY_LOOKBACK_MS) * MS
    q = parse_dependencies_query(params(endTs="1000", lookback="5000", service="orders"), NOW_MS)
    assert (q.end_ns, q.lookback_ns, q.start_ns, q.service) == (1000 * MS, 5000 * MS, 0, "orders")
    # Jaeger takes a negative lookback too: it selects nothing
    assert parse_dependencies_query(params(lookback="-5"), NOW_MS).lookback_ns == 0
    with pytest.raises(ParameterError) as caught:
        parse_dependencies_query(params(endTs="x"), NOW_MS)
    assert caught.value.param == "endTs"
    assert str(caught.value) == (
        "unable to parse param 'endTs': strconv.ParseInt: parsing \"x\": invalid syntax"
    )
    with pytest.raises(ParameterError) as caught:
        parse_dependencies_query(params(lookback="1d"), NOW_MS)
    assert caught.value.param == "lookback"


def edge(caller: str, callee: str, calls: int) -> EdgeStats:
    return EdgeStats(caller, callee, calls, 0, 0.0, 1.0, 1.0, 1.0)


def test_dependencies_response() -> None:
    found = [edge("orders", "payments", 3), edge("gateway", "orders", 7), edge("cart", "db", 1)]
    assert dependencies_response(found) == {
        "data": [
            {"parent": "cart", "child": "db", "callCount": 1},
            {"parent": "gateway", "child": "orders", "callCount": 7},
            {"parent": "orders", "child": "payments", "callCount": 3},
        ],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
    assert [d["parent"] for d in dependencies_response(found, service="orders")["data"]] == [
        "gateway",
        "orders",
    ]
    assert dependencies_response([])["data"] == []


# ------------------------------------------------------------ end to end


def hop(trace: int, at_ms: int, *, error: bool = False) -> list[SpanRow]:
    """web calls api ``at_ms`` after NOW - 60 s: web's CLIENT span (30 ms) and api's
    SERVER span under it (20 ms, from 1 ms later)."""

    def row(sid: int, parent: int | None, service: str, kind: int, start: int, ms: int) -> SpanRow:
        resource = [{"key": "service.name", "value": {"stringValue": service}}]
        return SpanRow(
            trace.to_bytes(16, "big"),
            sid.to_bytes(8, "big"),
            b"" if parent is None else parent.to_bytes(8, "big"),
            service,
            "GET /",
            kind,
            (NOW_MS - 60_000 + start) * MS,
            (NOW_MS - 60_000 + start + ms) * MS,
            StatusCode.ERROR if error and service == "api" else StatusCode.UNSET,
            "",
            1,
            "",
            "[]",
            "[]",
            "[]",
            json.dumps(resource, separators=(",", ":")),
            "{}",
            (f"service.name={service}",),
        )

    return [
        row(1, None, "web", SpanKind.CLIENT, at_ms, 30),
        row(2, 1, "api", SpanKind.SERVER, at_ms + 1, 20),
    ]


def test_from_a_store_to_jaeger_answers(tmp_path: Path) -> None:
    # web calls api four times in the last minute (a CLIENT span in web, a SERVER span in
    # api); the third call failed
    rows = []
    for i, at in enumerate((10_000, 25_000, 40_000, 55_000)):
        rows += hop(i + 1, at, error=i == 2)
    with TraceStore(tmp_path / "spans.db", clock=lambda: NOW_MS / 1000) as store:
        store.insert(rows)
        q = parse_metrics_query(
            "calls",
            params(service="api", lookback="60000", step="30000", ratePer="30000"),
            NOW_MS,
        )
        m = span_metrics(store, q)
        values = [
            p["gaugeValue"]["doubleValue"]
            for p in metric_family("calls", m)["metrics"][0]["metricPoints"]
        ]
        # points at -60 s, -30 s and now; each counts the 30 s before it
        assert values == [0, 2 / 30, 2 / 30]
        errors = metric_family("errors", m)["metrics"][0]["metricPoints"]
        assert [p["gaugeValue"]["doubleValue"] for p in errors] == ["NaN", 0, 0.5]

        d = parse_dependencies_query(params(lookback="60000"), NOW_MS)
        links = dependencies_response(graph(store, d.start_ns, d.end_ns).edges, service=d.service)
        assert links["data"] == [{"parent": "web", "child": "api", "callCount": 4}]
