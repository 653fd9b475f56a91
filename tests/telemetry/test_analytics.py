"""The analytics behind the trace UI (seawall.telemetry.analytics), on hand-computed cases.

Each case draws its spans (times in ms after ``T0``) and works the expected
figures out by hand from the rules in the module docstring: an edge per
SERVER span under a parent of another service, a CLIENT span without a child
as an unanswered call, nearest-rank percentiles, self time as the span minus
its children's union. Where histograms estimate (rollups, span metrics) the
expected value is the exact one within ``RELATIVE_ERROR``. The store-reading
wrappers run against a real ``TraceStore`` in ``tmp_path`` (the direct read)
and in memory (the public API), and must agree with the pure functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from seawall.telemetry.analytics import (
    RELATIVE_ERROR,
    EdgeStats,
    Rollups,
    SpanMetricsQuery,
    compare,
    drift,
    edges,
    graph,
    heatmap,
    select,
    span_metrics,
    span_metrics_from_rows,
    trace_diff,
    trace_statistics,
)
from seawall.telemetry.analytics import _destination as destination
from seawall.telemetry.analytics import _flat as flat
from seawall.telemetry.analytics import _read_direct as read_direct
from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode
from seawall.telemetry.store import TraceStore

MS = 1_000_000
SECOND = 1_000 * MS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
T0 = 1_700_000_040 * SECOND  # a whole minute (and the tests' clock)

SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _any(value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def span(
    trace: int,
    sid: int,
    parent: int | None,
    service: str,
    kind: int,
    start_ms: float,
    end_ms: float,
    *,
    name: str = "op",
    error: bool = False,
    attrs: dict[str, object] | None = None,
    events: Sequence[str] = (),
    at: int = T0,
) -> SpanRow:
    """A stored span: times in ms after ``at``; tags as the store indexes them."""
    attrs = attrs or {}
    kvs = [{"key": k, "value": _any(v)} for k, v in attrs.items()]
    tags = [
        f"{k}={'true' if v is True else 'false' if v is False else v}" for k, v in attrs.items()
    ]
    return SpanRow(
        trace_id=trace.to_bytes(16, "big"),
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        service=service,
        name=name,
        kind=kind,
        start_ns=at + round(start_ms * MS),
        end_ns=at + round(end_ms * MS),
        status_code=StatusCode.ERROR if error else StatusCode.UNSET,
        status_message="",
        flags=1,
        trace_state="",
        attributes=compact(kvs),
        events=compact([{"timeUnixNano": str(at), "name": e, "attributes": []} for e in events]),
        links="[]",
        resource=compact([{"key": "service.name", "value": {"stringValue": service}}]),
        scope=compact({"name": "test"}),
        tags=(*tags, f"service.name={service}"),
    )


def checkout(trace: int = 1, at: int = T0) -> list[SpanRow]:
    """gateway -> orders (retried: the first attempt got a 503) -> payments -> an
    external ledger, with seawall's sidecar spans::

        1  gateway  SERVER  0-100     the request
        2  gateway  CLIENT  5-95      the sidecar's call to orders
        3  gateway  CLIENT  6-30        attempt 1, to 10.0.0.7:8080
        4  orders   SERVER  8-28          orders' sidecar: 503 (ERROR)
        5  gateway  CLIENT  35-94       attempt 2, to 10.0.0.8:8080
        6  orders   SERVER  37-92         orders' sidecar
        7  orders   SERVER  38-91           orders' app
        8  orders   CLIENT  40-80           the sidecar's call to payments
        9  orders   CLIENT  41-79             attempt 1
        10 payments SERVER  42-77               payments' sidecar
        11 payments CLIENT  50-60               to ledger.example.com: nobody answers
    """
    return [
        span(trace, 1, None, "gateway", SERVER, 0, 100, at=at),
        span(trace, 2, 1, "gateway", CLIENT, 5, 95, attrs={"seawall.destination": "orders"}, at=at),
        span(
            trace,
            3,
            2,
            "gateway",
            CLIENT,
            6,
            30,
            attrs={"seawall.attempt": 1, "seawall.endpoint": "10.0.0.7:8080"},
            events=["seawall.retry"],
            at=at,
        ),
        span(trace, 4, 3, "orders", SERVER, 8, 28, error=True, at=at),
        span(
            trace,
            5,
            2,
            "gateway",
            CLIENT,
            35,
            94,
            attrs={"seawall.attempt": 2, "seawall.endpoint": "10.0.0.8:8080"},
            at=at,
        ),
        span(trace, 6, 5, "orders", SERVER, 37, 92, at=at),
        span(trace, 7, 6, "orders", SERVER, 38, 91, at=at),
        span(
            trace, 8, 7, "orders", CLIENT, 40, 80, attrs={"seawall.destination": "payments"}, at=at
        ),
        span(trace, 9, 8, "orders", CLIENT, 41, 79, attrs={"seawall.attempt": 1}, at=at),
        span(trace, 10, 9, "payments", SERVER, 42, 77, at=at),
        span(
            trace,
            11,
            10,
            "payments",
            CLIENT,
            50,
            60,
            attrs={"server.address": "ledger.example.com"},
            at=at,
        ),
    ]


def by_edge(found: Iterable[EdgeStats]) -> dict[tuple[str, str], EdgeStats]:
    return {(e.caller, e.callee): e for e in found}


def store_at(path: Path | str, rows: Sequence[SpanRow]) -> TraceStore:
    store = TraceStore(path, max_age=10 * 365 * 86400, clock=lambda: T0 / SECOND)
    for i in range(0, len(rows), 500):
        store.insert(rows[i : i + 500])
    return store


# ------------------------------------------------------------- the graph


def test_edges_of_a_three_service_trace_with_a_retried_call() -> None:
    found = by_edge(edges(checkout(), start_ns=T0, end_ns=T0 + SECOND))
    assert sorted(found) == [
        ("gateway", "orders"),
        ("orders", "payments"),
        ("payments", "ledger.example.com"),
    ]
    # two attempts reached orders: two calls, the first an error; durations 20 and 55 ms
    assert found["gateway", "orders"] == EdgeStats(
        "gateway", "orders", 2, 1, 50.0, 2.0, 20.0, 55.0, 0, False
    )
    assert found["orders", "payments"] == EdgeStats(
        "orders", "payments", 1, 0, 0.0, 1.0, 35.0, 35.0, 0, False
    )
    # the ledger never answered: the CLIENT span's 10 ms, an uninstrumented callee
    assert found["payments", "ledger.example.com"] == EdgeStats(
        "payments", "ledger.example.com", 1, 0, 0.0, 1.0, 10.0, 10.0, 1, True
    )


def test_rows_in_any_order_and_a_child_that_starts_before_its_parent() -> None:
    rows = checkout()
    # the orders sidecar's clock runs 3 ms behind: its SERVER span starts before attempt 2
    skewed = [r._replace(start_ns=T0 + 32 * MS) if r.span_id[-1] == 6 else r for r in rows]
    found = by_edge(edges(list(reversed(skewed)), start_ns=T0, end_ns=T0 + SECOND))
    assert found["gateway", "orders"].calls == 2
    assert found["gateway", "orders"].p99_ms == 60.0


def test_rate_and_percentiles_over_a_small_set() -> None:
    # 100 calls a -> b over 50 s, lasting 1, 2, ..., 100 ms; every tenth failed
    rows = []
    for i in range(100):
        start = i * 500.0
        rows.append(span(100 + i, 1, None, "a", CLIENT, start, start + 200))
        rows.append(span(100 + i, 2, 1, "b", SERVER, start, start + i + 1, error=i % 10 == 9))
    (edge,) = edges(rows, start_ns=T0, end_ns=T0 + 50 * SECOND)
    assert (edge.calls, edge.errors, edge.error_pct) == (100, 10, 10.0)
    assert edge.rate == 2.0
    assert edge.p50_ms == 50.0  # the 50th of 100
    assert edge.p99_ms == 99.0  # the 99th of 100
    # counted by start: half the window, half the calls
    (half,) = edges(rows, start_ns=T0, end_ns=T0 + 25 * SECOND)
    assert (half.calls, half.rate, half.p99_ms) == (50, 2.0, 50.0)


def test_graph_from_a_store_has_nodes_and_agrees_with_edges(tmp_path: Path) -> None:
    rows = checkout(1) + checkout(2, at=T0 + 10 * SECOND)
    window = (T0, T0 + 20 * SECOND)
    expected = by_edge(edges(rows, start_ns=window[0], end_ns=window[1]))
    for where in (tmp_path / "spans.db", ":memory:"):
        with store_at(where, rows) as store:
            assert (read_direct(store, 0, 1) is None) == (where == ":memory:")
            g = graph(store, *window)
            assert by_edge(g.edges) == expected
            assert (g.spans_read, g.truncated, g.estimated) == (22, False, False)
            nodes = {n.service: n for n in g.nodes}
            assert sorted(nodes) == ["gateway", "ledger.example.com", "orders", "payments"]
            # orders served 2 requests a trace (the sidecar's SERVER spans 4 and 6; the
            # app's SERVER span 7 is the same request as 6)
            orders = nodes["orders"]
            assert (orders.calls, orders.errors, orders.rate) == (4, 2, 0.2)
            assert (orders.p50_ms, orders.p99_ms) == (20.0, 55.0)
            assert (nodes["gateway"].calls, nodes["gateway"].p99_ms) == (2, 100.0)
            ledger = nodes["ledger.example.com"]
            assert (ledger.uninstrumented, ledger.calls, ledger.p50_ms) == (True, 2, 10.0)
            # a window holding only the second trace
            second = graph(store, T0 + 10 * SECOND, T0 + 20 * SECOND)
            assert by_edge(second.edges)["gateway", "orders"].calls == 2
            # bounded: the read stops and says so
            cut = graph(store, *window, max_spans=5)
            assert (cut.truncated, cut.spans_read) == (True, 5)
            assert cut.end_ns < window[1]


def test_the_direct_read_gives_what_the_public_api_gives(tmp_path: Path) -> None:
    rows = checkout(1) + checkout(2, at=T0 + 10 * SECOND)
    with store_at(tmp_path / "spans.db", rows) as store:
        direct = read_direct(store, T0 + 5 * MS, T0 + 20 * SECOND)
        assert direct is not None
        got = list(direct)
        public = list(flat(store.spans_between(T0 + 5 * MS, T0 + 20 * SECOND)))
    assert len(got) == 21  # all but the first trace's root, at 0 ms
    # the same keys, services, kinds, times and status, in the same order
    assert [g[:7] for g in got] == [p[:7] for p in public]
    # tags are read for CLIENT spans only, as the store's text
    assert [destination(g[7]) for g in got] == [
        destination(p[7]) if p[3] == CLIENT else None for p in public
    ]
    assert destination(got[0][7]) == "orders"


def test_graph_json_shape() -> None:
    g = edges(checkout(), start_ns=T0, end_ns=T0 + SECOND)[0].to_json()
    assert g == {
        "caller": "gateway",
        "callee": "orders",
        "calls": 2,
        "errors": 1,
        "errorPct": 50.0,
        "rate": 2.0,
        "p50Ms": 20.0,
        "p99Ms": 55.0,
        "unanswered": 0,
        "uninstrumented": False,
    }


# ------------------------------------------------------------ span metrics


def api_spans() -> list[SpanRow]:
    """``api``'s SERVER spans, at seconds after T0 (point windows are (t - 10 s, t])."""
    placed = [
        # (second, duration ms, error, name)
        (21, 10, False, "GET /a"),
        (30, 20, False, "GET /a"),  # exactly on the point at 30 s: in its window
        (31, 30, False, "GET /a"),
        (35, 40, False, "GET /b"),
        (39, 50, False, "GET /b"),
        (55, 60, True, "GET /a"),
        (59, 70, False, "GET /b"),
    ]
    rows = [
        span(300 + i, 1, None, "api", SERVER, s * 1000, s * 1000 + d, error=e, name=n)
        for i, (s, d, e, n) in enumerate(placed)
    ]
    rows.append(span(400, 1, None, "api", CLIENT, 33_000, 33_005))  # another kind
    rows.append(span(401, 1, None, "web", SERVER, 33_000, 33_005))  # another service
    rows.append(span(402, 1, None, "api", SERVER, 5_000, 5_005))  # before every window
    return rows


