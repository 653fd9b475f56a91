"""The OTLP trace codec of the Rust core (crate ``seawall-otlp``), against OTLP's own messages.

Bodies are built with ``opentelemetry-proto`` (the messages every OTel SDK
sends) and serialized by protobuf itself; ``seawall._native.otlp_decode``
must give, for each span, the :class:`SpanRow` that ``seawall.telemetry.spans``
documents. The expected rows come from :func:`expected_rows`, an independent
reading of that documentation written here in Python (``json.dumps`` for the
JSON columns), and from values written out by hand. OTLP/JSON bodies are
written by hand, and derived from protobuf's own JSON mapping with the ids in
hex (the OTLP/JSON rule). The encoder is checked by parsing what it writes
(``otlp_json_to_protobuf``, ``otlp_export_response``) with protobuf's parser.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from seawall import _native
from seawall.telemetry.spans import MAX_TAG_VALUE, UNKNOWN_SERVICE, SpanRow

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
ROOT = bytes.fromhex("00f067aa0ba902b7")
CHILD = bytes.fromhex("0102030405060708")
T0 = 1_700_000_000_000_000_000


def decode(body: bytes, *, as_json: bool = False) -> tuple[list[SpanRow], int, str]:
    rows, rejected, message = _native.otlp_decode(body, as_json)
    return [SpanRow(*row) for row in rows], rejected, message


# ---------------------------------------------------------------- the oracle


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _double(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def any_json(v: AnyValue) -> dict[str, Any]:
    which = v.WhichOneof("value")
    if which == "string_value":
        return {"stringValue": v.string_value}
    if which == "bool_value":
        return {"boolValue": v.bool_value}
    if which == "int_value":
        return {"intValue": str(v.int_value)}
    if which == "double_value":
        return {"doubleValue": _double(v.double_value)}
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode()}
    if which == "array_value":
        return {"arrayValue": {"values": [any_json(x) for x in v.array_value.values]}}
    if which == "kvlist_value":
        return {"kvlistValue": {"values": [kv_json(kv) for kv in v.kvlist_value.values]}}
    return {}


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {"key": kv.key, "value": any_json(kv.value)}


def tag(kv: KeyValue) -> str | None:
    which = kv.value.WhichOneof("value")
    if which == "string_value":
        return f"{kv.key}={kv.value.string_value[:MAX_TAG_VALUE]}"
    if which == "bool_value":
        return f"{kv.key}={'true' if kv.value.bool_value else 'false'}"
    if which == "int_value":
        return f"{kv.key}={kv.value.int_value}"
    if which == "double_value":
        return f"{kv.key}={json.dumps(kv.value.double_value)}"
    return None


def _tags(attributes: Iterable[KeyValue]) -> list[str]:
    return [t for t in map(tag, attributes) if t is not None]


def rejection(span: Span) -> str | None:
    """Why OTLP calls this span invalid (``None``: it is valid)."""
    if len(span.trace_id) != 16 or span.trace_id == bytes(16):
        return "traceId"
    if len(span.span_id) != 8 or span.span_id == bytes(8):
        return "spanId"
    if len(span.parent_span_id) not in (0, 8):
        return "parentSpanId"
    for link in span.links:
        if len(link.trace_id) != 16 or len(link.span_id) != 8:
            return "links"
    return None


def expected_rows(request: ExportTraceServiceRequest) -> tuple[list[SpanRow], int]:
    """The rows ``seawall.telemetry.spans`` documents for ``request``, and the spans refused."""
    rows: list[SpanRow] = []
    rejected = 0
    for rs in request.resource_spans:
        resource = list(rs.resource.attributes)
        service = next(
            (
                kv.value.string_value
                for kv in resource
                if kv.key == "service.name" and kv.value.WhichOneof("value") == "string_value"
            ),
            UNKNOWN_SERVICE,
        )
        for ss in rs.scope_spans:
            for span in ss.spans:
                if rejection(span) is not None:
                    rejected += 1
                    continue
                parent = span.parent_span_id if span.parent_span_id != bytes(8) else b""
                events = [
                    {
                        "timeUnixNano": str(e.time_unix_nano),
                        "name": e.name,
                        "attributes": [kv_json(kv) for kv in e.attributes],
                    }
                    for e in span.events
                ]
                links = [
                    {
                        "traceId": link.trace_id.hex(),
                        "spanId": link.span_id.hex(),
                        "traceState": link.trace_state,
                        "attributes": [kv_json(kv) for kv in link.attributes],
                    }
                    for link in span.links
                ]
                rows.append(
                    SpanRow(
                        trace_id=span.trace_id,
                        span_id=span.span_id,
                        parent_span_id=parent,
                        service=service,
                        name=span.name,
                        kind=span.kind if span.kind in range(6) else 0,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code if span.status.code in range(3) else 0,
                        status_message=span.status.message,
                        flags=span.flags & 0xFF,
                        trace_state=span.trace_state,
                        attributes=_dumps([kv_json(kv) for kv in span.attributes]),
                        events=_dumps(events),
                        links=_dumps(links),
                        resource=_dumps([kv_json(kv) for kv in resource]),
                        scope=_dumps({"name": ss.scope.name, "version": ss.scope.version}),
                        tags=tuple(_tags(span.attributes) + _tags(resource)),
                    )
                )
    return rows, rejected


# ---------------------------------------------------------------- building requests


def kv(key: str, value: Any) -> KeyValue:
    out = KeyValue(key=key)
    set_any(out.value, value)
    return out


def set_any(target: AnyValue, value: Any) -> None:
    """``value`` into ``target``: str, bool, int, float, bytes, list, dict, or None (empty)."""
    if value is None:
        target.SetInParent()
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for item in value:
            set_any(target.array_value.values.add(), item)
    else:
        target.kvlist_value.SetInParent()
        for k, v in value.items():
            target.kvlist_value.values.append(kv(k, v))


EVERY_VALUE = {
    "http.request.method": "GET",
    "ok": True,
    "cached": False,
    "http.response.status_code": 503,
    "zero": 0,
    "negative": -(2**63),
    "ratio": 0.25,
    "big": 1e16,
    "small": 1.5e-7,
    "nan": math.nan,
    "inf": -math.inf,
    "blob": b"\x00\x01\xff",
    "list": ["a", 1, None, [], [2.5, True]],
    "map": {"inner": 'x"y\n', "deeper": {"n": 2}},
    "nothing": None,
    "empty": "",
    "unicode": "café → ☕",
}


def span(
    trace_id: bytes = TRACE, span_id: bytes = ROOT, name: str = "GET /orders", **fields: Any
) -> Span:
    out = Span(trace_id=trace_id, span_id=span_id, name=name)
    attributes = fields.pop("attributes", {})
    for k, v in attributes.items():
        out.attributes.append(kv(k, v))
    for field, value in fields.items():
        if field == "events":
            for time, event_name, attrs in value:
                e = out.events.add(time_unix_nano=time, name=event_name)
                e.attributes.extend(kv(k, v) for k, v in attrs.items())
        elif field == "links":
            for trace, sid, state, attrs in value:
                link = out.links.add(trace_id=trace, span_id=sid, trace_state=state, flags=1)
                link.attributes.extend(kv(k, v) for k, v in attrs.items())
        elif field == "status":
            out.status.CopyFrom(Status(code=value[0], message=value[1]))
        else:
            setattr(out, field, value)
    return out


def resource_spans(
    service: str | None, *scopes: tuple[str, str, list[Span]], extra: dict[str, Any] | None = None
) -> ResourceSpans:
    rs = ResourceSpans()
    if service is not None:
        rs.resource.attributes.append(kv("service.name", service))
    for k, v in (extra or {}).items():
        rs.resource.attributes.append(kv(k, v))
    for name, version, spans in scopes:
        ss = rs.scope_spans.add()
        ss.scope.name = name
        ss.scope.version = version
        ss.spans.extend(spans)
    return rs


def three_services() -> ExportTraceServiceRequest:
    """Three services, one with two scopes; events, links, every value, an error."""
    root = span(
        kind=Span.SPAN_KIND_SERVER,
        flags=0x301,
        trace_state="vendor=a",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 250_000_000,
        attributes=EVERY_VALUE,
        events=[(T0 + 100_000_000, "retry", {"attempt": 2}), (0, "", {})],
        links=[(b"\xab" * 16, b"\xcd" * 8, "k=v", {"link.kind": "follows"})],
        status=(Status.STATUS_CODE_ERROR, "upstream timed out"),
    )
    child = span(
        span_id=CHILD,
        name="SELECT",
        parent_span_id=ROOT,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 1,
        end_time_unix_nano=T0 + 2,
        attributes={"db.system": "postgresql", "db.rows": 3},
    )
    payments = span(
        span_id=bytes.fromhex("1111111111111111"),
        name="POST /charge",
        parent_span_id=CHILD,
        kind=Span.SPAN_KIND_SERVER,
        status=(Status.STATUS_CODE_OK, ""),
        attributes={"http.response.status_code": 201},
    )
    consumer = span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes.fromhex("2222222222222222"),
        name="process",
        kind=Span.SPAN_KIND_CONSUMER,
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            resource_spans(
                "orders",
                ("seawall-sidecar", "0.1.0", [root]),
                ("sqlalchemy", "2.0", [child]),
                extra={"host.name": "node-7", "replicas": 3},
            ),
            resource_spans("payments", ("seawall-sidecar", "0.1.0", [payments])),
            resource_spans(None, ("", "", [consumer])),
        ]
    )


def with_unknown_fields(request: ExportTraceServiceRequest) -> bytes:
    """``request`` with fields OTLP does not define, of every wire type, at every level."""
    unknown = (
        b"\xf8\x07\x07"  # field 127, varint
        b"\xf1\x07"
        + bytes(8)  # field 126, fixed64
        + b"\xea\x07\x02zz"  # field 125, length-delimited
        + b"\xe5\x07"
        + bytes(4)  # field 124, fixed32
    )
    request = ExportTraceServiceRequest.FromString(request.SerializeToString())
    for rs in request.resource_spans:
        rs.MergeFromString(unknown)
        rs.resource.MergeFromString(unknown)
        for ss in rs.scope_spans:
            ss.MergeFromString(unknown)
            ss.scope.MergeFromString(unknown)
            for s in ss.spans:
                s.MergeFromString(unknown)
                s.status.MergeFromString(unknown)
                for a in s.attributes:
                    a.MergeFromString(unknown)
                    a.value.MergeFromString(unknown)
                for e in s.events:
                    e.MergeFromString(unknown)
                for link in s.links:
                    link.MergeFromString(unknown)
    body = request.SerializeToString()
    assert unknown in body
    return unknown + body


# ---------------------------------------------------------------- protobuf


def test_three_services_decode_to_the_documented_rows() -> None:
    request = three_services()
    rows, rejected, message = decode(request.SerializeToString())
    expected, _ = expected_rows(request)
    assert (rejected, message) == (0, "")
    assert rows == expected
    assert [r.service for r in rows] == ["orders", "orders", "payments", UNKNOWN_SERVICE]


def test_the_root_span_by_hand() -> None:
    rows, _, _ = decode(three_services().SerializeToString())
    root = rows[0]
    assert root.trace_id == TRACE
    assert root.span_id == ROOT
    assert root.parent_span_id == b""
    assert (root.name, root.kind, root.flags, root.trace_state) == ("GET /orders", 2, 1, "vendor=a")
    assert (root.start_ns, root.duration_ns) == (T0, 250_000_000)
    assert (root.status_code, root.status_message) == (2, "upstream timed out")
    attributes = json.loads(root.attributes)
    assert attributes[0] == {"key": "http.request.method", "value": {"stringValue": "GET"}}
    assert {"key": "negative", "value": {"intValue": "-9223372036854775808"}} in attributes
    assert {"key": "nan", "value": {"doubleValue": "NaN"}} in attributes
    assert {"key": "inf", "value": {"doubleValue": "-Infinity"}} in attributes
    assert {"key": "blob", "value": {"bytesValue": "AAH/"}} in attributes
    assert {"key": "nothing", "value": {}} in attributes
    assert {
        "key": "list",
        "value": {
            "arrayValue": {
                "values": [
                    {"stringValue": "a"},
                    {"intValue": "1"},
                    {},
                    {"arrayValue": {"values": []}},
                    {"arrayValue": {"values": [{"doubleValue": 2.5}, {"boolValue": True}]}},
                ]
            }
        },
    } in attributes
    assert '"stringValue":"x\\"y\\n"' in root.attributes
    assert json.loads(root.events) == [
        {
            "timeUnixNano": str(T0 + 100_000_000),
            "name": "retry",
            "attributes": [{"key": "attempt", "value": {"intValue": "2"}}],
        },
        {"timeUnixNano": "0", "name": "", "attributes": []},
    ]
    assert root.links == (
        '[{"traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd",'
        '"traceState":"k=v","attributes":[{"key":"link.kind","value":{"stringValue":"follows"}}]}]'
    )
    assert root.scope == '{"name":"seawall-sidecar","version":"0.1.0"}'
    assert root.tags == (
        "http.request.method=GET",
        "ok=true",
        "cached=false",
        "http.response.status_code=503",
        "zero=0",
        "negative=-9223372036854775808",
        "ratio=0.25",
        "big=1e+16",
        "small=1.5e-07",
        "nan=NaN",
        "inf=-Infinity",
        "empty=",
        "unicode=café → ☕",
        "service.name=orders",
        "host.name=node-7",
        "replicas=3",
    )
    child = rows[1]
    assert (child.parent_span_id, child.scope) == (ROOT, '{"name":"sqlalchemy","version":"2.0"}')


def test_unknown_fields_are_skipped() -> None:
    request = three_services()
    assert decode(with_unknown_fields(request)) == decode(request.SerializeToString())


def test_long_values_are_cut_in_tags_only() -> None:
    value = "é" * 300
    request = ExportTraceServiceRequest(
        resource_spans=[resource_spans("s", ("", "", [span(attributes={"long": value})]))]
    )
    (row,), _, _ = decode(request.SerializeToString())
    assert row.tags[0] == "long=" + "é" * MAX_TAG_VALUE
    assert json.loads(row.attributes)[0]["value"]["stringValue"] == value


def test_invalid_spans_are_counted_not_kept() -> None:
    bad = [
        span(trace_id=TRACE[:15]),
        span(trace_id=bytes(16)),
        span(span_id=bytes(8)),
        span(span_id=b"\x01" * 9),
        span(parent_span_id=b"\x01\x02\x03"),
        span(links=[(TRACE, ROOT[:7], "", {})]),
        Span(name="no ids"),
    ]
    good = [span(), span(span_id=CHILD, parent_span_id=bytes(8))]
    request = ExportTraceServiceRequest(
        resource_spans=[resource_spans("orders", ("s", "1", [good[0], *bad, good[1]]))]
    )
    rows, rejected, message = decode(request.SerializeToString())
    assert rejected == len(bad)
    assert [r.span_id for r in rows] == [ROOT, CHILD]
    assert rows[1].parent_span_id == b"", "eight zero bytes: no parent"
    assert message == (
        "7 spans rejected, the first: "
        "resourceSpans[0].scopeSpans[0].spans[1].traceId: 15 bytes, want 16 bytes"
    )
    assert expected_rows(request) == (rows, rejected)
    for one, why in zip(
        bad,
        [
            "traceId: 15 bytes, want 16 bytes",
            "traceId: all zero",
            "spanId: all zero",
            "spanId: 9 bytes, want 8 bytes",
            "parentSpanId: 3 bytes, want 8 bytes or none",
            "links[0].spanId: 7 bytes, want 8 bytes",
            "traceId: missing, want 16 bytes",
        ],
    ):
        alone = ExportTraceServiceRequest(resource_spans=[resource_spans("x", ("", "", [one]))])
        assert decode(alone.SerializeToString()) == (
            [],
            1,
            f"1 span rejected: resourceSpans[0].scopeSpans[0].spans[0].{why}",
        )


def test_every_prefix_decodes_or_is_refused() -> None:
    body = three_services().SerializeToString()
    errors = []
    for end in range(len(body)):
        try:
            decode(body[:end])
        except ValueError as e:
            errors.append(str(e))
    # a cut inside a message runs past its end, or inside a varint truncates it
    assert errors
    assert all("at byte" in e for e in errors), [e for e in errors if "at byte" not in e]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            b"\x0a\x05\x12", "resourceSpans[0]: length 5 at byte 1 runs past", id="length"
        ),
        pytest.param(b"\x0a", "resourceSpans[0]: truncated varint at byte 1", id="truncated"),
        pytest.param(b"\x10\x80", "truncated varint at byte 1", id="truncated-unknown"),
        pytest.param(b"\x13", "group (deprecated wire type 3/4) for field 2", id="group"),
        pytest.param(b"\x17", "invalid wire type 7 for field 2", id="wire-type-7"),
        pytest.param(b"\x08\x01", "wire type 0 for field 1 (resourceSpans)", id="wrong-wire-type"),
        pytest.param(b"\x00", "field number 0 at byte 0", id="field-0"),
    ],
)
def test_malformed_protobuf_is_refused(body: bytes, error: str) -> None:
    with pytest.raises(ValueError) as refused:
        decode(body)
    assert str(refused.value).startswith(error)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field (number below 16), by hand."""
    return bytes([field << 3 | 2]) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_malformed_protobuf_names_the_place() -> None:
    a_b = _ld(1, b"a") + _ld(2, _ld(1, b"b"))
    # the third attribute's value: int_value (3) as a fixed32 (wire type 5)
    bad = _ld(1, b"n") + _ld(2, b"\x1d\x01\x00\x00\x00")
    body = _ld(1, _ld(1, _ld(1, a_b) + _ld(1, a_b) + _ld(1, bad)))
    with pytest.raises(ValueError) as refused:
        decode(body)
    assert str(refused.value) == (
        "resourceSpans[0].resource.attributes[2].value: wire type 5 for field 3 (intValue)"
    )
    name = span(name="café").SerializeToString().replace("café".encode(), b"caf\xc3\x28")
    body = _ld(1, _ld(2, _ld(2, name)))
    at = body.index(b"caf\xc3") + 3
    with pytest.raises(ValueError) as refused:
        decode(body)
    assert str(refused.value) == (
        f"resourceSpans[0].scopeSpans[0].spans[0].name: invalid UTF-8 at byte {at}"
    )


