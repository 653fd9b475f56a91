"""Stored spans back to OTLP JSON (seawall.telemetry.otlpjson), against hand-written JSON.

The rows come from ``fixtures/span_rows.json`` and the expected
``resourceSpans`` from ``fixtures/otlp_traces.json``, both written by hand:
a checkout across three services, a retried call, a span with an error and
two events, a span with a link.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fixture_rows import FIXTURES, TRACES, compact, load_rows

from seawall.telemetry.otlpjson import attribute_value, resource_spans, resource_spans_json
from seawall.telemetry.spans import SpanRow


def expected(name: str) -> Any:
    return json.loads((FIXTURES / "otlp_traces.json").read_text())[name]


def row(
    span_id: str = "00000000000000a1",
    *,
    trace_id: str = "0af7651916cd43dd8448eb211c80319c",
    parent: str = "",
    name: str = "op",
    kind: int = 1,
    status_code: int = 0,
    status_message: str = "",
    flags: int = 0,
    trace_state: str = "",
    resource: str = '[{"key":"service.name","value":{"stringValue":"svc"}}]',
    scope: str = '{"name":"lib"}',
) -> SpanRow:
    return SpanRow(
        bytes.fromhex(trace_id),
        bytes.fromhex(span_id),
        bytes.fromhex(parent),
        "svc",
        name,
        kind,
        1000,
        2000,
        status_code,
        status_message,
        flags,
        trace_state,
        "[]",
        "[]",
        "[]",
        resource,
        scope,
        (),
    )


# ------------------------------------------------------------------ the traces


@pytest.mark.parametrize("name", TRACES)
def test_resource_spans_match_the_hand_written_json(name: str) -> None:
    assert resource_spans(load_rows(name)) == expected(name)


@pytest.mark.parametrize("name", TRACES)
def test_the_spliced_text_is_the_same_json_byte_for_byte(name: str) -> None:
    # The fixture lists every object's keys in the proto's field order, so the
    # compact dump of it is the exact text a handler should send.
    text = resource_spans_json(load_rows(name))
    assert json.loads(text) == expected(name)
    assert text == compact(expected(name))


def test_rows_are_grouped_by_resource_then_scope_in_order_of_first_appearance() -> None:
    other = '[{"key":"service.name","value":{"stringValue":"other"}}]'
    rows = [
        row("00000000000000a1", scope='{"name":"one"}'),
        row("00000000000000a2", resource=other),
        row("00000000000000a3", scope='{"name":"two"}'),
        row("00000000000000a4", scope='{"name":"one"}'),
        row("00000000000000a5", resource=other),
    ]
    got = resource_spans(rows)
    assert [
        [(s["scope"], [span["spanId"] for span in s["spans"]]) for s in r["scopeSpans"]]
        for r in got
    ] == [
        [
            ({"name": "one"}, ["00000000000000a1", "00000000000000a4"]),
            ({"name": "two"}, ["00000000000000a3"]),
        ],
        [({"name": "lib"}, ["00000000000000a2", "00000000000000a5"])],
    ]
    assert json.loads(resource_spans_json(rows)) == got


def test_defaults_are_left_out_and_status_is_always_written() -> None:
    span = row(kind=0, resource="[]", scope="{}")
    assert resource_spans([span]) == [
        {
            "resource": {},
            "scopeSpans": [
                {
                    "scope": {},
                    "spans": [
                        {
                            "traceId": "0af7651916cd43dd8448eb211c80319c",
                            "spanId": "00000000000000a1",
                            "name": "op",
                            "startTimeUnixNano": "1000",
                            "endTimeUnixNano": "2000",
                            "status": {},
                        }
                    ],
                }
            ],
        }
    ]
    assert resource_spans_json([span]) == (
        '[{"resource":{},"scopeSpans":[{"scope":{},"spans":[{"traceId":'
        '"0af7651916cd43dd8448eb211c80319c","spanId":"00000000000000a1","name":"op",'
        '"startTimeUnixNano":"1000","endTimeUnixNano":"2000","status":{}}]}]}]'
    )


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        (0, "", {}),
        (1, "", {"code": 1}),
        (2, "", {"code": 2}),
        (0, "odd but kept", {"message": "odd but kept"}),
        (2, "boom", {"message": "boom", "code": 2}),
    ],
)
def test_status(code: int, message: str, status: dict[str, Any]) -> None:
    span = row(status_code=code, status_message=message)
    assert resource_spans([span])[0]["scopeSpans"][0]["spans"][0]["status"] == status
    text = resource_spans_json([span])
    assert json.loads(text)[0]["scopeSpans"][0]["spans"][0]["status"] == status


def test_strings_are_escaped_in_the_spliced_text() -> None:
    span = row(name='say "hi"\n\\ ünïcode \u2028', trace_state='k=v,x="y"', status_message="é\t")
    assert json.loads(resource_spans_json([span])) == resource_spans([span])
    decoded = json.loads(resource_spans_json([span]))[0]["scopeSpans"][0]["spans"][0]
    assert decoded["name"] == 'say "hi"\n\\ ünïcode \u2028'
    assert decoded["traceState"] == 'k=v,x="y"'
    assert decoded["status"] == {"message": "é\t"}


def test_no_rows() -> None:
    assert resource_spans([]) == []
    assert resource_spans_json([]) == "[]"


def test_an_iterator_is_read_once() -> None:
    rows = load_rows("retry")
    assert resource_spans(iter(rows)) == expected("retry")
    assert resource_spans_json(iter(rows)) == compact(expected("retry"))


# ------------------------------------------------------------ attribute_value


@pytest.mark.parametrize(
    ("any_value", "python"),
    [
        ({"stringValue": "GET"}, "GET"),
        ({"stringValue": ""}, ""),
        ({"boolValue": True}, True),
        ({"boolValue": False}, False),
        ({"intValue": "200"}, 200),
        ({"intValue": "-9223372036854775808"}, -9223372036854775808),
        ({"intValue": 7}, 7),  # receivers accept numbers too
        ({"doubleValue": 0.25}, 0.25),
        ({"doubleValue": 3}, 3.0),
        ({"doubleValue": "Infinity"}, math.inf),
        ({"doubleValue": "-Infinity"}, -math.inf),
        ({"bytesValue": "AAEC/w=="}, b"\x00\x01\x02\xff"),
        ({"bytesValue": ""}, b""),
        (
            {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}, {}]}},
            [1, "a", None],
        ),
        ({"arrayValue": {}}, []),
        (
            {
                "kvlistValue": {
                    "values": [
                        {"key": "a", "value": {"boolValue": True}},
                        {"key": "n", "value": {"kvlistValue": {"values": []}}},
                        {"key": "a", "value": {"doubleValue": 1.5}},
                    ]
                }
            },
            {"a": 1.5, "n": {}},
        ),
        ({}, None),
    ],
)
def test_attribute_value(any_value: dict[str, Any], python: object) -> None:
    got = attribute_value(any_value)
    assert got == python
    assert type(got) is type(python)


def test_attribute_value_nan() -> None:
    value = attribute_value({"doubleValue": "NaN"})
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize(
    "any_value",
    [
        {"unknownValue": 1},
        {"intValue": "1.5"},
        {"intValue": "ten"},
        {"doubleValue": "fast"},
        {"bytesValue": "not base64!"},
    ],
)
def test_attribute_value_rejects_what_is_not_an_any_value(any_value: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        attribute_value(any_value)