def test_span_metrics_series_with_known_counts_per_step() -> None:
    query = SpanMetricsQuery(
        ("api",),
        end_ns=T0 + 60 * SECOND,
        lookback_ns=30 * SECOND,
        step_ns=10 * SECOND,
        rate_per_ns=10 * SECOND,
        quantile=0.5,
    )
    m = span_metrics_from_rows(api_spans(), query)
    assert m.timestamps_ns == tuple(T0 + s * SECOND for s in (30, 40, 50, 60))
    assert m.window_ns == 10 * SECOND
    (series,) = m.series
    assert (series.service, series.operation) == ("api", None)
    assert series.calls == (2, 3, 0, 2)
    assert series.errors == (0, 0, 0, 1)
    assert series.call_rate == (0.2, 0.3, 0.0, 0.2)
    assert series.error_rate[:2] == (0.0, 0.0)
    assert math.isnan(series.error_rate[2])
    assert series.error_rate[3] == 0.5
    # the median by nearest rank: of (10, 20) the 1st, of (30, 40, 50) the 2nd, of (60, 70) the 1st
    assert series.latency_ms[0] == pytest.approx(10, rel=RELATIVE_ERROR)
    assert series.latency_ms[1] == pytest.approx(40, rel=RELATIVE_ERROR)
    assert math.isnan(series.latency_ms[2])
    assert series.latency_ms[3] == pytest.approx(60, rel=RELATIVE_ERROR)


