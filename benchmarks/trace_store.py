"""Trace store: ingest, fetch by trace id and search over 1M spans, seawall against naive SQLite.

``make bench-traces`` (``TRACE_SPANS=200000 make bench-traces`` for a quick run).

The spans come from a mesh-shaped generator, in-process and seeded: five
services (frontend -> cart, checkout; checkout -> payments, inventory; cart
-> inventory), four instances each (``seawall.endpoint`` is one of 20
``10.0.0.N:8080``); a trace is a frontend server span and 1-5 calls (a client
span in the caller, a server span in the callee), sometimes an internal span:
3-12 spans. Each span has ~12 attributes (``http.request.method``,
``http.route``, ``server.address``, ``seawall.endpoint``, ``seawall.attempt``,
``http.response.status_code``, the peer's SPIFFE id, a request id, ...), a
7-attribute resource (the pod), 0-2 events; 2% of the spans are errors. The
spans reach the store the way exporters send them: in batches of
``--batch``, each trace's spans spread over four batches, out of order. The
rows are made before the clock starts: only ``insert`` is timed (decoding
OTLP is the collector's job).

Measured, for seawall's :class:`~seawall.telemetry.store.TraceStore` and, in
the same run on the same data, for the peer, a naive SQLite store (one table
of spans, the tags as a JSON array, indexes on the trace id and on (service,
name), search by ``LIKE`` and ``GROUP BY``: what one writes first):

1. ingest: spans/s inserting up to ``--spans`` (overall, and over the last
   10%, when the store is largest);
2. fetch by id: p50/p99 over ``--fetches`` random known trace ids;
3. search, limit 20, newest first: ``service`` + one attribute
   (``seawall.endpoint``), and ``service`` + ``operation`` + ``min_duration``:
   p50/p99 over ``--searches`` queries with varying values.

Every loop is bounded in count, and the query loops in time too
(``--time-limit`` seconds each: a slow peer reports the queries it ran). Both
databases live in a temp dir, removed after; the file sizes are reported.

Prints tables with the ratios seawall/naive and the targets (ingest >= 50,000
spans/s, fetch p99 <= 20 ms, search p99 <= 200 ms), then one JSON object as
the last line: ``{"spans": N, "seawall": {...}, "naive": {...}, "targets":
{"ingest": {"target": 50000, "value": ..., "met": true}, ...}, "met": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode  # noqa: E402
from seawall.telemetry.store import TraceQuery, TraceStore  # noqa: E402

TARGET_INGEST = 50_000  # spans/s
TARGET_FETCH_P99_MS = 20.0
TARGET_SEARCH_P99_MS = 200.0
TARGET_SIDECAR_RATIO = 0.9  # the sidecar's req/s traced at 100%, over untraced

# ------------------------------------------------------------------ the mesh

SERVICES = ("frontend", "cart", "checkout", "payments", "inventory")
CALLS = {
    "frontend": ("cart", "checkout"),
    "cart": ("inventory",),
    "checkout": ("payments", "inventory"),
    "payments": (),
    "inventory": (),
}
CALLERS = {s: tuple(c for c, callees in CALLS.items() if s in callees) for s in SERVICES}
ROUTES = {
    "frontend": (("GET", "/"), ("GET", "/product/{id}"), ("POST", "/cart"), ("POST", "/checkout")),
    "cart": (("GET", "/cart/{user}"), ("POST", "/cart/{user}/items")),
    "checkout": (("POST", "/orders"), ("GET", "/orders/{id}")),
    "payments": (("POST", "/charge"), ("POST", "/refund")),
    "inventory": (("GET", "/stock/{sku}"), ("POST", "/reserve"), ("GET", "/items")),
}
ENDPOINTS = {
    s: tuple(f"10.0.0.{4 * i + j + 1}:8080" for j in range(4)) for i, s in enumerate(SERVICES)
}
INTERNAL = {"frontend": "render", "cart": "redis GET", "checkout": "validate", "payments": "sign",
            "inventory": "SELECT stock"}  # fmt: skip
SCOPE = '{"name":"seawall-sidecar","version":"0.1.0"}'


def _kv(key: str, value: str | int) -> str:
    if isinstance(value, int):
        return f'{{"key":"{key}","value":{{"intValue":"{value}"}}}}'
    return f'{{"key":"{key}","value":{{"stringValue":"{value}"}}}}'


def _resource(service: str, instance: int) -> tuple[str, tuple[str, ...]]:
    pod = f"{service}-7d9f8c{instance}-x{instance}k2p"
    pairs: list[tuple[str, str | int]] = [
        ("service.name", service),
        ("service.instance.id", f"{service}-{instance}-5f1c2e9a"),
        ("k8s.pod.name", pod),
        ("k8s.namespace.name", "shop"),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "python"),
        ("telemetry.sdk.version", "1.27.0"),
    ]
    text = "[" + ",".join(_kv(k, v) for k, v in pairs) + "]"
    return text, tuple(f"{k}={v}" for k, v in pairs)


RESOURCES = {(s, i): _resource(s, i) for s in SERVICES for i in range(4)}


@dataclass
class _Span:
    span_id: bytes
    parent: bytes
    service: str
    instance: int
    name: str
    kind: int
    start: int
    end: int
    attrs: list[tuple[str, str | int]] = field(default_factory=list)


class Mesh:
    """A seeded generator of mesh traces, as SpanRow batches."""

    def __init__(self, seed: int, start_ns: int) -> None:
        self.rng = random.Random(seed)
        self.clock = start_ns
        self.trace_ids: list[bytes] = []

    def trace(self) -> list[SpanRow]:
        rng = self.rng
        self.clock += rng.randint(500_000, 3_500_000)  # ~500 traces/s
        tid = rng.randbytes(16)
        self.trace_ids.append(tid)
        target = rng.randint(3, 12)
        duration = int(rng.lognormvariate(17.5, 0.6))  # ~40 ms median
        method, route = rng.choice(ROUTES["frontend"])
        instance = rng.randrange(4)
        root = _Span(rng.randbytes(8), b"", "frontend", instance, f"{method} {route}",
                     SpanKind.SERVER, self.clock, self.clock + duration)  # fmt: skip
        root.attrs = self._server_attrs("frontend", instance, method, route, "frontend-gateway")
        spans = [root]
        servers = [root]
        while len(spans) < target:
            if target - len(spans) == 1:  # one left: an internal span
                parent = rng.choice(servers)
                s, e = self._within(parent)
                spans.append(_Span(rng.randbytes(8), parent.span_id, parent.service,
                                   parent.instance, INTERNAL[parent.service], SpanKind.INTERNAL,
                                   s, e, [("seawall.component", "app")]))  # fmt: skip
                break
            callers = [p for p in servers if CALLS[p.service]]
            if not callers:
                target = len(spans) + 1
                continue
            parent = rng.choice(callers)
            callee = rng.choice(CALLS[parent.service])
            method, route = rng.choice(ROUTES[callee])
            instance = rng.randrange(4)
            endpoint = ENDPOINTS[callee][instance]
            status = 503 if rng.random() < 0.02 else 200
            request_id = rng.randbytes(8).hex()
            s, e = self._within(parent)
            client = _Span(rng.randbytes(8), parent.span_id, parent.service, parent.instance,
                           f"{method} {route}", SpanKind.CLIENT, s, e)  # fmt: skip
            client.attrs = [
                ("http.request.method", method),
                ("http.route", route),
                ("url.full", f"http://{callee}{route}"),
                ("server.address", callee),
                ("server.port", 80),
                ("network.protocol.version", "1.1"),
                ("seawall.endpoint", endpoint),
                ("seawall.attempt", 1 if rng.random() < 0.95 else 2),
                ("http.response.status_code", status),
                ("seawall.peer", f"spiffe://shop.mesh/ns/shop/sa/{callee}"),
                ("seawall.request_id", request_id),
                ("seawall.route", f"{callee}-default"),
            ]
            server = _Span(rng.randbytes(8), client.span_id, callee, instance,
                           f"{method} {route}", SpanKind.SERVER, s + 200_000,
                           max(s + 200_000, e - 200_000))  # fmt: skip
            server.attrs = self._server_attrs(callee, instance, method, route, parent.service)
            server.attrs[-1] = ("http.response.status_code", status)
            server.attrs.append(("seawall.request_id", request_id))
            spans += [client, server]
            servers.append(server)
        return [self._row(tid, s) for s in spans]

    def _within(self, parent: _Span) -> tuple[int, int]:
        length = parent.end - parent.start
        start = parent.start + int(length * self.rng.uniform(0.02, 0.5))
        end = start + int((parent.end - start) * self.rng.uniform(0.2, 0.95))
        return start, end

    @staticmethod
    def _server_attrs(
        service: str, instance: int, method: str, route: str, caller: str
    ) -> list[tuple[str, str | int]]:
        return [
            ("http.request.method", method),
            ("http.route", route),
            ("url.path", route.replace("{", "").replace("}", "")),
            ("url.scheme", "http"),
            ("server.address", service),
            ("server.port", 8080),
            ("client.address", f"10.1.0.{SERVICES.index(caller) if caller in SERVICES else 9}"),
            ("network.protocol.version", "1.1"),
            ("seawall.endpoint", ENDPOINTS[service][instance]),
            ("seawall.peer", f"spiffe://shop.mesh/ns/shop/sa/{caller}"),
            ("user_agent.original", "seawall-sidecar/0.1"),
            ("http.response.status_code", 200),
        ]

    def _row(self, tid: bytes, s: _Span) -> SpanRow:
        rng = self.rng
        error = any(k == "http.response.status_code" and v == 503 for k, v in s.attrs)
        if not error and s.kind == SpanKind.INTERNAL and rng.random() < 0.02:
            error = True
        events = []
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
            at = rng.randint(s.start, max(s.start, s.end))
            retry = f"[{_kv('seawall.attempt', 2)},{_kv('seawall.reason', 'reset')}]"
            events.append(f'{{"timeUnixNano":"{at}","name":"retry","attributes":{retry}}}')
        if error:
            events.append(f'{{"timeUnixNano":"{s.end}","name":"exception","attributes":'
                          f'[{_kv("exception.type", "UpstreamReset")}]}}')  # fmt: skip
        resource, resource_tags = RESOURCES[(s.service, s.instance)]
        return SpanRow(
            trace_id=tid,
            span_id=s.span_id,
            parent_span_id=s.parent,
            service=s.service,
            name=s.name,
            kind=s.kind,
            start_ns=s.start,
            end_ns=s.end,
            status_code=StatusCode.ERROR if error else StatusCode.UNSET,
            status_message="upstream reset" if error else "",
            flags=1,
            trace_state="",
            attributes="[" + ",".join(_kv(k, v) for k, v in s.attrs) + "]",
            events="[" + ",".join(events) + "]",
            links="[]",
            resource=resource,
            scope=SCOPE,
            tags=(*(f"{k}={v}" for k, v in s.attrs), *resource_tags),
        )

    def batches(self, spans: int, batch: int) -> Iterator[list[SpanRow]]:
        """Batches of ``batch`` rows, ``spans`` in all; a trace's spans spread over 4 batches."""
        made = 0
        while made < spans:
            window: list[SpanRow] = []
            while len(window) < 4 * batch:
                window += self.trace()
            self.rng.shuffle(window)
            for i in range(0, len(window), batch):
                part = window[i : i + batch][: spans - made]
                if not part:
                    return
                made += len(part)
                yield part


