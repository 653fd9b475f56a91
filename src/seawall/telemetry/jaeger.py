"""Jaeger's query APIs, sans-I/O: the UI model, the envelopes, the parameters.

``seawall traces`` answers Jaeger's HTTP JSON API under ``/api/`` (what
Jaeger UI and Grafana's Jaeger data source read) and Jaeger's api_v3 (OTLP
JSON) from one store of :class:`~seawall.telemetry.spans.SpanRow`. This
module holds the pure parts between the store and the HTTP handler:

- :func:`to_jaeger_trace` turns the rows of one trace into Jaeger's UI model
  (``{"traceID", "spans", "processes", "warnings"}``), and
  :func:`to_jaeger_trace_json` writes the same as JSON text, which is what a
  handler should send;
- :func:`envelope` (:func:`envelope_json`) and :func:`structured_error` wrap
  ``/api/`` answers the way Jaeger's ``structuredResponse`` does; :func:`v3_result`,
  :func:`v3_error`, :func:`v3_services` and :func:`v3_operations` build the
  api_v3 answers;
- :func:`parse_trace_query`, :func:`parse_trace_lookup`,
  :func:`parse_v3_query` and :func:`parse_v3_trace_lookup` read query
  parameters by Jaeger's rules, raising :class:`ParameterError` (an HTTP 400)
  that names the parameter;
- :func:`parse_go_duration` is Go's ``time.ParseDuration``, grammar and
  overflow rules included, and :func:`parse_rfc3339_ns` reads RFC 3339 times
  with nanoseconds.

Where each rule comes from (jaegertracing/jaeger unless said otherwise):

- the UI model and its JSON names, nulls and omissions:
  ``internal/uimodel/model.go`` and ``internal/uimodel/converter/v1/json/from_domain.go``
  (``FromDomain``), with the process ids of ``process_hashtable.go`` beside it;
- OTLP to the Jaeger model: open-telemetry/opentelemetry-collector-contrib,
  ``pkg/translator/jaeger/traces_to_jaegerproto.go`` and ``constants.go``,
  which Jaeger v2 calls through ``internal/storage/v2/v1adapter/translator.go``;
  the sampled flag: the same translator after contrib PR #49568;
- the ids' text: jaegertracing/jaeger-idl, ``model/v1/ids.go``;
- the ``/api/`` envelope, routes and error handling:
  ``cmd/jaeger/internal/extension/jaegerquery/internal/http_handler.go``;
- the ``/api/traces`` parameters: ``.../jaegerquery/internal/query_parser.go``
  and ``default_params.go``;
- api_v3: ``.../jaegerquery/internal/apiv3/http_gateway.go`` and
  ``query_parser.go``, ``internal/proto/api_v3/query_service.pb.go``;
- Go's grammars: the Go standard library, ``time/format.go``
  (``ParseDuration``, ``parseRFC3339``) and ``strconv``.

What Jaeger's query service does on top and this module does not: the
"adjusters" (``.../jaegerquery/internal/adjuster/standard.go``: sorting each
span's attributes by key, deduplicating spans, clock-skew correction with
its warnings). Tags and logs keep the order the span was recorded in, and
``warnings`` stays ``null``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _enc
from typing import Any

from .otlpjson import attribute_value, resource_spans, resource_spans_json
from .spans import SpanKind, SpanRow, StatusCode

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_LOOKBACK_US",
    "TRACE_NOT_FOUND",
    "V3_NO_TRACES",
    "JaegerTraceIds",
    "JaegerTraceQuery",
    "ParameterError",
    "V3Query",
    "envelope",
    "envelope_json",
    "jaeger_trace_id",
    "parse_go_duration",
    "parse_go_duration_ns",
    "parse_rfc3339_ns",
    "parse_trace_id",
    "parse_trace_lookup",
    "parse_trace_query",
    "parse_v3_query",
    "parse_v3_trace_lookup",
    "structured_error",
    "to_jaeger_trace",
    "to_jaeger_trace_json",
    "to_jaeger_traces",
    "to_jaeger_traces_json",
    "v3_error",
    "v3_operations",
    "v3_result",
    "v3_result_json",
    "v3_services",
]

DEFAULT_LIMIT = 100
"""Traces a search returns when it names no limit (``query_parser.go``: ``defaultQueryLimit``)."""

DEFAULT_LOOKBACK_US = 2 * 24 * 3600 * 1_000_000
"""How far back a search without ``start`` reaches: two days, in microseconds
(``default_params.go``: ``defaultTraceQueryLookbackDuration``)."""

TRACE_NOT_FOUND = "trace not found"
"""The message of Jaeger's ``spanstore.ErrTraceNotFound``, for ``/api/`` errors."""

V3_NO_TRACES = "No traces found"
"""api_v3's 404 message when a lookup or search found nothing (``http_gateway.go``)."""

_JS_MAX_SAFE_INTEGER = (1 << 53) - 1
_MAX_INT64 = (1 << 63) - 1
_MIN_INT64 = -(1 << 63)
_MAX_UINT32 = (1 << 32) - 1
_MAX_INT32 = (1 << 31) - 1
_MIN_INT32 = -(1 << 31)

# ------------------------------------------------------------------- errors


class ParameterError(ValueError):
    """A query parameter could not be read, or the query it is part of is invalid.

    The handler answers 400 (:attr:`error_status_hint`) with ``str(error)``,
    which names the parameter, in Jaeger's words where Jaeger has them.

    Attributes:
        param: the parameter at fault, as the client spelled it.
        message: the whole message (also ``str(error)``).
    """

    error_status_hint = 400

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