def test_span_metrics_rate_window_and_operations() -> None:
    # ratePer 15 s rounds up to two 10 s steps: windows of 20 s
    query = SpanMetricsQuery(
        ("api",),
        end_ns=T0 + 60 * SECOND,
        lookback_ns=30 * SECOND,
        step_ns=10 * SECOND,
        rate_per_ns=15 * SECOND,
        group_by_operation=True,
        span_kinds=(SERVER, CLIENT),
        quantile=0.99,
    )
    m = span_metrics_from_rows(api_spans(), query)
    assert m.window_ns == 20 * SECOND
    got = {(s.service, s.operation): s for s in m.series}
    assert list(got) == [("api", "GET /a"), ("api", "GET /b"), ("api", "op")]
    # windows (10,30], (20,40], (30,50], (40,60]; GET /a started at 21, 30, 31 and 55 s
    assert got["api", "GET /a"].calls == (2, 3, 1, 1)
    assert got["api", "GET /b"].calls == (0, 2, 2, 1)
    assert got["api", "op"].calls == (0, 1, 1, 0)  # the CLIENT span at 33 s
    assert got["api", "GET /b"].call_rate == (0.0, 0.1, 0.1, 0.05)
    assert got["api", "GET /b"].latency_ms[1] == pytest.approx(50, rel=RELATIVE_ERROR)