# ------------------------------------------------------------------ the naive peer


class NaiveStore:
    """What one writes first: one table, JSON tags, LIKE, GROUP BY."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA cache_size = -65536")
        self.conn.executescript(
            """
            CREATE TABLE spans (
                trace_id BLOB NOT NULL, span_id BLOB NOT NULL, parent_span_id BLOB NOT NULL,
                service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL,
                start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
                status_code INTEGER NOT NULL, status_message TEXT NOT NULL, flags INTEGER NOT NULL,
                trace_state TEXT NOT NULL, attributes TEXT NOT NULL, events TEXT NOT NULL,
                links TEXT NOT NULL, resource TEXT NOT NULL, scope TEXT NOT NULL,
                tags TEXT NOT NULL,
                UNIQUE (trace_id, span_id)
            );
            CREATE INDEX spans_by_service ON spans (service, name);
            """
        )

    def insert(self, rows: Sequence[SpanRow]) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        cur = self.conn.executemany(
            "INSERT OR IGNORE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(*r[:8], max(0, r.end_ns - r.start_ns), *r[8:17], json.dumps(r.tags)) for r in rows],
        )
        self.conn.execute("COMMIT")
        return cur.rowcount

    def trace(self, trace_id: bytes) -> list[SpanRow]:
        return [
            SpanRow._make((*r[:8], *r[9:18], tuple(json.loads(r[18]))))
            for r in self.conn.execute(
                "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,)
            )
        ]

    def search(self, where: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        """Summaries of the 20 newest traces with a span matching ``where``."""
        return self.conn.execute(
            "SELECT trace_id, min(start_ns) AS start, max(end_ns) - min(start_ns), count(*),"
            " sum(status_code = 2), (SELECT service || ' ' || name FROM spans r"
            "   WHERE r.trace_id = s.trace_id ORDER BY length(r.parent_span_id), r.start_ns"
            "   LIMIT 1)"
            " FROM spans s WHERE trace_id IN (SELECT trace_id FROM spans WHERE " + where + ")"
            " GROUP BY trace_id ORDER BY start DESC LIMIT 20",
            params,
        ).fetchall()

    def search_attribute(self, service: str, key: str, value: str) -> int:
        like = "%" + json.dumps(f"{key}={value}") + "%"
        return len(self.search("service = ? AND tags LIKE ?", (service, like)))

    def search_operation(self, service: str, name: str, min_ns: int) -> int:
        return len(self.search("service = ? AND name = ? AND duration_ns >= ?",
                               (service, name, min_ns)))  # fmt: skip

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ measuring


@dataclass
class Ingest:
    spans_per_s: float
    """Spans over the wall-clock time spent in insert()."""
    last10_spans_per_s: float
    """The same over the last 10% of the spans, when the store is largest."""
    cpu_spans_per_s: float
    """Spans over the CPU time of the inserting thread (what one core does)."""
    process_cpu_per_span_us: float
    """CPU time of the whole process (checkpoint thread included) per span, in insert()."""
    seconds: float
    other_cpu_share: float
    """The CPU time everything else on the machine used meanwhile, over all the CPUs' time."""