# ---------------------------------------------------------------- JSON


ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def to_otlp_json(request: ExportTraceServiceRequest, **options: Any) -> bytes:
    """Protobuf's own JSON mapping of ``request``, with the ids in hex (OTLP/JSON's rule)."""
    doc = json_format.MessageToDict(request, **options)

    def hexify(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ID_FIELDS:
                    node[k] = base64.b64decode(v).hex()
                else:
                    hexify(v)
        elif isinstance(node, list):
            for item in node:
                hexify(item)

    hexify(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="camel-case-enum-names"),
        pytest.param({"preserving_proto_field_name": True}, id="snake-case"),
        pytest.param({"use_integers_for_enums": True}, id="enum-numbers"),
    ],
)
def test_json_gives_the_rows_protobuf_gives(options: dict[str, Any]) -> None:
    request = three_services()
    assert decode(to_otlp_json(request, **options), as_json=True) == decode(
        request.SerializeToString()
    )


HAND_WRITTEN = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "orders"}},
                    {"key": "replicas", "value": {"intValue": 3}},
                ]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "seawall-sidecar", "version": "0.1.0"},
                    "spans": [
                        {
                            "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                            "spanId": "00f067aa0ba902b7",
                            "name": "GET /orders",
                            "kind": 2,
                            "flags": 257,
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": 1700000000250000000,
                            "attributes": [
                                {"key": "ok", "value": {"boolValue": True}},
                                {"key": "ratio", "value": {"doubleValue": "Infinity"}},
                                {"key": "blob", "value": {"bytesValue": "AAH_"}},
                                {"key": "n", "value": {"intValue": "-7"}},
                            ],
                            "events": [{"timeUnixNano": "5", "name": "retry"}],
                            "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                            "aFieldFromTheFuture": {"ignored": [1, 2]},
                        },
                        {
                            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                            "span_id": "0102030405060708",
                            "parent_span_id": "00f067aa0ba902b7",
                            "name": "SELECT",
                            "kind": "SPAN_KIND_CLIENT",
                        },
                    ],
                }
            ],
        }
    ]
}