def test_span_metrics_from_a_store_agree(tmp_path: Path) -> None:
    query = SpanMetricsQuery(
        ("api", "web"),
        end_ns=T0 + 60 * SECOND,
        lookback_ns=30 * SECOND,
        step_ns=10 * SECOND,
        rate_per_ns=10 * SECOND,
        group_by_operation=True,
    )
    expected = span_metrics_from_rows(api_spans(), query)
    for where in (tmp_path / "spans.db", ":memory:"):
        with store_at(where, api_spans()) as store:
            got = span_metrics(store, query)
            assert [s.to_json() for s in got.series] == [s.to_json() for s in expected.series]
            assert got.spans_read == 8  # api's 7 SERVER spans in range, and web's


def test_span_metrics_query_is_validated() -> None:
    with pytest.raises(ValueError, match="services"):
        SpanMetricsQuery((), end_ns=T0)
    with pytest.raises(ValueError, match="step_ns"):
        SpanMetricsQuery(("a",), end_ns=T0, step_ns=0)
    with pytest.raises(ValueError, match="quantile"):
        SpanMetricsQuery(("a",), end_ns=T0, quantile=1.0)
    with pytest.raises(ValueError, match="points"):
        SpanMetricsQuery(("a",), end_ns=T0, lookback_ns=3600 * SECOND, step_ns=MS)


# -------------------------------------------------------------------- drift


def call(trace: int, caller: str, callee: str, start_ns: int, ms: float) -> list[SpanRow]:
    """One call: the caller's CLIENT span and the callee's SERVER span under it."""
    return [
        span(trace, 1, None, caller, CLIENT, 0, ms + 1, at=start_ns),
        span(trace, 2, 1, callee, SERVER, 0.5, 0.5 + ms, at=start_ns),
    ]


NOW = T0 + 2 * 86_400 * SECOND  # a whole minute


def drift_rows() -> list[SpanRow]:
    """Three edges, placed around NOW (current: the last 10 min; baseline: the day before)::

    a -> b  baseline 48 calls of 10 ms; now 30 calls of 40 ms    drifted x4
    c -> d  baseline 48 calls of 10 ms; now 5 calls of 100 ms    too few calls
    e -> f  baseline 48 calls of 10 ms; now 30 calls of 12 ms    below x1.5

    The baseline calls come every 25 minutes, the oldest 20 h before the
    current window: inside the 23 hours a day's baseline is sure to cover.
    """
    rows: list[SpanRow] = []
    trace = 1000
    for caller, callee, now_calls, now_ms in (
        ("a", "b", 30, 40.0),
        ("c", "d", 5, 100.0),
        ("e", "f", 30, 12.0),
    ):
        for i in range(48):
            trace += 1
            at = NOW - 10 * MINUTE - (i + 1) * 25 * MINUTE + 7 * SECOND
            rows += call(trace, caller, callee, at, 10.0)
        for i in range(now_calls):  # through the current window
            trace += 1
            rows += call(trace, caller, callee, NOW - 9 * MINUTE + i * 15 * SECOND, now_ms)
    return rows


