"""The trace store: real SQLite files in tmp_path, a fake wall clock.

Search is checked case by case (each filter, order and combination on a
hand-made mesh) and against a brute-force reference over random traces,
with the planner's thresholds lowered so that every way a search can run
(from a rare filter's traces, walking in order, the fallback past the walk's
budget) is taken.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from seawall.telemetry import store as store_module
from seawall.telemetry.spans import MAX_TAG_VALUE, SpanKind, SpanRow, StatusCode
from seawall.telemetry.store import (
    ORDERS,
    TraceQuery,
    TraceStore,
    TraceStoreError,
    TraceSummary,
)

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S  # the traces' epoch (Unix ns)


class FakeClock:
    """Wall-clock Unix seconds, moved by hand."""

    def __init__(self, now: float = T0 / S + 60) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def span(
    trace: int,
    span_no: int,
    parent: int | None = None,
    *,
    service: str = "frontend",
    name: str = "GET /",
    kind: int = SpanKind.SERVER,
    start: int = 0,
    duration: int = 10_000_000,
    status: int = StatusCode.UNSET,
    tags: Sequence[str] = (),
    resource: str | None = None,
    **fields: object,
) -> SpanRow:
    """A span of trace ``trace``; times in ns after T0; ``parent`` None makes a root."""
    attributes = [
        {"key": k, "value": {"stringValue": v}} for k, _, v in (t.partition("=") for t in tags)
    ]
    row = SpanRow(
        trace_id=tid(trace),
        span_id=sid(span_no),
        parent_span_id=b"" if parent is None else sid(parent),
        service=service,
        name=name,
        kind=kind,
        start_ns=T0 + start,
        end_ns=T0 + start + duration,
        status_code=status,
        status_message="boom" if status == StatusCode.ERROR else "",
        flags=1,
        trace_state="",
        attributes=json.dumps(attributes, separators=(",", ":")),
        events="[]",
        links="[]",
        resource=resource
        or json.dumps(
            [{"key": "service.name", "value": {"stringValue": service}}], separators=(",", ":")
        ),
        scope='{"name":"seawall-sidecar","version":"0.1.0"}',
        tags=(*tags, f"service.name={service}"),
    )
    return row._replace(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[TraceStore]:
    s = TraceStore(tmp_path / "traces.db", clock=clock)
    yield s
    s.close()


def ids(summaries: Sequence[TraceSummary]) -> list[int]:
    return [int.from_bytes(s.trace_id, "big") for s in summaries]


# ------------------------------------------------------------------ rows in, rows out


def test_every_field_of_every_row_comes_back(store: TraceStore) -> None:
    rows = [
        span(1, 1, start=0, duration=50_000_000, tags=("http.route=/", "seawall.attempt=1")),
        span(
            1,
            2,
            1,
            service="cart",
            name="GET /cart/{user}",
            kind=SpanKind.CLIENT,
            start=5,
            status=StatusCode.ERROR,
            flags=0x03,
            trace_state="sw=1,vendor=x",
            attributes='[{"key":"n","value":{"intValue":"42"}},{"key":"d","value":{"doubleValue":1.5}}]',
            events='[{"timeUnixNano":"1700000000000000007","name":"retry","attributes":[]}]',
            links='[{"traceId":"00000000000000000000000000000009","spanId":"0000000000000009",'
            '"traceState":"","attributes":[]}]',
            tags=("n=42", "d=1.5", "note=two\nlines", "ünï=cödé ✓"),
        ),  # fmt: skip
        span(1, 3, 2, start=5, tags=()),  # same start as span 2: ordered by span id
        span(1, 4, 1, duration=0, start=40, tags=(), resource="[]", scope="{}"),
    ]
    rows[3] = rows[3]._replace(tags=())  # no tags at all
    assert store.insert(rows) == 4
    got = store.trace(tid(1))
    assert got == sorted(rows, key=lambda r: (r.start_ns, r.span_id))
    assert [type(r) for r in got] == [SpanRow] * 4
    assert got[1].tags == ("n=42", "d=1.5", "note=two\nlines", "ünï=cödé ✓", "service.name=cart")
    assert store.traces([tid(1), tid(2), tid(1)]) == {tid(1): got}
    assert store.trace(tid(2)) == []
    assert store.span_count() == 4
    assert store.trace_count() == 1


def test_a_store_reopened_keeps_its_traces_and_never_reuses_a_ref(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "traces.db"
    with TraceStore(path, clock=clock) as s:
        s.insert([span(1, 1), span(2, 1)])
    with TraceStore(path, clock=clock) as s:
        assert s.trace(tid(1)) == [span(1, 1)]
        s.insert([span(2, 2, 1, start=1), span(3, 1)])  # more of trace 2, and a new one
        assert len(s.trace(tid(2))) == 2
        assert s.span_count() == 4
        refs = [r[0] for r in s._writer.execute("SELECT ref FROM traces ORDER BY ref")]
        assert refs == [1, 2, 3]


def test_memory_store(clock: FakeClock) -> None:
    with TraceStore(":memory:", clock=clock) as s:
        s.insert([span(1, 1, tags=("a=b",)), span(1, 2, 1, service="cart", tags=("a=b",))])
        assert len(s.trace(tid(1))) == 2
        assert ids(s.search(TraceQuery(service="cart", attributes={"a": "b"}))) == [1]


def test_resource_tags_are_stored_once_and_come_back_exactly(store: TraceStore) -> None:
    resource = json.dumps(
        [
            {"key": "service.name", "value": {"stringValue": "cart"}},
            {"key": "replicas", "value": {"intValue": "3"}},
            {"key": "canary", "value": {"boolValue": False}},
            {"key": "weight", "value": {"doubleValue": 0.25}},
            {"key": "blob", "value": {"bytesValue": "AAE="}},
            {"key": "zones", "value": {"arrayValue": {"values": []}}},
            {"key": "empty", "value": {}},
        ],
        separators=(",", ":"),
    )
    derived = ("service.name=cart", "replicas=3", "canary=false", "weight=0.25")
    assert store_module._resource_tags(resource) == derived
    rows = [
        # the decoder's way: its own tags, then its resource's
        span(1, 1, service="cart", resource=resource)._replace(tags=("own=1", *derived)),
        # tags that do not end with the resource's (cut at 256 tags, or written otherwise)
        span(1, 2, 1, service="cart", resource=resource)._replace(
            tags=("own=2", "service.name=cart", "replicas=3")
        ),
        span(1, 3, 1, service="cart", resource=resource)._replace(tags=("weight=2.5e-1",)),
        span(1, 4, 1, service="cart", resource=resource)._replace(tags=()),
    ]
    store.insert(rows)
    assert store.trace(tid(1)) == rows
    shared = [r[0] for r in store._writer.execute("SELECT source_tags FROM spans ORDER BY id")]
    assert shared == [1, 0, 0, 0]
    assert ids(store.search(TraceQuery(attributes={"canary": "false", "own": "1"}))) == [1]
    assert ids(store.search(TraceQuery(attributes={"canary": "false", "own": "2"}))) == []
    assert ids(store.search(TraceQuery(attributes={"replicas": "3", "own": "2"}))) == [1]
    assert ids(store.search(TraceQuery(attributes={"weight": "2.5e-1"}))) == [1]


def test_many_traces_at_once(store: TraceStore) -> None:
    rows = [span(t, 1, start=t) for t in range(1, 1201)]
    for i in range(0, len(rows), 300):
        store.insert(rows[i : i + 300])
    got = store.traces([tid(t) for t in range(1, 1202)])  # one unknown
    assert len(got) == 1200
    assert got[tid(7)] == [rows[6]]
    found = store.search(TraceQuery(limit=1000, order="oldest"))
    assert ids(found) == list(range(1, 1001))


def test_close_leaves_the_wal_empty(tmp_path: Path) -> None:
    s = TraceStore(tmp_path / "t.db")
    s.insert([span(t, 1) for t in range(1, 100)])
    s.close()
    wal = tmp_path / "t.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_duplicates_are_ignored_and_counted(store: TraceStore) -> None:
    rows = [span(1, 1), span(1, 2, 1, start=5, status=StatusCode.ERROR)]
    assert store.insert(rows) == 2
    assert store.insert(rows) == 0  # the exporter retried
    assert store.insert([span(1, 3, 1, start=7), rows[0], span(1, 3, 1, start=7)]) == 1
    assert store.span_count() == 3
    stats = store.stats()
    assert (stats.spans_stored, stats.spans_duplicate) == (3, 4)
    [summary] = store.search(TraceQuery())
    assert (summary.span_count, summary.error_count) == (3, 1)
    assert summary.services == (("frontend", 3),)


def test_a_trace_in_several_batches_out_of_order(store: TraceStore) -> None:
    # the root arrives last; its children first, in two batches, latest first
    root = span(7, 1, start=0, duration=100, service="gateway", name="GET /checkout")
    a = span(7, 2, 1, start=10, duration=30, service="cart", status=StatusCode.ERROR)
    b = span(7, 3, 2, start=20, duration=150, service="cart")  # ends after the root
    c = span(7, 4, 1, start=60, duration=20, service="payments", status=StatusCode.ERROR)
    store.insert([c, span(8, 1)])
    [partial] = store.search(TraceQuery(service="payments"))
    assert (partial.root_service, partial.span_count) == ("payments", 1)  # the earliest, for now
    store.insert([b, a])
    [partial] = store.search(TraceQuery(service="payments"))
    assert (partial.root_service, partial.start_ns) == ("cart", T0 + 10)
    store.insert([root])
    [summary] = store.search(TraceQuery(service="payments"))
    assert summary == TraceSummary(
        trace_id=tid(7),
        start_ns=T0,
        duration_ns=170,
        root_service="gateway",
        root_name="GET /checkout",
        span_count=4,
        error_count=2,
        services=(("cart", 2), ("gateway", 1), ("payments", 1)),
    )
    assert [r.span_id for r in store.trace(tid(7))] == [sid(1), sid(2), sid(3), sid(4)]


def test_a_trace_in_many_batches_keeps_a_short_summary(store: TraceStore) -> None:
    for n in range(1, 301):
        store.insert([span(1, n, None if n == 1 else 1, service=f"s{n % 3}", start=n)])
    [summary] = store.search(TraceQuery())
    assert summary.span_count == 300
    assert summary.services == (("s0", 100), ("s1", 100), ("s2", 100))
    [(text,)] = store._writer.execute("SELECT services FROM traces").fetchall()
    assert len(text) < 600  # summed up now and then, not one entry per batch


def test_the_root_is_the_span_without_parent_even_if_a_child_starts_earlier(
    store: TraceStore,
) -> None:
    # clock skew: the child's start is before its parent's
    store.insert([span(1, 2, 1, start=0, service="cart"), span(1, 1, start=5, service="web")])
    store.insert([span(2, 9, 1, start=3, service="a"), span(2, 8, 1, start=3, service="b")])
    got = {s.trace_id: s.root_service for s in store.search(TraceQuery())}
    assert got == {tid(1): "web", tid(2): "b"}  # no parentless span: the earliest, lower id


# ------------------------------------------------------------------ search, case by case


@pytest.fixture
def mesh(store: TraceStore) -> TraceStore:
    """Six traces, 100 ms apart, each a frontend server span and a call or two."""
    ms = 1_000_000
    rows = [
        # 1: frontend -> cart (client span carries the endpoint), fast
        span(1, 1, start=0, duration=20 * ms, name="GET /cart"),
        span(1, 2, 1, start=1 * ms, duration=15 * ms, name="GET /cart", kind=SpanKind.CLIENT,
             tags=("seawall.endpoint=10.0.0.7:8080", "http.response.status_code=200")),
        span(1, 3, 2, start=2 * ms, duration=10 * ms, service="cart", name="GET /cart/{user}"),
        # 2: frontend -> cart, slow, error on the server span
        span(2, 1, start=100 * ms, duration=300 * ms, name="GET /cart"),
        span(2, 2, 1, start=101 * ms, duration=290 * ms, name="GET /cart",
             kind=SpanKind.CLIENT, tags=("seawall.endpoint=10.0.0.8:8080",
                                         "http.response.status_code=503")),
        span(2, 3, 2, start=102 * ms, duration=280 * ms, service="cart",
             name="GET /cart/{user}", status=StatusCode.ERROR),
        # 3: frontend -> checkout -> payments; endpoint .7 on one span, 503 on another
        span(3, 1, start=200 * ms, duration=90 * ms, name="POST /checkout"),
        span(3, 2, 1, start=201 * ms, duration=80 * ms, name="POST /checkout",
             kind=SpanKind.CLIENT, tags=("seawall.endpoint=10.0.0.7:8080",
                                         "http.response.status_code=200")),
        span(3, 3, 2, start=202 * ms, duration=70 * ms, service="checkout", name="POST /orders"),
        span(3, 4, 3, start=203 * ms, duration=60 * ms, service="checkout", name="POST /orders",
             kind=SpanKind.CLIENT, status=StatusCode.ERROR,
             tags=("seawall.endpoint=10.0.0.9:8080", "http.response.status_code=503")),
        span(3, 5, 4, start=204 * ms, duration=50 * ms, service="payments", name="POST /charge",
             status=StatusCode.ERROR),
        # 4: a lone frontend span, an error, many tags
        span(4, 1, start=300 * ms, duration=5 * ms, name="GET /", status=StatusCode.ERROR,
             tags=("http.route=/", "seawall.endpoint=10.0.0.7:8080")),
        # 5: cart only (its caller's spans lost), a long value (the tag keeps its start)
        span(5, 1, 9, start=400 * ms, duration=40 * ms, service="cart", name="GET /cart/{user}",
             tags=("url.full=" + "x" * MAX_TAG_VALUE,),
             attributes='[{"key":"url.full","value":{"stringValue":"'
             + "x" * (MAX_TAG_VALUE + 50) + '"}}]'),
        # 6: frontend -> cart, like 1 but later
        span(6, 1, start=500 * ms, duration=25 * ms, name="GET /cart"),
        span(6, 2, 1, start=501 * ms, duration=20 * ms, name="GET /cart", kind=SpanKind.CLIENT,
             tags=("seawall.endpoint=10.0.0.7:8080", "http.response.status_code=200")),
        span(6, 3, 2, start=502 * ms, duration=15 * ms, service="cart", name="GET /cart/{user}"),
    ]  # fmt: skip
    random.Random(1).shuffle(rows)
    for i in range(0, len(rows), 5):
        store.insert(rows[i : i + 5])
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TraceQuery(), [6, 5, 4, 3, 2, 1]),
        (TraceQuery(service="cart"), [6, 5, 2, 1]),
        (TraceQuery(service="payments"), [3]),
        (TraceQuery(service="nobody"), []),
        (TraceQuery(operation="GET /cart"), [6, 2, 1]),
        (TraceQuery(service="cart", operation="GET /cart"), []),  # the name is frontend's
        (TraceQuery(service="frontend", operation="GET /cart", span_kind=SpanKind.CLIENT),
         [6, 2, 1]),
        (TraceQuery(span_kind=SpanKind.CLIENT), [6, 3, 2, 1]),
        (TraceQuery(service="cart", span_kind=SpanKind.CLIENT), []),
        (TraceQuery(status="error"), [4, 3, 2]),
        (TraceQuery(service="frontend", status="error"), [4]),
        (TraceQuery(service="cart", status="ok"), [6, 5, 1]),
        (TraceQuery(min_duration_ns=100_000_000), [2]),
        (TraceQuery(service="cart", min_duration_ns=15_000_000), [6, 5, 2]),
        (TraceQuery(service="cart", min_duration_ns=15_000_000, max_duration_ns=40_000_000),
         [6, 5]),
        (TraceQuery(max_duration_ns=5_000_000), [4]),
        (TraceQuery(min_duration_ns=15_000_000, max_duration_ns=15_000_000), [6, 1]),
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.7:8080"}), [6, 4, 3, 1]),
        (TraceQuery(service="frontend", attributes={"seawall.endpoint": "10.0.0.9:8080"}), []),
        (TraceQuery(service="checkout", attributes={"seawall.endpoint": "10.0.0.9:8080"}), [3]),
        # every pair on the same span: trace 3 has .7 and 503, on different spans
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.7:8080",
                                "http.response.status_code": "503"}), []),  # fmt: skip
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.8:8080",
                                "http.response.status_code": "503"}), [2]),  # fmt: skip
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.7:8080"}, status="error"), [4]),
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.7:8080"}, span_kind=SpanKind.CLIENT,
                    min_duration_ns=20_000_000), [6, 3]),  # fmt: skip
        (TraceQuery(attributes={"service.name": "payments"}), [3]),  # a resource's tag
        (TraceQuery(attributes={"url.full": "x" * (MAX_TAG_VALUE + 9)}), [5]),  # cut, as tags
        (TraceQuery(attributes={"url.full": "x" * 10}), []),
        (TraceQuery(attributes={"seawall.endpoint": "10.0.0.7"}), []),  # whole values only
        (TraceQuery(start_min_ns=T0 + 100_000_000, start_max_ns=T0 + 300_000_000), [4, 3, 2]),
        (TraceQuery(start_min_ns=T0 + 450_000_000), [6]),
        (TraceQuery(start_max_ns=T0 + 100_000_000, service="cart"), [2, 1]),
        (TraceQuery(limit=2), [6, 5]),
        (TraceQuery(order="oldest", limit=2), [1, 2]),
        (TraceQuery(order="slowest"), [2, 3, 5, 6, 1, 4]),
        (TraceQuery(order="fastest", service="cart"), [1, 6, 5, 2]),
        (TraceQuery(order="most_spans"), [3, 6, 2, 1, 5, 4]),  # ties: the later stored first
        (TraceQuery(order="most_errors", limit=1), [3]),  # 2 errors; 4 and 2 have one
        (TraceQuery(order="slowest", attributes={"seawall.endpoint": "10.0.0.7:8080"}, limit=2),
         [3, 6]),  # fmt: skip
    ],
)  # fmt: skip
def test_search(mesh: TraceStore, query: TraceQuery, expected: list[int]) -> None:
    # ties in most_spans: traces 6, 2 and 1 have 3 spans; their refs depend on arrival
    got = ids(mesh.search(query))
    if query.order == "most_spans":
        assert got[0] == 3
        assert sorted(got[1:4]) == [1, 2, 6]
        assert got[4:] == [5, 4]
    else:
        assert got == expected


def test_search_summaries_are_whole(mesh: TraceStore) -> None:
    [three] = mesh.search(TraceQuery(service="payments"))
    assert three == TraceSummary(
        trace_id=tid(3),
        start_ns=T0 + 200_000_000,
        duration_ns=90_000_000,
        root_service="frontend",
        root_name="POST /checkout",
        span_count=5,
        error_count=2,
        services=(("checkout", 2), ("frontend", 2), ("payments", 1)),
    )


def test_services_and_operations(mesh: TraceStore) -> None:
    assert mesh.services() == ["cart", "checkout", "frontend", "payments"]
    assert mesh.operations("frontend") == [
        ("GET /", SpanKind.SERVER),
        ("GET /cart", SpanKind.SERVER),
        ("GET /cart", SpanKind.CLIENT),
        ("POST /checkout", SpanKind.SERVER),
        ("POST /checkout", SpanKind.CLIENT),
    ]
    assert mesh.operations("checkout", SpanKind.CLIENT) == [("POST /orders", SpanKind.CLIENT)]
    assert mesh.operations("nobody") == []


def test_spans_between(store: TraceStore) -> None:
    rows = [
        span(t, n, None if n == 1 else 1, service=("a", "b")[n % 2], start=t * 5000 + n,
             kind=(SpanKind.SERVER, SpanKind.CLIENT)[n % 2])
        for t in range(1, 601) for n in (1, 2, 3, 4)
    ]  # fmt: skip
    random.Random(2).shuffle(rows)
    for i in range(0, len(rows), 512):
        store.insert(rows[i : i + 512])
    window = list(store.spans_between(T0 + 5000, T0 + 5000 * 500))  # 1,996 spans: 2 pages
    assert window == sorted(
        (r for r in rows if T0 + 5000 <= r.start_ns < T0 + 5000 * 500),
        key=lambda r: r.start_ns,  # (every start differs here)
    )
    assert len(window) == 499 * 4
    b_clients = list(store.spans_between(T0, T0 + 10**12, service="b", kind=SpanKind.CLIENT))
    assert len(b_clients) == 1200
    assert {(r.service, r.kind) for r in b_clients} == {("b", 3)}
    assert list(store.spans_between(T0, T0 + 10**12, service="nobody")) == []
    assert list(store.spans_between(T0 + 5, T0 + 5)) == []


# ------------------------------------------------------------------ search, against brute force


@dataclass
class Reference:
    """What search must answer, computed from the rows inserted (the same rules, naively)."""

    rows: dict[tuple[bytes, bytes], SpanRow]
    refs: dict[bytes, int]

    def __init__(self) -> None:
        self.rows = {}
        self.refs = {}

    def insert(self, batch: Sequence[SpanRow]) -> None:
        for r in batch:
            self.refs.setdefault(r.trace_id, len(self.refs) + 1)
            self.rows.setdefault((r.trace_id, r.span_id), r)

    def search(self, q: TraceQuery) -> list[bytes]:
        traces: dict[bytes, list[SpanRow]] = {}
        for r in self.rows.values():
            traces.setdefault(r.trace_id, []).append(r)

        def span_matches(r: SpanRow) -> bool:
            duration = max(0, r.end_ns - r.start_ns)
            return (
                q.service in (None, r.service)
                and q.operation in (None, r.name)
                and q.span_kind in (None, r.kind)
                and (q.status is None or (q.status == "error") == (r.status_code == 2))
                and (q.min_duration_ns is None or duration >= q.min_duration_ns)
                and (q.max_duration_ns is None or duration <= q.max_duration_ns)
                and all(f"{k}={v[:MAX_TAG_VALUE]}" in r.tags for k, v in q.attributes.items())
            )

        found = []
        for trace, spans in traces.items():
            start = min(r.start_ns for r in spans)
            if q.start_min_ns is not None and start < q.start_min_ns:
                continue
            if q.start_max_ns is not None and start > q.start_max_ns:
                continue
            if any(span_matches(r) for r in spans):
                duration = max(0, max(r.end_ns for r in spans) - start)
                errors = sum(r.status_code == 2 for r in spans)
                key = {
                    "newest": (-start, -self.refs[trace]),
                    "oldest": (start, self.refs[trace]),
                    "slowest": (-duration, -self.refs[trace]),
                    "fastest": (duration, self.refs[trace]),
                    "most_spans": (-len(spans), -self.refs[trace]),
                    "most_errors": (-errors, -self.refs[trace]),
                }[q.order]
                found.append((key, trace))
        return [trace for _, trace in sorted(found)[: q.limit]]


def random_traces(rng: random.Random, n: int) -> list[SpanRow]:
    services = ["web", "cart", "pay", "stock"]
    rows = []
    for t in range(1, n + 1):
        start = rng.randrange(0, 10**9)
        for n_span in range(1, rng.randint(1, 6) + 1):
            tags = [f"ep=10.0.0.{rng.randint(1, 6)}", f"code={rng.choice(['200', '200', '503'])}"]
            if rng.random() < 0.1:
                tags.append(f"rare={rng.randint(1, 3)}")
            rows.append(
                span(
                    t,
                    n_span,
                    None if n_span == 1 else rng.randint(1, n_span - 1),
                    service=rng.choice(services),
                    name=rng.choice(["GET /", "POST /x", "GET /y"]),
                    kind=rng.choice([SpanKind.SERVER, SpanKind.CLIENT]),
                    start=start + rng.randrange(0, 10**6),
                    duration=rng.choice([0, 1, 1000, 10**5, 10**6, 3 * 10**6, 10**7]),
                    status=StatusCode.ERROR if rng.random() < 0.1 else StatusCode.UNSET,
                    tags=tags,
                )
            )
    return rows


def random_query(rng: random.Random) -> TraceQuery:
    def maybe(value: object, p: float = 0.3) -> object:
        return value if rng.random() < p else None

    low = maybe(rng.choice([0, 1000, 10**5, 10**6, 5 * 10**6]), 0.25)
    high = maybe(rng.choice([1, 10**5, 10**6, 10**7]), 0.2)
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        low, high = high, low
    smin = maybe(T0 + rng.randrange(0, 10**9), 0.2)
    smax = maybe(T0 + rng.randrange(0, 10**9), 0.2)
    if smin is not None and smax is not None and smin > smax:  # type: ignore[operator]
        smin, smax = smax, smin
    attributes = {}
    if rng.random() < 0.4:
        attributes["ep"] = f"10.0.0.{rng.randint(1, 7)}"
    if rng.random() < 0.2:
        attributes["code"] = rng.choice(["200", "503"])
    if rng.random() < 0.15:
        attributes["rare"] = str(rng.randint(1, 3))
    return TraceQuery(
        service=maybe(rng.choice(["web", "cart", "pay", "stock", "none"])),  # type: ignore[arg-type]
        operation=maybe(rng.choice(["GET /", "POST /x", "GET /y"]), 0.2),  # type: ignore[arg-type]
        span_kind=maybe(rng.choice([SpanKind.SERVER, SpanKind.CLIENT]), 0.2),  # type: ignore[arg-type]
        status=maybe(rng.choice(["error", "ok"]), 0.2),  # type: ignore[arg-type]
        min_duration_ns=low,  # type: ignore[arg-type]
        max_duration_ns=high,  # type: ignore[arg-type]
        attributes=attributes,
        start_min_ns=smin,  # type: ignore[arg-type]
        start_max_ns=smax,  # type: ignore[arg-type]
        limit=rng.choice([1, 3, 20, 1000]),
        order=rng.choice(ORDERS),
    )


@pytest.mark.parametrize(
    ("cap", "budget"),
    [(16_384, 16_384), (8, 16), (1, 1), (10**9, 10**9)],
    ids=["defaults", "small", "tiny", "always-from-the-index"],
)
def test_search_matches_a_brute_force_reference(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, cap: int, budget: int
) -> None:
    monkeypatch.setattr(store_module, "CANDIDATE_CAP", cap)
    monkeypatch.setattr(store_module, "SCAN_BUDGET", budget)
    monkeypatch.setattr(store_module, "SEGMENT_KEYS", 40)  # many segments
    rng = random.Random(cap)
    rows = random_traces(rng, 250)
    rng.shuffle(rows)
    reference = Reference()
    with TraceStore(tmp_path / "traces.db", clock=clock) as s:
        for i in range(0, len(rows), 37):
            batch = rows[i : i + 37]
            if rng.random() < 0.1:
                batch += rng.sample(rows[: i + 1], 3)  # retried spans
            s.insert(batch)
            reference.insert(batch)
        for _ in range(300):
            q = random_query(rng)
            assert [x.trace_id for x in s.search(q)] == reference.search(q), q


def test_a_closed_segment_moves_from_the_open_table_and_stays_found(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SEGMENT_KEYS", 4)  # a segment per batch or two
    path = tmp_path / "traces.db"
    with TraceStore(path, clock=clock) as s:
        for n in range(1, 7):
            s.insert([span(n, 1, tags=[f"order={n}", "region=eu"], start=n * 1000)])
        for n in range(1, 7):
            found = s.search(TraceQuery(attributes={"order": str(n)}))
            assert [t.trace_id for t in found] == [tid(n)]
        assert len(s.search(TraceQuery(attributes={"region": "eu"}))) == 6
    db = sqlite3.connect(path)
    (open_seqs,) = db.execute("SELECT count(DISTINCT seq) FROM open_postings").fetchone()
    closed_max, last = db.execute(
        "SELECT (SELECT max(seq) FROM tag_postings), (SELECT max(seq) FROM segments)"
    ).fetchone()
    db.close()
    assert open_seqs == 1  # only the last segment's rows are still in batch order
    assert closed_max == last - 1


def test_a_version_1_file_gains_the_open_segment_table(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "traces.db"
    with TraceStore(path, clock=clock) as s:
        s.insert([span(1, 1, tags=["order=1"])])
    db = sqlite3.connect(path)  # as version 1 wrote it: every segment in tag_postings
    db.executescript(
        "INSERT INTO tag_postings SELECT seq, tag, part, refs FROM open_postings;"
        "DROP TABLE open_postings; PRAGMA user_version = 1;"
    )
    db.close()
    with TraceStore(path, clock=clock) as s:
        s.insert([span(2, 1, tags=["order=2"], start=5000)])
        assert [t.trace_id for t in s.search(TraceQuery(attributes={"order": "1"}))] == [tid(1)]
        assert [t.trace_id for t in s.search(TraceQuery(attributes={"order": "2"}))] == [tid(2)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    db.close()


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": True}, "limit"),
        ({"order": "random"}, "order"),
        ({"status": "fine"}, "status"),
        ({"span_kind": 6}, "span_kind"),
        ({"service": ""}, "service"),
        ({"operation": 3}, "operation"),
        ({"min_duration_ns": -1}, "min_duration_ns"),
        ({"min_duration_ns": 5, "max_duration_ns": 4}, "min_duration_ns"),
        ({"max_duration_ns": 1.5}, "max_duration_ns"),
        ({"start_min_ns": 9, "start_max_ns": 8}, "start_min_ns"),
        ({"start_max_ns": -3}, "start_max_ns"),
        ({"attributes": {"k": 1}}, "attributes"),
        ({"attributes": {"": "v"}}, "attributes"),
        ({"attributes": ["k=v"]}, "attributes"),
    ],
)
def test_a_bad_query_names_its_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TraceQuery(**fields)  # type: ignore[arg-type]


def test_bad_arguments_name_the_parameter(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="trace_id must be 16 bytes, got 8 bytes"):
        store.trace(b"12345678")
    with pytest.raises(ValueError, match="trace_id"):
        store.trace("00" * 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ids"):
        store.traces([tid(1), b"short"])
    with pytest.raises(ValueError, match="span_kind"):
        store.operations("cart", span_kind=9)
    with pytest.raises(ValueError, match="start_ns"):
        store.spans_between(10, 5)
    with pytest.raises(ValueError, match="kind"):
        store.spans_between(1, 5, kind=-1)
    with pytest.raises(ValueError, match="q must be a TraceQuery"):
        store.search({"service": "cart"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"start_ns": "soon"}, "start is not an integer"),
        ({"trace_id": "abc"}, "trace id is not bytes"),
        ({"service": None}, "service is not a string"),
        ({"tags": ["a=b"]}, "tags are not a tuple"),
        ({"tags": ("a=b", 7)}, "tag is not a string"),
    ],
)
def test_a_malformed_row_is_refused_and_nothing_is_lost(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    with TraceStore(tmp_path / "traces.db") as s:
        s.insert([span(1, 1)])
        bad = span(2, 1)._replace(**change)
        with pytest.raises(ValueError, match=named):
            s.insert([span(2, 2, parent=1), bad])
        assert s.span_count() == 1
        s.insert([span(2, 2, parent=1)])
        assert [r.span_id for r in s.trace(tid(2))] == [sid(2)]


def test_bad_constructor_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_age"):
        TraceStore(tmp_path / "a.db", max_age=0)
    with pytest.raises(ValueError, match="max_bytes"):
        TraceStore(tmp_path / "a.db", max_bytes=-5)


def test_a_file_that_is_not_a_trace_store_is_refused(tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(TraceStoreError, match="not a trace store"):
        TraceStore(tmp_path / "other.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TraceStoreError, match="cannot open"):
        TraceStore(tmp_path / "junk.db")


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = TraceStore(tmp_path / "traces.db")
    s.insert([span(1, 1)])
    s.close()
    s.close()  # idempotent
    for call in (
        lambda: s.insert([span(2, 1)]),
        lambda: s.trace(tid(1)),
        lambda: s.search(TraceQuery()),
        s.enforce_retention,
        s.stats,
    ):
        with pytest.raises(TraceStoreError, match="closed"):
            call()


# ------------------------------------------------------------------ retention


def traces_of(store: TraceStore) -> list[int]:
    return sorted(ids(store.search(TraceQuery(limit=10_000))))


def test_retention_by_age(tmp_path: Path, clock: FakeClock) -> None:
    with TraceStore(tmp_path / "t.db", max_age=3600, clock=clock) as s:
        s.insert([span(1, 1, start=0, service="old"), span(2, 1, start=1800 * S)])
        s.insert([span(3, 1, start=3000 * S, tags=("k=v",)), span(3, 2, 1, start=3001 * S)])
        clock.now = T0 / S + 3600 + 1  # trace 1 started 3601 s ago
        report = s.enforce_retention()
        assert (report.traces_expired, report.traces_evicted, report.spans_deleted) == (1, 0, 1)
        assert traces_of(s) == [2, 3]
        assert s.services() == ["frontend"]  # "old" had no span left
        assert {r.trace_id for r in s.spans_between(0, T0 * 2)} == {tid(2), tid(3)}
        clock.now += 1800
        assert s.enforce_retention().traces_expired == 1
        assert traces_of(s) == [3]
        assert s.trace(tid(3))
        assert ids(s.search(TraceQuery(attributes={"k": "v"}))) == [3]
        assert s.stats().traces_expired == 2
        clock.now += 10**6
        s.enforce_retention()
        assert (s.trace_count(), s.span_count(), s.services()) == (0, 0, [])
        s.insert([span(4, 1, start=10**7 * S)])  # the store works on, empty
        assert traces_of(s) == [4]


def test_a_store_whose_traces_expired_shrinks(tmp_path: Path, clock: FakeClock) -> None:
    with TraceStore(tmp_path / "t.db", max_age=3600, clock=clock) as s:
        fill(s, 1, 3000)  # ~30 MiB
        big = s.stats().bytes_file
        assert big > 24 << 20
        clock.now = T0 / S + 10**6
        assert s.enforce_retention().traces_expired == 3000
        stats = s.stats()
        assert stats.bytes_used < 1 << 20
        assert stats.bytes_file <= (16 << 20) + (1 << 20) < big  # free pages beyond 16 MiB went


def test_insert_runs_retention_every_so_many_spans(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RETENTION_EVERY", 10)
    with TraceStore(tmp_path / "t.db", max_age=60, clock=clock) as s:
        s.insert([span(1, 1)])
        clock.now += 3600
        for n in range(2, 10):
            s.insert([span(n, 1, start=3600 * S)])
        assert 1 in traces_of(s)  # 9 spans so far
        s.insert([span(10, 1, start=3600 * S)])  # the tenth
        assert 1 not in traces_of(s)
        assert s.stats().traces_expired == 1
        clock.now += 3600
        s.insert([span(11, k, start=7200 * S + k) for k in range(1, 21)])  # a big batch: at once
        assert traces_of(s) == [11]


def fill(store: TraceStore, first: int, n: int, spans: int = 8) -> None:
    """Traces first..first+n-1, each ``spans`` spans with a kilobyte of attributes, in order."""
    batch: list[SpanRow] = []
    for t in range(first, first + n):
        for k in range(1, spans + 1):
            batch.append(
                span(t, k, None if k == 1 else 1, start=t * S + k, tags=(f"t={t}", f"k={k}"),
                     attributes="[" + ",".join(['{"key":"pad","value":{"stringValue":"'
                                                + "p" * 100 + '"}}'] * 8) + "]")
            )  # fmt: skip
        if len(batch) >= 64:
            store.insert(batch)
            batch = []
    if batch:
        store.insert(batch)


def test_retention_by_size_drops_the_oldest_first(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.now = T0 / S + 10**4  # every trace younger than max_age
    limit = 1 << 20
    with TraceStore(tmp_path / "t.db", max_bytes=limit, clock=clock) as s:
        monkeypatch.setattr(store_module, "RETENTION_EVERY", 10**9)  # only when called
        fill(s, 1, 400)
        before = s.stats().bytes_used
        assert before > limit
        report = s.enforce_retention()
        assert report.traces_evicted > 0
        assert report.traces_expired == 0
        assert report.bytes_before == before
        assert report.bytes_after <= limit * store_module.LOW_WATER
        assert s.stats().bytes_used <= limit
        kept = traces_of(s)
        assert kept == list(range(401 - len(kept), 401))  # the newest, without a gap
        assert s.stats().traces_evicted_size == report.traces_evicted
        # what is left is whole, and searchable by tag
        assert len(s.trace(tid(400))) == 8
        assert ids(s.search(TraceQuery(attributes={"t": "400"}))) == [400]
        assert ids(s.search(TraceQuery(attributes={"t": str(kept[0] - 1)}))) == []
        # the tag index's dead segments went with them
        oldest = s._writer.execute("SELECT min(ref) FROM traces").fetchone()[0]
        assert (
            s._writer.execute(
                "SELECT count(*) FROM segments WHERE max_ref < ?", (oldest,)
            ).fetchone()[0]
            == 0
        )
        # and the store stays under its limit as more arrives (retention from insert)
        monkeypatch.setattr(store_module, "RETENTION_EVERY", 256)  # spans: four batches
        high_water = s.stats().bytes_file
        for first in range(401, 1201, 40):
            fill(s, first, 40)
            assert s.stats().bytes_used <= limit * 1.5  # over by 4 batches at most
        assert traces_of(s)[-1] == 1200
        assert s.stats().bytes_file <= high_water  # deleted pages were reused


# ------------------------------------------------------------------ a full disk


def test_a_full_database_drops_the_oldest_traces_and_stores_the_batch(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.now = T0 / S + 10**4  # every trace younger than max_age
    with TraceStore(tmp_path / "t.db", clock=clock) as s:
        fill(s, 1, 100)
        pages = s._writer.execute("PRAGMA page_count").fetchone()[0]
        # SQLite answers SQLITE_FULL past this many pages, as it would on a full disk
        s._writer.execute(f"PRAGMA max_page_count = {pages + 2}")
        with caplog.at_level(logging.WARNING, logger="seawall.traces"):
            fill(s, 101, 30)  # no exception
        stats = s.stats()
        assert stats.traces_evicted_size > 0
        assert stats.spans_dropped_full == 0
        kept = traces_of(s)
        assert kept[-1] == 130
        assert kept == list(range(kept[0], 131))
        for t in (kept[0], 100, 130):
            assert [r.span_id for r in s.trace(tid(t))] == [sid(k) for k in range(1, 9)]
        assert "database or disk full" in caplog.text
        assert s._writer.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_batch_too_big_for_a_full_database_is_dropped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.now = T0 / S + 10**4  # every trace younger than max_age
    with TraceStore(tmp_path / "t.db", clock=clock) as s:
        fill(s, 1, 20)
        pages = s._writer.execute("PRAGMA page_count").fetchone()[0]
        s._writer.execute(f"PRAGMA max_page_count = {pages}")
        huge = [
            span(1000, k, start=1000 * S + k, attributes='[{"key":"x","value":{"stringValue":"'
                 + "z" * 20_000 + '"}}]')
            for k in range(1, 200)
        ]  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="seawall.traces"):
            assert s.insert(huge) == 0  # no exception
        stats = s.stats()
        assert stats.spans_dropped_full == len(huge)
        assert "dropped a batch of 199 spans" in caplog.text
        assert s.trace(tid(1000)) == []
        assert s._writer.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # what survived the eviction is intact; the store takes small batches again
        kept = traces_of(s)
        assert kept == list(range(6, 21))  # a quarter went for room, the rest is whole
        assert len(s.trace(tid(20))) == 8
        s._writer.execute("PRAGMA max_page_count = 1073741823")
        assert s.insert([span(2000, 1, start=2000 * S)]) == 1


# ------------------------------------------------------------------ threads


def test_readers_read_while_the_writer_writes(tmp_path: Path, clock: FakeClock) -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    with TraceStore(tmp_path / "t.db", clock=clock) as s:

        def write() -> None:
            try:
                for b in range(60):
                    s.insert([span(b * 10 + t, k, None if k == 1 else 1, service=f"s{k}",
                                   start=(b * 10 + t) * S + k, tags=(f"b={b}",))
                              for t in range(10) for k in range(1, 6)])  # fmt: skip
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        reads = 0
        while not done.is_set() or reads < 5:
            found = s.search(TraceQuery(service="s3", limit=50))
            for summary in found:
                assert summary.span_count == 5  # a batch is seen whole or not at all
                assert len(s.trace(summary.trace_id)) == 5
            reads += 1
        writer.join()
        assert not errors
        assert s.trace_count() == 600
        assert reads >= 5