@dataclass
class Timing:
    p50_ms: float
    p99_ms: float
    max_ms: float
    n: int


@dataclass
class Result:
    ingest: Ingest
    fetch: Timing
    search_attribute: Timing
    search_operation: Timing
    file_bytes: int


class OtherLoad:
    """How much CPU everything but this process used (kernel threads included), from /proc."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, int, int]:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            busy = sum(int(v) for v in fields[:8]) - int(fields[3]) - int(fields[4])
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return time.monotonic(), busy, int(own[11]) + int(own[12])
        except (OSError, IndexError, ValueError):
            return time.monotonic(), 0, 0

    def share(self) -> float:
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._sample()
        capacity = (wall1 - wall0) * self._tick * (os.cpu_count() or 1)
        other = (busy1 - busy0) - (own1 - own0)
        return max(0.0, other / capacity) if capacity > 0 else 0.0


def file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def ingest(
    insert: Callable[[list[SpanRow]], int], mesh: Mesh, spans: int, batch: int, label: str
) -> Ingest:
    """Insert every batch, timing only ``insert``: wall clock, the thread's CPU, the process's."""
    wall = cpu = process = tail = 0.0
    done = tail_spans = 0
    next_report = spans // 10
    load = OtherLoad()
    for rows in mesh.batches(spans, batch):
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        insert(rows)
        dt = time.perf_counter() - t0
        cpu += time.thread_time() - c0
        process += time.process_time() - p0
        wall += dt
        done += len(rows)
        if done > spans * 0.9:
            tail += dt
            tail_spans += len(rows)
        if done >= next_report:
            print(f"  {label}: {done:>9,} spans, {done / wall:>9,.0f} spans/s", file=sys.stderr)
            next_report += spans // 10
    return Ingest(
        spans_per_s=done / wall,
        last10_spans_per_s=tail_spans / tail if tail else 0.0,
        cpu_spans_per_s=done / cpu if cpu else 0.0,
        process_cpu_per_span_us=process / done * 1e6,
        seconds=wall,
        other_cpu_share=load.share(),
    )


def timed(calls: Sequence[Callable[[], object]], limit_s: float) -> Timing:
    """p50/p99 in ms of these calls, stopping early after ``limit_s`` seconds."""
    times = []
    deadline = time.perf_counter() + limit_s
    for call in calls:
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1000)
        if t1 > deadline:
            break
    times.sort()
    return Timing(
        p50_ms=statistics.median(times),
        p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))],
        max_ms=times[-1],
        n=len(times),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="seconds per query loop (default 120)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive peer")
    parser.add_argument(
        "--no-http", action="store_true", help="skip the query APIs over HTTP (issue 16)"
    )
    parser.add_argument(
        "--no-sidecar",
        action="store_true",
        help="skip the sidecar's cost of tracing (benchmarks/proxy_throughput.py)",
    )
    args = parser.parse_args()
    start_ns = time.time_ns() - 3600 * 10**9  # an hour ago: well inside the default max_age
    rng = random.Random(args.seed + 1)
    results: dict[str, Result] = {}
    http: dict[str, Timing] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-traces-") as tmp:
        # ---- seawall
        path = os.path.join(tmp, "seawall.db")
        store = TraceStore(path, max_bytes=1 << 40)  # no eviction: growth to --spans is measured
        mesh = Mesh(args.seed, start_ns)
        print(f"seawall: inserting {args.spans:,} spans", file=sys.stderr)
        ing = ingest(store.insert, mesh, args.spans, args.batch, "seawall")
        ids = mesh.trace_ids
        if store.span_count() != args.spans:
            raise RuntimeError(f"stored {store.span_count()} spans of {args.spans}")
        fetch_ids = [rng.choice(ids) for _ in range(args.fetches)]
        attr_queries = []  # a caller, and an endpoint of one of the services it calls
        for _ in range(args.searches):
            callee = rng.choice(SERVICES[1:])
            attr_queries.append((rng.choice(CALLERS[callee]), rng.choice(ENDPOINTS[callee])))
        op_queries = []  # a service, one of its routes, a minimum duration
        for _ in range(args.searches):
            service = rng.choice(SERVICES)
            method, route = rng.choice(ROUTES[service])
            op_queries.append((service, f"{method} {route}", rng.choice((20, 40, 80)) * 10**6))

        def by_attribute(service: str, endpoint: str) -> object:
            q = TraceQuery(service=service, attributes={"seawall.endpoint": endpoint})
            found = store.search(q)
            assert found, q  # every caller reaches every endpoint of its callees
            return found

        def by_operation(service: str, operation: str, min_ns: int) -> object:
            q = TraceQuery(service=service, operation=operation, min_duration_ns=min_ns)
            return store.search(q)

        fetch = timed([partial(store.trace, t) for t in fetch_ids], args.time_limit)
        attr = timed([partial(by_attribute, s, e) for s, e in attr_queries], args.time_limit)
        ops = timed([partial(by_operation, *q) for q in op_queries], args.time_limit)
        print(f"seawall: {store.stats()}", file=sys.stderr)
        store.close()
        results["seawall"] = Result(ing, fetch, attr, ops, file_size(path))
        if not args.no_http:
            http = http_phase(path, fetch_ids, attr_queries, args.time_limit)
        os.unlink(path)
        # ---- the naive peer, on the same rows
        if not args.no_naive:
            path = os.path.join(tmp, "naive.db")
            naive = NaiveStore(path)
            print(f"naive: inserting {args.spans:,} spans", file=sys.stderr)
            ing = ingest(naive.insert, Mesh(args.seed, start_ns), args.spans, args.batch, "naive")
            fetch = timed([partial(naive.trace, t) for t in fetch_ids], args.time_limit)
            attr = timed(
                [
                    partial(naive.search_attribute, s, "seawall.endpoint", e)
                    for s, e in attr_queries
                ],
                args.time_limit,
            )
            ops = timed([partial(naive.search_operation, *q) for q in op_queries], args.time_limit)
            naive.close()
            results["naive"] = Result(ing, fetch, attr, ops, file_size(path))
    sidecar = None if args.no_sidecar else sidecar_cost()
    return report(args, len(ids), results, http, sidecar)


# ------------------------------------------------- the query APIs over HTTP


def http_phase(
    path: str,
    fetch_ids: Sequence[bytes],
    attr_queries: Sequence[tuple[str, str]],
    limit_s: float,
) -> dict[str, Timing]:
    """Fetch and search through a real `seawall traces` serving the store at ``path``:
    Jaeger's HTTP JSON API (`/api/traces`, issue 16) and api_v3, one keep-alive client."""
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "seawall", "traces", "--listen", f"127.0.0.1:{port}"]
    argv += ["--store", path]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the collector did not start")
                time.sleep(0.1)
            now_ns = time.time_ns()
            start_ns = now_ns - 6 * 3600 * 10**9

            def get(path: str, params: dict[str, str] | None = None) -> object:
                r = client.get(path, params=params)
                if r.status_code != 200:
                    raise RuntimeError(f"{path} {params}: {r.status_code} {r.text[:200]}")
                return r.content

            def jaeger_search(service: str, endpoint: str) -> object:
                return get(
                    "/api/traces",
                    {
                        "service": service,
                        "tags": json.dumps({"seawall.endpoint": endpoint}),
                        "limit": "20",
                    },
                )

            def v3_search(service: str, endpoint: str) -> object:
                return get(
                    "/api/v3/traces",
                    {
                        "query.service_name": service,
                        "query.attributes": json.dumps({"seawall.endpoint": endpoint}),
                        "query.start_time_min": _rfc3339(start_ns),
                        "query.start_time_max": _rfc3339(now_ns + 60 * 10**9),
                        "query.num_traces": "20",
                    },
                )

            return {
                "api_fetch": timed(
                    [partial(get, f"/api/traces/{t.hex()}") for t in fetch_ids], limit_s
                ),
                "api_search": timed(
                    [partial(jaeger_search, s, e) for s, e in attr_queries], limit_s
                ),
                "v3_fetch": timed(
                    [partial(get, f"/api/v3/traces/{t.hex()}") for t in fetch_ids], limit_s
                ),
                "v3_search": timed([partial(v3_search, s, e) for s, e in attr_queries], limit_s),
            }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _rfc3339(ns: int) -> str:
    import datetime  # noqa: PLC0415

    seconds, nanos = divmod(ns, 10**9)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def sidecar_cost() -> dict[str, object] | None:
    """The sidecar's requests/s with tracing at 100% against without, in the same run:
    benchmarks/proxy_throughput.py's seawall and seawall_traced rows (its last line)."""
    import subprocess  # noqa: PLC0415

    argv = [sys.executable, str(ROOT / "benchmarks" / "proxy_throughput.py")]
    argv += ["--targets", "seawall,seawall_traced", "--no-egress", "--no-memory"]
    argv += ["--duration", "5"]
    print("sidecar: " + " ".join(argv[1:]), file=sys.stderr)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        print(f"sidecar: no result ({done.returncode}): {done.stderr[-800:]}", file=sys.stderr)
        return None
    for line in done.stdout.splitlines()[-12:-1]:
        print(f"  {line}", file=sys.stderr)
    result = json.loads(lines[-1])
    return {
        "seawall_rps": (result.get("seawall") or {}).get("rps"),
        "seawall_traced_rps": (result.get("seawall_traced") or {}).get("rps"),
        "traced_rps_vs_untraced": result.get("traced_rps_vs_untraced"),
        "traced_cpu_us_per_req": result.get("traced_cpu_us_per_req"),
        "traced_spans": result.get("traced_spans"),
    }