def check_drift(found: Sequence[Any]) -> None:
    got = {(d.caller, d.callee): d for d in found}
    assert [(d.caller, d.callee) for d in found] == [("c", "d"), ("a", "b"), ("e", "f")]
    ab = got["a", "b"]
    assert ab.flagged
    assert ab.reason == "drifted"
    assert (ab.current_calls, ab.baseline_calls) == (30, 48)
    assert ab.current_p99_ms == pytest.approx(40, rel=RELATIVE_ERROR)
    assert ab.baseline_p99_ms == pytest.approx(10, rel=RELATIVE_ERROR)
    assert ab.ratio == pytest.approx(4, rel=2 * RELATIVE_ERROR)
    assert ab.difference_ms == pytest.approx(30, rel=2 * RELATIVE_ERROR)
    cd = got["c", "d"]
    assert not cd.flagged
    assert cd.reason == "too few calls"
    assert cd.ratio == pytest.approx(10, rel=2 * RELATIVE_ERROR)
    ef = got["e", "f"]
    assert not ef.flagged
    assert ef.reason == "below threshold"
    assert ef.ratio == pytest.approx(1.2, rel=2 * RELATIVE_ERROR)


def test_drift_flags_only_a_well_supported_rise_past_the_threshold() -> None:
    rollups = Rollups()
    rollups.add(drift_rows(), NOW)
    found = rollups.drift(NOW)
    check_drift(found)
    assert "DRIFT" in found[1].describe()
    assert found[1].to_json()["flagged"] is True
    # with a lower bar, c -> d is trusted too
    assert rollups.drift(NOW, min_calls=5)[0].flagged


def test_drift_from_the_store_agrees(tmp_path: Path) -> None:
    with store_at(tmp_path / "spans.db", drift_rows()) as store:
        check_drift(drift(store, NOW))


def test_drift_windows_do_not_overlap() -> None:
    # a slow call 30 s before the current window belongs to the baseline only
    rows = drift_rows() + call(9999, "a", "b", NOW - 10 * MINUTE - 30 * SECOND, 1000.0)
    rollups = Rollups()
    rollups.add(rows, NOW)
    ab = next(d for d in rollups.drift(NOW) if d.caller == "a")
    assert (ab.current_calls, ab.baseline_calls) == (30, 49)
    assert ab.baseline_p99_ms == pytest.approx(1000, rel=RELATIVE_ERROR)
    assert not ab.flagged


def test_drift_baseline_far_end_is_rounded_to_the_hour() -> None:
    # minute buckets are kept 2 h: at the far end of a day's baseline only whole hours
    # count, so a call in the baseline's first (partial) hour is left out
    split = NOW - 10 * MINUTE
    start = split - 86_400 * SECOND
    partial = (HOUR - start % HOUR) // MINUTE  # whole minutes before the first full hour
    assert 0 < partial < 60
    rows = drift_rows() + call(9999, "a", "b", start + 7 * SECOND, 1000.0)
    rows += call(9998, "a", "b", start + partial * MINUTE + 7 * SECOND, 10.0)  # in a full hour
    rollups = Rollups()
    rollups.add(rows, NOW)
    ab = next(d for d in rollups.drift(NOW) if d.caller == "a")
    assert ab.baseline_calls == 49


def test_drift_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Rollups().drift(NOW, threshold=1.0)
    with pytest.raises(ValueError, match="current"):
        Rollups().drift(NOW, current=0)


def test_rollups_join_across_batches_and_find_unanswered_calls() -> None:
    rollups = Rollups(join_wait_s=30)
    client, server = call(1, "a", "b", T0, 10.0)
    # the SERVER span is exported first; its parent 20 s later
    rollups.add([server], T0)
    rollups.add([client], T0 + 20 * SECOND)
    # a CLIENT span to "db" that nobody answers: counted once its wait is over
    lone = span(2, 1, None, "a", CLIENT, 0, 5, attrs={"seawall.destination": "db"}, at=T0)
    rollups.add([lone], T0 + 21 * SECOND)
    assert {(e.caller, e.callee) for e in rollups.edges(T0, T0 + MINUTE)} == {("a", "b")}
    rollups.expire(T0 + 60 * SECOND)
    found = by_edge(rollups.edges(T0, T0 + MINUTE))
    assert found["a", "b"].calls == 1
    assert found["a", "b"].p99_ms == pytest.approx(10, rel=RELATIVE_ERROR)
    db = found["a", "db"]
    assert (db.calls, db.unanswered, db.uninstrumented) == (1, 1, True)
    assert db.p50_ms == pytest.approx(5, rel=RELATIVE_ERROR)
    g = rollups.graph(T0, T0 + MINUTE)
    assert g.estimated
    assert {n.service: n.uninstrumented for n in g.nodes} == {"a": False, "b": False, "db": True}


