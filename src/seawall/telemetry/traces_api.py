"""What ``seawall traces`` answers, sans-I/O: a request in, an :class:`Answer` out.

One store behind three ways in (the aiohttp server in
:mod:`seawall.telemetry.collector` only moves bytes):

===============================================  ======================================
``POST /v1/traces``                              OTLP/HTTP, protobuf or JSON, gzip
                                                 (:mod:`~seawall.telemetry.receiver`)
``GET /api/v3/services``, ``/api/v3/operations``  Jaeger's api_v3 (OTLP JSON traces)
``GET /api/v3/traces``, ``/api/v3/traces/{id}``
``GET /api/services``, ``/api/operations``,       Jaeger's HTTP JSON API, the one the
``/api/services/{s}/operations``,                 Jaeger UI and Grafana's Jaeger data
``/api/traces``, ``/api/traces/{id}``,            source read (issue 16)
``/api/dependencies``, ``/api/metrics/*``
``GET /metrics``, ``/health``                     the collector's own
===============================================  ======================================

Every query parameter is checked: a bad one is 400 with a message naming it,
in the route's own error shape (Jaeger's envelope under ``/api/``, api_v3's
``{"error": {...}}`` under ``/api/v3/``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import analytics, jaeger, jaeger_metrics
from .receiver import Received, receive, status_body
from .spans import SpanKind, SpanRow
from .store import TraceQuery, TraceStore

__all__ = ["Answer", "TracesAPI"]

_JSON_TYPE = "application/json"
_KIND_BY_NAME = {
    "unspecified": SpanKind.UNSPECIFIED,
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
_NAME_BY_KIND = {v: k for k, v in _KIND_BY_NAME.items() if k != "unspecified"}
_METRICS: dict[str, jaeger_metrics.Metric] = {
    "latencies": "latencies",
    "calls": "calls",
    "errors": "errors",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A status, a body and its headers: the server sends it as it is."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def _json(status: int, body: str | bytes | Any, **headers: str) -> Answer:
    if not isinstance(body, str | bytes):
        body = json.dumps(body, separators=(",", ":"))
    data = body.encode() if isinstance(body, str) else body
    return Answer(status, data, {"Content-Type": _JSON_TYPE, **headers})


class _NotFound(Exception):
    pass


class TracesAPI:
    """The routes of ``seawall traces`` over one :class:`TraceStore`.

    ``ingest`` takes the spans of one accepted export request and says
    whether they were queued (``False``: the collector is overloaded; the
    client is told 503 with ``Retry-After`` and retries, as OTLP allows).
    ``wall`` is Unix seconds (for Jaeger's default search window).
    """

    def __init__(
        self,
        store: TraceStore,
        *,
        ingest: Callable[[list[SpanRow]], bool],
        max_body: int = 64 * 1024 * 1024,
        wall: Callable[[], float] = time.time,
        metrics: Callable[[], str] = lambda: "",
        extra: Callable[[str, Mapping[str, list[str]]], Answer | None] | None = None,
    ) -> None:
        self.store = store
        self._ingest = ingest
        self.max_body = max_body
        self._wall = wall
        self._metrics = metrics
        self._extra = extra
        self.received = 0
        self.rejected = 0
        self.refused = 0

    # -------------------------------------------------------------- OTLP in

    def export(
        self, body: bytes, *, content_type: str | None, content_encoding: str | None
    ) -> Answer:
        """``POST /v1/traces``."""
        got = receive(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_body=self.max_body,
        )
        if not isinstance(got, Received):
            self.refused += 1
            return Answer(got.status, got.answer(), {"Content-Type": got.content_type})
        if got.rows and not self._ingest(got.rows):
            self.refused += 1
            message = "the collector is catching up with its store: retry later"
            return Answer(
                503,
                status_body(14, message, got.content_type),
                {"Content-Type": got.content_type, "Retry-After": "1"},
            )
        self.received += len(got.rows)
        self.rejected += got.rejected
        return Answer(200, got.answer(), {"Content-Type": got.content_type})

    # -------------------------------------------------------------- queries

    def get(self, path: str, params: Mapping[str, list[str]]) -> Answer:
        """Every ``GET`` route; 404 for a path that is none of them."""
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:2] == ["api", "v3"]:
                return self._v3(parts[2:], params)
            if parts[:1] == ["api"]:
                return self._api(parts[1:], params)
        except jaeger.ParameterError as exc:
            if parts[:2] == ["api", "v3"]:
                return _json(400, jaeger.v3_error(400, str(exc)))
            return _api_error(400, str(exc))
        if path == "/metrics":
            return Answer(
                200,
                self._metrics().encode(),
                {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )
        if path == "/health":
            return _json(200, {"status": "ok"})
        if self._extra is not None:
            answer = self._extra(path, params)
            if answer is not None:
                return answer
        return _json(404, {"error": f"no route {path!r}"})

    # ----------------------------------------------------- Jaeger's api_v3

    def _v3(self, parts: list[str], params: Mapping[str, list[str]]) -> Answer:
        store = self.store
        if parts == ["services"]:
            return _json(200, jaeger.v3_services(store.services()))
        if parts == ["operations"]:
            service = _one(params, "service") or _one(params, "query.service_name")
            if not service:
                raise jaeger.ParameterError("service", "parameter 'service' is required")
            kind_name = _one(params, "span_kind") or _one(params, "spanKind")
            kind = _span_kind(kind_name, "span_kind")
            ops = store.operations(service, kind)
            return _json(200, jaeger.v3_operations((n, _NAME_BY_KIND.get(k, "")) for n, k in ops))
        if len(parts) == 2 and parts[0] == "traces":
            lookup = jaeger.parse_v3_trace_lookup(parts[1], params)
            rows = store.trace(lookup.trace_ids[0])
            if not rows:
                return _json(404, jaeger.v3_error(404, "trace not found"))
            return _json(200, jaeger.v3_result_json(rows))
        if parts == ["traces"]:
            q = jaeger.parse_v3_query(params)
            found = self._find(_store_query(q))
            if not found:
                return _json(404, jaeger.v3_error(404, jaeger.V3_NO_TRACES))
            return _json(200, jaeger.v3_result_json(r for rows in found for r in rows))
        return _json(404, jaeger.v3_error(404, f"no route /api/v3/{'/'.join(parts)}"))

    # ------------------------------------------------ Jaeger's HTTP JSON API

    def _api(self, parts: list[str], params: Mapping[str, list[str]]) -> Answer:
        store = self.store
        if parts == ["services"]:
            names = store.services()
            return _json(200, jaeger.envelope(names, total=len(names)))
        if len(parts) == 3 and parts[0] == "services" and parts[2] == "operations":
            names = sorted({n for n, _ in store.operations(parts[1])})
            return _json(200, jaeger.envelope(names, total=len(names)))
        if parts == ["operations"]:
            service = _one(params, "service")
            if not service:
                raise jaeger.ParameterError("service", "parameter 'service' is required")
            kind = _span_kind(_one(params, "spanKind"), "spanKind")
            ops = [
                {"name": n, "spanKind": _NAME_BY_KIND.get(k, "")}
                for n, k in store.operations(service, kind)
            ]
            return _json(200, jaeger.envelope(ops, total=len(ops)))
        if parts == ["traces"]:
            now_us = int(self._wall() * 1_000_000)
            q = jaeger.parse_trace_query(params, now_us)
            if isinstance(q, jaeger.JaegerTraceIds):
                return self._by_ids(q.trace_ids)
            found = self._find(_store_query(q))
            rows = [r for trace in found for r in trace]
            return _json(200, jaeger.envelope_json(jaeger.to_jaeger_traces_json(rows)))
        if len(parts) == 2 and parts[0] == "traces":
            lookup = jaeger.parse_trace_lookup(parts[1], params)
            rows = store.trace(lookup.trace_ids[0])
            if not rows:
                error = jaeger.structured_error(jaeger.TRACE_NOT_FOUND, code=404)
                return _json(404, jaeger.envelope(None, errors=[error]))
            return _json(200, jaeger.envelope_json("[" + jaeger.to_jaeger_trace_json(rows) + "]"))
        if parts == ["dependencies"]:
            now_ms = int(self._wall() * 1000)
            dq = jaeger_metrics.parse_dependencies_query(params, now_ms)
            links = analytics.graph(store, dq.start_ns, dq.end_ns).edges
            return _json(200, jaeger_metrics.dependencies_response(links, service=dq.service))
        if parts == ["metrics", "minstep"]:
            return _json(200, jaeger_metrics.minstep_response())
        if len(parts) == 2 and parts[0] == "metrics" and parts[1] in _METRICS:
            metric: jaeger_metrics.Metric = _METRICS[parts[1]]
            now_ms = int(self._wall() * 1000)
            mq = jaeger_metrics.parse_metrics_query(metric, params, now_ms)
            series = analytics.span_metrics(store, mq)
            return _json(200, jaeger_metrics.metric_family_json(metric, series))
        if self._extra is not None:
            answer = self._extra("/api/" + "/".join(parts), params)
            if answer is not None:
                return answer
        return _api_error(404, f"no route /api/{'/'.join(parts)}")

    def _by_ids(self, ids: Sequence[bytes]) -> Answer:
        """Several traces by id: the ones not found are listed in ``errors``."""
        found = self.store.traces(list(dict.fromkeys(ids)))
        rows: list[SpanRow] = []
        errors: list[dict[str, object]] = []
        for trace_id in dict.fromkeys(ids):
            spans = found.get(trace_id)
            if spans:
                rows.extend(spans)
            else:
                errors.append(jaeger.structured_error(jaeger.TRACE_NOT_FOUND, trace_id=trace_id))
        body = jaeger.envelope_json(jaeger.to_jaeger_traces_json(rows), errors=errors or None)
        return _json(200, body)

    def _find(self, query: TraceQuery) -> list[list[SpanRow]]:
        summaries = self.store.search(query)
        by_id = self.store.traces([s.trace_id for s in summaries])
        return [by_id[s.trace_id] for s in summaries if by_id.get(s.trace_id)]


def _one(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _span_kind(name: str, param: str) -> int | None:
    if not name:
        return None
    kind = _KIND_BY_NAME.get(name.lower().removeprefix("span_kind_"))
    if kind is None:
        raise jaeger.ParameterError(
            param,
            f"parameter '{param}': {name!r} is not a span kind "
            f"(one of {', '.join(k for k in _KIND_BY_NAME if k != 'unspecified')})",
        )
    return kind


def _store_query(q: jaeger.JaegerTraceQuery | jaeger.V3Query) -> TraceQuery:
    """The store's query for a Jaeger search; negative values are the client's error."""
    v3 = isinstance(q, jaeger.V3Query)
    start_min_ns = q.start_min_ns or None if v3 else q.start_min_ns
    start_max_ns = q.start_max_ns or None if v3 else q.start_max_ns
    for name, value in (
        ("query.start_time_min" if v3 else "start", start_min_ns),
        ("query.start_time_max" if v3 else "end", start_max_ns),
        ("query.duration_min" if v3 else "minDuration", q.min_duration_ns),
        ("query.duration_max" if v3 else "maxDuration", q.max_duration_ns),
    ):
        if value is not None and value < 0:
            raise jaeger.ParameterError(name, f"parameter '{name}' must not be negative")
    try:
        return TraceQuery(
            service=q.service or None,
            operation=q.operation or None,
            attributes=dict(q.attributes),
            start_min_ns=start_min_ns,
            start_max_ns=start_max_ns,
            min_duration_ns=q.min_duration_ns,
            max_duration_ns=q.max_duration_ns,
            limit=min(q.limit, 10_000),
        )
    except ValueError as exc:
        raise jaeger.ParameterError("query", str(exc)) from None


def _api_error(status: int, message: str) -> Answer:
    error = jaeger.structured_error(message, code=status)
    return _json(status, jaeger.envelope(None, errors=[error]))