def report(
    args: argparse.Namespace,
    traces: int,
    results: dict[str, Result],
    http: dict[str, Timing] | None = None,
    sidecar: dict[str, object] | None = None,
) -> int:
    sw, nv = results["seawall"], results.get("naive")
    print(f"\ntrace store: {args.spans:,} spans in {traces:,} traces, batches of {args.batch}")
    print(f"{'':30}{'seawall':>12}{'naive':>12}{'ratio':>9}   target")
    rows: list[tuple[str, Callable[[Result], float], str, str]] = [
        ("ingest spans/s", lambda r: r.ingest.spans_per_s, ",.0f", f">= {TARGET_INGEST:,}"),
        ("  over the last 10%", lambda r: r.ingest.last10_spans_per_s, ",.0f", ""),
        ("  per CPU-second (thread)", lambda r: r.ingest.cpu_spans_per_s, ",.0f", ""),
        ("  process CPU us/span", lambda r: r.ingest.process_cpu_per_span_us, ".1f", ""),
        ("fetch p50 ms", lambda r: r.fetch.p50_ms, ".2f", ""),
        ("fetch p99 ms", lambda r: r.fetch.p99_ms, ".2f", f"<= {TARGET_FETCH_P99_MS:g}"),
        ("search attribute p50 ms", lambda r: r.search_attribute.p50_ms, ".2f", ""),
        ("search attribute p99 ms", lambda r: r.search_attribute.p99_ms, ".2f",
         f"<= {TARGET_SEARCH_P99_MS:g}"),
        ("search op+duration p50 ms", lambda r: r.search_operation.p50_ms, ".2f", ""),
        ("search op+duration p99 ms", lambda r: r.search_operation.p99_ms, ".2f", ""),
        ("file MiB", lambda r: r.file_bytes / (1 << 20), ".1f", ""),
    ]  # fmt: skip
    for label, get, fmt, goal in rows:
        ours = get(sw)
        theirs = get(nv) if nv else None
        peer = f"{theirs:12{fmt}}" if theirs is not None else f"{'-':>12}"
        ratio = f"{ours / theirs:8.2f}x" if theirs else f"{'':9}"
        print(f"{label:30}{ours:12{fmt}}{peer}{ratio}   {goal}")
    if nv:
        print(
            f"(naive: {nv.search_attribute.n} attribute and {nv.search_operation.n} operation "
            f"searches ran within the {args.time_limit:g} s limit of each loop)"
        )
    print(
        f"other processes used {sw.ingest.other_cpu_share:.0%} of the CPUs during seawall's "
        f"ingest; load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    targets: dict[str, tuple[float, float, bool]] = {
        "ingest_spans_per_s": (TARGET_INGEST, sw.ingest.spans_per_s, True),
        "fetch_p99_ms": (TARGET_FETCH_P99_MS, sw.fetch.p99_ms, False),
        "search_p99_ms": (TARGET_SEARCH_P99_MS, sw.search_attribute.p99_ms, False),
    }
    if http is not None:
        print(f"\nover HTTP (a real `seawall traces` on the same {args.spans:,} spans):")
        for name, t in http.items():
            print(f"  {name:12} p50 {t.p50_ms:8.2f} ms  p99 {t.p99_ms:8.2f} ms  ({t.n} calls)")
        targets["api_fetch_p99_ms"] = (TARGET_FETCH_P99_MS, http["api_fetch"].p99_ms, False)
        targets["api_search_p99_ms"] = (TARGET_SEARCH_P99_MS, http["api_search"].p99_ms, False)
        targets["v3_fetch_p99_ms"] = (TARGET_FETCH_P99_MS, http["v3_fetch"].p99_ms, False)
        targets["v3_search_p99_ms"] = (TARGET_SEARCH_P99_MS, http["v3_search"].p99_ms, False)
    if sidecar is not None and isinstance(sidecar.get("traced_rps_vs_untraced"), float):
        ratio = float(sidecar["traced_rps_vs_untraced"])  # type: ignore[arg-type]
        print(
            f"\nthe sidecar at 100% sampling: {sidecar['seawall_traced_rps']} req/s against "
            f"{sidecar['seawall_rps']} untraced ({ratio:.2f}x)"
        )
        targets["sidecar_traced_rps_ratio"] = (TARGET_SIDECAR_RATIO, ratio, True)
    verdicts: dict[str, dict[str, object]] = {}
    met_all = True
    for name, (target, value, at_least) in targets.items():
        met = value >= target if at_least else value <= target
        met_all = met_all and met
        verdicts[name] = {"target": target, "value": round(value, 3), "met": met}
        print(f"target {name}: {'PASS' if met else 'FAIL'} ({value:,.3f} vs {target:,g})")
    print(
        json.dumps(
            {
                "spans": args.spans,
                "traces": traces,
                "batch": args.batch,
                "seawall": asdict(sw),
                "naive": asdict(nv) if nv else None,
                "http": {k: asdict(v) for k, v in http.items()} if http else None,
                "sidecar": sidecar,
                "targets": verdicts,
                "met": met_all,
            }
        )
    )
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