def test_rollups_a_parent_that_never_comes() -> None:
    rollups = Rollups(join_wait_s=30)
    _, server = call(1, "a", "b", T0, 10.0)
    rollups.add([server], T0)
    rollups.expire(T0 + 31 * SECOND)
    assert rollups.stats().unjoined == 1
    g = rollups.graph(T0, T0 + MINUTE)
    assert g.edges == ()
    assert [(n.service, n.calls) for n in g.nodes] == [("b", 1)]  # served, from nobody known


def test_rollup_eviction() -> None:
    # minutes kept 20 min, 10-minute buckets kept 50 min
    rollups = Rollups(
        bucket_s=60, coarse_s=600, fine_retention_s=1200, retention_s=3000, join_wait_s=10
    )
    base = T0 - T0 % (10 * MINUTE)  # the start of a 10-minute bucket
    rollups.add(call(1, "a", "b", base + MINUTE, 10.0), base + MINUTE)
    rollups.add(call(2, "a", "b", base + 6 * MINUTE, 10.0), base + 6 * MINUTE)
    stats = rollups.stats()
    assert (stats.fine_buckets, stats.coarse_buckets) == (2, 1)
    assert rollups.edges(base, base + 10 * MINUTE)[0].calls == 2

    # 22 minutes on: the first call's minute is gone, its 10-minute bucket is not, so
    # a window covering that bucket whole still counts both calls; one that covers
    # it in part sums its minutes, and only the recent one is left
    rollups.expire(base + 22 * MINUTE)
    stats = rollups.stats()
    assert (stats.fine_buckets, stats.coarse_buckets) == (1, 1)
    assert rollups.edges(base, base + 10 * MINUTE)[0].calls == 2
    assert rollups.edges(base, base + 9 * MINUTE)[0].calls == 1

    # an hour on, the 10-minute bucket is past the retention too
    rollups.expire(base + 60 * MINUTE)
    stats = rollups.stats()
    assert (stats.fine_buckets, stats.coarse_buckets, stats.cells) == (0, 0, 0)
    assert rollups.edges(base, base + 10 * MINUTE) == []
    # a span older than the retention is not counted
    rollups.add(call(3, "a", "b", base + MINUTE, 10.0), base + 60 * MINUTE)
    assert (rollups.stats().spans_too_old, rollups.stats().spans_added) == (2, 4)


def test_rollups_join_is_bounded() -> None:
    rollups = Rollups(max_open=10, join_wait_s=3600)
    rows = [r for i in range(20) for r in call(i, "a", "b", T0 + i * SECOND, 1.0)]
    rollups.add(rows, T0 + 20 * SECOND)
    stats = rollups.stats()
    assert stats.open_spans <= 10
    assert stats.evicted >= 30
    # joined inside one batch before the bound applied: every call counted
    assert rollups.edges(T0, T0 + MINUTE)[0].calls == 20


def test_rollups_rebuilt_then_fed_live_join_across_the_restart(tmp_path: Path) -> None:
    client, server = call(1, "a", "b", T0, 10.0)
    with store_at(tmp_path / "spans.db", [client]) as store:
        rollups = Rollups.from_store(store, T0 - MINUTE, T0 + SECOND)
    rollups.add([server], T0 + 2 * SECOND)  # exported after the restart
    rollups.expire(T0 + MINUTE)
    assert by_edge(rollups.edges(T0, T0 + MINUTE))["a", "b"].calls == 1
    assert rollups.stats().unjoined == 0


def test_rollups_from_store_match_live_feeding(tmp_path: Path) -> None:
    rows = checkout(1) + checkout(2, at=T0 + 10 * SECOND)
    live = Rollups()
    live.add(rows, T0 + 20 * SECOND)
    live.expire(T0 + 2 * MINUTE)
    with store_at(tmp_path / "spans.db", rows) as store:
        rebuilt = Rollups.from_store(store, T0 - MINUTE, T0 + 2 * MINUTE)
    window = (T0, T0 + MINUTE)
    assert rebuilt.graph(*window) == live.graph(*window)
    exact = by_edge(edges(rows, start_ns=T0, end_ns=T0 + MINUTE))
    for key, edge in by_edge(live.edges(*window)).items():
        assert (edge.calls, edge.errors, edge.unanswered) == (
            exact[key].calls,
            exact[key].errors,
            exact[key].unanswered,
        )
        assert edge.p99_ms == pytest.approx(exact[key].p99_ms, rel=RELATIVE_ERROR)


# ------------------------------------------------------ heatmap, BubbleUp