# ------------------------------------------------------------ query results


@dataclass(frozen=True, slots=True)
class JaegerTraceQuery:
    """A ``/api/traces`` search. Times and durations in nanoseconds."""

    service: str
    operation: str | None
    """``None``: any operation."""
    attributes: dict[str, str]
    """From ``tag=key:value`` and ``tags={json}``; a span or its resource must have each."""
    start_min_ns: int
    start_max_ns: int
    min_duration_ns: int | None
    """``None``: no bound (Jaeger treats a zero duration the same way)."""
    max_duration_ns: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class JaegerTraceIds:
    """A lookup of traces by id: ``/api/traces?traceID=``, ``/api/traces/{id}``,
    ``/api/v3/traces/{id}``.

    ``start_min_ns`` and ``start_max_ns`` are hints that bound the search for
    the trace, ``None`` when the client gave none.
    """

    trace_ids: tuple[bytes, ...]
    """16 bytes each, in the order asked, repeats kept."""
    start_min_ns: int | None = None
    start_max_ns: int | None = None


@dataclass(frozen=True, slots=True)
class V3Query:
    """An api_v3 ``/api/v3/traces`` search. Times and durations in nanoseconds."""

    service: str | None
    operation: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    start_min_ns: int = 0
    start_max_ns: int = 0
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    limit: int = DEFAULT_LIMIT


# ------------------------------------------------------- the Jaeger UI model

# traces_to_jaegerproto.go, getTagFromSpanKind (OpenTracing's names).
_KIND_NAMES = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
_SAMPLED = 0x01  # the W3C sampled bit; Jaeger's model.SampledFlag is also 1


def jaeger_trace_id(trace_id: bytes) -> str:
    """A trace id as Jaeger writes it (jaeger-idl ``model/v1/ids.go``, ``TraceID.String``).

    Lowercase hex, zero-padded: 16 digits when the high 64 bits are zero
    (``%016x`` of the low half), else all 32 (``%016x%016x``). Older Jaeger
    releases wrote ``%x`` without padding; current ones pad, and so do we.
    """
    if len(trace_id) == 16 and not any(trace_id[:8]):
        return trace_id[8:].hex()
    return trace_id.hex()


def to_jaeger_trace(rows: Sequence[SpanRow]) -> dict[str, Any]:
    """The spans of one trace in Jaeger's UI model, as ``/api/traces`` returns it.

    Spans keep the order of *rows*; ``traceID`` is the first span's (as in
    ``FromDomain``). Each distinct (service, resource) becomes a process,
    ``p1``, ``p2``, ... in order of first appearance (``processHashtable``);
    its ``serviceName`` is the row's service and its tags the resource's
    attributes but ``service.name``. (For a resource with no attributes at
    all Jaeger's translator writes ``OTLPResourceNoServiceName``; the store
    has already named that service :data:`~seawall.telemetry.spans.UNKNOWN_SERVICE`,
    and that name is kept so the UI's service list and its traces agree.)

    A span's tags are, in this order (``getJaegerProtoSpanTags``): the
    scope's ``otel.scope.name`` and ``otel.scope.version`` when set, the
    span's attributes, ``span.kind``, ``otel.status_code`` (``OK`` or
    ``ERROR``), ``error=true`` for an error, ``otel.status_description``
    when there is a message, ``w3c.tracestate`` when set. Events become logs
    whose first field is ``event`` (the event's name) unless the event
    already has an ``event`` attribute. The parent becomes the first
    reference, ``CHILD_OF``, even when the parent is not in the trace; each
    link becomes ``FOLLOWS_FROM``, or ``CHILD_OF`` when its
    ``opentracing.ref_type`` attribute says ``child_of``, and a link to the
    parent itself only retypes that first reference.

    This is ``json.loads`` of :func:`to_jaeger_trace_json`, the one
    implementation; a handler should send that text instead.
    """
    decoded: dict[str, Any] = json.loads(to_jaeger_trace_json(rows))
    return decoded


def to_jaeger_traces(rows: Iterable[SpanRow]) -> list[dict[str, Any]]:
    """:func:`to_jaeger_trace` for each trace in *rows*, in order of first appearance."""
    decoded: list[dict[str, Any]] = json.loads(to_jaeger_traces_json(rows))
    return decoded


def to_jaeger_traces_json(rows: Iterable[SpanRow]) -> str:
    """A JSON array of :func:`to_jaeger_trace_json`, one per trace in *rows*."""
    traces: dict[bytes, list[SpanRow]] = {}
    for row in rows:
        traces.setdefault(row.trace_id, []).append(row)
    return "[" + ",".join(map(to_jaeger_trace_json, traces.values())) + "]"


