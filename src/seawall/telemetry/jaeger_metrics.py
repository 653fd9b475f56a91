"""Jaeger's dependencies and Monitor-tab APIs, sans-I/O: parameters in, JSON out (issue 16).

``seawall traces`` answers, from the spans it stores:

- ``GET /api/dependencies?endTs=&lookback=`` (and ``service=``), the edges
  of :func:`~seawall.telemetry.analytics.graph` as Jaeger's
  ``[{"parent", "child", "callCount"}]`` in the ``/api/`` envelope
  (:func:`parse_dependencies_query`, :func:`dependencies_response`);
- ``GET /api/metrics/latencies``, ``/calls`` and ``/errors``, Jaeger's span
  metrics (SPM) as one ``MetricFamily`` each (:func:`parse_metrics_query`,
  :func:`metric_family`, :func:`metric_family_json`), computed by
  :func:`~seawall.telemetry.analytics.span_metrics`;
- ``GET /api/metrics/minstep`` (:func:`minstep_response`).

Errors raise :class:`~seawall.telemetry.jaeger.ParameterError` naming the
parameter, in Jaeger's words; the handler answers 400 with
``envelope(None, errors=[structured_error(str(e), code=400)])``, as Jaeger's
``handleError`` does.

Where each rule comes from (jaegertracing/jaeger):

- routes, which answers are enveloped and how: ``cmd/jaeger/internal/extension/
  jaegerquery/internal/http_handler.go`` (``dependencies``, ``latencies``,
  ``calls``, ``errors``, ``minStep``, ``metrics``, ``writeJSON``): the metric
  answers are the bare ``MetricFamily`` written by gogo ``jsonpb``
  (``newProtoJSONMarshaler`` in ``json_marshaler.go``), ``minstep`` is
  ``{"data": <ms>}`` in the envelope, dependencies are deduplicated
  ``ui.DependencyLink`` values (``internal/uimodel/model.go``) in the envelope;
- parameters, defaults and messages: ``.../jaegerquery/internal/query_parser.go``
  (``parseMetricsQueryParams``, ``parseDependenciesQueryParams``,
  ``parseSpanKinds``, ``newParseError``) and ``default_params.go``;
  span kind names: ``internal/jptrace`` (``StringToProtoSpanKind``);
- the metric names, help texts and labels: the Prometheus reader,
  ``internal/storage/metricstore/prometheus/metricstore/reader.go`` (and
  ``dbmodel/to_domain.go``: ``span_name`` is renamed ``operation``, points are
  ``GaugeValue.doubleValue`` with a ``Timestamp``);
- the message types: ``model/proto/metrics/openmetrics.proto``
  (``MetricFamily{name, type, unit, help, metrics}``, ``Metric{labels,
  metricPoints}``, ``MetricPoint{oneof value; timestamp}``, ``GaugeValue{oneof
  doubleValue, intValue}``).

How gogo ``jsonpb`` writes them (``EmitDefaults`` off, ``OrigName`` off):
lowerCamelCase names in field order; the enum by name (``"GAUGE"``); empty
strings and empty lists left out (so ``unit`` never appears, and a family
with no series has no ``metrics``); a oneof always written, zero included
(``{"gaugeValue": {"doubleValue": 0}}``); a ``double`` as Go's
``encoding/json`` writes it, but NaN and the infinities as the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"``; a ``Timestamp`` as RFC 3339 in
UTC with 0, 3, 6 or 9 fractional digits (``"2024-01-31T12:00:00.500Z"``).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .analytics import MAX_POINTS, EdgeStats, SpanMetrics, SpanMetricsQuery
from .jaeger import ParameterError, envelope
from .spans import SpanKind

__all__ = [
    "DEFAULT_DEPENDENCY_LOOKBACK_MS",
    "DEFAULT_LOOKBACK_MS",
    "DEFAULT_RATE_PER_MS",
    "DEFAULT_STEP_MS",
    "MIN_STEP_MS",
    "DependenciesQuery",
    "Metric",
    "dependencies_response",
    "metric_family",
    "metric_family_json",
    "minstep_response",
    "parse_dependencies_query",
    "parse_metrics_query",
]

Metric = Literal["latencies", "calls", "errors"]

DEFAULT_DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000
"""``/api/dependencies`` without ``lookback``: a day (``defaultDependencyLookbackDuration``)."""
DEFAULT_LOOKBACK_MS = 3600 * 1000
"""Metrics without ``lookback``: an hour (``defaultMetricsQueryLookbackDuration``)."""
DEFAULT_STEP_MS = 5 * 1000
"""Metrics without ``step``: 5 s (``defaultMetricsQueryStepDuration``)."""
DEFAULT_RATE_PER_MS = 10 * 60 * 1000
"""Metrics without ``ratePer``: 10 minutes (``defaultMetricsQueryRateDuration``)."""
MIN_STEP_MS = 1
"""What ``/api/metrics/minstep`` answers: 1 ms, as Jaeger's Prometheus reader
(``minStep``); the points per series are bounded by
:data:`~seawall.telemetry.analytics.MAX_POINTS` instead."""

_NS_PER_MS = 1_000_000
_MAX_INT64 = (1 << 63) - 1
_MIN_INT64 = -(1 << 63)
_MAX_END_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last Timestamp jsonpb writes
_MIN_TIMESTAMP_NS = -62_135_596_800 * 1_000_000_000  # 0001-01-01T00:00:00Z, the first

# jptrace.StringToProtoSpanKind: the lowercase names (the current version
# lower-cases its input first, so any case is accepted).
_SPAN_KINDS = {
    "unspecified": SpanKind.UNSPECIFIED,
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}

# --------------------------------------------------------- Go's parsers

_DECIMAL = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_SPECIAL_FLOATS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"}
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def _parse_error(param: str, detail: str) -> ParameterError:
    # newParseError: "unable to parse param '%s': %w"
    return ParameterError(param, f"unable to parse param '{param}': {detail}")


def _quote(text: str) -> str:
    # strconv.Quote, for the texts a query string can carry
    return json.dumps(text, ensure_ascii=False)


def _first(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _int64(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    """``strconv.ParseInt(value, 10, 64)`` of the first value; ``None`` when empty."""
    text = _first(params, name)
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise _parse_error(name, f"strconv.ParseInt: parsing {_quote(text)}: invalid syntax")
    value = int(text)
    if not _MIN_INT64 <= value <= _MAX_INT64:
        raise _parse_error(name, f"strconv.ParseInt: parsing {_quote(text)}: value out of range")
    return value


def _float64(params: Mapping[str, Sequence[str]], name: str) -> float:
    """``strconv.ParseFloat(value, 64)`` of the first value (an empty one is invalid)."""
    text = _first(params, name)
    value: float | None = None
    if _FLOAT.fullmatch(text):
        value = float(text)
    elif _HEX_FLOAT.fullmatch(text):
        value = float.fromhex(text)
    elif text.lower() in _SPECIAL_FLOATS:
        value = float(text)
    if value is None:
        raise _parse_error(name, f"strconv.ParseFloat: parsing {_quote(text)}: invalid syntax")
    if math.isinf(value) and text.lower().lstrip("+-") not in ("inf", "infinity"):
        raise _parse_error(name, f"strconv.ParseFloat: parsing {_quote(text)}: value out of range")
    return value


def _bool(params: Mapping[str, Sequence[str]], name: str) -> bool:
    """``strconv.ParseBool`` of the first value; ``False`` when empty."""
    text = _first(params, name)
    if not text:
        return False
    value = _GO_BOOLS.get(text)
    if value is None:
        raise _parse_error(name, f"strconv.ParseBool: parsing {_quote(text)}: invalid syntax")
    return value


def _end_ns(params: Mapping[str, Sequence[str]], now_ms: int) -> int:
    end_ms = _int64(params, "endTs")
    if end_ms is None:
        end_ms = now_ms
    # Jaeger multiplies into a time.Duration without a check (and wraps); a
    # Timestamp jsonpb can write must be in years 1 to 9999, and spans are
    # stored from 1970 on.
    if not 0 <= end_ms <= _MAX_END_MS:
        raise ParameterError(
            "endTs", f"invalid parameter: endTs must be between 0 and {_MAX_END_MS}, got {end_ms}"
        )
    return end_ms * _NS_PER_MS


def _duration_ms(params: Mapping[str, Sequence[str]], name: str, default: int) -> int:
    """newDurationUnitsParser(time.Millisecond): an int64 of milliseconds."""
    value = _int64(params, name)
    return default if value is None else value


# --------------------------------------------------------- /api/dependencies


@dataclass(frozen=True, slots=True)
class DependenciesQuery:
    """``/api/dependencies``: the edges of ``[end_ns - lookback_ns, end_ns]``, and
    the ``service`` they must touch (``None``: all)."""

    end_ns: int
    lookback_ns: int
    service: str | None = None

    @property
    def start_ns(self) -> int:
        return max(0, self.end_ns - self.lookback_ns)


def parse_dependencies_query(params: Mapping[str, Sequence[str]], now_ms: int) -> DependenciesQuery:
    """Read ``/api/dependencies`` parameters (``parseDependenciesQueryParams``).

    ``endTs``: Unix milliseconds, *now_ms* when absent; ``lookback``:
    milliseconds, :data:`DEFAULT_DEPENDENCY_LOOKBACK_MS` when absent (Jaeger
    accepts a negative one, which selects nothing, and so do we);
    ``service``: keep the edges whose parent or child it is.

    Raises:
        ParameterError: naming ``endTs`` or ``lookback``.
    """
    end_ns = _end_ns(params, now_ms)
    lookback_ms = _duration_ms(params, "lookback", DEFAULT_DEPENDENCY_LOOKBACK_MS)
    return DependenciesQuery(
        end_ns=end_ns,
        lookback_ns=max(0, lookback_ms) * _NS_PER_MS,
        service=_first(params, "service") or None,
    )


def dependencies_response(
    edges: Iterable[EdgeStats], *, service: str | None = None
) -> dict[str, Any]:
    """``/api/dependencies``'s answer: ``{"data": [{"parent", "child", "callCount"}], ...}``.

    One link per (caller, callee) with its calls (answered and unanswered),
    sorted (Jaeger's order is a Go map's: unspecified). With ``service``,
    only the links it is the parent or the child of (``filterDependenciesByService``).
    ``data`` is ``[]``, never ``null``, when there is none.
    """
    counts: dict[tuple[str, str], int] = {}
    for edge in edges:
        if service is not None and service not in (edge.caller, edge.callee):
            continue
        key = (edge.caller, edge.callee)
        counts[key] = counts.get(key, 0) + edge.calls
    links = [
        {"parent": parent, "child": child, "callCount": n}
        for (parent, child), n in sorted(counts.items())
    ]
    return envelope(links)


# ---------------------------------------------------------- /api/metrics/*


def parse_metrics_query(
    metric: Metric, params: Mapping[str, Sequence[str]], now_ms: int
) -> SpanMetricsQuery:
    """Read ``/api/metrics/{latencies,calls,errors}`` parameters as Jaeger does.

    In Jaeger's order (the first error wins):

    - ``quantile`` (latencies only, first): ``strconv.ParseFloat``; required.
      Jaeger passes any number on to its metrics store; we also require
      ``0 < quantile < 1``;
    - ``service``: required, repeated (one series per service); present but
      empty counts as given, as in Jaeger (``query["service"]``);
    - ``groupByOperation``: ``strconv.ParseBool``, ``false`` when absent;
    - ``spanKind``: repeated, ``unspecified``, ``internal``, ``server``,
      ``client``, ``producer`` or ``consumer``; ``server`` when absent;
    - ``endTs``: Unix ms, *now_ms* when absent;
    - ``lookback``, ``step``, ``ratePer``: ms, :data:`DEFAULT_LOOKBACK_MS`,
      :data:`DEFAULT_STEP_MS`, :data:`DEFAULT_RATE_PER_MS` when absent.

    Then what Jaeger leaves to Prometheus, which refuses it: ``step`` and
    ``ratePer`` above 0, ``lookback`` not negative (nor reaching before the
    year 1, which a ``Timestamp`` cannot hold), and at most
    :data:`~seawall.telemetry.analytics.MAX_POINTS` points (Prometheus'
    message, naming ``step``).

    Raises:
        ParameterError: naming the parameter.
    """
    quantile = 0.95
    if metric == "latencies":
        quantile = _float64(params, "quantile")
    elif metric not in ("calls", "errors"):
        raise ValueError(f"metric must be 'latencies', 'calls' or 'errors', got {metric!r}")
    services = params.get("service")
    if not services:
        raise _parse_error("service", "please provide at least one service name")
    group_by_operation = _bool(params, "groupByOperation")
    kinds: tuple[int, ...] = (SpanKind.SERVER,)
    if "spanKind" in params:
        found = []
        for name in params["spanKind"]:
            kind = _SPAN_KINDS.get(name.lower())
            if kind is None:
                raise _parse_error("spanKind", f"unsupported span kind: '{name}'")
            found.append(kind)
        kinds = tuple(dict.fromkeys(found)) or kinds
    end_ns = _end_ns(params, now_ms)
    lookback = _duration_ms(params, "lookback", DEFAULT_LOOKBACK_MS)
    step = _duration_ms(params, "step", DEFAULT_STEP_MS)
    rate_per = _duration_ms(params, "ratePer", DEFAULT_RATE_PER_MS)
    if metric == "latencies" and not 0 < quantile < 1:
        raise ParameterError(
            "quantile",
            f"invalid parameter: quantile must be between 0 and 1 (exclusive), got {quantile!r}",
        )
    for name, value in (("step", step), ("ratePer", rate_per)):
        if value <= 0:
            raise ParameterError(name, f"invalid parameter: {name} must be greater than 0")
    if lookback < 0:
        raise ParameterError("lookback", "invalid parameter: lookback must not be negative")
    if end_ns - lookback * _NS_PER_MS < _MIN_TIMESTAMP_NS:
        raise ParameterError(
            "lookback", "invalid parameter: lookback must not reach before the year 1"
        )
    if lookback // step + 1 > MAX_POINTS:
        raise ParameterError(
            "step",
            f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)",
        )
    return SpanMetricsQuery(
        services=tuple(services),
        end_ns=end_ns,
        lookback_ns=lookback * _NS_PER_MS,
        step_ns=step * _NS_PER_MS,
        rate_per_ns=rate_per * _NS_PER_MS,
        group_by_operation=group_by_operation,
        span_kinds=kinds,
        quantile=quantile,
    )


def _family_name(metric: Metric, query: SpanMetricsQuery) -> tuple[str, str]:
    # reader.go: GetLatencies / GetCallRates / GetErrorRates, and executeQuery,
    # which renames "service" to "service_operation" and appends " & operation".
    if metric == "latencies":
        name, text = (
            "service_latencies",
            f"{query.quantile:.2f}th quantile latency, grouped by service",
        )
    elif metric == "calls":
        name, text = "service_call_rate", "calls/sec, grouped by service"
    else:
        name = "service_error_rate"
        text = "error rate, computed as a fraction of errors/sec over calls/sec, grouped by service"
    if query.group_by_operation:
        name = name.replace("service", "service_operation", 1)
        text += " & operation"
    return name, text


def _values(
    metric: Metric, metrics: SpanMetrics
) -> list[tuple[list[tuple[str, str]], Sequence[float]]]:
    out = []
    for series in metrics.series:
        labels = [("service_name", series.service)]
        if series.operation is not None:
            labels.append(("operation", series.operation))
        if metric == "latencies":
            values: Sequence[float] = series.latency_ms
        elif metric == "calls":
            values = series.call_rate
        else:
            values = series.error_rate
        out.append((labels, values))
    return out


def metric_family(metric: Metric, metrics: SpanMetrics) -> dict[str, Any]:
    """The ``MetricFamily`` answer, as ``json.loads`` of :func:`metric_family_json`.

    ``{"name", "type": "GAUGE", "help", "metrics": [{"labels": [{"name":
    "service_name", "value"}, {"name": "operation", "value"}], "metricPoints":
    [{"gaugeValue": {"doubleValue": v}, "timestamp": "..."}]}]}``. Values:
    latencies in ms, the query's quantile; calls per second; errors per call.
    A point without calls in its window is ``"NaN"`` for latencies and
    errors (``0/0``, as Prometheus computes it) and ``0`` for calls. One
    series per service (and operation) that had spans, sorted; ``metrics``
    is left out when there is none, as jsonpb leaves out empty lists.
    """
    decoded: dict[str, Any] = json.loads(metric_family_json(metric, metrics))
    return decoded


def metric_family_json(metric: Metric, metrics: SpanMetrics) -> str:
    """The JSON text of :func:`metric_family`, byte for byte as Jaeger's jsonpb writes it."""
    name, text = _family_name(metric, metrics.query)
    parts = [f'{{"name":{_go_string(name)},"type":"GAUGE","help":{_go_string(text)}']
    stamps = [_timestamp(t) for t in metrics.timestamps_ns]
    series = []
    for labels, values in _values(metric, metrics):
        label_text = ",".join(
            f'{{"name":{_go_string(k)},"value":{_go_string(v)}}}' for k, v in labels
        )
        points = ",".join(
            f'{{"gaugeValue":{{"doubleValue":{_double(v)}}},"timestamp":"{stamp}"}}'
            for v, stamp in zip(values, stamps, strict=True)
        )
        series.append(f'{{"labels":[{label_text}],"metricPoints":[{points}]}}')
    if series:
        parts.append(f',"metrics":[{",".join(series)}]')
    parts.append("}")
    return "".join(parts)