def test_heatmap_cell_counts_and_percentiles() -> None:
    # (start s, duration ms); time buckets [0, 5) and [5, 10) s; latency [1, 10) and [10, 100] ms
    placed = [(0, 2), (1, 3), (2, 50), (4, 9.5), (6, 20), (7, 30), (8, 1), (11, 5)]
    rows = [
        span(i + 1, 1, None, "api", SERVER, s * 1000, s * 1000 + d)
        for i, (s, d) in enumerate(placed)
    ]
    h = heatmap(
        rows,
        time_buckets=2,
        latency_buckets=2,
        start_ns=T0,
        end_ns=T0 + 10 * SECOND,
        min_ms=1,
        max_ms=100,
    )
    assert h.time_edges_ns == (T0, T0 + 5 * SECOND, T0 + 10 * SECOND)
    assert h.latency_edges_ms == pytest.approx((1, 10, 100))
    assert h.counts == ((3, 1), (1, 2))
    assert h.total == 7  # the span at 11 s is outside
    assert h.p50_ms == (3.0, 20.0)  # 2nd of (2, 3, 9.5, 50); 2nd of (1, 20, 30)
    assert h.p90_ms == (50.0, 30.0)
    assert h.p99_ms == (50.0, 30.0)
    # by default: from the first start to the last, shortest to longest
    auto = heatmap(rows, time_buckets=1, latency_buckets=3)
    assert auto.latency_edges_ms == pytest.approx((1, 50 ** (1 / 3), 50 ** (2 / 3), 50))
    assert sum(map(sum, auto.counts)) == 8
    assert heatmap([], time_buckets=2, latency_buckets=2, start_ns=T0, end_ns=T0 + 1).total == 0


def test_select_a_region() -> None:
    rows = [
        span(i + 1, 1, None, "api", SERVER, i * 1000, i * 1000 + d)
        for i, d in enumerate((5, 500, 600, 7, 550))
    ]
    selected, rest = select(rows, T0 + 1 * SECOND, T0 + 4 * SECOND, 400 * MS, 600 * MS)
    assert [r.trace_id[-1] for r in selected] == [2, 3]  # 4 s is outside; 550 ms at 4 s too
    assert [r.trace_id[-1] for r in rest] == [1, 4, 5]


def attempts(n_slow: int, n_fast: int) -> list[SpanRow]:
    """Attempt spans: the slow ones all went to 10.0.0.7:8080; the fast ones to five
    endpoints evenly (10.0.0.7:8080 among them). Route, method and status agree."""
    rows = []
    endpoints = [f"10.0.0.{i}:8080" for i in (5, 6, 7, 8, 9)]
    for i in range(n_slow + n_fast):
        slow = i < n_slow
        endpoint = "10.0.0.7:8080" if slow else endpoints[i % 5]
        rows.append(
            span(
                500 + i,
                2,
                1,
                "orders",
                CLIENT,
                i * 100,
                i * 100 + (900 if slow else 20),
                name="POST /charge",
                attrs={
                    "seawall.endpoint": endpoint,
                    "seawall.attempt": 1,
                    "http.route": "/charge" if i % 2 else "/refund",
                    "seawall.request_id": f"req-{i:04d}",  # unique: skipped
                },
            )
        )
    return rows


def test_bubbleup_finds_the_endpoint_the_slow_spans_went_to() -> None:
    rows = attempts(n_slow=10, n_fast=90)
    selected, rest = select(rows, T0, T0 + HOUR, 500 * MS, 10 * SECOND)
    assert len(selected) == 10
    found = compare(selected, rest)
    first = found[0]
    assert first.key == "seawall.endpoint"
    assert first.values[0].value == "10.0.0.7:8080"
    assert (first.values[0].selected, first.values[0].baseline) == (1.0, 18 / 90)
    # TVD: half of |1 - 0.2| plus four endpoints at 0.2 each
    assert first.score == pytest.approx(0.8)
    assert len(first.values) == 1  # only one value is over-represented
    # the request id is nearly all distinct: left out; the rest barely differs
    assert "seawall.request_id" not in {a.key for a in found}
    assert all(a.score < 0.2 for a in found[1:])
    assert first.to_json()["values"][0]["value"] == "10.0.0.7:8080"


def test_bubbleup_when_nothing_differs() -> None:
    rows = attempts(n_slow=0, n_fast=100)
    # the same mix twice over: scores 0
    found = compare(rows[:50], rows[50:])
    assert found
    assert all(a.score == pytest.approx(0.0, abs=0.05) for a in found)
    assert compare([], rows) == []
    assert compare(rows, []) == []


