"""Jaeger's query APIs (seawall.telemetry.jaeger), against hand-written JSON and Go's rules.

The traces come from ``fixtures/span_rows.json`` and the expected UI model
from ``fixtures/jaeger_traces.json``, both written by hand from Jaeger's
rules (``internal/uimodel``, the collector-contrib translator): a checkout
across three services, a retried call, a span with an error and two events,
a span with a link. The parameter tests follow Jaeger's ``query_parser.go``
and the api_v3 gateway; the duration and time tests use the vectors of Go's
``time`` package tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fixture_rows import FIXTURES, TRACES, compact, load_rows

from seawall.telemetry.jaeger import (
    DEFAULT_LIMIT,
    DEFAULT_LOOKBACK_US,
    TRACE_NOT_FOUND,
    V3_NO_TRACES,
    JaegerTraceIds,
    JaegerTraceQuery,
    ParameterError,
    V3Query,
    envelope,
    envelope_json,
    jaeger_trace_id,
    parse_go_duration,
    parse_go_duration_ns,
    parse_rfc3339_ns,
    parse_trace_id,
    parse_trace_lookup,
    parse_trace_query,
    parse_v3_query,
    parse_v3_trace_lookup,
    structured_error,
    to_jaeger_trace,
    to_jaeger_trace_json,
    to_jaeger_traces,
    to_jaeger_traces_json,
    v3_error,
    v3_operations,
    v3_result,
    v3_result_json,
    v3_services,
)
from seawall.telemetry.spans import SpanRow

SECOND = 1_000_000_000
MS = 1_000_000
US = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


def expected(name: str) -> Any:
    return json.loads((FIXTURES / "jaeger_traces.json").read_text())[name]


TRACE = "0af7651916cd43dd8448eb211c80319c"


def row(
    span_id: str = "00000000000000a1",
    *,
    trace_id: str = TRACE,
    parent: str = "",
    service: str = "svc",
    kind: int = 0,
    start_ns: int = 1_000_000,
    end_ns: int = 2_000_000,
    status_code: int = 0,
    status_message: str = "",
    flags: int = 0,
    trace_state: str = "",
    attributes: str = "[]",
    events: str = "[]",
    links: str = "[]",
    resource: str | None = None,
    scope: str = "{}",
) -> SpanRow:
    if resource is None:
        resource = compact([{"key": "service.name", "value": {"stringValue": service}}])
    return SpanRow(
        bytes.fromhex(trace_id),
        bytes.fromhex(span_id),
        bytes.fromhex(parent),
        service,
        "op",
        kind,
        start_ns,
        end_ns,
        status_code,
        status_message,
        flags,
        trace_state,
        attributes,
        events,
        links,
        resource,
        scope,
        (),
    )


def one_span(span: SpanRow) -> dict[str, Any]:
    spans: list[dict[str, Any]] = to_jaeger_trace([span])["spans"]
    assert len(spans) == 1
    return spans[0]


def tags_of(span: SpanRow) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = one_span(span)["tags"]
    return tags


# ============================================================ the UI model


@pytest.mark.parametrize("name", TRACES)
def test_traces_match_the_hand_written_jaeger_json(name: str) -> None:
    assert to_jaeger_trace(load_rows(name)) == expected(name)


@pytest.mark.parametrize("name", TRACES)
def test_the_text_is_the_same_json_byte_for_byte(name: str) -> None:
    # The fixture lists keys in Jaeger's order (uimodel's struct fields, Go's
    # sorted map keys for processes), so its compact dump is the exact text.
    text = to_jaeger_trace_json(load_rows(name))
    assert json.loads(text) == expected(name)
    assert text == compact(expected(name))


def test_keys_come_in_jaegers_order() -> None:
    # uimodel.Span's field order, flags (omitempty) after spanID.
    span = to_jaeger_trace(load_rows("checkout"))["spans"][1]
    assert list(span) == [
        "traceID",
        "spanID",
        "flags",
        "operationName",
        "references",
        "startTime",
        "duration",
        "tags",
        "logs",
        "processID",
        "warnings",
    ]
    assert list(to_jaeger_trace(load_rows("checkout"))) == [
        "traceID",
        "spans",
        "processes",
        "warnings",
    ]


def test_several_traces_are_grouped_in_order_of_first_appearance() -> None:
    retry, link = load_rows("retry"), load_rows("link")
    mixed = [retry[0], link[0], retry[1], retry[2]]
    assert to_jaeger_traces(mixed) == [expected("retry"), expected("link")]
    assert json.loads(to_jaeger_traces_json(mixed)) == [expected("retry"), expected("link")]
    assert to_jaeger_traces([]) == []


def test_no_rows_is_an_empty_trace() -> None:
    assert to_jaeger_trace([]) == {"traceID": "", "spans": [], "processes": {}, "warnings": None}


@pytest.mark.parametrize(
    ("hex_id", "jaeger"),
    [
        # jaeger-idl model/v1/ids.go: %016x of the low half when the high half is 0
        ("00000000000000005b8efff798038103", "5b8efff798038103"),
        ("0000000000000000000000000000002a", "000000000000002a"),
        # else %016x%016x: all 32 digits, leading zeros kept
        ("00000000000000010000000000000000", "00000000000000010000000000000000"),
        ("0af7651916cd43dd8448eb211c80319c", "0af7651916cd43dd8448eb211c80319c"),
    ],
)
def test_trace_id_text(hex_id: str, jaeger: str) -> None:
    assert jaeger_trace_id(bytes.fromhex(hex_id)) == jaeger
    span = one_span(row(trace_id=hex_id))
    assert span["traceID"] == jaeger


def test_span_ids_keep_their_leading_zeros() -> None:
    span = one_span(row("0000000000000001", parent="00000000000000ff"))
    assert span["spanID"] == "0000000000000001"
    assert span["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00000000000000ff"}
    ]


# ----------------------------------------------------------------- processes


def test_one_process_per_service_and_resource_in_order_of_first_appearance() -> None:
    a1 = compact([{"key": "service.name", "value": {"stringValue": "a"}}])
    a2 = compact(
        [
            {"key": "host.name", "value": {"stringValue": "h2"}},
            {"key": "service.name", "value": {"stringValue": "a"}},
        ]
    )
    rows = [
        row("00000000000000b1", service="b"),
        row("00000000000000a1", service="a", resource=a1),
        row("00000000000000a2", service="a", resource=a2),
        row("00000000000000a3", service="a", resource=a1),
        row("00000000000000b2", service="b"),
    ]
    trace = to_jaeger_trace(rows)
    assert [s["processID"] for s in trace["spans"]] == ["p1", "p2", "p3", "p2", "p1"]
    assert trace["processes"] == {
        "p1": {"serviceName": "b", "tags": []},
        "p2": {"serviceName": "a", "tags": []},
        # service.name is left out wherever it stands
        "p3": {"serviceName": "a", "tags": [{"key": "host.name", "type": "string", "value": "h2"}]},
    }


def test_processes_are_written_in_gos_map_key_order() -> None:
    rows = [row(f"00000000000000{i:02x}", service=f"s{i}") for i in range(1, 12)]
    text = to_jaeger_trace_json(rows)
    processes = text[text.index('"processes":') :]
    order = [processes.index(f'"p{i}":') for i in (1, 10, 11, 2, 3, 9)]
    assert order == sorted(order)
    assert list(json.loads(text)["processes"]) == [
        "p1",
        "p10",
        "p11",
        "p2",
        "p3",
        "p4",
        "p5",
        "p6",
        "p7",
        "p8",
        "p9",
    ]


def test_a_resource_without_attributes_has_no_process_tags() -> None:
    trace = to_jaeger_trace([row(service="unknown_service", resource="[]")])
    assert trace["processes"] == {"p1": {"serviceName": "unknown_service", "tags": []}}


# --------------------------------------------------------------------- tags


def attribute(value: dict[str, Any], key: str = "k") -> str:
    return compact([{"key": key, "value": value}])


@pytest.mark.parametrize(
    ("value", "tag_type", "tag_value"),
    [
        ({"stringValue": "GET"}, "string", "GET"),
        ({"boolValue": True}, "bool", True),
        ({"boolValue": False}, "bool", False),
        ({"intValue": "200"}, "int64", 200),
        ({"intValue": "-17"}, "int64", -17),
        # FromDomain: beyond JavaScript's safe integers, the value is a string
        ({"intValue": "9007199254740991"}, "int64", 9007199254740991),
        ({"intValue": "9007199254740992"}, "int64", "9007199254740992"),
        ({"intValue": "-9007199254740991"}, "int64", -9007199254740991),
        ({"intValue": "-9223372036854775808"}, "int64", "-9223372036854775808"),
        ({"doubleValue": 0.25}, "float64", 0.25),
        ({"doubleValue": -1e300}, "float64", -1e300),
        # Go cannot write these at all; we keep OTLP/JSON's spelling
        ({"doubleValue": "NaN"}, "float64", "NaN"),
        ({"doubleValue": "Infinity"}, "float64", "Infinity"),
        ({"doubleValue": "-Infinity"}, "float64", "-Infinity"),
        ({"bytesValue": "AAEC/w=="}, "binary", "AAEC/w=="),
        ({"bytesValue": ""}, "binary", ""),
        # arrays and maps: a string tag holding encoding/json of AsRaw()
        (
            {
                "arrayValue": {
                    "values": [{"intValue": "1"}, {"stringValue": "a"}, {"boolValue": True}]
                }
            },
            "string",
            '[1,"a",true]',
        ),
        ({"arrayValue": {"values": []}}, "string", "[]"),
        (
            {
                "kvlistValue": {
                    "values": [
                        {"key": "zeta", "value": {"doubleValue": 1e-07}},
                        {"key": "alpha", "value": {"stringValue": "<a & b>"}},
                        {"key": "mid", "value": {}},
                        {"key": "raw", "value": {"bytesValue": "AAE="}},
                        {"key": "big", "value": {"doubleValue": 1e16}},
                        {"key": "huge", "value": {"doubleValue": 1e21}},
                        {"key": "small", "value": {"doubleValue": 0.00001}},
                        {"key": "whole", "value": {"doubleValue": 3.0}},
                        {"key": "n", "value": {"intValue": "9007199254740993"}},
                    ]
                }
            },
            "string",
            # keys sorted; <, >, & escaped; Go's float forms; ints stay numbers
            '{"alpha":"\\u003ca \\u0026 b\\u003e","big":10000000000000000,"huge":1e+21,'
            '"mid":null,"n":9007199254740993,"raw":"AAE=","small":0.00001,"whole":3,'
            '"zeta":1e-7}',
        ),
        (
            {"arrayValue": {"values": [{"kvlistValue": {"values": [{"key": "b", "value": {}}]}}]}},
            "string",
            '[{"b":null}]',
        ),
        # json.Marshal fails on NaN and AsString gives ""
        ({"arrayValue": {"values": [{"doubleValue": "NaN"}]}}, "string", ""),
        # the empty value: the zero VType is STRING with an empty VStr
        ({}, "string", ""),
    ],
)
def test_attribute_types(value: dict[str, Any], tag_type: str, tag_value: object) -> None:
    tags = tags_of(row(attributes=attribute(value)))
    assert tags == [{"key": "k", "type": tag_type, "value": tag_value}]
    assert type(tags[0]["value"]) is type(tag_value)


def test_a_repeated_key_is_kept_twice() -> None:
    attrs = compact(
        [
            {"key": "k", "value": {"stringValue": "a"}},
            {"key": "k", "value": {"stringValue": "b"}},
        ]
    )
    assert tags_of(row(attributes=attrs)) == [
        {"key": "k", "type": "string", "value": "a"},
        {"key": "k", "type": "string", "value": "b"},
    ]


@pytest.mark.parametrize(
    ("kind", "name"),
    [(1, "internal"), (2, "server"), (3, "client"), (4, "producer"), (5, "consumer")],
)
def test_span_kind_tag(kind: int, name: str) -> None:
    assert tags_of(row(kind=kind)) == [{"key": "span.kind", "type": "string", "value": name}]


@pytest.mark.parametrize("kind", [0, 6])
def test_no_span_kind_tag_for_an_unspecified_or_unknown_kind(kind: int) -> None:
    assert tags_of(row(kind=kind)) == []


@pytest.mark.parametrize(
    ("code", "message", "tags"),
    [
        (0, "", []),
        (1, "", [{"key": "otel.status_code", "type": "string", "value": "OK"}]),
        (
            2,
            "",
            [
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": True},
            ],
        ),
        # the description goes with any status that has a message
        (0, "why", [{"key": "otel.status_description", "type": "string", "value": "why"}]),
        (
            1,
            "fine",
            [
                {"key": "otel.status_code", "type": "string", "value": "OK"},
                {"key": "otel.status_description", "type": "string", "value": "fine"},
            ],
        ),
    ],
)
def test_status_tags(code: int, message: str, tags: list[dict[str, Any]]) -> None:
    assert tags_of(row(status_code=code, status_message=message)) == tags


def test_the_order_of_all_the_generated_tags() -> None:
    span = row(
        kind=3,
        status_code=2,
        status_message="reset",
        trace_state="a=1",
        attributes=attribute({"stringValue": "v"}),
        scope=compact({"name": "lib", "version": "2.0", "attributes": [{"key": "x", "value": {}}]}),
    )
    assert [(t["key"], t["value"]) for t in tags_of(span)] == [
        ("otel.scope.name", "lib"),
        ("otel.scope.version", "2.0"),
        ("k", "v"),
        ("span.kind", "client"),
        ("otel.status_code", "ERROR"),
        ("error", True),
        ("otel.status_description", "reset"),
        ("w3c.tracestate", "a=1"),
    ]


@pytest.mark.parametrize(
    ("scope", "tags"),
    [
        ({}, []),
        ({"name": "", "version": ""}, []),
        ({"version": "1"}, [{"key": "otel.scope.version", "type": "string", "value": "1"}]),
    ],
)
def test_scope_tags(scope: dict[str, str], tags: list[dict[str, Any]]) -> None:
    assert tags_of(row(scope=compact(scope))) == tags


# -------------------------------------------------------------------- flags


@pytest.mark.parametrize(("flags", "jaeger"), [(0x01, 1), (0x03, 1), (0xFF, 1)])
def test_the_sampled_flag_crosses_over(flags: int, jaeger: int) -> None:
    assert one_span(row(flags=flags))["flags"] == jaeger


@pytest.mark.parametrize("flags", [0x00, 0x02])
def test_flags_without_the_sampled_bit_are_left_out(flags: int) -> None:
    assert "flags" not in one_span(row(flags=flags))


# --------------------------------------------------------------------- time


def test_times_are_truncated_to_microseconds() -> None:
    span = one_span(row(start_ns=1_700_000_000_000_000_999, end_ns=1_700_000_000_000_002_998))
    assert span["startTime"] == 1_700_000_000_000_000
    # the duration is cut from the nanoseconds, not from the cut times
    assert span["duration"] == 1


def test_a_negative_duration_is_zero() -> None:
    assert one_span(row(start_ns=5_000_000, end_ns=4_000_000))["duration"] == 0


# --------------------------------------------------------------------- logs


def test_an_event_with_its_own_event_attribute_gets_no_name_field() -> None:
    events = compact(
        [
            {
                "timeUnixNano": "1500999",
                "name": "ignored",
                "attributes": [{"key": "event", "value": {"stringValue": "mine"}}],
            },
            {"timeUnixNano": "1600000", "name": "", "attributes": []},
            {"timeUnixNano": "1700000", "name": "plain", "attributes": []},
        ]
    )
    assert one_span(row(events=events))["logs"] == [
        {"timestamp": 1500, "fields": [{"key": "event", "type": "string", "value": "mine"}]},
        {"timestamp": 1600, "fields": []},
        {"timestamp": 1700, "fields": [{"key": "event", "type": "string", "value": "plain"}]},
    ]


# --------------------------------------------------------------- references


def link(trace_id: str, span_id: str, ref_type: str | None = None) -> dict[str, Any]:
    attributes = []
    if ref_type is not None:
        attributes = [{"key": "opentracing.ref_type", "value": {"stringValue": ref_type}}]
    return {"traceId": trace_id, "spanId": span_id, "traceState": "", "attributes": attributes}


def test_links_become_follows_from_unless_they_say_child_of() -> None:
    other = "000000000000000000000000000000e1"
    links = compact(
        [
            link(other, "00000000000000f1"),
            link(other, "00000000000000f2", "child_of"),
            link(other, "00000000000000f3", "follows_from"),
        ]
    )
    assert one_span(row(parent="00000000000000c1", links=links))["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00000000000000c1"},
        # the link's trace id is written the Jaeger way too (high half zero)
        {"refType": "FOLLOWS_FROM", "traceID": "00000000000000e1", "spanID": "00000000000000f1"},
        {"refType": "CHILD_OF", "traceID": "00000000000000e1", "spanID": "00000000000000f2"},
        {"refType": "FOLLOWS_FROM", "traceID": "00000000000000e1", "spanID": "00000000000000f3"},
    ]


def test_a_link_to_the_parent_retypes_the_parent_reference() -> None:
    # makeJaegerProtoReferences: no second reference, the first one takes the
    # link's type -- FOLLOWS_FROM when the link does not say child_of.
    links = compact([link(TRACE, "00000000000000c1")])
    assert one_span(row(parent="00000000000000c1", links=links))["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": TRACE, "spanID": "00000000000000c1"}
    ]
    links = compact([link(TRACE, "00000000000000c1", "child_of")])
    assert one_span(row(parent="00000000000000c1", links=links))["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00000000000000c1"}
    ]


def test_a_link_to_the_parents_span_id_in_another_trace_is_a_reference_of_its_own() -> None:
    other = "ffffffffffffffffffffffffffffffff"
    links = compact([link(other, "00000000000000c1")])
    assert one_span(row(parent="00000000000000c1", links=links))["references"] == [
        {"refType": "CHILD_OF", "traceID": TRACE, "spanID": "00000000000000c1"},
        {"refType": "FOLLOWS_FROM", "traceID": other, "spanID": "00000000000000c1"},
    ]


def test_an_all_zero_parent_is_no_parent() -> None:
    assert one_span(row(parent="0000000000000000"))["references"] == []


# ================================================================ envelopes


def test_envelope_of_a_search() -> None:
    assert envelope([expected("link")]) == {
        "data": [expected("link")],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }


def test_envelope_of_services() -> None:
    assert envelope(["a", "b"], total=2) == {
        "data": ["a", "b"],
        "total": 2,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }


def test_envelope_of_an_error() -> None:
    # handleError: {"data":null,...,"errors":[{"code":400,"msg":...}]}
    answer = envelope(None, errors=[structured_error("parameter 'service' is required", code=400)])
    assert answer == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 400, "msg": "parameter 'service' is required"}],
    }
    assert envelope([], errors=[]) == {
        "data": [],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [],
    }


def test_structured_error_of_a_trace_not_found() -> None:
    # tracesByIDs: code and traceID are omitempty
    error = structured_error(
        TRACE_NOT_FOUND, trace_id=bytes.fromhex("00000000000000005b8efff798038103")
    )
    assert error == {"msg": "trace not found", "traceID": "5b8efff798038103"}
    error = structured_error("x", code=404, trace_id=bytes.fromhex(TRACE))
    assert list(error) == ["code", "msg", "traceID"]


def test_envelope_json_splices_the_data() -> None:
    text = envelope_json(to_jaeger_traces_json(load_rows("retry")))
    assert json.loads(text) == envelope([expected("retry")])
    assert text.endswith(',"total":0,"limit":0,"offset":0,"errors":null}')
    error = envelope_json("null", errors=[structured_error("no", code=500)])
    assert (
        error == '{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":500,"msg":"no"}]}'
    )
    assert json.loads(envelope_json('["a"]', total=1)) == envelope(["a"], total=1)


def test_v3_result() -> None:
    rows = load_rows("link")
    answer = v3_result(rows)
    assert list(answer) == ["result"]
    assert list(answer["result"]) == ["resourceSpans"]
    assert answer["result"]["resourceSpans"][0]["resource"] == {
        "attributes": [{"key": "service.name", "value": {"stringValue": "notifier"}}]
    }
    assert json.loads(v3_result_json(rows)) == answer
    assert v3_result_json([]) == '{"result":{"resourceSpans":[]}}'


def test_v3_error() -> None:
    assert v3_error(404, V3_NO_TRACES) == {"error": {"httpCode": 404, "message": "No traces found"}}
    assert v3_error(400, "malformed parameter query.duration_min: x") == {
        "error": {"httpCode": 400, "message": "malformed parameter query.duration_min: x"}
    }


def test_v3_services_and_operations() -> None:
    assert v3_services(["gateway", "orders"]) == {"services": ["gateway", "orders"]}
    assert v3_services([]) == {}  # jsonpb leaves the empty list out
    assert v3_operations([("GET /", "server"), ("work", "")]) == {
        "operations": [
            {"name": "GET /", "spanKind": "server"},
            {"name": "work", "spanKind": "internal"},
        ]
    }
    assert v3_operations([]) == {}
    assert v3_operations([("", "client")]) == {"operations": [{"spanKind": "client"}]}


# ====================================================== /api/traces params

NOW_US = 1_700_000_000_000_000


def q(**params: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


def search(**params: str | list[str]) -> JaegerTraceQuery:
    result = parse_trace_query(q(**params), NOW_US)
    assert isinstance(result, JaegerTraceQuery)
    return result


def refused(param: str, **params: str | list[str]) -> str:
    with pytest.raises(ParameterError) as info:
        parse_trace_query(q(**params), NOW_US)
    assert info.value.param == param
    assert param in str(info.value)
    assert info.value.error_status_hint == 400
    return str(info.value)


def test_defaults() -> None:
    assert search(service="orders") == JaegerTraceQuery(
        service="orders",
        operation=None,
        attributes={},
        start_min_ns=(NOW_US - 2 * 24 * 3600 * 1_000_000) * 1000,
        start_max_ns=NOW_US * 1000,
        min_duration_ns=None,
        max_duration_ns=None,
        limit=100,
    )
    assert DEFAULT_LIMIT == 100
    assert DEFAULT_LOOKBACK_US == 172_800_000_000


def test_every_parameter() -> None:
    assert search(
        service="orders",
        operation="POST /charge",
        start="1699999990000000",
        end="1700000000000000",
        minDuration="1.5ms",
        maxDuration="2s",
        limit="20",
        tag=["http.route:/charge", "error:true"],
        tags='{"peer.service":"payments"}',
    ) == JaegerTraceQuery(
        service="orders",
        operation="POST /charge",
        attributes={"http.route": "/charge", "error": "true", "peer.service": "payments"},
        start_min_ns=1_699_999_990_000_000_000,
        start_max_ns=1_700_000_000_000_000_000,
        min_duration_ns=1_500_000,
        max_duration_ns=2 * SECOND,
        limit=20,
    )


def test_the_lookback_window_is_a_setting() -> None:
    result = parse_trace_query(q(service="s"), NOW_US, lookback_us=3_600_000_000)
    assert isinstance(result, JaegerTraceQuery)
    assert result.start_min_ns == (NOW_US - 3_600_000_000) * 1000


def test_only_start_or_only_end() -> None:
    got = search(service="s", end=str(NOW_US - 1000))
    assert (got.start_min_ns, got.start_max_ns) == (
        (NOW_US - DEFAULT_LOOKBACK_US) * 1000,
        (NOW_US - 1000) * 1000,
    )
    got = search(service="s", start="1699999999000000")
    assert (got.start_min_ns, got.start_max_ns) == (1_699_999_999_000_000_000, NOW_US * 1000)
    # an end older than the default start is refused, as Jaeger does
    assert refused("start", service="s", end="1000").startswith("invalid parameter: start time")


@pytest.mark.parametrize("lookback", ["1h", "2d", "custom", "nonsense"])
def test_lookback_is_ignored_as_jaeger_ignores_it(lookback: str) -> None:
    assert search(service="s", lookback=lookback) == search(service="s")


def test_a_tag_splits_at_the_first_colon() -> None:
    assert search(service="s", tag="db.statement:select a::int").attributes == {
        "db.statement": "select a::int"
    }
    assert search(service="s", tag="empty:").attributes == {"empty": ""}


def test_tags_json_is_merged_after_tag_and_wins() -> None:
    got = search(service="s", tag=["a:1", "b:2"], tags=['{"b":"3","c":"4"}', '{"c":"5"}', "null"])
    assert got.attributes == {"a": "1", "b": "3", "c": "5"}


def test_the_first_value_counts_and_an_empty_one_is_absent() -> None:
    got = search(service=["orders", "other"], limit=["", "5"], operation="")
    assert (got.service, got.limit, got.operation) == ("orders", 100, None)


def test_zero_durations_are_no_bound() -> None:
    got = search(service="s", minDuration="0", maxDuration="0s")
    assert (got.min_duration_ns, got.max_duration_ns) == (None, None)
    got = search(service="s", minDuration="1s", maxDuration="0")  # Jaeger skips the check
    assert (got.min_duration_ns, got.max_duration_ns) == (SECOND, None)


def test_trace_ids() -> None:
    result = parse_trace_query(
        q(
            traceID=[
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "5B8EFFF798038103",
                "4bf92f3577b34da6a3ce929d0e0e4736",
            ]
        ),
        NOW_US,
    )
    assert result == JaegerTraceIds(
        (
            bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
            bytes.fromhex("00000000000000005b8efff798038103"),
            bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
        start_min_ns=None,
        start_max_ns=None,
    )


def test_trace_ids_with_a_window_and_a_service() -> None:
    result = parse_trace_query(
        q(traceID="abc", service="ignored", start="1000", end="2000"), NOW_US
    )
    assert result == JaegerTraceIds(
        (bytes.fromhex("00000000000000000000000000000abc"),),
        start_min_ns=1_000_000,
        start_max_ns=2_000_000,
    )


def test_service_is_required_without_trace_ids() -> None:
    assert refused("service") == "parameter 'service' is required"
    assert refused("service", service="", operation="x") == "parameter 'service' is required"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "unable to parse param 'limit': strconv.ParseInt: parsing \"abc\": invalid syntax"),
        ("1.5", "unable to parse param 'limit': strconv.ParseInt: parsing \"1.5\": invalid syntax"),
        (
            "2147483648",
            "unable to parse param 'limit': strconv.ParseInt: parsing \"2147483648\": "
            "value out of range",
        ),
        ("0", "invalid parameter: limit must be greater than 0"),
        ("-5", "invalid parameter: limit must be greater than 0"),
    ],
)
def test_bad_limit(value: str, message: str) -> None:
    assert refused("limit", service="s", limit=value) == message


def test_limit_accepts_a_sign_and_int32() -> None:
    assert search(service="s", limit="+7").limit == 7
    assert search(service="s", limit="2147483647").limit == 2147483647


@pytest.mark.parametrize("param", ["start", "end"])
@pytest.mark.parametrize("value", ["yesterday", "1.5", "0x10", "1_000", "9223372036854775808"])
def test_bad_times(param: str, value: str) -> None:
    message = refused(param, service="s", **{param: value})
    assert message.startswith(f"unable to parse param '{param}': strconv.ParseInt: parsing")


def test_start_after_end() -> None:
    assert (
        refused("start", service="s", start="2000", end="1000")
        == "invalid parameter: start time must be before end time"
    )
    assert search(service="s", start="1000", end="1000").start_min_ns == 1_000_000


@pytest.mark.parametrize("param", ["minDuration", "maxDuration"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("fast", 'time: invalid duration "fast"'),
    ],
)
def test_bad_durations(param: str, value: str, reason: str) -> None:
    assert (
        refused(param, service="s", **{param: value})
        == f"unable to parse param '{param}': {reason}"
    )


def test_max_duration_below_min_duration() -> None:
    assert (
        refused("maxDuration", service="s", minDuration="2s", maxDuration="1s")
        == "'maxDuration' should be greater than 'minDuration'"
    )
    got = search(service="s", minDuration="1s", maxDuration="1000ms")
    assert got.min_duration_ns == got.max_duration_ns == SECOND


def test_bad_tag() -> None:
    assert (
        refused("tag", service="s", tag=["ok:1", "http.route"])
        == "malformed 'tag' parameter, expecting key:value, received: http.route"
    )
    refused("tag", service="s", tag="")


@pytest.mark.parametrize("value", ["{", "[1]", '"a"', '{"a":1}', '{"a":null}', '{"a":"b"} x'])
def test_bad_tags(value: str) -> None:
    message = refused("tags", service="s", tags=value)
    assert message.startswith("malformed 'tags' parameter, cannot unmarshal JSON: ")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", 'strconv.ParseUint: parsing "": invalid syntax'),
        ("xyz", 'strconv.ParseUint: parsing "xyz": invalid syntax'),
        ("-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        # 17 to 32 digits: the high part is read first
        ("g0000000000000000", 'strconv.ParseUint: parsing "g": invalid syntax'),
        ("10000000000000000z", 'strconv.ParseUint: parsing "000000000000000z": invalid syntax'),
        ("1" * 33, f"TraceID cannot be longer than 32 hex characters: {'1' * 33}"),
    ],
)
def test_bad_trace_id(value: str, reason: str) -> None:
    assert refused("traceID", traceID=["abc", value]) == f"cannot parse traceID param: {reason}"


def test_parse_trace_id() -> None:
    assert parse_trace_id("1") == bytes(15) + b"\x01"
    assert parse_trace_id("ABCDEF0123456789abcdef0123456789") == bytes.fromhex(
        "abcdef0123456789abcdef0123456789"
    )
    with pytest.raises(ParameterError) as info:
        parse_trace_id("zz", param="trace")
    assert info.value.param == "trace"


def test_the_checks_run_in_jaegers_order() -> None:
    # parse errors come before validation: a bad start beats a missing service
    assert refused("start", start="x").startswith("unable to parse param 'start'")
    assert refused("tag", tag="x", limit="0").startswith("malformed 'tag'")
    assert refused("limit", limit="x", minDuration="x").startswith("unable to parse param 'limit'")
    assert refused("service", limit="0") == "parameter 'service' is required"


def test_parse_trace_lookup() -> None:
    assert parse_trace_lookup("5b8efff798038103", {}) == JaegerTraceIds(
        (bytes.fromhex("00000000000000005b8efff798038103"),)
    )
    assert parse_trace_lookup(TRACE, q(start="10", end="20")) == JaegerTraceIds(
        (bytes.fromhex(TRACE),), start_min_ns=10_000, start_max_ns=20_000
    )
    with pytest.raises(ParameterError) as info:
        parse_trace_lookup("not-hex", {})
    assert info.value.param == "traceID"
    with pytest.raises(ParameterError) as info:
        parse_trace_lookup(TRACE, q(end="soon"))
    assert info.value.param == "end"


# ================================================================== api_v3

WINDOW = {
    "query.start_time_min": "2024-01-01T00:00:00Z",
    "query.start_time_max": "2024-01-01T01:00:00Z",
}
JAN1 = 1_704_067_200 * SECOND  # 2024-01-01T00:00:00Z


def v3(**params: str) -> V3Query:
    return parse_v3_query(q(**(WINDOW | params)))


def v3_refused(param: str, params: dict[str, str]) -> str:
    with pytest.raises(ParameterError) as info:
        parse_v3_query(q(**params))
    assert info.value.param == param
    assert param in str(info.value)
    return str(info.value)


def test_v3_defaults() -> None:
    assert v3() == V3Query(
        service=None,
        operation=None,
        attributes={},
        start_min_ns=JAN1,
        start_max_ns=JAN1 + HOUR,
        min_duration_ns=None,
        max_duration_ns=None,
        limit=100,
    )


def test_v3_every_parameter_in_snake_case() -> None:
    got = v3(
        **{
            "query.service_name": "orders",
            "query.operation_name": "POST /charge",
            "query.duration_min": "10ms",
            "query.duration_max": "1m30s",
            "query.search_depth": "25",
            "query.attributes": '{"http.route":"/charge","error":"true"}',
        }
    )
    assert got == V3Query(
        service="orders",
        operation="POST /charge",
        attributes={"http.route": "/charge", "error": "true"},
        start_min_ns=JAN1,
        start_max_ns=JAN1 + HOUR,
        min_duration_ns=10 * MS,
        max_duration_ns=90 * SECOND,
        limit=25,
    )


def test_v3_every_parameter_in_camel_case() -> None:
    got = parse_v3_query(
        q(
            **{
                "query.serviceName": "orders",
                "query.operationName": "op",
                "query.startTimeMin": "2024-01-01T00:00:00.000000001Z",
                "query.startTimeMax": "2024-01-01T02:00:00+01:00",
                "query.durationMin": "1us",
                "query.durationMax": "1µs",
                "query.searchDepth": "7",
            }
        )
    )
    assert got == V3Query(
        service="orders",
        operation="op",
        start_min_ns=JAN1 + 1,
        start_max_ns=JAN1 + HOUR,
        min_duration_ns=US,
        max_duration_ns=US,
        limit=7,
    )


def test_v3_camel_case_wins_over_snake_case() -> None:
    got = v3(**{"query.serviceName": "new", "query.service_name": "old"})
    assert got.service == "new"
    got = v3(**{"query.num_traces": "3", "query.search_depth": "4", "query.searchDepth": "5"})
    assert got.limit == 5
    assert v3(**{"query.num_traces": "3", "query.search_depth": "4"}).limit == 4
    assert v3(**{"query.num_traces": "3"}).limit == 3


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "query.start_time_min"),
        ({"query.start_time_max": "2024-01-01T00:00:00Z"}, "query.start_time_min"),
        ({"query.startTimeMin": "2024-01-01T00:00:00Z"}, "query.start_time_max"),
    ],
)
def test_v3_both_times_are_required(params: dict[str, str], param: str) -> None:
    assert v3_refused(param, params) == "query.start_time_min and query.start_time_max are required"


@pytest.mark.parametrize("name", ["query.start_time_min", "query.startTimeMax"])
@pytest.mark.parametrize("value", ["2024-01-01", "1704067200", "2024-01-01 00:00:00Z", "now"])
def test_v3_bad_times(name: str, value: str) -> None:
    message = v3_refused(name, WINDOW | {name: value})
    assert message.startswith(f"malformed parameter {name}: parsing time ")


def test_v3_start_after_end() -> None:
    message = v3_refused(
        "query.startTimeMin",
        {
            "query.startTimeMin": "2024-01-01T00:00:01Z",
            "query.start_time_max": "2024-01-01T00:00:00Z",
        },
    )
    assert message == "invalid parameter: query.startTimeMin must not be after query.start_time_max"


@pytest.mark.parametrize("name", ["query.duration_min", "query.durationMax"])
def test_v3_bad_durations(name: str) -> None:
    assert (
        v3_refused(name, WINDOW | {name: "1d"})
        == f'malformed parameter {name}: time: unknown unit "d" in duration "1d"'
    )


def test_v3_max_duration_below_min() -> None:
    message = v3_refused(
        "query.duration_max", WINDOW | {"query.duration_min": "2s", "query.duration_max": "1s"}
    )
    assert message == "invalid parameter: query.duration_max must not be below query.duration_min"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "query.search_depth",
            "-1",
            "malformed parameter query.search_depth: "
            'strconv.ParseUint: parsing "-1": invalid syntax',
        ),
        (
            "query.num_traces",
            "ten",
            "malformed parameter query.num_traces: "
            'strconv.ParseUint: parsing "ten": invalid syntax',
        ),
        (
            "query.searchDepth",
            "4294967296",
            'malformed parameter query.searchDepth: strconv.ParseUint: parsing "4294967296": '
            "value out of range",
        ),
        ("query.searchDepth", "0", "invalid parameter: query.searchDepth must be greater than 0"),
    ],
)
def test_v3_bad_search_depth(name: str, value: str, message: str) -> None:
    assert v3_refused(name, WINDOW | {name: value}) == message


@pytest.mark.parametrize("value", ["a:b", "{", '{"a":1}', "[]"])
def test_v3_bad_attributes(value: str) -> None:
    message = v3_refused("query.attributes", WINDOW | {"query.attributes": value})
    assert message.startswith("malformed parameter query.attributes: ")


def test_v3_trace_lookup() -> None:
    assert parse_v3_trace_lookup(TRACE, {}) == JaegerTraceIds((bytes.fromhex(TRACE),))
    got = parse_v3_trace_lookup(
        "5b8efff798038103", q(start_time="2024-01-01T00:00:00Z", endTime="2024-01-01T00:00:00.5Z")
    )
    assert got == JaegerTraceIds(
        (bytes.fromhex("00000000000000005b8efff798038103"),),
        start_min_ns=JAN1,
        start_max_ns=JAN1 + 500 * MS,
    )
    with pytest.raises(ParameterError) as info:
        parse_v3_trace_lookup("xyz", {})
    assert info.value.param == "trace_id"
    assert (
        str(info.value)
        == 'malformed parameter trace_id: strconv.ParseUint: parsing "xyz": invalid syntax'
    )
    with pytest.raises(ParameterError) as info:
        parse_v3_trace_lookup(TRACE, q(endTime="tomorrow"))
    assert info.value.param == "endTime"


# ===================================================== Go's time.ParseDuration

# The vectors of Go's own tests (src/time/time_test.go, parseDurationTests).
GO_DURATIONS = [
    ("0", 0),
    ("5s", 5 * SECOND),
    ("30s", 30 * SECOND),
    ("1478s", 1478 * SECOND),
    ("-5s", -5 * SECOND),
    ("+5s", 5 * SECOND),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * SECOND),
    ("5.6s", 5 * SECOND + 600 * MS),
    ("5.s", 5 * SECOND),
    (".5s", 500 * MS),
    ("1.0s", SECOND),
    ("1.00s", SECOND),
    ("1.004s", SECOND + 4 * MS),
    ("1.0040s", SECOND + 4 * MS),
    ("100.00100s", 100 * SECOND + MS),
    ("10ns", 10),
    ("11us", 11 * US),
    ("12µs", 12 * US),  # U+00B5
    ("12μs", 12 * US),  # U+03BC
    ("13ms", 13 * MS),
    ("14s", 14 * SECOND),
    ("15m", 15 * MINUTE),
    ("16h", 16 * HOUR),
    ("3h30m", 3 * HOUR + 30 * MINUTE),
    ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500 * MS),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400 * MS)),
    ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4 * MS + 5 * US + 6),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MS),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * MINUTE),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("0.100000000000000000000h", 6 * MINUTE),
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372539827),
    # and the forms the brief and Jaeger's UI hint name
    ("1.2s", SECOND + 200 * MS),
    ("300ms", 300 * MS),
    ("1h2m", HOUR + 2 * MINUTE),
    ("500us", 500 * US),
]


@pytest.mark.parametrize(("text", "ns"), GO_DURATIONS)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns


# parseDurationErrorTests, plus Go's exact messages for the three kinds.
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("3", 'time: missing unit in duration "3"'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        ("-.", 'time: invalid duration "-."'),
        (".s", 'time: invalid duration ".s"'),
        ("+.s", 'time: invalid duration "+.s"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("\ufffd", 'time: invalid duration "\\xef\\xbf\\xbd"'),
        (
            "\ufffd hello \ufffd world",
            'time: invalid duration "\\xef\\xbf\\xbd hello \\xef\\xbf\\xbd world"',
        ),
        ("9223372036854775810ns", 'time: invalid duration "9223372036854775810ns"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
        ("9223372036854776us", 'time: invalid duration "9223372036854776us"'),
        ("3000000h", 'time: invalid duration "3000000h"'),
        ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
        ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
        ("1S", 'time: unknown unit "S" in duration "1S"'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("1s ", 'time: unknown unit "s " in duration "1s "'),
        ("1µ", 'time: unknown unit "\\xc2\\xb5" in duration "1\\xc2\\xb5"'),
        ('1"s', 'time: unknown unit "\\"s" in duration "1\\"s"'),
        ("--1s", 'time: invalid duration "--1s"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        ("١s", 'time: invalid duration "\\xd9\\xa1s"'),  # not an ASCII digit
    ],
)
def test_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_go_duration_ns(text)
    assert str(info.value) == message


def test_go_duration_in_seconds() -> None:
    assert parse_go_duration("1.5s") == 1.5
    assert parse_go_duration("300ms") == 0.3
    assert parse_go_duration("-1h") == -3600.0
    assert parse_go_duration("0") == 0.0


# ======================================================== RFC 3339 (Go's way)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("1969-12-31T23:59:59.999999999Z", -1),
        ("2024-01-01T00:00:00Z", JAN1),
        ("2024-01-01T02:00:00+02:00", JAN1),
        ("2023-12-31T19:00:00-05:00", JAN1),
        ("2024-01-01T00:00:00+00:00", JAN1),
        ("2024-01-01T05:30:00.25+05:30", JAN1 + 250 * MS),
        # 2024-02-29 is 59 days after January 1st
        (
            "2024-02-29T12:30:15.5Z",
            JAN1 + 59 * 86400 * SECOND + (12 * 3600 + 30 * 60 + 15) * SECOND + 500 * MS,
        ),
        # a fraction longer than nanoseconds is cut, not rounded
        ("1970-01-01T00:00:00.1234567899Z", 123456789),
        ("1970-01-01T00:00:00.5Z", 500 * MS),
        # Go's year 0 is a leap year, 366 days before year 1 (-62135596800 s)
        ("0000-01-01T00:00:00Z", (-62135596800 - 366 * 86400) * SECOND),
        ("9999-12-31T23:59:59Z", 253402300799 * SECOND),
        ("2024-01-01T00:00:00-23:59", JAN1 + (23 * 3600 + 59 * 60) * SECOND),
    ],
)
def test_rfc3339(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-01",
        "2024-01-01T00:00:00",  # no offset
        "2024-01-01t00:00:00Z",  # lower-case T
        "2024-01-01T00:00:00z",  # lower-case Z
        "2024-01-01 00:00:00Z",
        "2024-01-01T0:00:00Z",  # Go's fallback parser would take it; the strict path does not
        "2024-01-01T00:00:00,5Z",
        "2024-01-01T00:00:00.Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00 +01:00",
        "12024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z ",
        "２０24-01-01T00:00:00Z",  # fullwidth digits
    ],
)
def test_rfc3339_refused(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rfc3339_ns(text)
    assert str(info.value).startswith("parsing time ")