def test_hand_written_json() -> None:
    rows, rejected, message = decode(json.dumps(HAND_WRITTEN).encode(), as_json=True)
    assert (rejected, message) == (0, "")
    root, child = rows
    assert (root.trace_id, root.span_id, root.parent_span_id) == (TRACE, ROOT, b"")
    assert (root.kind, root.flags, root.start_ns, root.end_ns) == (2, 1, T0, T0 + 250_000_000)
    assert (root.status_code, root.status_message) == (2, "boom")
    assert root.attributes == (
        '[{"key":"ok","value":{"boolValue":true}},'
        '{"key":"ratio","value":{"doubleValue":"Infinity"}},'
        '{"key":"blob","value":{"bytesValue":"AAH/"}},'
        '{"key":"n","value":{"intValue":"-7"}}]'
    )
    assert root.events == '[{"timeUnixNano":"5","name":"retry","attributes":[]}]'
    assert root.resource == (
        '[{"key":"service.name","value":{"stringValue":"orders"}},'
        '{"key":"replicas","value":{"intValue":"3"}}]'
    )
    assert root.tags == ("ok=true", "ratio=Infinity", "n=-7", "service.name=orders", "replicas=3")
    assert (child.parent_span_id, child.kind, child.name) == (ROOT, 3, "SELECT")


SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


def _json_span(**fields: Any) -> bytes:
    span_doc = {"traceId": TRACE.hex(), "spanId": ROOT.hex(), **fields}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span_doc]}]}]}).encode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            b'{"resourceSpans": [',
            "resourceSpans[0]: not JSON: EOF while parsing a list at line 1 column 19",
        ),
        (b"{} {}", "not JSON: trailing characters at line 1 column 4"),
        (b"[1]", "expected an object, got an array"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array, got an object"),
        (_json_span(traceId="not hex!"), f"{SPAN_PATH}.traceId: not hex: bad character at 0"),
        (_json_span(spanId="abc"), f"{SPAN_PATH}.spanId: not hex: 3 digits (an odd number)"),
        (_json_span(name=5), f"{SPAN_PATH}.name: expected a string, got a number"),
        (
            _json_span(kind="SPAN_KIND_NOPE"),
            f'{SPAN_PATH}.kind: unknown enum value "SPAN_KIND_NOPE"',
        ),
        (
            _json_span(startTimeUnixNano="soon"),
            f'{SPAN_PATH}.startTimeUnixNano: "soon" is not a uint64',
        ),
        (_json_span(events={}), f"{SPAN_PATH}.events: expected an array, got an object"),
        (
            _json_span(attributes=[{"key": "a", "value": {"intValue": "1.5"}}]),
            f'{SPAN_PATH}.attributes[0].value.intValue: "1.5" is not an int64',
        ),
        (
            _json_span(attributes=[{"key": "a", "value": {"bytesValue": "%%"}}]),
            f"{SPAN_PATH}.attributes[0].value.bytesValue: not base64: bad character at 0",
        ),
        (
            _json_span(attributes=[{"key": "a", "value": {"stringValue": "x", "intValue": "1"}}]),
            f"{SPAN_PATH}.attributes[0].value.intValue: two values in one AnyValue"
            " (stringValue and intValue)",
        ),
        (
            _json_span(links=[{"traceId": "zz", "spanId": ROOT.hex()}]),
            f"{SPAN_PATH}.links[0].traceId: not hex: bad character at 0",
        ),
    ],
)
def test_malformed_json_is_refused_with_its_place(body: bytes, error: str) -> None:
    with pytest.raises(ValueError) as refused:
        decode(body, as_json=True)
    assert str(refused.value).startswith(error)


