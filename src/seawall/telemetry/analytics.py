"""Analytics over stored spans: the service graph, span metrics, latency drift,
the heatmap and BubbleUp, trace statistics and trace comparison (issues 10 and 16).

Pure functions over :class:`~seawall.telemetry.spans.SpanRow` sequences, plus
thin wrappers that read a :class:`~seawall.telemetry.store.TraceStore`: the
window scans of :func:`graph`, :func:`span_metrics` and
:meth:`Rollups.from_store` read only the columns they need through a
read-only connection of their own (:func:`_read_direct`, three to ten times
faster), and fall back on :meth:`~TraceStore.spans_between` when the file is
not the schema they know. No clock is read: every window is given.

**Units.** Timestamps are Unix nanoseconds (``*_ns``); durations in results
are milliseconds as floats (``*_ms``), which is what the UI and the JSON
answers show.

**Percentiles.** Over a set of spans the p-th percentile is the nearest-rank
one: the ``ceil(p * n)``-th smallest duration. Where the spans are summed
into histograms instead (:class:`Rollups`, :func:`span_metrics`), the
histogram has log-spaced bins of width ``gamma = (1 + a) / (1 - a)`` with
``a`` = :data:`RELATIVE_ERROR` (1 %): a duration ``d`` falls into bin
``i = ceil(log(d) / log(gamma))``, which holds ``(gamma**(i-1), gamma**i]``,
and the bin is reported as ``2 * gamma**i / (gamma + 1)``, within ``a`` of
every duration in it. The nearest-rank walk over the bins finds the bin of
the true nearest-rank value, so an estimated percentile is within 1 % of the
exact one (DDSketch's argument; durations of 1 ns or less share bin 0,
reported as 0).

**The service graph** (:func:`edges`, :func:`graph`; Tempo's service-graph
rule, grafana/tempo ``modules/generator/processor/servicegraphs``):

- an edge ``caller -> callee`` for every SERVER span whose parent span is in
  another service (the parent is the caller's CLIENT span: with seawall's
  sidecars, the attempt span, so a retried call counts once per attempt that
  reached the callee); the call's latency is the SERVER span's duration and
  it failed when that span's status is ERROR;
- a CLIENT span with no child span at all is a call that no instrumented
  server answered: it counts on the edge to its ``seawall.destination``
  (else ``peer.service``, else ``server.address``), with the CLIENT span's
  duration and status. Such calls are ``unanswered``; an edge whose callee
  recorded no span in the window is ``uninstrumented`` (an external API, a
  database);
- a node's RED counts the requests it served: its SERVER spans whose parent
  is not a SERVER span of the same service (a sidecar's SERVER span and the
  app's SERVER span under it are one request).

Parents and children are joined by (trace id, span id) across the window:
:func:`graph` reads :data:`JOIN_MARGIN_NS` more on either side, counts only
the spans that start inside the window, and waits that long for a child
that comes before its parent (clock skew between hosts). Memory is bounded by
the spans still open (started, and not ended more than the margin ago), plus
8 bytes per counted call for the exact percentiles; the read stops at
``max_spans`` (:data:`MAX_SPANS`, 2 million: at 3,500 spans/s, about ten
minutes of traffic) and says so with ``truncated``. For longer windows, use
:meth:`Rollups.graph`, which answers from per-minute histograms.

**Drift** (:func:`drift`, :class:`Rollups`): ``docs/telemetry/drift.md``.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import sqlite3
import threading
import urllib.parse
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import accumulate, islice
from typing import Any, Literal, Protocol, TypeVar

from .otlpjson import attribute_value
from .spans import SpanKind, SpanRow, StatusCode
from .store import SCHEMA_VERSION, TraceStore, TraceStoreError

__all__ = [
    "DEFAULT_BASELINE_S",
    "DEFAULT_CURRENT_S",
    "DEFAULT_MIN_CALLS",
    "DEFAULT_THRESHOLD",
    "JOIN_MARGIN_NS",
    "MAX_POINTS",
    "MAX_SPANS",
    "POLICY_EVENTS",
    "RELATIVE_ERROR",
    "AttributeDifference",
    "DiffNode",
    "Drift",
    "EdgeStats",
    "Heatmap",
    "NodeStats",
    "RollupStats",
    "Rollups",
    "ServiceGraph",
    "SpanMetricSeries",
    "SpanMetrics",
    "SpanMetricsQuery",
    "StatRow",
    "ValueShare",
    "compare",
    "drift",
    "edges",
    "graph",
    "heatmap",
    "select",
    "span_metrics",
    "span_metrics_from_rows",
    "trace_diff",
    "trace_statistics",
]

MAX_SPANS = 2_000_000
"""Spans one store-reading call reads at most; past it the answer says ``truncated``."""

JOIN_MARGIN_NS = 30 * 1_000_000_000
"""How far :func:`graph` reads beyond its window to find parents and children."""

RELATIVE_ERROR = 0.01
"""The relative error of a percentile estimated from the log-spaced histograms."""

MAX_POINTS = 11_000
"""Points per span-metrics series at most (Prometheus' own limit on ``query_range``)."""

DEFAULT_CURRENT_S = 600
"""Drift: the current window, the last 10 minutes."""
DEFAULT_BASELINE_S = 86_400
"""Drift: the baseline, the day before the current window."""
DEFAULT_MIN_CALLS = 20
"""Drift: calls each window needs before a p99 is trusted."""
DEFAULT_THRESHOLD = 1.5
"""Drift: flagged when the current p99 is at least this many times the baseline's."""

POLICY_EVENTS = (
    "seawall.retry",
    "seawall.retry.skipped",
    "seawall.breaker",
    "seawall.breaker.rejected",
    "seawall.pool.overflow",
    "seawall.outlier.ejected",
    "seawall.deadline",
    "seawall.deadline.expired",
    "seawall.fault",
    "seawall.mirror",
    "seawall.hedge",
    "seawall.ratelimit.refused",
)
"""The span events seawall's policies record."""

_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
_ERROR = StatusCode.ERROR
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_DESTINATION_TAGS = ("seawall.destination=", "peer.service=", "server.address=")


# ----------------------------------------------------------------- helpers


def _rank(q: float, n: int) -> int:
    """The 1-based nearest rank of quantile ``q`` among ``n`` values (at least 1)."""
    return max(1, math.ceil(q * n - 1e-9))


def _percentile_ms(values: Sequence[int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of sorted nanosecond ``values``, in ms."""
    if not values:
        return None
    return values[_rank(q, len(values)) - 1] / _NS_PER_MS


def _ms(ns: float) -> float:
    return ns / _NS_PER_MS


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _tag(tags: Sequence[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


def _destination(tags: Sequence[str] | str | None) -> str | None:
    """Where a CLIENT span went, from its tags: ``seawall.destination``, else
    ``peer.service``, else ``server.address``. The tags are a :class:`SpanRow`'s,
    or the store's text of them (``"\\nk=v\\nk=v\\n"``, or a JSON array)."""
    if tags is None:
        return None
    if isinstance(tags, str) and not tags.startswith("["):
        for prefix in _DESTINATION_TAGS:
            at = tags.find("\n" + prefix)
            if at >= 0:
                at += 1 + len(prefix)
                found = tags[at : tags.index("\n", at)]
                if found:
                    return found
        return None
    listed: Sequence[str] = json.loads(tags) if isinstance(tags, str) else tags
    for prefix in _DESTINATION_TAGS:
        value = _tag(listed, prefix)
        if value:
            return value
    return None


def _duration(row: SpanRow) -> int:
    return max(0, row.end_ns - row.start_ns)


# --------------------------------------------------- log-spaced histograms

_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)


def _bin(duration_ns: int) -> int:
    if duration_ns <= 1:
        return 0
    return math.ceil(math.log(duration_ns) / _LOG_GAMMA)


def _bin_value_ns(index: int) -> float:
    if index <= 0:
        return 0.0
    return 2 * _GAMMA**index / (_GAMMA + 1)


class _Histogram:
    """Counts per log-spaced bin, stored densely from the lowest bin used
    (4 bytes a bin: a cell of one edge-minute is a few hundred bytes)."""

    __slots__ = ("counts", "lo", "total")

    def __init__(self) -> None:
        self.lo = 0
        self.counts = array("I")
        self.total = 0

    def add(self, duration_ns: int) -> None:
        i = _bin(duration_ns)
        counts = self.counts
        if not counts:
            self.lo = i
            counts.append(1)
        elif i < self.lo:
            counts[0:0] = array("I", [0]) * (self.lo - i)
            self.lo = i
            counts[0] = 1
        elif i - self.lo >= len(counts):
            counts.extend(array("I", [0]) * (i - self.lo - len(counts) + 1))
            counts[-1] = 1
        else:
            counts[i - self.lo] += 1
        self.total += 1

    def snapshot(self) -> tuple[int, array[int], int]:
        return self.lo, array("I", self.counts), self.total


class _Latency:
    """Histograms to sum: ``(lowest bin, counts)`` parts, merged once, when first asked."""

    __slots__ = ("_cumulative", "_lo", "parts", "total")

    def __init__(self) -> None:
        self.parts: list[tuple[int, array[int]]] = []
        self.total = 0
        self._cumulative: list[int] | None = None
        self._lo = 0

    def add(self, lo: int, counts: array[int], total: int) -> None:
        self.parts.append((lo, counts))
        self.total += total
        self._cumulative = None

    def extend(self, other: _Latency) -> None:
        self.parts += other.parts
        self.total += other.total
        self._cumulative = None

    def quantile_ms(self, q: float) -> float | None:
        if self.total <= 0:
            return None
        if self._cumulative is None:
            lo = min(p[0] for p in self.parts)
            width = max(p[0] + len(p[1]) for p in self.parts) - lo
            padded = []  # each part over the same bins, so zip and sum add them in C
            for start, counts in self.parts:
                before, after = start - lo, width - (start - lo) - len(counts)
                padded.append(array("I", bytes(4 * before)) + counts + array("I", bytes(4 * after)))
            self._cumulative = list(accumulate(map(sum, zip(*padded, strict=True))))
            self._lo = lo
        i = bisect.bisect_left(self._cumulative, _rank(q, self.total))
        return _bin_value_ns(self._lo + i) / _NS_PER_MS


def _bins_quantile_ms(bins: Mapping[int, int], total: int, q: float) -> float | None:
    if total <= 0:
        return None
    rank = _rank(q, total)
    seen = 0
    for i in sorted(bins):
        seen += bins[i]
        if seen >= rank:
            return _bin_value_ns(i) / _NS_PER_MS
    return None


# -------------------------------------------------------- the service graph


def _camel(name: str) -> str:
    """``p99_ms`` -> ``p99Ms``: the UI's and the APIs' names."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_json(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON, in their order, named in camelCase."""
    return {_camel(f.name): getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True, slots=True)
class EdgeStats:
    """The calls from ``caller`` to ``callee`` in a window, with their RED figures.

    ``calls`` counts the calls answered by a SERVER span of the callee and the
    ``unanswered`` ones (CLIENT spans without a child: see the module
    docstring); ``errors`` those whose span (the SERVER span, or the CLIENT
    span when unanswered) has status ERROR. ``rate`` is calls per second over
    the window. ``p50_ms`` and ``p99_ms`` are the answered calls' SERVER span
    durations, or, when none was answered, the CLIENT spans'; ``None`` when
    there is no call. ``uninstrumented``: the callee recorded no span in the
    window (a node the graph only knows from its callers).
    """

    caller: str
    callee: str
    calls: int
    errors: int
    error_pct: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    unanswered: int = 0
    uninstrumented: bool = False

    def to_json(self) -> dict[str, Any]:
        return camel_json(self)


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A service in the graph, with the RED figures of the requests it served
    (see the module docstring); an ``uninstrumented`` node's figures are its
    callers' (the unanswered calls into it)."""

    service: str
    calls: int
    errors: int
    error_pct: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    uninstrumented: bool = False

    def to_json(self) -> dict[str, Any]:
        return camel_json(self)


@dataclass(frozen=True, slots=True)
class ServiceGraph:
    """The nodes and edges of ``[start_ns, end_ns)``, sorted by name.

    ``spans_read`` counts the spans read (the margins included); ``truncated``
    says the read stopped at its limit before the window's end, and then
    ``end_ns`` is where it stopped (rates are over the part read). Answers
    from :class:`Rollups` have ``estimated`` percentiles (within
    :data:`RELATIVE_ERROR`).
    """

    start_ns: int
    end_ns: int
    nodes: tuple[NodeStats, ...]
    edges: tuple[EdgeStats, ...]
    spans_read: int = 0
    truncated: bool = False
    estimated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "startNs": self.start_ns,
            "endNs": self.end_ns,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
            "spansRead": self.spans_read,
            "truncated": self.truncated,
            "estimated": self.estimated,
        }


class _Calls(Protocol):
    """Where the join reports what it found."""

    def call(
        self, edge: tuple[str, str], start_ns: int, duration_ns: int, error: bool, answered: bool
    ) -> None: ...

    def entry(self, service: str, start_ns: int, duration_ns: int, error: bool) -> None: ...


# A span as the join reads it: (key, parent's key or None, service, kind,
# start_ns, end_ns, error, tags). A key is the trace's id and the span's,
# concatenated; tags are a SpanRow's, or the store's text of them (see
# store.py), needed for CLIENT spans only.
_Flat = tuple[bytes, bytes | None, str, int, int, int, bool, "tuple[str, ...] | str | None"]


def _flat(rows: Iterable[SpanRow]) -> Iterator[_Flat]:
    for r in rows:
        tid = r.trace_id
        parent = tid + r.parent_span_id if r.parent_span_id else None
        error = r.status_code == _ERROR
        yield tid + r.span_id, parent, r.service, r.kind, r.start_ns, r.end_ns, error, r.tags


# The join's entry for one span id: [service (None: not seen yet, only its
# children), kind, keep until (ns of the join's clock), has a child, the
# pending CLIENT call (start, duration, error, tags) or None, the SERVER
# children waiting for it (service, start, duration, error) or None].
_SVC, _KIND, _UNTIL, _CHILD, _PENDING, _WAITING = range(6)


class _Join:
    """Pairs spans with their parents by (trace id, span id), in any order.

    Fed rows with the time of its clock (``now_ns``): the latest start for a
    read in start order, the collector's time for live inserts. A span is kept
    until ``max(its end, now when added) + wait_ns``: long enough for the
    children that start while it runs (and those exported after it). A child
    that comes first leaves a placeholder for its parent, which it waits for
    just as long. At most ``max_open`` entries after each batch: past it the
    oldest are let go, down to half of it (counted in ``evicted``).
    """

    __slots__ = ("_calls", "_max_open", "_spans", "_swept", "_wait", "evicted", "unjoined")

    def __init__(self, calls: _Calls, wait_ns: int, max_open: int) -> None:
        self._calls = calls
        self._wait = wait_ns
        self._max_open = max_open
        self._spans: dict[bytes, list[Any]] = {}
        self._swept: int | None = None
        self.unjoined = 0  # SERVER spans whose parent never came
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._spans)

    def add(self, flat: Iterable[_Flat], now_ns: int) -> None:
        """Join spans (:func:`_flat`) told the time."""
        spans = self._spans
        wait = self._wait
        for key, pkey, service, kind, start, end, error, tags in flat:
            until = max(end, now_ns) + wait
            entry = spans.get(key)
            if entry is None:
                entry = [service, kind, until, False, None, None]
                spans[key] = entry
            elif entry[_SVC] is None:  # its children came first
                entry[_SVC] = service
                entry[_KIND] = kind
                entry[_UNTIL] = max(entry[_UNTIL], until)
            else:
                continue  # the same span again
            duration = max(0, end - start)
            if pkey is not None:
                parent = spans.get(pkey)
                if parent is None:
                    parent = [None, -1, now_ns + wait, True, None, None]
                    spans[pkey] = parent
                else:
                    parent[_CHILD] = True
                    parent[_PENDING] = None  # a CLIENT span with a child was answered
                if kind == _SERVER:
                    if parent[_SVC] is None:
                        waiting = parent[_WAITING]
                        if waiting is None:
                            waiting = parent[_WAITING] = []
                        waiting.append((service, start, duration, error))
                    else:
                        self._server((service, start, duration, error), parent)
            elif kind == _SERVER:
                self._calls.entry(service, start, duration, error)
            waiting = entry[_WAITING]
            if waiting is not None:  # SERVER children that came before this span
                entry[_WAITING] = None
                for child in waiting:
                    self._server(child, entry)
            if kind == _CLIENT and not entry[_CHILD]:
                entry[_PENDING] = (start, duration, error, tags)
        if self._swept is None or now_ns - self._swept >= wait // 4 or len(spans) > self._max_open:
            self.sweep(now_ns)

    def _server(self, child: tuple[str, int, int, bool], parent: list[Any]) -> None:
        """A SERVER span ``(service, start, duration, error)`` met its parent."""
        service, start, duration, error = child
        calls = self._calls
        if parent[_SVC] != service:
            calls.call((parent[_SVC], service), start, duration, error, True)
            calls.entry(service, start, duration, error)
        elif parent[_KIND] != _SERVER:
            calls.entry(service, start, duration, error)

    def sweep(self, now_ns: int) -> None:
        """Let go of the spans kept until before ``now_ns`` (and the oldest half past the bound)."""
        self._swept = now_ns
        spans = self._spans
        done = [key for key, entry in spans.items() if entry[_UNTIL] < now_ns]
        for key in done:
            self._finish(spans.pop(key))
        if len(spans) > self._max_open:  # the oldest go, down to half the bound
            old = list(islice(spans, len(spans) - self._max_open // 2))
            self.evicted += len(old)
            for key in old:
                self._finish(spans.pop(key))

    def flush(self) -> None:
        """Finish every span: nothing more will come."""
        spans, self._spans = self._spans, {}
        for entry in spans.values():
            self._finish(entry)

    def _finish(self, entry: list[Any]) -> None:
        waiting = entry[_WAITING]
        if entry[_SVC] is None:
            if waiting:  # the parent never came: served, but from whom is unknown
                self.unjoined += len(waiting)
                for service, start, duration, error in waiting:
                    self._calls.entry(service, start, duration, error)
            return
        pending = entry[_PENDING]
        if pending is not None:  # a CLIENT span nobody answered
            start, duration, error, tags = pending
            destination = _destination(tags)
            if destination is not None:
                self._calls.call((entry[_SVC], destination), start, duration, error, False)


class _EdgeAcc:
    __slots__ = ("calls", "client", "errors", "server", "unanswered")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.unanswered = 0
        self.server = array("q")
        self.client = array("q")


class _NodeAcc:
    __slots__ = ("calls", "durations", "errors")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.durations = array("q")


class _GraphCalls:
    """The exact accumulators of :func:`edges` and :func:`graph`: calls inside the window."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.edges: dict[tuple[str, str], _EdgeAcc] = {}
        self.nodes: dict[str, _NodeAcc] = {}
        self.services: set[str] = set()

    def call(
        self, edge: tuple[str, str], start_ns: int, duration_ns: int, error: bool, answered: bool
    ) -> None:
        if not self.start_ns <= start_ns < self.end_ns:
            return
        acc = self.edges.get(edge)
        if acc is None:
            acc = self.edges[edge] = _EdgeAcc()
        acc.calls += 1
        if error:
            acc.errors += 1
        if answered:
            acc.server.append(duration_ns)
        else:
            acc.unanswered += 1
            acc.client.append(duration_ns)

    def entry(self, service: str, start_ns: int, duration_ns: int, error: bool) -> None:
        if not self.start_ns <= start_ns < self.end_ns:
            return
        acc = self.nodes.get(service)
        if acc is None:
            acc = self.nodes[service] = _NodeAcc()
        acc.calls += 1
        if error:
            acc.errors += 1
        acc.durations.append(duration_ns)

    def result(self, end_ns: int) -> tuple[tuple[NodeStats, ...], tuple[EdgeStats, ...]]:
        seconds = max(end_ns - self.start_ns, 1) / _NS_PER_S
        edge_list: list[EdgeStats] = []
        virtual: dict[str, list[_EdgeAcc]] = {}
        for (caller, callee), acc in sorted(self.edges.items()):
            durations = sorted(acc.server or acc.client)
            uninstrumented = callee not in self.services
            if uninstrumented:
                virtual.setdefault(callee, []).append(acc)
            edge_list.append(
                EdgeStats(
                    caller,
                    callee,
                    acc.calls,
                    acc.errors,
                    _pct(acc.errors, acc.calls),
                    acc.calls / seconds,
                    _percentile_ms(durations, 0.5),
                    _percentile_ms(durations, 0.99),
                    acc.unanswered,
                    uninstrumented,
                )
            )
        node_list: list[NodeStats] = []
        for service in sorted(self.services | set(virtual)):
            if service in virtual:
                accs = virtual[service]
                calls = sum(a.calls for a in accs)
                errors = sum(a.errors for a in accs)
                durations = sorted(d for a in accs for d in a.client)
            else:
                node = self.nodes.get(service) or _NodeAcc()
                calls, errors, durations = node.calls, node.errors, sorted(node.durations)
            node_list.append(
                NodeStats(
                    service,
                    calls,
                    errors,
                    _pct(errors, calls),
                    calls / seconds,
                    _percentile_ms(durations, 0.5),
                    _percentile_ms(durations, 0.99),
                    service in virtual,
                )
            )
        return tuple(node_list), tuple(edge_list)


def _graph_of(
    flat: Iterable[_Flat], start_ns: int, end_ns: int, margin_ns: int, max_spans: int
) -> ServiceGraph:
    """The service graph of spans in start order, counting those in ``[start_ns, end_ns)``."""
    calls = _GraphCalls(start_ns, end_ns)
    join = _Join(calls, margin_ns, max_open=max_spans)
    services = calls.services
    chunk: list[_Flat] = []
    read = 0
    truncated = False
    last_start = start_ns
    for span in flat:
        if read >= max_spans:
            truncated = True
            break
        read += 1
        if start_ns <= span[4] < end_ns:
            services.add(span[2])
        chunk.append(span)
        if len(chunk) >= 4096:
            last_start = span[4]
            join.add(chunk, last_start)
            chunk = []
    if chunk:
        last_start = chunk[-1][4]
        join.add(chunk, last_start)
    join.flush()
    stop = min(end_ns, max(start_ns, last_start + 1)) if truncated else end_ns
    nodes, edge_list = calls.result(stop)
    return ServiceGraph(start_ns, stop, nodes, edge_list, read, truncated)


def edges(
    rows: Iterable[SpanRow], *, start_ns: int | None = None, end_ns: int | None = None
) -> list[EdgeStats]:
    """The edges of the service graph that ``rows`` make (see the module docstring).

    Only the calls whose span starts in ``[start_ns, end_ns)`` count, and the
    rate is over that window; by default the window runs from the first
    span's start to the last span's end. The other rows still serve as
    parents and children.
    """
    ordered = sorted(rows, key=lambda r: r.start_ns)
    if not ordered:
        return []
    start = ordered[0].start_ns if start_ns is None else start_ns
    last = max(*(r.end_ns for r in ordered), ordered[-1].start_ns + 1)
    end = last if end_ns is None else end_ns
    return list(_graph_of(_flat(ordered), start, end, 1 << 62, len(ordered) + 1).edges)


def graph(
    store: TraceStore,
    start_ns: int,
    end_ns: int,
    *,
    max_spans: int = MAX_SPANS,
    margin_ns: int = JOIN_MARGIN_NS,
) -> ServiceGraph:
    """The service graph of ``[start_ns, end_ns)`` from the store, exact.

    Reads the spans of the window and ``margin_ns`` on either side, at most
    ``max_spans`` of them (then ``truncated``), with :func:`_read_direct` (only
    the columns the join needs) or, when the file cannot be read that way,
    :meth:`~TraceStore.spans_between`. For the time it takes see
    ``docs/telemetry/drift.md``; :meth:`Rollups.graph` answers from memory.
    """
    if end_ns < start_ns:
        raise ValueError(f"end_ns ({end_ns}) must be >= start_ns ({start_ns})")
    lo, hi = max(0, start_ns - margin_ns), end_ns + margin_ns
    flat = _read_direct(store, lo, hi)
    if flat is None:
        flat = _flat(store.spans_between(lo, hi))
    return _graph_of(flat, start_ns, end_ns, margin_ns, max_spans)


# The columns the join needs, straight from the store's file (schema version 1,
# store.py's docstring), a page at a time as TraceStore.spans_between reads them.
_DIRECT_PAGE = 8192
_DIRECT_SQL = (
    "SELECT s.id, s.trace_ref, s.span_id, s.parent_span_id, o.service_id, o.kind, s.start_ns,"
    " s.end_ns, s.status_code, CASE WHEN o.kind = 3 THEN s.tags END"
    " FROM spans s INDEXED BY spans_by_start JOIN ops o ON o.id = s.op_id"
    " WHERE s.start_ns >= ? AND s.start_ns < ? AND (s.start_ns > ? OR s.id > ?)"
    f" ORDER BY s.start_ns, s.id LIMIT {_DIRECT_PAGE}"
)
_DIRECT_PROBE = (_DIRECT_SQL.replace("?", "0"), "SELECT ref, trace_id FROM traces LIMIT 0")
_OPS_SQL = "SELECT o.id, v.name, o.name, o.kind FROM ops o JOIN services v ON v.id = o.service_id"
_OPS_PAGE_SQL = (
    "SELECT s.id, s.op_id, s.start_ns, s.duration_ns, s.status_code"
    " FROM spans s INDEXED BY spans_by_start"
    " WHERE s.start_ns >= ? AND s.start_ns < ? AND (s.start_ns > ? OR s.id > ?)"
    " AND s.op_id IN ({marks}) ORDER BY s.start_ns, s.id LIMIT {page}"
)
_OPS_PROBE = (_OPS_SQL + " LIMIT 0", _OPS_PAGE_SQL.format(marks="0", page=1).replace("?", "0"))


def _read_direct(store: TraceStore, start_ns: int, end_ns: int) -> Iterator[_Flat] | None:
    """The spans starting in ``[start_ns, end_ns)``, in start order, as the join reads them,
    from a read-only connection of our own to the store's file.

    Three to four times faster than :meth:`~TraceStore.spans_between` (no
    :class:`SpanRow` is built, no attribute column is read); the trace ids
    come from the ``traces`` table, a page's at once, so the keys are the
    same as :func:`_flat`'s. ``None`` when the store is
    in memory or its file is not at :data:`~seawall.telemetry.store.SCHEMA_VERSION`:
    the caller then uses the public API. Each page is its own read
    transaction, as in ``spans_between``, so the WAL is never held back.
    """
    conn = _connect_direct(store, _DIRECT_PROBE)
    if conn is None:
        return None
    return _direct_pages(conn, store.path, start_ns, end_ns)


def _direct_pages(
    conn: sqlite3.Connection, path: str, start_ns: int, end_ns: int
) -> Iterator[_Flat]:
    names: dict[int, str] = {}
    trace_ids: dict[int, bytes] = {}  # ref -> trace id, for keys the same as _flat's
    last_start, last_id = start_ns, -1
    try:
        while True:
            try:
                rows = conn.execute(_DIRECT_SQL, (last_start, end_ns, last_start, last_id))
                page = rows.fetchall()
                if any(r[4] not in names for r in page):
                    names = dict(conn.execute("SELECT id, name FROM services").fetchall())
                if len(trace_ids) > 200_000:
                    trace_ids.clear()
                missing = list({r[1] for r in page if r[1] not in trace_ids})
                for i in range(0, len(missing), 500):
                    part = missing[i : i + 500]
                    trace_ids.update(
                        conn.execute(
                            "SELECT ref, trace_id FROM traces WHERE ref IN"
                            f" ({','.join('?' * len(part))})",
                            part,
                        ).fetchall()
                    )
            except sqlite3.Error as exc:
                raise TraceStoreError(f"trace store {path}: analytics read: {exc}") from exc
            for _, ref, span, parent, sid, kind, start, end, status, tags in page:
                trace = trace_ids.get(ref)
                if trace is None:  # the trace was deleted since the page was read
                    continue
                yield (
                    trace + span,
                    trace + parent if parent else None,
                    names.get(sid, "?"),
                    kind,
                    start,
                    end,
                    status == _ERROR,
                    tags,
                )
            if len(page) < _DIRECT_PAGE:
                return
            last_start, last_id = page[-1][6], page[-1][0]
    finally:
        conn.close()


def _connect_direct(store: TraceStore, probes: Sequence[str]) -> sqlite3.Connection | None:
    """A read-only connection of our own to the store's file, or ``None`` when the
    store is in memory, the file is not at schema version :data:`SCHEMA_VERSION`,
    or one of the ``probes`` (our statements, on empty ranges) fails: the schema moved."""
    path = store.path
    if path == ":memory:" or not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error:
        return None
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            conn.close()
            return None
        conn.execute("PRAGMA query_only = ON")
        for probe in probes:
            conn.execute(probe).fetchall()
    except sqlite3.Error:
        conn.close()
        return None
    return conn


def _read_ops_direct(
    store: TraceStore,
    start_ns: int,
    end_ns: int,
    services: Sequence[str],
    kinds: Sequence[int],
) -> Iterator[_Timed] | None:
    """The spans of ``services`` and ``kinds`` starting in ``[start_ns, end_ns)``, as
    span metrics read them, from our own read-only connection (see
    :func:`_read_direct`). The operations are looked up first (the ``ops``
    table), so the scan of the window compares an integer per span; ten times
    faster than ``spans_between(service=..., kind=...)``, which joins every
    span of the window before filtering."""
    conn = _connect_direct(store, _OPS_PROBE)
    if conn is None:
        return None
    try:
        ops = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(_OPS_SQL)
            if r[1] in services and r[3] in kinds
        }
    except sqlite3.Error:
        conn.close()
        return None
    return _ops_pages(conn, store.path, start_ns, end_ns, ops)


def _ops_pages(
    conn: sqlite3.Connection,
    path: str,
    start_ns: int,
    end_ns: int,
    ops: dict[int, tuple[str, str, int]],
) -> Iterator[_Timed]:
    try:
        if not ops:
            return
        sql = _OPS_PAGE_SQL.format(marks=",".join("?" * len(ops)), page=_DIRECT_PAGE)
        ids = list(ops)
        last_start, last_id = start_ns, -1
        while True:
            try:
                page = conn.execute(sql, (last_start, end_ns, last_start, last_id, *ids)).fetchall()
            except sqlite3.Error as exc:
                raise TraceStoreError(f"trace store {path}: analytics read: {exc}") from exc
            for _, op, start, duration, status in page:
                service, name, kind = ops[op]
                yield service, name, kind, start, duration, status == _ERROR
            if len(page) < _DIRECT_PAGE:
                return
            last_start, last_id = page[-1][2], page[-1][0]
    finally:
        conn.close()


# ------------------------------------------------------------ span metrics


@dataclass(frozen=True, slots=True)
class SpanMetricsQuery:
    """Span metrics as Jaeger's Monitor tab asks for them (its SPM parameters).

    The points are at ``end_ns - lookback_ns + k * step_ns`` for every
    ``k >= 0`` up to ``end_ns`` (Prometheus' ``query_range``). Each point
    summarises the spans that *start* in the ``window_ns`` before it
    (``(t - window_ns, t]``), where ``window_ns`` is ``rate_per_ns`` rounded
    up to whole steps (Jaeger's Elasticsearch reader does the same,
    ``internal/storage/metricstore/elasticsearch/processor.go``,
    ``calcCallRate``). Only spans of ``services`` and ``span_kinds``
    count; ``group_by_operation`` gives one series per span name.
    """

    services: tuple[str, ...]
    end_ns: int
    lookback_ns: int = 3600 * _NS_PER_S
    step_ns: int = 5 * _NS_PER_S
    rate_per_ns: int = 600 * _NS_PER_S
    group_by_operation: bool = False
    span_kinds: tuple[int, ...] = (SpanKind.SERVER,)
    quantile: float = 0.95

    def __post_init__(self) -> None:
        if not isinstance(self.services, tuple) or not all(
            isinstance(s, str) for s in self.services
        ):
            raise ValueError(f"services must be a tuple of strings, got {self.services!r}")
        if not self.services:
            raise ValueError("services must name at least one service")
        for name in ("end_ns", "lookback_ns", "step_ns", "rate_per_ns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.step_ns <= 0:
            raise ValueError(f"step_ns must be > 0, got {self.step_ns}")
        if self.rate_per_ns <= 0:
            raise ValueError(f"rate_per_ns must be > 0, got {self.rate_per_ns}")
        if self.lookback_ns // self.step_ns + 1 > MAX_POINTS:
            raise ValueError(
                f"lookback_ns / step_ns gives more than {MAX_POINTS} points "
                f"({self.lookback_ns // self.step_ns + 1})"
            )
        if not self.span_kinds or not all(
            isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= 5 for k in self.span_kinds
        ):
            raise ValueError(f"span_kinds must be SpanKind values, got {self.span_kinds!r}")
        if not (isinstance(self.quantile, float | int) and 0 < self.quantile < 1):
            raise ValueError(f"quantile must be between 0 and 1 (exclusive), got {self.quantile!r}")

    @property
    def timestamps_ns(self) -> tuple[int, ...]:
        first = self.end_ns - self.lookback_ns
        return tuple(first + k * self.step_ns for k in range(self.lookback_ns // self.step_ns + 1))

    @property
    def window_ns(self) -> int:
        return max(1, -(-self.rate_per_ns // self.step_ns)) * self.step_ns

    @property
    def read_range_ns(self) -> tuple[int, int]:
        """``[start, end)`` of the span starts that reach some point."""
        times = self.timestamps_ns
        return max(0, times[0] - self.window_ns + 1), times[-1] + 1


@dataclass(frozen=True, slots=True)
class SpanMetricSeries:
    """One service's (or one operation's) series, a value per point.

    ``calls`` and ``errors`` count the spans in each point's window;
    ``call_rate`` is calls per second; ``error_rate`` errors per call, ``NaN``
    when there was no call; ``latency_ms`` the query's quantile of their
    durations (estimated, within :data:`RELATIVE_ERROR`), ``NaN`` when there
    was no call.
    """

    service: str
    operation: str | None
    calls: tuple[int, ...]
    errors: tuple[int, ...]
    call_rate: tuple[float, ...]
    error_rate: tuple[float, ...]
    latency_ms: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        def finite(values: Sequence[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return {
            "service": self.service,
            "operation": self.operation,
            "calls": list(self.calls),
            "errors": list(self.errors),
            "callRate": finite(self.call_rate),
            "errorRate": finite(self.error_rate),
            "latencyMs": finite(self.latency_ms),
        }


@dataclass(frozen=True, slots=True)
class SpanMetrics:
    """The answer to a :class:`SpanMetricsQuery`: series sorted by (service, operation)."""

    query: SpanMetricsQuery
    timestamps_ns: tuple[int, ...]
    window_ns: int
    series: tuple[SpanMetricSeries, ...]
    spans_read: int = 0
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "timestampsNs": list(self.timestamps_ns),
            "windowNs": self.window_ns,
            "series": [s.to_json() for s in self.series],
            "spansRead": self.spans_read,
            "truncated": self.truncated,
        }


# A span as span metrics read it: (service, name, kind, start_ns, duration_ns, error).
_Timed = tuple[str, str, int, int, int, bool]


def _timed(rows: Iterable[SpanRow]) -> Iterator[_Timed]:
    for r in rows:
        yield r.service, r.name, r.kind, r.start_ns, _duration(r), r.status_code == _ERROR


def span_metrics_from_rows(rows: Iterable[SpanRow], query: SpanMetricsQuery) -> SpanMetrics:
    """:func:`span_metrics` over given rows (those outside the query are ignored)."""
    return _span_metrics(_timed(rows), query, max_spans=None)


def span_metrics(
    store: TraceStore, query: SpanMetricsQuery, *, max_spans: int = MAX_SPANS
) -> SpanMetrics:
    """Jaeger's span metrics (latency quantile, call rate, error rate) from the store.

    Reads the spans of the query's services and kinds, at most ``max_spans``
    of them (then ``truncated``), with :func:`_read_ops_direct` or, when the
    file cannot be read that way, :meth:`~TraceStore.spans_between`.
    """
    start, end = query.read_range_ns
    timed = _read_ops_direct(store, start, end, query.services, query.span_kinds)
    if timed is None:

        def rows() -> Iterator[SpanRow]:
            for service in query.services:
                for kind in dict.fromkeys(query.span_kinds):
                    yield from store.spans_between(start, end, service=service, kind=kind)

        timed = _timed(rows())
    return _span_metrics(timed, query, max_spans=max_spans)


class _Series:
    __slots__ = ("bins", "calls", "errors")

    def __init__(self, slots: int) -> None:
        self.calls = [0] * slots
        self.errors = [0] * slots
        self.bins: dict[int, dict[int, int]] = {}


def _slide(series: _Series, running: dict[int, int], slot: int, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) a slot's bins from the running window's."""
    for b, c in series.bins.get(slot, {}).items():
        left = running.get(b, 0) + sign * c
        if left:
            running[b] = left
        else:
            running.pop(b, None)


def _span_metrics(
    timed: Iterable[_Timed], query: SpanMetricsQuery, *, max_spans: int | None
) -> SpanMetrics:
    times = query.timestamps_ns
    step = query.step_ns
    per_window = query.window_ns // step
    first = times[0]
    # slot o holds the starts in (t - step, t] for t = first + (o - per_window + 1) * step;
    # point k sums the slots k .. k + per_window - 1
    slots = len(times) + per_window - 1
    services = set(query.services)
    kinds = set(query.span_kinds)
    groups: dict[tuple[str, str | None], _Series] = {}
    read = 0
    truncated = False
    by_operation = query.group_by_operation
    for service, name, kind, start, duration, error in timed:
        if max_spans is not None and read >= max_spans:
            truncated = True
            break
        read += 1
        if service not in services or kind not in kinds:
            continue
        j = -(-(start - first) // step)  # the first point whose slot holds it
        o = j + per_window - 1
        if not 0 <= o < slots:
            continue
        key = (service, name if by_operation else None)
        series = groups.get(key)
        if series is None:
            series = groups[key] = _Series(slots)
        series.calls[o] += 1
        if error:
            series.errors[o] += 1
        bins = series.bins.get(o)
        if bins is None:
            bins = series.bins[o] = {}
        b = _bin(duration)
        bins[b] = bins.get(b, 0) + 1
    seconds = query.window_ns / _NS_PER_S
    out: list[SpanMetricSeries] = []
    for (service, operation), series in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        calls: list[int] = []
        errors: list[int] = []
        latency: list[float] = []
        running: dict[int, int] = {}
        n = e = 0
        for o in range(per_window - 1):
            _slide(series, running, o, 1)
            n, e = n + series.calls[o], e + series.errors[o]
        for k in range(len(times)):
            o = k + per_window - 1
            _slide(series, running, o, 1)
            n, e = n + series.calls[o], e + series.errors[o]
            calls.append(n)
            errors.append(e)
            value = _bins_quantile_ms(running, n, query.quantile)
            latency.append(math.nan if value is None else value)
            _slide(series, running, k, -1)
            n, e = n - series.calls[k], e - series.errors[k]
        out.append(
            SpanMetricSeries(
                service,
                operation,
                tuple(calls),
                tuple(errors),
                tuple(c / seconds for c in calls),
                tuple(er / c if c else math.nan for er, c in zip(errors, calls, strict=True)),
                tuple(latency),
            )
        )
    return SpanMetrics(query, times, query.window_ns, tuple(out), read, truncated)


# ------------------------------------------------------------------- drift


@dataclass(frozen=True, slots=True)
class Drift:
    """One edge's p99 now against its own baseline (``docs/telemetry/drift.md``).

    ``ratio`` is current / baseline and ``difference_ms`` current - baseline,
    ``None`` when either window has no call. ``flagged`` when the ratio is at
    least the threshold and both windows have at least ``min_calls`` calls;
    ``reason`` says which rule decided.
    """

    caller: str
    callee: str
    current_p99_ms: float | None
    baseline_p99_ms: float | None
    ratio: float | None
    difference_ms: float | None
    current_calls: int
    baseline_calls: int
    flagged: bool
    reason: Literal["drifted", "below threshold", "too few calls", "no baseline", "no calls"]

    def to_json(self) -> dict[str, Any]:
        return camel_json(self)

    def describe(self) -> str:
        """One line for a terminal, such as ``orders -> payments  p99 120.0 ms vs
        40.0 ms  x3.00  +80.0 ms  (250 / 31000 calls)  DRIFT``."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        ratio = "-" if self.ratio is None else f"x{self.ratio:.2f}"
        diff = "-" if self.difference_ms is None else f"{self.difference_ms:+.1f} ms"
        mark = "DRIFT" if self.flagged else self.reason
        return (
            f"{self.caller} -> {self.callee}  p99 {ms(self.current_p99_ms)} vs "
            f"{ms(self.baseline_p99_ms)}  {ratio}  {diff}  "
            f"({self.current_calls} / {self.baseline_calls} calls)  {mark}"
        )


@dataclass(frozen=True, slots=True)
class RollupStats:
    """What a :class:`Rollups` holds and what it could not use, since it was made."""

    fine_buckets: int
    coarse_buckets: int
    cells: int
    open_spans: int
    spans_added: int
    spans_too_old: int
    """Spans that started before the retention window (or more than a bucket in the future)."""
    unjoined: int
    """SERVER spans whose parent never came within the join's wait: no edge for them."""
    evicted: int
    """Spans let go by the join's bound before their wait was over."""


class _Cell:
    """One edge's (or node's) calls in one bucket."""

    __slots__ = ("calls", "client", "errors", "server", "unanswered")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.unanswered = 0
        self.server = _Histogram()
        self.client: _Histogram | None = None


class _Agg:
    """Cells summed over a window."""

    __slots__ = ("calls", "client", "errors", "server", "unanswered")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.unanswered = 0
        self.server = _Latency()
        self.client = _Latency()

    def latency(self) -> _Latency:
        """The answered calls' durations, or the unanswered ones' when none was answered."""
        return self.server if self.server.total else self.client


class _Bucket:
    __slots__ = ("edges", "nodes")

    def __init__(self) -> None:
        self.edges: dict[tuple[str, str], _Cell] = {}
        self.nodes: dict[str, _Cell] = {}


_K = TypeVar("_K")

# (calls, errors, unanswered, server (lo, counts, total), client (lo, counts, total) or None)
_Snap = tuple[int, int, int, tuple[int, "array[int]", int], tuple[int, "array[int]", int] | None]


class _Buckets:
    """The minute and hour buckets of :class:`Rollups`; the join reports calls into them."""

    def __init__(self, bucket_s: int, coarse_s: int, fine_retention_s: int, retention_s: int):
        self.fine_ns = bucket_s * _NS_PER_S
        self.coarse_ns = coarse_s * _NS_PER_S
        self.per_coarse = coarse_s // bucket_s
        self.fine_keep_ns = fine_retention_s * _NS_PER_S
        self.keep_ns = retention_s * _NS_PER_S
        self.fine: dict[int, _Bucket] = {}
        self.coarse: dict[int, _Bucket] = {}
        self.now = 0

    def evict(self, now_ns: int) -> None:
        if now_ns <= self.now:
            return
        self.now = now_ns
        fine_floor = (now_ns - self.fine_keep_ns) // self.fine_ns
        for b in [b for b in self.fine if b < fine_floor]:
            del self.fine[b]
        coarse_floor = (now_ns - self.keep_ns) // self.coarse_ns
        for c in [c for c in self.coarse if c < coarse_floor]:
            del self.coarse[c]

    def _at(self, start_ns: int) -> tuple[_Bucket, _Bucket]:
        b = start_ns // self.fine_ns
        fine = self.fine.get(b)
        if fine is None:
            fine = self.fine[b] = _Bucket()
        c = start_ns // self.coarse_ns
        coarse = self.coarse.get(c)
        if coarse is None:
            coarse = self.coarse[c] = _Bucket()
        return fine, coarse

    def call(
        self, edge: tuple[str, str], start_ns: int, duration_ns: int, error: bool, answered: bool
    ) -> None:
        for bucket in self._at(start_ns):
            cell = bucket.edges.get(edge)
            if cell is None:
                cell = bucket.edges[edge] = _Cell()
            _count(cell, duration_ns, error, answered)

    def entry(self, service: str, start_ns: int, duration_ns: int, error: bool) -> None:
        for bucket in self._at(start_ns):
            cell = bucket.nodes.get(service)
            if cell is None:
                cell = bucket.nodes[service] = _Cell()
            _count(cell, duration_ns, error, True)

    def covering(self, start_ns: int, end_ns: int) -> list[_Bucket]:
        """The buckets summing to ``[start_ns, end_ns)``: whole hours inside it,
        and the minutes at its ends (a minute is in when its start is)."""
        f0 = -(-start_ns // self.fine_ns)
        f1 = -(-end_ns // self.fine_ns)
        k = self.per_coarse
        c0 = -(-f0 // k)
        c1 = f1 // k
        if c0 < c1:
            spans = [(f0, c0 * k), (c1 * k, f1)]
            chosen = [self.coarse[c] for c in range(c0, c1) if c in self.coarse]
        else:
            spans = [(f0, f1)]
            chosen = []
        for lo, hi in spans:
            if hi - lo > len(self.fine):
                chosen += [b for i, b in self.fine.items() if lo <= i < hi]
            else:
                chosen += [self.fine[i] for i in range(lo, hi) if i in self.fine]
        return chosen


class Rollups:
    """Per-minute latency histograms of every edge and node, fed as spans are stored.

    Sans-I/O and thread-safe: :meth:`add` takes each batch the collector
    stores with the collector's time; :meth:`drift`, :meth:`graph` and
    :meth:`edges` read windows. Each call is counted in a 1-minute bucket
    (``bucket_s``) and in a 1-hour one (``coarse_s``) by its span's start: the
    calls, the errors, the unanswered calls, and the log-spaced histogram of
    the durations (:data:`RELATIVE_ERROR`). A window is summed from whole
    hours where it covers them and minutes at its ends, so a day's baseline
    costs some 24 + 120 cells an edge, not 1,440.

    Bounded: minute buckets are kept for ``fine_retention_s`` (2 h), hour
    buckets for ``retention_s`` (the drift baseline plus the current window
    plus an hour). A window's bounds are rounded to whole minutes (a minute
    is in it when its start is), and where its older end lies beyond the
    minute buckets' retention, the partly covered hour is left out: a day's
    baseline covers between 23 and 24 hours.

    Edges need the parent span's service, which the same batch may not
    hold: the parent was stored earlier, or is exported later (a CLIENT span
    ends after the SERVER span it waits for, so it usually comes *after*).
    A bounded index of recent spans joins them (:class:`_Join`): a span is
    remembered until ``join_wait_s`` after it ended or arrived, at most
    ``max_open`` spans. Missed: a SERVER span whose parent arrives more than
    ``join_wait_s`` after it (or never: sampled out, lost) counts for its
    node but on no edge (``unjoined`` in :meth:`stats`); a CLIENT span's
    child arriving more than ``join_wait_s`` after it makes it look
    unanswered; past ``max_open`` the oldest spans are let go early
    (``evicted``). Spans older than the retention, or starting more than a
    bucket after ``now_ns``, are not counted (``spans_too_old``).
    """

    def __init__(
        self,
        *,
        bucket_s: int = 60,
        coarse_s: int = 3600,
        fine_retention_s: int = 7200,
        retention_s: int = DEFAULT_BASELINE_S + DEFAULT_CURRENT_S + 3600,
        join_wait_s: int = 30,
        max_open: int = 500_000,
    ) -> None:
        for name, value in (
            ("bucket_s", bucket_s),
            ("coarse_s", coarse_s),
            ("fine_retention_s", fine_retention_s),
            ("retention_s", retention_s),
            ("join_wait_s", join_wait_s),
            ("max_open", max_open),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Rollups: {name} must be an integer > 0, got {value!r}")
        if coarse_s % bucket_s:
            raise ValueError(
                f"Rollups: coarse_s ({coarse_s}) must be a multiple of bucket_s ({bucket_s})"
            )
        self._buckets = _Buckets(bucket_s, coarse_s, fine_retention_s, retention_s)
        self._lock = threading.Lock()
        self._join = _Join(self._buckets, join_wait_s * _NS_PER_S, max_open)
        self._added = 0
        self._too_old = 0

    @classmethod
    def from_store(
        cls,
        store: TraceStore,
        since_ns: int,
        now_ns: int,
        *,
        max_spans: int | None = None,
        **settings: int,
    ) -> Rollups:
        """Rebuild from the spans stored since ``since_ns`` (on start), in start order.

        ``settings`` are the constructor's. The spans are fed in chunks told
        the latest start as the time, then the result is told ``now_ns``.
        """
        rollups = cls(**settings)
        lo, hi = max(0, since_ns), now_ns + 1
        flat = _read_direct(store, lo, hi)
        if flat is None:
            flat = _flat(store.spans_between(lo, hi))
        chunk: list[_Flat] = []
        for read, span in enumerate(flat):
            if max_spans is not None and read >= max_spans:
                break
            chunk.append(span)
            if len(chunk) >= 4096:
                rollups._add_flat(chunk, span[4])
                chunk = []
        if chunk:
            rollups._add_flat(chunk, chunk[-1][4])
        rollups.expire(now_ns)
        return rollups

    # -- feeding ---------------------------------------------------------

    def add(self, rows: Iterable[SpanRow], now_ns: int) -> None:
        """Count a batch of stored spans; ``now_ns`` is the collector's (Unix ns) time."""
        self._add_flat(list(_flat(rows)), now_ns)

    def _add_flat(self, batch: list[_Flat], now_ns: int) -> None:
        buckets = self._buckets
        oldest = now_ns - buckets.keep_ns
        newest = now_ns + buckets.fine_ns
        kept = [span for span in batch if oldest <= span[4] <= newest]
        with self._lock:
            self._too_old += len(batch) - len(kept)
            self._added += len(kept)
            self._join.add(kept, now_ns)
            buckets.evict(now_ns)

    def expire(self, now_ns: int) -> None:
        """Tell the time without spans: finish the joins and drop buckets that expired."""
        with self._lock:
            self._join.sweep(now_ns)
            self._buckets.evict(now_ns)

    # -- reading ---------------------------------------------------------

    def _window(
        self, start_ns: int, end_ns: int
    ) -> tuple[dict[tuple[str, str], _Agg], dict[str, _Agg]]:
        with self._lock:  # copy the counts under the lock, merge after it
            edge_snaps: list[tuple[tuple[str, str], _Snap]] = []
            node_snaps: list[tuple[str, _Snap]] = []
            for bucket in self._buckets.covering(start_ns, end_ns):
                edge_snaps += [(key, _snap(cell)) for key, cell in bucket.edges.items()]
                node_snaps += [(key, _snap(cell)) for key, cell in bucket.nodes.items()]
        return _sum(edge_snaps), _sum(node_snaps)

    def edges(self, start_ns: int, end_ns: int) -> list[EdgeStats]:
        """:func:`edges` of ``[start_ns, end_ns)``, from the histograms."""
        return list(self.graph(start_ns, end_ns).edges)

    def graph(self, start_ns: int, end_ns: int) -> ServiceGraph:
        """:func:`graph` of ``[start_ns, end_ns)``, from the histograms (``estimated``).

        A node is ``uninstrumented`` when it served no request in the window.
        """
        edge_aggs, node_aggs = self._window(start_ns, end_ns)
        seconds = max(end_ns - start_ns, 1) / _NS_PER_S
        edge_list: list[EdgeStats] = []
        virtual: dict[str, _Agg] = {}
        for (caller, callee), agg in sorted(edge_aggs.items()):
            latency = agg.latency()
            uninstrumented = callee not in node_aggs
            if uninstrumented:
                v = virtual.setdefault(callee, _Agg())
                v.calls += agg.calls
                v.errors += agg.errors
                v.client.extend(latency)
            edge_list.append(
                EdgeStats(
                    caller,
                    callee,
                    agg.calls,
                    agg.errors,
                    _pct(agg.errors, agg.calls),
                    agg.calls / seconds,
                    latency.quantile_ms(0.5),
                    latency.quantile_ms(0.99),
                    agg.unanswered,
                    uninstrumented,
                )
            )
        names = set(node_aggs) | set(virtual) | {e.caller for e in edge_list}
        node_list: list[NodeStats] = []
        for service in sorted(names):
            agg = node_aggs.get(service) or virtual.get(service) or _Agg()
            latency = agg.latency()
            node_list.append(
                NodeStats(
                    service,
                    agg.calls,
                    agg.errors,
                    _pct(agg.errors, agg.calls),
                    agg.calls / seconds,
                    latency.quantile_ms(0.5),
                    latency.quantile_ms(0.99),
                    service in virtual,
                )
            )
        return ServiceGraph(start_ns, end_ns, tuple(node_list), tuple(edge_list), estimated=True)

    def drift(
        self,
        now_ns: int,
        *,
        current: int = DEFAULT_CURRENT_S,
        baseline: int = DEFAULT_BASELINE_S,
        min_calls: int = DEFAULT_MIN_CALLS,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> list[Drift]:
        """Each edge's p99 over the last ``current`` seconds against the ``baseline``
        seconds before them; see :func:`drift`."""
        _check_drift_args(current, baseline, min_calls, threshold)
        split = now_ns - current * _NS_PER_S
        now_aggs, _ = self._window(split, now_ns)
        base_aggs, _ = self._window(split - baseline * _NS_PER_S, split)
        out = []
        for key in sorted(set(now_aggs) | set(base_aggs)):
            cur = now_aggs.get(key) or _Agg()
            base = base_aggs.get(key) or _Agg()
            now_latency, base_latency = cur.latency(), base.latency()
            out.append(
                _judge(
                    key,
                    (now_latency.quantile_ms(0.99), now_latency.total),
                    (base_latency.quantile_ms(0.99), base_latency.total),
                    min_calls=min_calls,
                    threshold=threshold,
                )
            )
        return _ranked(out)

    def stats(self) -> RollupStats:
        with self._lock:
            fine, coarse = self._buckets.fine, self._buckets.coarse
            cells = sum(len(b.edges) + len(b.nodes) for b in fine.values())
            cells += sum(len(b.edges) + len(b.nodes) for b in coarse.values())
            return RollupStats(
                fine_buckets=len(fine),
                coarse_buckets=len(coarse),
                cells=cells,
                open_spans=len(self._join),
                spans_added=self._added,
                spans_too_old=self._too_old,
                unjoined=self._join.unjoined,
                evicted=self._join.evicted,
            )


def _count(cell: _Cell, duration_ns: int, error: bool, answered: bool) -> None:
    cell.calls += 1
    if error:
        cell.errors += 1
    if answered:
        cell.server.add(duration_ns)
    else:
        cell.unanswered += 1
        if cell.client is None:
            cell.client = _Histogram()
        cell.client.add(duration_ns)


def _snap(cell: _Cell) -> _Snap:
    client = None if cell.client is None else cell.client.snapshot()
    return cell.calls, cell.errors, cell.unanswered, cell.server.snapshot(), client


def _sum(snaps: Iterable[tuple[_K, _Snap]]) -> dict[_K, _Agg]:
    out: dict[_K, _Agg] = {}
    for key, (calls, errors, unanswered, server, client) in snaps:
        agg = out.get(key)
        if agg is None:
            agg = out[key] = _Agg()
        agg.calls += calls
        agg.errors += errors
        agg.unanswered += unanswered
        agg.server.add(*server)
        if client is not None:
            agg.client.add(*client)
    return out


def _check_drift_args(current: int, baseline: int, min_calls: int, threshold: float) -> None:
    for name, value in (("current", current), ("baseline", baseline)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a whole number of seconds > 0, got {value!r}")
    if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
        raise ValueError(f"min_calls must be an integer >= 1, got {min_calls!r}")
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 1):
        raise ValueError(f"threshold must be a number > 1, got {threshold!r}")


def _judge(
    key: tuple[str, str],
    current: tuple[float | None, int],
    baseline: tuple[float | None, int],
    *,
    min_calls: int,
    threshold: float,
) -> Drift:
    """The verdict on one edge from its (p99 in ms, calls) now and in the baseline."""
    current_ms, current_calls = current
    baseline_ms, baseline_calls = baseline
    ratio = diff = None
    reason: Literal["drifted", "below threshold", "too few calls", "no baseline", "no calls"]
    if current_ms is None:
        reason = "no calls"
    elif baseline_ms is None:
        reason = "no baseline"
    else:
        diff = current_ms - baseline_ms
        if baseline_ms > 0:
            ratio = current_ms / baseline_ms
        else:
            ratio = 1.0 if current_ms == 0 else math.inf
        if current_calls < min_calls or baseline_calls < min_calls:
            reason = "too few calls"
        elif ratio >= threshold:
            reason = "drifted"
        else:
            reason = "below threshold"
    return Drift(
        key[0],
        key[1],
        current_ms,
        baseline_ms,
        ratio,
        diff,
        current_calls,
        baseline_calls,
        reason == "drifted",
        reason,
    )


def _ranked(drifts: list[Drift]) -> list[Drift]:
    """Largest ratio first (flagged ones first among equals), edges without one last."""
    return sorted(
        drifts,
        key=lambda d: (d.ratio is None, -(d.ratio or 0.0), not d.flagged, d.caller, d.callee),
    )


def drift(
    source: TraceStore | Rollups,
    now_ns: int,
    *,
    current: int = DEFAULT_CURRENT_S,
    baseline: int = DEFAULT_BASELINE_S,
    min_calls: int = DEFAULT_MIN_CALLS,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Drift]:
    """Edges whose p99 over the last ``current`` seconds drifted from their own baseline.

    The current window is ``[now - current, now)``, the baseline the
    ``baseline`` seconds before it (``[now - current - baseline, now -
    current)``, so it never contains the current window). Per edge:
    both p99s, their ratio and difference, and ``flagged`` when the ratio is
    at least ``threshold`` and both windows have at least ``min_calls`` calls.
    Sorted by ratio, largest first. ``docs/telemetry/drift.md`` explains the
    choice of windows and threshold.

    From a :class:`Rollups` (what the collector keeps up to date), this is a
    few milliseconds; from a store, it first rebuilds one from the whole
    baseline (``Rollups.from_store``): a day of spans, minutes at scale.
    """
    _check_drift_args(current, baseline, min_calls, threshold)
    if isinstance(source, Rollups):
        rollups = source
    else:
        since = now_ns - (current + baseline) * _NS_PER_S
        rollups = Rollups.from_store(
            source,
            since,
            now_ns,
            fine_retention_s=max(7200, current + 3600),
            retention_s=current + baseline + 3600,
        )
    return rollups.drift(
        now_ns, current=current, baseline=baseline, min_calls=min_calls, threshold=threshold
    )


# ---------------------------------------------------------- the heatmap


@dataclass(frozen=True, slots=True)
class Heatmap:
    """Span counts per (time bucket, latency bucket), and percentiles per time bucket.

    ``time_edges_ns`` has one more entry than there are time buckets (bucket
    ``i`` is ``[edges[i], edges[i+1])``); ``latency_edges_ms`` likewise, log
    spaced (bucket ``j`` is ``[edges[j], edges[j+1])``, the first and last
    also take what falls below and above). ``counts[i][j]``; ``p50_ms``,
    ``p90_ms``, ``p99_ms`` per time bucket (nearest rank, exact), ``None``
    for an empty one.
    """

    time_edges_ns: tuple[int, ...]
    latency_edges_ms: tuple[float, ...]
    counts: tuple[tuple[int, ...], ...]
    p50_ms: tuple[float | None, ...]
    p90_ms: tuple[float | None, ...]
    p99_ms: tuple[float | None, ...]
    total: int

    def to_json(self) -> dict[str, Any]:
        return {
            "timeEdgesNs": list(self.time_edges_ns),
            "latencyEdgesMs": list(self.latency_edges_ms),
            "counts": [list(row) for row in self.counts],
            "p50Ms": list(self.p50_ms),
            "p90Ms": list(self.p90_ms),
            "p99Ms": list(self.p99_ms),
            "total": self.total,
        }


def heatmap(
    rows: Iterable[SpanRow],
    *,
    time_buckets: int = 60,
    latency_buckets: int = 40,
    start_ns: int | None = None,
    end_ns: int | None = None,
    min_ms: float | None = None,
    max_ms: float | None = None,
) -> Heatmap:
    """The latency heatmap of ``rows`` (say, one route's SERVER spans).

    Time: ``time_buckets`` equal buckets over ``[start_ns, end_ns)`` (by
    default from the first start to the last start, inclusive); spans
    starting outside are left out. Latency: ``latency_buckets`` log-spaced
    buckets from ``min_ms`` to ``max_ms`` (by default the shortest non-zero
    and the longest duration).
    """
    if time_buckets < 1 or latency_buckets < 1:
        raise ValueError("time_buckets and latency_buckets must be >= 1")
    spans = [(r.start_ns, _duration(r)) for r in rows]
    if start_ns is None:
        start_ns = min((s for s, _ in spans), default=0)
    if end_ns is None:
        end_ns = max((s for s, _ in spans), default=start_ns) + 1
    if end_ns <= start_ns:
        raise ValueError(f"end_ns ({end_ns}) must be > start_ns ({start_ns})")
    spans = [(s, d) for s, d in spans if start_ns <= s < end_ns]
    width = -(-(end_ns - start_ns) // time_buckets)
    time_edges = tuple(start_ns + i * width for i in range(time_buckets + 1))
    positive = [d for _, d in spans if d > 0]
    lo = min_ms if min_ms is not None else (_ms(min(positive)) if positive else 0.001)
    hi = max_ms if max_ms is not None else (_ms(max(positive)) if positive else lo * 10)
    if lo <= 0:
        raise ValueError(f"min_ms must be > 0, got {lo!r}")
    if hi <= lo:
        hi = lo * 10
    ratio = hi / lo
    lat_edges = tuple(lo * ratio ** (j / latency_buckets) for j in range(latency_buckets + 1))
    counts = [[0] * latency_buckets for _ in range(time_buckets)]
    per_time: list[list[int]] = [[] for _ in range(time_buckets)]
    for s, d in spans:
        i = (s - start_ns) // width
        j = bisect.bisect_right(lat_edges, _ms(d)) - 1
        counts[i][min(max(j, 0), latency_buckets - 1)] += 1
        per_time[i].append(d)
    for durations in per_time:
        durations.sort()
    return Heatmap(
        time_edges,
        lat_edges,
        tuple(tuple(row) for row in counts),
        tuple(_percentile_ms(d, 0.5) for d in per_time),
        tuple(_percentile_ms(d, 0.9) for d in per_time),
        tuple(_percentile_ms(d, 0.99) for d in per_time),
        len(spans),
    )


def select(
    rows: Iterable[SpanRow],
    start_ns: int,
    end_ns: int,
    min_duration_ns: int,
    max_duration_ns: int,
) -> tuple[list[SpanRow], list[SpanRow]]:
    """A region of the heatmap: the spans starting in ``[start_ns, end_ns)`` whose
    duration is in ``[min_duration_ns, max_duration_ns]``, and the rest."""
    selected: list[SpanRow] = []
    rest: list[SpanRow] = []
    for row in rows:
        d = _duration(row)
        if start_ns <= row.start_ns < end_ns and min_duration_ns <= d <= max_duration_ns:
            selected.append(row)
        else:
            rest.append(row)
    return selected, rest


# ----------------------------------------------------------------- BubbleUp


@dataclass(frozen=True, slots=True)
class ValueShare:
    """One value of an attribute: its share of the selection and of the baseline
    (``None`` stands for spans without the attribute)."""

    value: str | None
    selected: float
    baseline: float
    selected_count: int
    baseline_count: int

    def to_json(self) -> dict[str, Any]:
        return camel_json(self)


@dataclass(frozen=True, slots=True)
class AttributeDifference:
    """How differently an attribute is distributed in the selection and the baseline.

    ``score`` is the total variation distance between the two distributions
    of values (absence counts as a value): 0 when they agree, 1 when they
    share nothing. ``values`` are the values over-represented in the
    selection, most over-represented first.
    """

    key: str
    score: float
    values: tuple[ValueShare, ...]
    selected_with_key: int
    baseline_with_key: int
    distinct: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "score": self.score,
            "values": [v.to_json() for v in self.values],
            "selectedWithKey": self.selected_with_key,
            "baselineWithKey": self.baseline_with_key,
            "distinct": self.distinct,
        }


_HIGH_CARDINALITY = 0.9  # distinct values / spans with the key, in both sets together


def _text(any_value: Mapping[str, Any]) -> str:
    value = attribute_value(any_value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))


def _dimensions(rows: Sequence[SpanRow], context: Sequence[SpanRow]) -> list[dict[str, str]]:
    """The values BubbleUp compares, per row: its attributes and the derived ones.

    Parents and children are looked up among ``rows`` and ``context``."""
    by_id = {(r.trace_id, r.span_id): r.service for r in (*rows, *context)}
    attrs = [json.loads(r.attributes) if r.attributes != "[]" else [] for r in rows]
    attempt_children: dict[tuple[bytes, bytes], int] = {}
    seen: set[tuple[bytes, bytes]] = set()
    for row in (*rows, *context):
        if not row.parent_span_id or (row.trace_id, row.span_id) in seen:
            continue
        seen.add((row.trace_id, row.span_id))
        if '"key":"seawall.attempt"' in row.attributes:  # compact JSON, as spans.py writes it
            key = (row.trace_id, row.parent_span_id)
            attempt_children[key] = attempt_children.get(key, 0) + 1
    events: list[set[str]] = [
        {e.get("name", "") for e in json.loads(r.events)} if r.events != "[]" else set()
        for r in rows
    ]
    event_names = sorted(set().union(*events) - {""}) if events else []
    out: list[dict[str, str]] = []
    for row, kvs, names in zip(rows, attrs, events, strict=True):
        dims: dict[str, str] = {}
        for kv in kvs:
            try:
                dims[kv["key"]] = _text(kv.get("value") or {})
            except (ValueError, KeyError):
                continue
        dims["service.name"] = row.service
        dims["span.name"] = row.name
        dims["status"] = "error" if row.status_code == _ERROR else "ok"
        if "seawall.attempt" in dims:
            dims["attempts"] = dims["seawall.attempt"]
        else:
            n = attempt_children.get((row.trace_id, row.span_id), 0)
            if n:
                dims["attempts"] = str(n)
        caller = dims.get("seawall.caller")
        if caller is None and row.parent_span_id:
            parent = by_id.get((row.trace_id, row.parent_span_id))
            if parent is not None and parent != row.service:
                caller = parent
        if caller is not None:
            dims["caller"] = caller
        for name in event_names:
            dims[f"event:{name}"] = "true" if name in names else "false"
        out.append(dims)
    return out


def compare(
    selected: Sequence[SpanRow],
    baseline: Sequence[SpanRow],
    *,
    top: int = 20,
    values: int = 5,
    context: Sequence[SpanRow] = (),
) -> list[AttributeDifference]:
    """BubbleUp: the attributes whose values differ most between ``selected`` and ``baseline``.

    Compared, per span: every span attribute; ``service.name`` and
    ``span.name``; ``status`` (``ok``/``error``); ``attempts`` (the span's
    ``seawall.attempt``, else how many children carry one); ``caller``
    (``seawall.caller``, else the parent's service when it is another);
    parents and children are looked up in both sets and in ``context`` (say,
    the rest of their traces), which is not compared itself;
    ``event:<name>`` (``true``/``false``) for every span event name present
    (the policy events :data:`POLICY_EVENTS` among them). Each is scored by
    the total variation distance between its value distributions in the two
    sets (a span without it counts as the value ``None``) and the ``top``
    most different come first. Keys whose values are nearly all distinct
    (90 % of the spans that have them, in both sets together, three spans or
    more: ids, full URLs, timestamps) are skipped. Empty when either set is.
    """
    if not selected or not baseline:
        return []
    dims = _dimensions([*selected, *baseline], context)
    sel_dims, base_dims = dims[: len(selected)], dims[len(selected) :]
    keys = sorted({k for d in dims for k in d})
    n_sel, n_base = len(sel_dims), len(base_dims)
    out: list[AttributeDifference] = []
    for key in keys:
        sel_counts: dict[str | None, int] = {}
        base_counts: dict[str | None, int] = {}
        for d in sel_dims:
            v = d.get(key)
            sel_counts[v] = sel_counts.get(v, 0) + 1
        for d in base_dims:
            v = d.get(key)
            base_counts[v] = base_counts.get(v, 0) + 1
        present = n_sel - sel_counts.get(None, 0) + n_base - base_counts.get(None, 0)
        distinct = len((set(sel_counts) | set(base_counts)) - {None})
        if present >= 3 and distinct >= _HIGH_CARDINALITY * present:
            continue
        shares = []
        for v in set(sel_counts) | set(base_counts):
            s, b = sel_counts.get(v, 0), base_counts.get(v, 0)
            shares.append(ValueShare(v, s / n_sel, b / n_base, s, b))
        score = 0.5 * sum(abs(v.selected - v.baseline) for v in shares)
        over = sorted(
            (v for v in shares if v.selected > v.baseline),
            key=lambda v: (-(v.selected - v.baseline), v.value is None, v.value or ""),
        )
        out.append(
            AttributeDifference(
                key,
                score,
                tuple(over[:values]),
                n_sel - sel_counts.get(None, 0),
                n_base - base_counts.get(None, 0),
                distinct,
            )
        )
    out.sort(key=lambda a: (-a.score, a.distinct, a.key))
    return out[:top]


# ------------------------------------------------------- trace statistics


@dataclass(frozen=True, slots=True)
class StatRow:
    """Jaeger's trace statistics for one service, or one (service, operation).

    Durations in ms. Self time is Jaeger's (jaeger-ui,
    ``packages/jaeger-ui/src/components/TracePage/TraceStatistics/tableValues.ts``,
    ``computeSelfTime``): the span's duration minus the time covered by its
    children, each clipped to the span, overlaps counted once.
    ``self_percent`` is the self time's share of the trace's duration, in %.
    """

    group: Literal["service", "operation"]
    service: str
    operation: str | None
    count: int
    total_ms: float
    avg_ms: float
    min_ms: float
    max_ms: float
    self_total_ms: float
    self_avg_ms: float
    self_min_ms: float
    self_max_ms: float
    self_percent: float

    def to_json(self) -> dict[str, Any]:
        return camel_json(self)


def _self_times(rows: Sequence[SpanRow]) -> list[int]:
    children: dict[tuple[bytes, bytes], list[SpanRow]] = {}
    for row in rows:
        if row.parent_span_id:
            children.setdefault((row.trace_id, row.parent_span_id), []).append(row)
    out = []
    for row in rows:
        start, end = row.start_ns, max(row.start_ns, row.end_ns)
        covered = 0
        reach = start  # the end of the children's union so far
        for child in sorted(
            children.get((row.trace_id, row.span_id), ()), key=lambda c: c.start_ns
        ):
            lo, hi = max(child.start_ns, reach), min(child.end_ns, end)
            if hi > lo:
                covered += hi - lo
                reach = hi
        out.append(end - start - covered)
    return out


def trace_statistics(rows: Sequence[SpanRow]) -> list[StatRow]:
    """Jaeger's statistics of a trace, per service and per (service, operation).

    Count, total, average, min and max duration, and the same of self time
    (see :class:`StatRow`) with its share of the trace (from its first start
    to its last end). Service rows come first, then operation rows; each by
    self time, most first.
    """
    if not rows:
        return []
    selfs = _self_times(rows)
    trace_ns = max(r.end_ns for r in rows) - min(r.start_ns for r in rows)
    groups: dict[tuple[str, str, str | None], list[tuple[int, int]]] = {}
    for row, own in zip(rows, selfs, strict=True):
        pair = (_duration(row), own)
        groups.setdefault(("service", row.service, None), []).append(pair)
        groups.setdefault(("operation", row.service, row.name), []).append(pair)
    out = []
    for (group, service, operation), pairs in groups.items():
        durations = [d for d, _ in pairs]
        owns = [s for _, s in pairs]
        n = len(pairs)
        out.append(
            StatRow(
                "service" if group == "service" else "operation",
                service,
                operation,
                n,
                _ms(sum(durations)),
                _ms(sum(durations) / n),
                _ms(min(durations)),
                _ms(max(durations)),
                _ms(sum(owns)),
                _ms(sum(owns) / n),
                _ms(min(owns)),
                _ms(max(owns)),
                100.0 * sum(owns) / trace_ns if trace_ns > 0 else 0.0,
            )
        )
    out.sort(key=lambda s: (s.group != "service", -s.self_total_ms, s.service, s.operation or ""))
    return out


# ------------------------------------------------------------ trace diff


@dataclass(frozen=True, slots=True)
class DiffNode:
    """One node of the merged tree of traces A and B.

    Spans are merged by their path of (service, operation) from the root, as
    jaeger-ui's trace diff merges them (``packages/jaeger-ui/src/model/trace-dag/``,
    ``TraceDag.diff`` with ``ancestralPathParentOrLeaf``). ``status``:
    ``both``, ``missing`` (only in A) or ``added`` (only in B). ``slower``:
    in both, and B's mean duration exceeds A's by the threshold.
    """

    path: tuple[tuple[str, str], ...]
    status: Literal["both", "missing", "added"]
    a_count: int
    b_count: int
    a_mean_ms: float | None
    b_mean_ms: float | None
    slower: bool

    @property
    def service(self) -> str:
        return self.path[-1][0]

    @property
    def operation(self) -> str:
        return self.path[-1][1]

    @property
    def depth(self) -> int:
        return len(self.path) - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "path": [{"service": s, "operation": o} for s, o in self.path],
            "service": self.service,
            "operation": self.operation,
            "depth": self.depth,
            "status": self.status,
            "aCount": self.a_count,
            "bCount": self.b_count,
            "aMeanMs": self.a_mean_ms,
            "bMeanMs": self.b_mean_ms,
            "slower": self.slower,
        }


def _paths(rows: Sequence[SpanRow]) -> dict[tuple[tuple[str, str], ...], list[int]]:
    """The durations of the spans at each path of (service, operation) from a root."""
    by_id = {(r.trace_id, r.span_id): r for r in rows}
    memo: dict[tuple[bytes, bytes], tuple[tuple[str, str], ...]] = {}

    def path(row: SpanRow) -> tuple[tuple[str, str], ...]:
        chain: list[SpanRow] = []
        seen: set[tuple[bytes, bytes]] = set()
        cur: SpanRow | None = row
        prefix: tuple[tuple[str, str], ...] = ()
        while cur is not None:
            key = (cur.trace_id, cur.span_id)
            if key in memo:
                prefix = memo[key]
                break
            if key in seen:  # a cycle: treat the span as a root
                break
            seen.add(key)
            chain.append(cur)
            cur = by_id.get((cur.trace_id, cur.parent_span_id)) if cur.parent_span_id else None
        for span in reversed(chain):
            prefix = (*prefix, (span.service, span.name))
            memo[(span.trace_id, span.span_id)] = prefix
        return memo[(row.trace_id, row.span_id)]

    out: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for row in rows:
        out.setdefault(path(row), []).append(_duration(row))
    return out


def trace_diff(
    a_rows: Sequence[SpanRow],
    b_rows: Sequence[SpanRow],
    *,
    slower_ratio: float = 1.2,
    min_slower_ms: float = 1.0,
) -> list[DiffNode]:
    """Traces A and B merged by path of (service, operation), in depth-first order.

    A node in both is ``slower`` when B's mean duration is at least
    ``slower_ratio`` times A's and at least ``min_slower_ms`` more.
    """
    a = _paths(a_rows)
    b = _paths(b_rows)
    out = []
    for path in sorted(set(a) | set(b)):
        da, db = a.get(path, []), b.get(path, [])
        mean_a = _ms(sum(da) / len(da)) if da else None
        mean_b = _ms(sum(db) / len(db)) if db else None
        status: Literal["both", "missing", "added"] = (
            "both" if da and db else ("missing" if da else "added")
        )
        slower = (
            mean_a is not None
            and mean_b is not None
            and mean_b >= mean_a * slower_ratio
            and mean_b - mean_a >= min_slower_ms
        )
        out.append(DiffNode(path, status, len(da), len(db), mean_a, mean_b, slower))
    return out