def to_jaeger_trace_json(rows: Sequence[SpanRow]) -> str:
    """:func:`to_jaeger_trace` as compact JSON text, written directly.

    Writing the text rather than building objects for ``json.dumps`` more
    than halves the cost of a big trace: 14 ms for 1,000 spans of ten
    attributes and an event each, against 36 ms (5,000 spans: 80 ms against
    190 ms; CPython 3.11 on the project's machine). The attribute columns
    still have to be parsed, since every value changes shape.

    Strings are escaped as Python's ``json`` does; Go also escapes ``<``,
    ``>`` and ``&``, which changes the bytes but not what they decode to.
    Processes are written in Go's order for map keys (sorted as strings).
    """
    process_ids: dict[tuple[str, str], str] = {}
    processes: list[tuple[str, str]] = []
    scope_tags: dict[str, list[str]] = {}
    spans: list[str] = []
    for row in rows:
        key = (row.service, row.resource)
        pid = process_ids.get(key)
        if pid is None:
            pid = process_ids[key] = f"p{len(process_ids) + 1}"
            processes.append(
                (
                    pid,
                    f'"{pid}":{{"serviceName":{_enc(row.service)},'
                    f'"tags":[{",".join(_process_tags(row.resource))}]}}',
                )
            )
        tags = scope_tags.get(row.scope)
        if tags is None:
            tags = scope_tags[row.scope] = _scope_tags(row.scope)
        spans.append(_span_json(row, pid, tags))
    processes.sort()
    trace_id = jaeger_trace_id(rows[0].trace_id) if rows else ""
    return (
        f'{{"traceID":"{trace_id}","spans":[{",".join(spans)}],'
        f'"processes":{{{",".join(text for _, text in processes)}}},"warnings":null}}'
    )