def minstep_response() -> dict[str, Any]:
    """``/api/metrics/minstep``'s answer: the envelope around :data:`MIN_STEP_MS`,
    ``{"data": 1, "total": 0, "limit": 0, "offset": 0, "errors": null}``."""
    return envelope(MIN_STEP_MS)


# ------------------------------------------------------- jsonpb's writing


def _timestamp(ns: int) -> str:
    # gogo jsonpb, google.protobuf.Timestamp: RFC 3339 in UTC, the fraction
    # written with 9 digits and then shortened by groups of three zeros.
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        fraction = f"{nanos:09d}"
        while fraction.endswith("000"):
            fraction = fraction[:-3]
        text += "." + fraction
    return text + "Z"


def _double(value: float) -> str:
    # jsonpb writes NaN and the infinities as strings, other doubles through
    # encoding/json: the shortest digits, positional from 1e-6 to below 1e21,
    # else an exponent without a leading zero (1e-07 -> 1e-7).
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = repr(float(value))
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(text).normalize(), "f")
    mantissa, _, exponent = text.partition("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits}"


_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _go_string(text: str) -> str:
    # encoding/json's string: Python's escapes, plus Go's HTML-safe ones.
    return json.dumps(text, ensure_ascii=False).translate(_GO_HTML_ESCAPES)