def test_json_partial_success() -> None:
    doc = json.loads(_json_span())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.insert(0, {"traceId": TRACE.hex()[:30], "spanId": ROOT.hex()})
    spans.append({"traceId": "", "spanId": ROOT.hex()})
    rows, rejected, message = decode(json.dumps(doc).encode(), as_json=True)
    assert (len(rows), rejected) == (1, 2)
    assert message == (
        "2 spans rejected, the first: "
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: 15 bytes, want 16 bytes"
    )


# ---------------------------------------------------------------- the encoder


def _one_scope_each(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """``request`` as the encoder's model has it: one scope per resource spans."""
    out = ExportTraceServiceRequest()
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            new = out.resource_spans.add()
            if rs.resource.attributes:
                new.resource.CopyFrom(rs.resource)
            new.scope_spans.add().CopyFrom(ss)
            if not (ss.scope.name or ss.scope.version):
                new.scope_spans[0].ClearField("scope")
    return out


def test_the_encoder_writes_what_protobuf_reads() -> None:
    request = three_services()
    written = _native.otlp_json_to_protobuf(to_otlp_json(request))
    parsed = ExportTraceServiceRequest.FromString(written)
    expected = _one_scope_each(request)
    # the same message, and the same bytes protobuf would write (field order, defaults left out)
    assert json_format.MessageToDict(parsed) == json_format.MessageToDict(expected)
    assert written == expected.SerializeToString()
    assert decode(written) == decode(request.SerializeToString())


def test_the_encoder_leaves_out_invalid_spans() -> None:
    doc = json.loads(_json_span())
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append({"traceId": "00", "spanId": "01"})
    parsed = ExportTraceServiceRequest.FromString(
        _native.otlp_json_to_protobuf(json.dumps(doc).encode())
    )
    assert [s.span_id for s in parsed.resource_spans[0].scope_spans[0].spans] == [ROOT]
    with pytest.raises(ValueError, match="not JSON"):
        _native.otlp_json_to_protobuf(b"{")


@pytest.mark.parametrize(
    ("rejected", "message"),
    [(0, ""), (3, "3 spans rejected, the first: ..."), (0, "a warning"), (2**62, "é")],
)
def test_export_response(rejected: int, message: str) -> None:
    body = _native.otlp_export_response(rejected, message)
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == rejected
    assert response.partial_success.error_message == message
    assert response.HasField("partial_success") == bool(rejected or message)
    assert body == response.SerializeToString()


# ---------------------------------------------------------------- any span at all

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.none(),
    _text,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.binary(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
_ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=17))
_span_ids = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=9))
_spans = st.builds(
    lambda trace, sid, parent, name, kind, flags, times, attributes, events, code: span(
        trace_id=trace,
        span_id=sid,
        name=name,
        parent_span_id=parent,
        kind=kind,
        flags=flags,
        start_time_unix_nano=times[0],
        end_time_unix_nano=times[1],
        attributes=attributes,
        events=events,
        status=(code, name),
    ),
    _ids,
    _span_ids,
    st.one_of(st.just(b""), _span_ids),
    _text,
    st.integers(min_value=0, max_value=7),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    st.dictionaries(_text, _values, max_size=4),
    st.lists(
        st.tuples(st.integers(0, 2**64 - 1), _text, st.dictionaries(_text, _values, max_size=2)),
        max_size=2,
    ),
    st.integers(min_value=0, max_value=3),
)
_requests = st.builds(
    lambda parts: ExportTraceServiceRequest(
        resource_spans=[
            resource_spans(service, ("lib", "1", spans), extra=extra)
            for service, extra, spans in parts
        ]
    ),
    st.lists(
        st.tuples(
            st.one_of(st.none(), _text),
            st.dictionaries(_text, _values, max_size=3),
            st.lists(_spans, max_size=3),
        ),
        max_size=3,
    ),
)


@settings(max_examples=150, deadline=None)
@given(_requests)
def test_any_request_decodes_as_documented(request: ExportTraceServiceRequest) -> None:
    body = request.SerializeToString()
    rows, rejected, _ = decode(body)
    assert (rows, rejected) == expected_rows(request)
    assert decode(to_otlp_json(request), as_json=True) == decode(body)