def test_bubbleup_derived_dimensions() -> None:
    rows = checkout()
    call_span, server_4, root, app_7 = rows[1], rows[3], rows[0], rows[6]
    # selected: the sidecar's call (two attempt children) and orders' failed SERVER span
    # (its parent is gateway's attempt); baseline: the root and orders' app span
    found = {a.key: a for a in compare([call_span, server_4], [root, app_7], top=100, context=rows)}
    assert found["attempts"].values[0].value == "2"
    assert found["status"].values[0].value == "error"
    assert found["caller"].values[0].value == "gateway"
    # without the rest of the trace, the children and parents are unknown
    alone = {a.key for a in compare([call_span, server_4], [root, app_7], top=100)}
    assert "attempts" not in alone
    assert "caller" not in alone
    events = {a.key for a in compare([rows[2]], [rows[4]], top=100)}
    assert "event:seawall.retry" in events


# ------------------------------------------------------- trace statistics


def test_trace_statistics_with_self_times() -> None:
    # A |0------------------------------100|      svc1 GET /
    # B    |10----40|                             svc2 query
    # C          |30----60|                       svc2 query  (overlaps B)
    # D             |35---------70|               svc3 db     (overflows C: clipped at 60)
    rows = [
        span(1, 1, None, "svc1", SERVER, 0, 100, name="GET /"),
        span(1, 2, 1, "svc2", CLIENT, 10, 40, name="query"),
        span(1, 3, 1, "svc2", CLIENT, 30, 60, name="query"),
        span(1, 4, 3, "svc3", SERVER, 35, 70, name="db"),
    ]
    # self: A = 100 - |[10,60]| = 50; B = 30; C = 30 - (60 - 35) = 5; D = 35
    stats = trace_statistics(rows)
    rows_by = {(s.group, s.service, s.operation): s for s in stats}
    assert [(s.group, s.service) for s in stats] == [
        ("service", "svc1"),
        ("service", "svc2"),
        ("service", "svc3"),
        ("operation", "svc1"),
        ("operation", "svc2"),
        ("operation", "svc3"),
    ]
    svc2 = rows_by["service", "svc2", None]
    assert (svc2.count, svc2.total_ms, svc2.avg_ms, svc2.min_ms, svc2.max_ms) == (
        2,
        60.0,
        30.0,
        30.0,
        30.0,
    )
    assert (svc2.self_total_ms, svc2.self_avg_ms, svc2.self_min_ms, svc2.self_max_ms) == (
        35.0,
        17.5,
        5.0,
        30.0,
    )
    assert svc2.self_percent == 35.0  # of the trace's 100 ms
    svc1 = rows_by["service", "svc1", None]
    assert (svc1.self_total_ms, svc1.self_percent) == (50.0, 50.0)
    assert rows_by["operation", "svc3", "db"].self_total_ms == 35.0
    assert stats[0].to_json()["selfPercent"] == 50.0
    assert trace_statistics([]) == []


# ------------------------------------------------------------ trace diff


def test_trace_diff_added_missing_and_slower() -> None:
    # A: gw GET / -> orders charge (10 ms) -> payments pay (5 ms); gw -> cache get
    # B: gw GET / -> orders charge (30 ms) -> payments pay (5 ms); gw -> audit log
    a = [
        span(1, 1, None, "gw", SERVER, 0, 50, name="GET /"),
        span(1, 2, 1, "orders", SERVER, 1, 11, name="charge"),
        span(1, 3, 2, "payments", SERVER, 2, 7, name="pay"),
        span(1, 4, 1, "cache", SERVER, 20, 21, name="get"),
    ]
    b = [
        span(2, 1, None, "gw", SERVER, 0, 50, name="GET /"),
        span(2, 2, 1, "orders", SERVER, 1, 31, name="charge"),
        span(2, 3, 2, "payments", SERVER, 2, 7, name="pay"),
        span(2, 5, 1, "audit", SERVER, 40, 41, name="log"),
    ]
    diff = trace_diff(a, b)
    assert [(n.path[-1], n.depth, n.status, n.slower) for n in diff] == [
        (("gw", "GET /"), 0, "both", False),
        (("audit", "log"), 1, "added", False),
        (("cache", "get"), 1, "missing", False),
        (("orders", "charge"), 1, "both", True),
        (("payments", "pay"), 2, "both", False),
    ]
    charge = diff[3]
    assert (charge.a_count, charge.b_count, charge.a_mean_ms, charge.b_mean_ms) == (
        1,
        1,
        10.0,
        30.0,
    )
    assert (diff[1].a_mean_ms, diff[1].b_mean_ms) == (None, 1.0)
    assert diff[3].to_json()["path"] == [
        {"service": "gw", "operation": "GET /"},
        {"service": "orders", "operation": "charge"},
    ]
    # two spans at one path are averaged
    b2 = [*b, span(2, 6, 1, "orders", SERVER, 32, 42, name="charge")]
    assert trace_diff(a, b2)[3].b_count == 2
    assert trace_diff(a, b2)[3].b_mean_ms == 20.0