def _span_json(row: SpanRow, pid: str, scope_tags: list[str]) -> str:
    trace_id = jaeger_trace_id(row.trace_id)
    # Keys in the order of uimodel.Span; parentSpanID and process are never
    # set by FromDomain, and flags is omitempty.
    parts = ['{"traceID":"', trace_id, '","spanID":"', row.span_id.hex(), '"']
    if row.flags & _SAMPLED:
        # Only the sampled bit crosses over (contrib PR #49568); 0 is omitted.
        parts.append(',"flags":1')
    # model.TimeAsEpochMicroseconds / DurationAsMicroseconds truncate, and
    # FromDomain clamps a negative duration to 0.
    parts += [
        ',"operationName":',
        _enc(row.name),
        ',"references":[',
        _references(row, trace_id),
        '],"startTime":',
        str(row.start_ns // 1000),
        ',"duration":',
        str(max(0, row.end_ns - row.start_ns) // 1000),
        ',"tags":[',
        _span_tags(row, scope_tags),
        '],"logs":[',
        _logs(row.events),
        '],"processID":"',
        pid,
        '","warnings":null}',
    ]
    return "".join(parts)


def _ref(ref_type: str, trace_id: str, span_id: str) -> str:
    return f'{{"refType":"{ref_type}","traceID":"{trace_id}","spanID":"{span_id}"}}'


def _references(row: SpanRow, trace_id: str) -> str:
    # makeJaegerProtoReferences: the parent first, then one per link.
    parent = row.parent_span_id.hex() if any(row.parent_span_id) else ""
    parent_type = "CHILD_OF"
    links: list[str] = []
    if row.links != "[]":
        for link in json.loads(row.links):
            link_trace = bytes.fromhex(link.get("traceId", ""))
            link_span = bytes.fromhex(link.get("spanId", "")).hex()
            ref_type = _link_ref_type(link.get("attributes") or ())
            if parent and link_trace == row.trace_id and link_span == parent:
                parent_type = ref_type  # a link to the parent retypes its reference
                continue
            links.append(_ref(ref_type, jaeger_trace_id(link_trace), link_span))
    if parent:
        links.insert(0, _ref(parent_type, trace_id, parent))
    return ",".join(links)


def _link_ref_type(attributes: Iterable[Mapping[str, Any]]) -> str:
    # refTypeFromLink: a link's opentracing.ref_type attribute, when it is the
    # string "child_of", makes it CHILD_OF; everything else is FOLLOWS_FROM.
    for kv in attributes:
        if kv.get("key") == "opentracing.ref_type":
            value = kv.get("value") or {}
            return "CHILD_OF" if value.get("stringValue") == "child_of" else "FOLLOWS_FROM"
    return "FOLLOWS_FROM"


def _string_tag(key: str, value: str) -> str:
    return f'{{"key":{_enc(key)},"type":"string","value":{_enc(value)}}}'


_ERROR_TAGS = [
    _string_tag("otel.status_code", "ERROR"),
    '{"key":"error","type":"bool","value":true}',
]
_OK_TAGS = [_string_tag("otel.status_code", "OK")]
_KIND_TAGS = {kind: _string_tag("span.kind", name) for kind, name in _KIND_NAMES.items()}


def _span_tags(row: SpanRow, scope_tags: list[str]) -> str:
    tags = list(scope_tags)
    if row.attributes != "[]":
        tags += _tags(json.loads(row.attributes))
    kind = _KIND_TAGS.get(row.kind)
    if kind is not None:
        tags.append(kind)
    if row.status_code == StatusCode.ERROR:
        tags += _ERROR_TAGS
    elif row.status_code == StatusCode.OK:
        tags += _OK_TAGS
    if row.status_message:
        tags.append(_string_tag("otel.status_description", row.status_message))
    if row.trace_state:
        tags.append(_string_tag("w3c.tracestate", row.trace_state))
    return ",".join(tags)


def _scope_tags(scope_json: str) -> list[str]:
    # getTagsFromInstrumentationLibrary: the current translator writes the
    # otel.scope.* names (older ones wrote otel.library.*); scope attributes
    # are not carried over.
    scope = json.loads(scope_json)
    tags: list[str] = []
    if scope.get("name"):
        tags.append(_string_tag("otel.scope.name", scope["name"]))
    if scope.get("version"):
        tags.append(_string_tag("otel.scope.version", scope["version"]))
    return tags


def _process_tags(resource_json: str) -> list[str]:
    if resource_json == "[]":
        return []
    return _tags(kv for kv in json.loads(resource_json) if kv.get("key") != "service.name")


def _logs(events_json: str) -> str:
    if events_json == "[]":
        return ""
    logs: list[str] = []
    for event in json.loads(events_json):
        attributes = event.get("attributes") or []
        fields = _tags(attributes)
        name = event.get("name", "")
        # spanEventsToJaegerProtoLogs: the name as field "event" (constants.go
        # eventNameAttr), unless an attribute already has that key.
        if name and not any(kv.get("key") == "event" for kv in attributes):
            fields.insert(0, _string_tag("event", name))
        timestamp = int(event.get("timeUnixNano", 0)) // 1000
        logs.append(f'{{"timestamp":{timestamp},"fields":[{",".join(fields)}]}}')
    return ",".join(logs)


def _tags(key_values: Iterable[Mapping[str, Any]]) -> list[str]:
    return [_tag(kv["key"], kv.get("value") or {}) for kv in key_values]


def _tag(key: str, value: Mapping[str, Any]) -> str:
    # attributeToJaegerProtoTag, then FromDomain's convertKeyValues.
    if "stringValue" in value:
        return f'{{"key":{_enc(key)},"type":"string","value":{_enc(value["stringValue"])}}}'
    if "intValue" in value:
        number = int(value["intValue"])
        # Beyond JavaScript's safe integers the value is written as a string.
        if -_JS_MAX_SAFE_INTEGER <= number <= _JS_MAX_SAFE_INTEGER:
            return f'{{"key":{_enc(key)},"type":"int64","value":{number}}}'
        return f'{{"key":{_enc(key)},"type":"int64","value":"{number}"}}'
    if "boolValue" in value:
        flag = "true" if value["boolValue"] else "false"
        return f'{{"key":{_enc(key)},"type":"bool","value":{flag}}}'
    if "doubleValue" in value:
        double = float(value["doubleValue"])
        if math.isfinite(double):
            return f'{{"key":{_enc(key)},"type":"float64","value":{double!r}}}'
        # Go's encoding/json cannot write NaN or an infinity (Jaeger's whole
        # answer fails); the OTLP/JSON spelling keeps ours valid JSON.
        return f'{{"key":{_enc(key)},"type":"float64","value":"{_NON_FINITE[repr(double)]}"}}'
    if "bytesValue" in value:
        raw = base64.b64encode(base64.b64decode(value["bytesValue"])).decode("ascii")
        return f'{{"key":{_enc(key)},"type":"binary","value":"{raw}"}}'
    if "arrayValue" in value or "kvlistValue" in value:
        # pcommon Value.AsString: encoding/json of AsRaw(), as a string tag.
        return _string_tag(key, _go_json_or_empty(attribute_value(value)))
    # The empty value: VType's zero is STRING, VStr "".
    return _string_tag(key, "")


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _go_json_or_empty(value: object) -> str:
    try:
        return _go_json(value)
    except ValueError:  # NaN or an infinity: json.Marshal fails, AsString gives ""
        return ""


def _go_json(value: object) -> str:
    """Go's ``encoding/json.Marshal`` of a pcommon ``AsRaw()`` value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        # Go sorts map keys (by bytes; UTF-8 keeps code point order).
        return "{" + ",".join(f"{_go_string(k)}:{_go_json(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"no JSON for {type(value).__name__}")


_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _go_string(text: str) -> str:
    # Python's escapes agree with Go's for quotes, backslashes and control
    # characters; Go also escapes <, >, & and U+2028/9 (HTML safety).
    return json.dumps(text, ensure_ascii=False).translate(_GO_HTML_ESCAPES)


def _go_float(number: float) -> str:
    # encoding/json's floatEncoder: shortest digits, 'f' form unless the
    # magnitude is below 1e-6 or at least 1e21, exponent without padding.
    if not math.isfinite(number):
        raise ValueError(f"json: unsupported value: {number}")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    magnitude = abs(number)
    text = repr(number)  # the shortest round-trip digits, as Go's -1 precision
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0]
        return f"{mantissa}e{sign}{exponent[1:].lstrip('0') or '0'}"
    if "e" not in text:
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = text.partition("e")
    digits, _, fraction = mantissa.lstrip("-").partition(".")
    digits += fraction
    point = len(mantissa.lstrip("-").partition(".")[0]) + int(exponent)
    sign = "-" if number < 0 else ""
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


# ---------------------------------------------------------------- envelopes


def envelope(
    data: object, *, total: int = 0, errors: Sequence[Mapping[str, object]] | None = None
) -> dict[str, Any]:
    """Jaeger's ``structuredResponse`` (``http_handler.go``).

    ``{"data", "total", "limit", "offset", "errors"}``; ``limit`` and
    ``offset`` are always 0, ``errors`` is ``null`` unless given (an empty
    list stays ``[]``). Jaeger sets ``total`` only for ``/api/services`` and
    the operations routes (their length); trace answers leave it 0.
    """
    return {
        "data": data,
        "total": total,
        "limit": 0,
        "offset": 0,
        "errors": None if errors is None else list(errors),
    }


def envelope_json(
    data_json: str, *, total: int = 0, errors: Sequence[Mapping[str, object]] | None = None
) -> str:
    """:func:`envelope` as JSON text around *data_json*, which is spliced in as it is
    (say ``to_jaeger_traces_json(rows)``)."""
    errors_json = "null" if errors is None else json.dumps(list(errors), separators=(",", ":"))
    return (
        f'{{"data":{data_json},"total":{int(total)},"limit":0,"offset":0,"errors":{errors_json}}}'
    )


def structured_error(
    msg: str, *, code: int = 0, trace_id: bytes | None = None
) -> dict[str, object]:
    """One of ``structuredResponse.errors`` (``structuredError``).

    ``code`` and ``traceID`` are ``omitempty``: a trace that a lookup by id
    did not find is ``{"msg": "trace not found", "traceID": ...}``; a failed
    request is ``{"code": 400, "msg": ...}`` inside
    ``envelope(None, errors=[...])``.
    """
    error: dict[str, object] = {}
    if code:
        error["code"] = code
    error["msg"] = msg
    if trace_id:
        error["traceID"] = jaeger_trace_id(trace_id)
    return error


def v3_result(rows: Iterable[SpanRow]) -> dict[str, Any]:
    """api_v3's trace answer, ``{"result": {"resourceSpans": [...]}}`` (``GRPCGatewayWrapper``)."""
    return {"result": {"resourceSpans": resource_spans(rows)}}


def v3_result_json(rows: Iterable[SpanRow]) -> str:
    """:func:`v3_result` as JSON text, the stored columns spliced in unparsed."""
    return '{"result":{"resourceSpans":' + resource_spans_json(rows) + "}}"


def v3_error(http_code: int, message: str) -> dict[str, Any]:
    """api_v3's error body, ``{"error": {"httpCode", "message"}}`` (``GRPCGatewayError``).

    Jaeger writes it with ``encoding/json`` and its fields are ``omitempty``,
    so ``grpcCode`` and ``httpStatus`` never appear.
    """
    details: dict[str, Any] = {}
    if http_code:
        details["httpCode"] = http_code
    if message:
        details["message"] = message
    return {"error": details}


def v3_services(services: Iterable[str]) -> dict[str, Any]:
    """``{"services": [...]}``; written by jsonpb, which leaves an empty list out (``{}``)."""
    names = list(services)
    return {"services": names} if names else {}


def v3_operations(operations: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``{"operations": [{"name", "spanKind"}]}`` from ``(name, span_kind)`` pairs.

    The gateway writes an empty span kind as ``internal``; jsonpb leaves out
    an empty name and an empty list.
    """
    ops: list[dict[str, str]] = []
    for name, kind in operations:
        op: dict[str, str] = {}
        if name:
            op["name"] = name
        op["spanKind"] = kind or "internal"
        ops.append(op)
    return {"operations": ops} if ops else {}


# -------------------------------------------------------------- /api/traces


def parse_trace_query(
    params: Mapping[str, Sequence[str]],
    now_us: int,
    *,
    lookback_us: int = DEFAULT_LOOKBACK_US,
) -> JaegerTraceQuery | JaegerTraceIds:
    """Read ``/api/traces`` parameters the way Jaeger's ``parseTraceQueryParams`` does.

    *params* maps each name to its values in order (``urllib.parse.parse_qs``
    with ``keep_blank_values=True``); a parameter's first value counts, and
    an empty one is as good as absent (Go's ``Query().Get``).

    - ``service``: required unless ``traceID`` is given; ``operation``.
    - ``start``, ``end``: Unix microseconds (``strconv.ParseInt``, 64 bits);
      when absent, ``end`` is *now_us* and ``start`` is *now_us* minus
      *lookback_us* (two days, a server setting in Jaeger). The ``lookback``
      parameter is ignored, as Jaeger ignores it: Jaeger's UI turns it into
      ``start``/``end`` itself and sends it along only for its own URL (its
      values, such as ``2d`` or ``custom``, are not Go durations).
    - ``minDuration``, ``maxDuration``: Go durations (:func:`parse_go_duration_ns`);
      zero means no bound, as in Jaeger's stores.
    - ``tag`` (repeated): ``key:value``, split at the first colon; ``tags``
      (repeated): a JSON object of strings, merged after the ``tag`` values.
    - ``limit``: an int32, more than 0; :data:`DEFAULT_LIMIT` when absent.
    - ``traceID`` (repeated): hex, at most 32 digits; with any, the answer is
      a :class:`JaegerTraceIds` carrying the explicit ``start``/``end`` only.

    Then, as Jaeger validates: ``start`` not after ``end``, ``maxDuration``
    not below ``minDuration`` when both are set.

    Raises:
        ParameterError: naming the parameter.
    """
    start_us = _optional_int64(params, "start")
    end_us = _optional_int64(params, "end")
    attributes = _parse_tags(params.get("tag", ()), params.get("tags", ()))
    limit = DEFAULT_LIMIT
    limit_text = _first(params, "limit")
    if limit_text:
        limit = _go_parse_int(limit_text, "limit", _MIN_INT32, _MAX_INT32)
    min_duration = _optional_duration(params, "minDuration")
    max_duration = _optional_duration(params, "maxDuration")
    trace_ids = tuple(parse_trace_id(text, param="traceID") for text in params.get("traceID", ()))

    service = _first(params, "service")
    if not trace_ids and not service:
        raise ParameterError("service", "parameter 'service' is required")
    if limit <= 0:
        raise ParameterError("limit", "invalid parameter: limit must be greater than 0")
    start_min_us = start_us if start_us is not None else now_us - lookback_us
    start_max_us = end_us if end_us is not None else now_us
    if start_min_us > start_max_us:
        raise ParameterError("start", "invalid parameter: start time must be before end time")
    if min_duration and max_duration and max_duration < min_duration:
        raise ParameterError("maxDuration", "'maxDuration' should be greater than 'minDuration'")

    if trace_ids:
        return JaegerTraceIds(
            trace_ids,
            start_min_ns=None if start_us is None else start_us * 1000,
            start_max_ns=None if end_us is None else end_us * 1000,
        )
    return JaegerTraceQuery(
        service=service,
        operation=_first(params, "operation") or None,
        attributes=attributes,
        start_min_ns=start_min_us * 1000,
        start_max_ns=start_max_us * 1000,
        min_duration_ns=min_duration or None,
        max_duration_ns=max_duration or None,
        limit=limit,
    )


def parse_trace_lookup(trace_id: str, params: Mapping[str, Sequence[str]]) -> JaegerTraceIds:
    """``/api/traces/{trace_id}``: the id from the path, optional ``start``/``end`` in µs.

    Raises:
        ParameterError: naming ``traceID``, ``start`` or ``end``.
    """
    ident = parse_trace_id(trace_id, param="traceID")
    start_us = _optional_int64(params, "start")
    end_us = _optional_int64(params, "end")
    return JaegerTraceIds(
        (ident,),
        start_min_ns=None if start_us is None else start_us * 1000,
        start_max_ns=None if end_us is None else end_us * 1000,
    )


def parse_trace_id(text: str, *, param: str = "traceID") -> bytes:
    """A trace id as Jaeger reads it (``model.TraceIDFromString``): 16 bytes.

    At most 32 hex digits, either case; shorter ids are zero-extended on the
    left, as Jaeger's 64-bit ids are. Raises :class:`ParameterError` naming
    *param*.
    """
    problem = _trace_id_problem(text)
    if problem:
        raise ParameterError(param, f"cannot parse {param} param: {problem}")
    return bytes.fromhex(text.rjust(32, "0"))


_HEX = re.compile(r"[0-9a-fA-F]+")


def _trace_id_problem(text: str) -> str:
    # TraceIDFromString: the length first (in bytes), then the high part (all
    # but the last 16 digits), then the low part, each by strconv.ParseUint.
    if len(text.encode()) > 32:
        return f"TraceID cannot be longer than 32 hex characters: {text}"
    for part in (text[:-16], text[-16:]) if len(text) > 16 else (text,):
        if not _HEX.fullmatch(part):
            return _num_error("ParseUint", part, "invalid syntax")
    return ""


def _parse_tags(simple: Sequence[str], json_tags: Sequence[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in simple:
        key, colon, value = tag.partition(":")
        if not colon:
            raise ParameterError(
                "tag", f"malformed 'tag' parameter, expecting key:value, received: {tag}"
            )
        tags[key] = value
    for text in json_tags:
        tags.update(
            _json_string_map(text, "tags", "malformed 'tags' parameter, cannot unmarshal JSON")
        )
    return tags


def _json_string_map(text: str, param: str, prefix: str) -> dict[str, str]:
    # encoding/json into map[string]string: an object of strings, or null.
    try:
        decoded = json.loads(text)
    except ValueError as e:
        raise ParameterError(param, f"{prefix}: {e}") from None
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise ParameterError(
            param, f"{prefix}: cannot unmarshal {_json_kind(decoded)} into a map of strings"
        )
    for key, value in decoded.items():
        if not isinstance(value, str):
            raise ParameterError(
                param,
                f"{prefix}: cannot unmarshal {_json_kind(value)} into the string value of {key!r}",
            )
    return decoded


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else "string"


def _first(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _optional_int64(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    text = _first(params, name)
    if not text:
        return None
    return _go_parse_int(text, name, _MIN_INT64, _MAX_INT64)


def _optional_duration(params: Mapping[str, Sequence[str]], name: str) -> int:
    text = _first(params, name)
    if not text:
        return 0
    try:
        return parse_go_duration_ns(text)
    except ValueError as e:
        raise ParameterError(name, f"unable to parse param '{name}': {e}") from None


_DECIMAL = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


def _go_parse_int(text: str, param: str, low: int, high: int) -> int:
    # strconv.ParseInt(text, 10, bits): an optional sign, ASCII digits.
    reason = ""
    if not _DECIMAL.fullmatch(text):
        reason = "invalid syntax"
    elif not low <= int(text) <= high:
        reason = "value out of range"
    if reason:
        raise ParameterError(
            param, f"unable to parse param '{param}': {_num_error('ParseInt', text, reason)}"
        )
    return int(text)


def _num_error(func: str, text: str, reason: str) -> str:
    return f"strconv.{func}: parsing {json.dumps(text, ensure_ascii=False)}: {reason}"


# ------------------------------------------------------------------- api_v3

# api_v3 query parameters: the canonical camelCase name first, then the
# snake_case one Jaeger still accepts (apiv3/query_parser.go, getQueryParam).
_V3_SERVICE = ("query.serviceName", "query.service_name")
_V3_OPERATION = ("query.operationName", "query.operation_name")
_V3_TIME_MIN = ("query.startTimeMin", "query.start_time_min")
_V3_TIME_MAX = ("query.startTimeMax", "query.start_time_max")
_V3_SEARCH_DEPTH = ("query.searchDepth", "query.search_depth", "query.num_traces")
_V3_DURATION_MIN = ("query.durationMin", "query.duration_min")
_V3_DURATION_MAX = ("query.durationMax", "query.duration_max")
_V3_ATTRIBUTES = "query.attributes"
_V3_START = ("startTime", "start_time")
_V3_END = ("endTime", "end_time")


def parse_v3_query(params: Mapping[str, Sequence[str]]) -> V3Query:
    """Read api_v3 ``/api/v3/traces`` parameters (``apiv3/query_parser.go``).

    Each parameter has a camelCase name and a snake_case one; the camelCase
    one wins when both are given:

    - ``query.serviceName`` / ``query.service_name``, ``query.operationName``
      / ``query.operation_name``;
    - ``query.startTimeMin`` / ``query.start_time_min`` and
      ``query.startTimeMax`` / ``query.start_time_max``: RFC 3339 with up to
      nanoseconds (:func:`parse_rfc3339_ns`), both required;
    - ``query.durationMin`` / ``query.duration_min``, ``query.durationMax`` /
      ``query.duration_max``: Go durations;
    - ``query.searchDepth`` / ``query.search_depth`` / ``query.num_traces``:
      a uint32 above 0, :data:`DEFAULT_LIMIT` when absent;
    - ``query.attributes``: a JSON object of strings (the gateway reads one
      JSON map; there is no repeated ``key:value`` form).

    Jaeger leaves the range checks to its query service; we make them here:
    both times given and ordered, the depth above zero, ``max`` duration not
    below ``min``. No clock is needed: an api_v3 search always names its window.

    Raises:
        ParameterError: naming the parameter as the client spelled it.
    """
    attributes: dict[str, str] = {}
    attributes_text = _first(params, _V3_ATTRIBUTES)
    if attributes_text:
        attributes = _json_string_map(
            attributes_text, _V3_ATTRIBUTES, f"malformed parameter {_V3_ATTRIBUTES}"
        )
    time_min = _v3_time(params, _V3_TIME_MIN)
    time_max = _v3_time(params, _V3_TIME_MAX)
    depth_text, depth_param = _v3_param(params, _V3_SEARCH_DEPTH)
    limit = DEFAULT_LIMIT
    if depth_text:
        if not _UNSIGNED.fullmatch(depth_text):
            raise ParameterError(
                depth_param,
                f"malformed parameter {depth_param}: "
                + _num_error("ParseUint", depth_text, "invalid syntax"),
            )
        limit = int(depth_text)
        if limit > _MAX_UINT32:
            raise ParameterError(
                depth_param,
                f"malformed parameter {depth_param}: "
                + _num_error("ParseUint", depth_text, "value out of range"),
            )
        if limit == 0:
            raise ParameterError(
                depth_param, f"invalid parameter: {depth_param} must be greater than 0"
            )
    min_duration = _v3_duration(params, _V3_DURATION_MIN)
    max_duration = _v3_duration(params, _V3_DURATION_MAX)

    if time_min is None or time_max is None:
        missing = _V3_TIME_MIN[1] if time_min is None else _V3_TIME_MAX[1]
        raise ParameterError(missing, f"{_V3_TIME_MIN[1]} and {_V3_TIME_MAX[1]} are required")
    if time_min[0] > time_max[0]:
        raise ParameterError(
            time_min[1], f"invalid parameter: {time_min[1]} must not be after {time_max[1]}"
        )
    if min_duration and max_duration and max_duration[0] < min_duration[0]:
        raise ParameterError(
            max_duration[1],
            f"invalid parameter: {max_duration[1]} must not be below {min_duration[1]}",
        )
    return V3Query(
        service=_v3_param(params, _V3_SERVICE)[0] or None,
        operation=_v3_param(params, _V3_OPERATION)[0] or None,
        attributes=attributes,
        start_min_ns=time_min[0],
        start_max_ns=time_max[0],
        min_duration_ns=(min_duration[0] or None) if min_duration else None,
        max_duration_ns=(max_duration[0] or None) if max_duration else None,
        limit=limit,
    )


def parse_v3_trace_lookup(trace_id: str, params: Mapping[str, Sequence[str]]) -> JaegerTraceIds:
    """``/api/v3/traces/{trace_id}``: optional ``startTime``/``start_time`` and
    ``endTime``/``end_time`` in RFC 3339 (``http_gateway.go``, ``getTrace``).

    Raises:
        ParameterError: naming ``trace_id`` or the time parameter.
    """
    problem = _trace_id_problem(trace_id)
    if problem:
        raise ParameterError("trace_id", f"malformed parameter trace_id: {problem}")
    start = _v3_time(params, _V3_START)
    end = _v3_time(params, _V3_END)
    return JaegerTraceIds(
        (bytes.fromhex(trace_id.rjust(32, "0")),),
        start_min_ns=None if start is None else start[0],
        start_max_ns=None if end is None else end[0],
    )


def _v3_param(params: Mapping[str, Sequence[str]], names: Sequence[str]) -> tuple[str, str]:
    for name in names:
        value = _first(params, name)
        if value:
            return value, name
    return "", names[0]


def _v3_time(params: Mapping[str, Sequence[str]], names: Sequence[str]) -> tuple[int, str] | None:
    text, name = _v3_param(params, names)
    if not text:
        return None
    try:
        return parse_rfc3339_ns(text), name
    except ValueError as e:
        raise ParameterError(name, f"malformed parameter {name}: {e}") from None


def _v3_duration(
    params: Mapping[str, Sequence[str]], names: Sequence[str]
) -> tuple[int, str] | None:
    text, name = _v3_param(params, names)
    if not text:
        return None
    try:
        return parse_go_duration_ns(text), name
    except ValueError as e:
        raise ParameterError(name, f"malformed parameter {name}: {e}") from None


# ------------------------------------------------------------- Go's grammars

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 micro sign
    "\u03bcs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_TWO_63 = 1 << 63


def parse_go_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration``, in nanoseconds.

    ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`` with the units ``ns``, ``us``
    (or ``µs``, ``μs``), ``ms``, ``s``, ``m``, ``h``: ``300ms``, ``-1.5h``,
    ``2h45m``, ``.5s``, ``5.s``. A unit is required except for a bare ``0``.
    Fractions are scaled through a float64 as Go does, and the result must
    fit an int64 (down to -2**63). Raises :class:`ValueError` with Go's
    message.
    """
    original = text
    negative = False
    if text and text[0] in "+-":
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise _invalid_duration(original)
    total = 0
    while text:
        if not (text[0] == "." or "0" <= text[0] <= "9"):
            raise _invalid_duration(original)
        # The integer part (leadingInt): overflow is an error.
        whole = 0
        i = 0
        while i < len(text) and "0" <= text[i] <= "9":
            if whole > _TWO_63 // 10:
                raise _invalid_duration(original)
            whole = whole * 10 + ord(text[i]) - 48
            if whole > _TWO_63:
                raise _invalid_duration(original)
            i += 1
        had_whole = i > 0
        text = text[i:]
        # The fraction (leadingFraction): past int64, digits stop counting.
        fraction = 0
        scale = 1.0
        had_fraction = False
        if text and text[0] == ".":
            text = text[1:]
            i = 0
            overflow = False
            while i < len(text) and "0" <= text[i] <= "9":
                if not overflow:
                    if fraction > (_TWO_63 - 1) // 10:
                        overflow = True
                    else:
                        fraction = fraction * 10 + ord(text[i]) - 48
                        scale *= 10
                i += 1
            had_fraction = i > 0
            text = text[i:]
        if not had_whole and not had_fraction:
            raise _invalid_duration(original)
        i = 0
        while i < len(text) and not (text[i] == "." or "0" <= text[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {_go_quote(original)}")
        unit_name, text = text[:i], text[i:]
        unit = _NS_PER_UNIT.get(unit_name)
        if unit is None:
            raise ValueError(
                f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(original)}"
            )
        if whole > _TWO_63 // unit:
            raise _invalid_duration(original)
        whole *= unit
        if fraction > 0:
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _TWO_63:
                raise _invalid_duration(original)
        total += whole
        if total > _TWO_63:
            raise _invalid_duration(original)
    if negative:
        return -total
    if total > _TWO_63 - 1:
        raise _invalid_duration(original)
    return total


def parse_go_duration(text: str) -> float:
    """:func:`parse_go_duration_ns` in seconds (a float: exact to the nanosecond
    only below about 104 days; keep the nanoseconds where that matters)."""
    return parse_go_duration_ns(text) / 1e9


def _invalid_duration(text: str) -> ValueError:
    return ValueError(f"time: invalid duration {_go_quote(text)}")


def _go_quote(text: str) -> str:
    # time's quote(): non-ASCII and control characters as \x escapes of
    # their UTF-8 bytes, '"' and '\' escaped, the rest as is.
    out = ['"']
    for char in text:
        if char < " " or char >= "\x80":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_rfc3339_ns(text: str) -> int:
    """An RFC 3339 time as Unix nanoseconds, as Go's ``time.Parse(time.RFC3339Nano, ...)``.

    ``2024-01-31T12:00:00Z``, ``2024-01-31T12:00:00.123456789+02:00``: an
    upper-case ``T`` and ``Z``, two-digit fields checked against the
    calendar (leap years included; no leap second), a fraction of any
    length cut to nanoseconds, an offset of at most 23:59. This is Go's
    strict RFC 3339 path (``parseRFC3339``); the looser forms its fallback
    parser also lets through (a one-digit hour, a comma before the fraction)
    are refused. Raises :class:`ValueError`.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"parsing time {_go_quote(text)}: not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zone = match.group(7), match.group(8)
    if not 1 <= month <= 12:
        raise ValueError(f"parsing time {_go_quote(text)}: month out of range")
    if not 1 <= day <= _days_in_month(year, month):
        raise ValueError(f"parsing time {_go_quote(text)}: day out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"parsing time {_go_quote(text)}: time out of range")
    offset = 0
    if zone != "Z":
        zone_hour, zone_minute = int(zone[1:3]), int(zone[4:6])
        if zone_hour > 23 or zone_minute > 59:
            raise ValueError(f"parsing time {_go_quote(text)}: time zone offset out of range")
        offset = (zone_hour * 60 + zone_minute) * 60 * (-1 if zone[0] == "-" else 1)
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset) * 1_000_000_000 + nanos


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar (any year,
    # including Go's year 0, which Python's datetime cannot hold).
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468
