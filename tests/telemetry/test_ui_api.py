"""The UI's routes (``seawall.telemetry.ui_api``), sans-I/O: a store in, answers out.

The static files (their types, the redirects, no way out of the folder), every
JSON route over stored spans, every parameter refused with its name, the
sidecars' admin pages read with a fake ``fetch``; and the files served over a
real collector, where the HTTP server sees the raw path.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from seawall.telemetry import ui_api
from seawall.telemetry.collector import Collector
from seawall.telemetry.spans import SpanKind, SpanRow
from seawall.telemetry.store import TraceStore
from seawall.telemetry.traces_api import Answer, TracesAPI
from seawall.telemetry.ui_api import UiAPI, UiConfig, edge_state, trace_view

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from ui_synthetic import Ids, span  # noqa: E402

UI_DIR = Path(ui_api.__file__).parent / "ui"
NOW_S = 1_800_000_000.0
NOW_NS = int(NOW_S * 1e9)
MS = 1_000_000


@pytest.fixture
def store() -> Iterator[TraceStore]:
    s = TraceStore(":memory:", clock=lambda: NOW_S)
    yield s
    s.close()


def api_of(store: TraceStore, **kwargs: Any) -> UiAPI:
    return UiAPI(store, wall=lambda: NOW_S, **kwargs)


def get(api: UiAPI, path: str, **params: str | list[str]) -> Answer:
    answer = api(path, {k: v if isinstance(v, list) else [v] for k, v in params.items()})
    assert answer is not None, path
    return answer


def body(answer: Answer) -> Any:
    assert answer.headers["Content-Type"] == "application/json", answer.headers
    return json.loads(answer.body)


def refused(answer: Answer, param: str) -> str:
    """The 400 names ``param`` (in ``param`` and in the message)."""
    assert answer.status == 400, answer.body
    error = body(answer)["error"]
    assert error["param"] == param, error
    assert param in error["message"], error
    return str(error["message"])


# ------------------------------------------------------------ a small shop of spans


def call(
    ids: Ids,
    at_ns: int,
    endpoint: str,
    ms: float,
    *,
    retried: bool = False,
    route: str = "pay",
) -> list[SpanRow]:
    """One checkout: orders' server span, its hop to payments (route ``route``), one
    attempt per try (``retried``: a first one answered 503), payments' server span
    under each attempt."""
    trace = ids.trace()
    root, hop = ids.span(), ids.span()
    end = at_ns + int((ms + 2) * MS)
    rows = [
        span(trace, root, b"", "orders", "POST /checkout", at_ns, end),
    ]
    events = [(at_ns + MS, "seawall.retry", {"seawall.attempt": 2})] if retried else None
    rows.append(
        span(
            trace,
            hop,
            root,
            "orders",
            f"GET {route}",
            at_ns + MS // 2,
            end - MS // 2,
            kind=SpanKind.CLIENT,
            attributes={"seawall.destination": "payments", "seawall.route": route},
            events=events,
        )
    )
    tries = [("127.0.0.1:1", 0.2, True)] if retried else []
    tries.append((endpoint, ms, False))
    t = at_ns + MS
    for n, (where, took, failed) in enumerate(tries, 1):
        attempt, server = ids.span(), ids.span()
        took_ns = int(took * MS)
        rows.append(
            span(
                trace,
                attempt,
                hop,
                "orders",
                f"GET {route}",
                t,
                t + took_ns,
                kind=SpanKind.CLIENT,
                error=failed,
                attributes={
                    "seawall.attempt": n,
                    "seawall.endpoint": where,
                    "server.address": "127.0.0.1",
                    "http.response.status_code": 503 if failed else 200,
                },
            )
        )
        rows.append(
            span(
                trace, server, attempt, "payments", "GET inbound", t + 10_000, t + took_ns - 10_000
            )
        )
        t += took_ns
    return rows


def shop(store: TraceStore, calls: int = 40, *, at_ns: int = NOW_NS - 60 * 10**9) -> list[bytes]:
    """``calls`` checkouts a second apart, every other one through the slow endpoint
    ``127.0.0.1:2`` (300 ms) and the others through ``127.0.0.1:3`` (3 ms); the first
    one retried. Their trace ids, in order."""
    ids = Ids(4)
    traces = []
    for n in range(calls):
        slow = n % 2 == 1
        rows = call(
            ids,
            at_ns + n * 10**9,
            "127.0.0.1:2" if slow else "127.0.0.1:3",
            300 if slow else 3,
            retried=n == 0,
        )
        store.insert(rows)
        traces.append(rows[0].trace_id)
    return traces


# ------------------------------------------------------------ static files


def test_the_pages_are_served_with_their_types_and_a_strict_policy(store: TraceStore) -> None:
    api = api_of(store)
    index = get(api, "/ui/")
    assert index.status == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="app.js">' in index.body
    csp = index.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    assert get(api, "/ui/index.html").body == index.body
    assert get(api, "/ui/app.js").headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert get(api, "/ui/style.css").headers["Content-Type"] == "text/css; charset=utf-8"
    shipped = {p.name for p in UI_DIR.iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= shipped
    for name in shipped:
        answer = get(api, f"/ui/{name}")
        assert answer.status == 200, name
        assert answer.body == (UI_DIR / name).read_bytes()


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_the_root_and_ui_without_a_slash_redirect_to_the_ui(store: TraceStore, path: str) -> None:
    answer = get(api_of(store), path)
    assert answer.status == 302
    assert answer.headers["Location"] == "/ui/"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../ui_api.py",
        "/ui/..%2fui_api.py",
        "/ui/%2e%2e/ui_api.py",
        "/ui/..\\ui_api.py",
        "/ui//etc/passwd",
        "/ui/./index.html",
        "/ui/ui/index.html",
        "/ui/../../../../etc/passwd",
        "/ui/%00",
        "/ui/.",
        "/ui/..",
        "/ui/missing.js",
        "/ui/index.html/",
    ],
)
def test_no_path_leads_out_of_the_ui_folder(store: TraceStore, path: str) -> None:
    answer = get(api_of(store), path)
    assert answer.status == 404
    assert answer.body == b"not found\n"


def test_only_the_files_of_the_folder_are_served_even_when_a_dotfile_is_there() -> None:
    api = UiAPI(
        TraceStore(":memory:"),
        files={"index.html": (b"<p>hi", "text/html; charset=utf-8")},
    )
    assert get(api, "/ui/").body == b"<p>hi"
    assert get(api, "/ui/app.js").status == 404


def test_the_pages_fetch_nothing_from_elsewhere() -> None:
    """No CDN, no remote font or script: every URL in the files is relative or ours."""
    for path in UI_DIR.iterdir():
        text = path.read_text()
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text)
        assert urls == ["http://www.w3.org/2000/svg"] * len(urls), (path.name, urls)
        assert "@import" not in text
        assert not re.search(r"<script(?![^>]*src=\"app\.js\")", text), path.name


def test_paths_that_are_not_the_uis_are_left_to_the_collector(store: TraceStore) -> None:
    api = api_of(store)
    assert api("/metrics", {}) is None
    assert api("/api/traces", {}) is None
    assert api("/uix/", {}) is None
    assert get(api, "/api/seawall/nope").status == 404
    assert body(get(api, "/api/seawall/nope"))["error"]["message"] == "no route /api/seawall/nope"


def test_the_files_over_a_real_collector_and_its_raw_paths(tmp_path: Path) -> None:
    """The HTTP server sees the raw request target: dot segments, encoded or not,
    never reach a file outside the folder."""
    import asyncio  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from seawall.telemetry.collector import CollectorServer  # noqa: PLC0415

    store = TraceStore(tmp_path / "t.db")
    collector = Collector(store, extra=ui_api.ui_routes(store), retention_every=3600)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    server = CollectorServer.__new__(CollectorServer)

    async def main() -> None:
        nonlocal server
        server = CollectorServer(collector)
        await server.start("127.0.0.1", 0)
        ready.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        results = {}
        for target in [
            "/ui/",
            "/",
            "/ui/../collector.py",
            "/ui/..%2fcollector.py",
            "/ui/%2e%2e/%2e%2e/telemetry/collector.py",
            "/ui/app.js?x=../../collector.py",
        ]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", target)
            answer = conn.getresponse()
            results[target] = (answer.status, answer.getheader("Content-Type"), answer.read())
            conn.close()
        assert results["/ui/"][0] == 200
        assert results["/"][0] == 302
        assert results["/ui/app.js?x=../../collector.py"][:2] == (
            200,
            "text/javascript; charset=utf-8",
        )
        for target, (status, _, data) in results.items():
            assert b"import asyncio" not in data, target  # collector.py's source
            path = target.split("?")[0]
            if ".." in path or "%2" in path:
                assert status == 404, (target, status)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
        store.close()


# ------------------------------------------------------------ search


def test_search_sorts_six_ways_and_filters_by_route_status_and_duration(
    store: TraceStore,
) -> None:
    traces = shop(store)
    api = api_of(store)
    newest = body(get(api, "/api/seawall/search"))["traces"]
    assert [t["traceID"] for t in newest] == [t.hex() for t in reversed(traces)]
    first = newest[-1]
    assert first["rootService"] == "orders"
    assert first["rootName"] == "POST /checkout"
    assert first["spans"] == 6  # root, hop, two attempts, two payments server spans
    assert first["errors"] == 1
    assert first["services"] == [["orders", 4], ["payments", 2]]
    assert first["start"] == (NOW_NS - 60 * 10**9) / 1000
    slowest = body(get(api, "/api/seawall/search", order="slowest", limit="3"))["traces"]
    assert len(slowest) == 3
    assert all(t["duration"] >= 300_000 for t in slowest)
    fastest = body(get(api, "/api/seawall/search", order="fastest", limit="1"))["traces"]
    assert fastest[0]["duration"] < 10_000
    errors = body(get(api, "/api/seawall/search", order="most_errors", limit="1"))["traces"]
    assert errors[0]["traceID"] == traces[0].hex()
    spans = body(get(api, "/api/seawall/search", order="most_spans", limit="1"))["traces"]
    assert spans[0]["traceID"] == traces[0].hex()
    oldest = body(get(api, "/api/seawall/search", order="oldest", limit="1"))["traces"]
    assert oldest[0]["traceID"] == traces[0].hex()
    failed = body(get(api, "/api/seawall/search", status="error"))["traces"]
    assert [t["traceID"] for t in failed] == [traces[0].hex()]
    slow = body(
        get(
            api,
            "/api/seawall/search",
            service="payments",
            minDuration="100ms",
            tag="seawall.endpoint:127.0.0.1:2",
        )
    )["traces"]
    assert slow == []  # one span must match every filter: payments spans have no endpoint
    at_b = body(get(api, "/api/seawall/search", tag="seawall.endpoint:127.0.0.1:2"))["traces"]
    assert len(at_b) == 20
    by_route = body(get(api, "/api/seawall/search", route="pay"))["traces"]
    assert len(by_route) == 40
    assert body(get(api, "/api/seawall/search", route="nope"))["traces"] == []
    recent = body(get(api, "/api/seawall/search", lookback="30s"))["traces"]
    assert len(recent) == 10  # one call a second from 60 s ago to 21 s ago


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "random"}, "order"),
        ({"status": "bad"}, "status"),
        ({"spanKind": "sideways"}, "spanKind"),
        ({"minDuration": "fast"}, "minDuration"),
        ({"maxDuration": "-1s"}, "maxDuration"),
        ({"minDuration": "2s", "maxDuration": "1s"}, "maxDuration"),
        ({"tag": "no-colon"}, "tag"),
        ({"tag": ":v"}, "tag"),
        ({"start": "x"}, "start"),
        ({"start": "20", "end": "10"}, "start"),
        ({"end": "-5"}, "end"),
        ({"start": "1", "lookback": "1h"}, "lookback"),
        ({"lookback": "0s"}, "lookback"),
        ({"lookback": "an hour"}, "lookback"),
    ],
)
def test_search_refuses_a_bad_parameter_naming_it(
    store: TraceStore, params: Mapping[str, str], param: str
) -> None:
    refused(get(api_of(store), "/api/seawall/search", **params), param)


def test_a_bad_parameter_under_api_keeps_the_uis_shape_through_the_collector(
    store: TraceStore,
) -> None:
    """TracesAPI hands /api/seawall/* to the UI: its errors are the UI's, not Jaeger's."""
    traces = TracesAPI(store, ingest=lambda rows: True, extra=api_of(store))
    answer = traces.get("/api/seawall/search", {"limit": ["0"]})
    refused(answer, "limit")
    assert traces.get("/api/seawall/search", {}).status == 200
    assert traces.get("/ui/", {}).status == 200


# ------------------------------------------------------------ a trace


def test_a_trace_comes_with_its_critical_path_naming_the_slow_hop(store: TraceStore) -> None:
    traces = shop(store, 2)
    view = body(get(api_of(store), f"/api/seawall/traces/{traces[1].hex()}"))
    assert view["traceID"] == traces[1].hex()
    assert view["services"] == ["orders", "payments"]
    assert view["resources"][1] == [["service.name", "payments"]]
    spans = view["spans"]
    assert [s["name"] for s in spans][:2] == ["POST /checkout", "GET pay"]
    assert spans[0]["parent"] == ""
    assert spans[0]["start"] == 0
    assert spans[0]["duration"] == pytest.approx(302_000)
    assert spans[1]["parent"] == spans[0]["id"]
    assert spans[1]["kind"] == "client"
    assert ["seawall.destination", "payments"] in spans[1]["attributes"]
    payments = next(i for i, s in enumerate(spans) if s["service"] == 1)
    # the trace waited on payments most: it is first among the spans on the path
    first, waited = view["onPath"][0]
    assert first == payments
    assert waited == pytest.approx(299_980)
    assert sum(t for _, t in view["onPath"]) == pytest.approx(view["duration"])
    starts = sorted(s for _, s, _ in view["criticalPath"])
    assert starts[0] == 0
    assert all(i in range(len(spans)) for i, _, _ in view["criticalPath"])


def test_a_traces_events_links_and_values_are_readable(store: TraceStore) -> None:
    ids = Ids(8)
    trace, root, child, other = ids.trace(), ids.span(), ids.span(), ids.trace()
    rows = [
        span(
            trace,
            root,
            b"",
            "gateway",
            "GET /",
            NOW_NS,
            NOW_NS + 10 * MS,
            attributes={"flag": True, "n": 3, "x": 0.5},
            events=[(NOW_NS + 2 * MS, "seawall.retry", {"seawall.retry.reason": "status 503"})],
            links=[(other, ids.span(), {"why": "batch"})],
        ),
        span(trace, child, root, "gateway", "child", NOW_NS + MS, NOW_NS + 3 * MS, error=True),
    ]
    store.insert(rows)
    view = body(get(api_of(store), f"/api/seawall/traces/{trace.hex()}"))
    top = view["spans"][0]
    assert top["attributes"] == [["flag", True], ["n", 3], ["x", 0.5]]
    assert top["events"] == [
        {
            "time": 2000,
            "name": "seawall.retry",
            "attributes": [["seawall.retry.reason", "status 503"]],
        }
    ]
    assert top["links"][0]["traceID"] == other.hex()
    assert top["links"][0]["attributes"] == [["why", "batch"]]
    assert top["scope"] == "synthetic"
    assert view["spans"][1]["error"] is True
    assert "events" not in view["spans"][1]


def test_a_consumer_of_a_producer_is_never_on_the_critical_path() -> None:
    ids = Ids(9)
    trace, root, producer, consumer = ids.trace(), ids.span(), ids.span(), ids.span()
    rows = [
        span(trace, root, b"", "a", "root", 0, 100 * MS),
        span(trace, producer, root, "a", "send", 10 * MS, 20 * MS, kind=SpanKind.PRODUCER),
        span(trace, consumer, producer, "b", "recv", 15 * MS, 95 * MS, kind=SpanKind.CONSUMER),
    ]
    view = trace_view(rows)
    on_path = {view["spans"][i]["name"] for i, _ in view["onPath"]}
    assert on_path == {"root", "send"}


def test_an_unknown_or_unreadable_trace_id(store: TraceStore) -> None:
    api = api_of(store)
    missing = get(api, "/api/seawall/traces/" + "ab" * 16)
    assert missing.status == 404
    assert body(missing)["error"]["message"] == f"trace {'ab' * 16} not found"
    refused(get(api, "/api/seawall/traces/xyz"), "traceID")
    refused(get(api, "/api/seawall/traces/" + "0" * 32), "traceID")
    refused(get(api, "/api/seawall/traces/" + "a" * 33), "traceID")
    assert get(api, "/api/seawall/traces/" + "ab" * 16 + "/stats").status == 404


def test_statistics_per_service_and_operation(store: TraceStore) -> None:
    traces = shop(store, 2)
    stats = body(get(api_of(store), f"/api/seawall/traces/{traces[1].hex()}/stats"))
    assert [s["service"] for s in stats["services"]] == ["payments", "orders"]
    payments = stats["services"][0]
    assert payments["count"] == 1
    assert payments["selfTotalMs"] == pytest.approx(299.98)
    assert {s["operation"] for s in stats["operations"]} == {
        "POST /checkout",
        "GET pay",
        "GET inbound",
    }


def test_a_diff_marks_what_is_slower_in_the_second_trace(store: TraceStore) -> None:
    fast, slow = shop(store, 4)[2:4]
    api = api_of(store)
    diff = body(get(api, f"/api/seawall/diff/{fast.hex()}/{slow.hex()}"))
    assert diff["a"]["traceID"] == fast.hex()
    assert diff["b"]["duration"] > 300_000
    slower = {(n["service"], n["operation"]) for n in diff["nodes"] if n["slower"]}
    assert ("payments", "GET inbound") in slower
    assert all(n["status"] == "both" for n in diff["nodes"])
    missing = get(api, f"/api/seawall/diff/{fast.hex()}/{'cd' * 16}")
    assert missing.status == 404
    assert "trace b" in body(missing)["error"]["message"]
    refused(get(api, f"/api/seawall/diff/nothex/{fast.hex()}"), "a")


# ------------------------------------------------------------ the graph, drift, admin pages


def clusters(breaker: str | None, ejected: bool = False, outlier: bool = True) -> bytes:
    return json.dumps(
        {
            "clusters": [
                {
                    "name": "payments",
                    "endpoints": [
                        {"address": "127.0.0.1", "port": 2, "ejected": ejected},
                        {"address": "127.0.0.1", "port": 3, "ejected": False},
                    ],
                    "outlier": {"ejected": int(ejected)} if outlier else None,
                    "breaker": {"state": breaker} if breaker else None,
                }
            ]
        }
    ).encode()


class FakeAdmin:
    """Admin pages by URL; a URL missing is unreachable (``OSError``)."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.asked: list[tuple[str, float]] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        self.asked.append((url, timeout))
        if url not in self.pages:
            raise ConnectionRefusedError(url)
        return self.pages[url]


def test_the_graph_has_red_per_edge_and_each_edges_breaker_and_outlier_state(
    store: TraceStore,
) -> None:
    shop(store)
    admin = FakeAdmin({"http://orders.admin/clusters": clusters("half_open", ejected=True)})
    api = api_of(
        store,
        config=UiConfig(admin_urls={"orders": "http://orders.admin/"}, admin_timeout=0.2),
        fetch=admin,
    )
    graph = body(get(api, "/api/seawall/graph", lookback="5m"))
    (edge,) = graph["edges"]
    assert (edge["caller"], edge["callee"]) == ("orders", "payments")
    assert edge["calls"] == 41  # 40 calls, one retried: each attempt that reached payments
    assert edge["errors"] == 0
    assert edge["p99Ms"] == pytest.approx(299.98)
    assert edge["breaker"] == "half_open"
    assert edge["outlier"] == "ejecting"
    assert edge["ejected"] == ["127.0.0.1:2"]
    assert edge["drift"]["reason"] == "no baseline"
    assert graph["admin"] == {"orders": True}
    assert admin.asked == [("http://orders.admin/clusters", 0.2)]
    assert {n["service"] for n in graph["nodes"]} == {"orders", "payments"}


def test_an_admin_page_that_cannot_be_read_makes_the_state_unknown(store: TraceStore) -> None:
    shop(store, 4)
    for config, fetch in [
        (UiConfig(), FakeAdmin({})),  # no admin URL for orders
        (UiConfig(admin_urls={"orders": "http://x"}), FakeAdmin({})),  # refused
        (UiConfig(admin_urls={"orders": "http://x"}), FakeAdmin({"http://x/clusters": b"<html>"})),
        (UiConfig(admin_urls={"orders": "http://x"}), FakeAdmin({"http://x/clusters": b"[]"})),
    ]:
        edge = body(get(api_of(store, config=config, fetch=fetch), "/api/seawall/graph"))["edges"][
            0
        ]
        assert (edge["breaker"], edge["outlier"], edge["ejected"]) == ("unknown", "unknown", [])


def test_admin_pages_are_read_once_per_couple_of_seconds(store: TraceStore) -> None:
    shop(store, 2)
    clock = [0.0]
    admin = FakeAdmin({"http://x/clusters": clusters("closed")})
    api = api_of(
        store,
        config=UiConfig(admin_urls={"orders": "http://x"}),
        fetch=admin,
        monotonic=lambda: clock[0],
    )
    for _ in range(3):
        assert body(get(api, "/api/seawall/graph"))["edges"][0]["breaker"] == "closed"
    assert len(admin.asked) == 1
    clock[0] = 5.0
    get(api, "/api/seawall/graph")
    assert len(admin.asked) == 2


@pytest.mark.parametrize(
    ("page", "state"),
    [
        (None, {"breaker": "unknown", "outlier": "unknown", "ejected": []}),
        ({}, {"breaker": "unknown", "outlier": "unknown", "ejected": []}),
        (
            {"payments": {"breaker": None, "outlier": None, "endpoints": []}},
            {"breaker": "off", "outlier": "off", "ejected": []},
        ),
        (
            {"payments": {"breaker": {"state": "open"}, "outlier": {}, "endpoints": []}},
            {"breaker": "open", "outlier": "ok", "ejected": []},
        ),
    ],
)
def test_edge_state_from_a_clusters_page(page: Any, state: dict[str, Any]) -> None:
    assert edge_state(page, "payments") == state


def test_drift_flags_the_edge_whose_p99_left_its_baseline(store: TraceStore) -> None:
    ids = Ids(12)
    old = NOW_NS - 3 * 3600 * 10**9
    for n in range(30):  # the baseline, hours ago: 3 ms calls
        store.insert(call(ids, old + n * 10**9, "127.0.0.1:3", 3))
    shop(store)  # now: half of the calls take 300 ms
    api = api_of(store)
    (edge,) = body(get(api, "/api/seawall/drift"))["edges"]
    assert (edge["caller"], edge["callee"], edge["flagged"]) == ("orders", "payments", True)
    assert edge["ratio"] > 50
    graph = body(get(api, "/api/seawall/graph"))
    assert graph["edges"][0]["drift"]["flagged"] is True
    quiet = body(get(api, "/api/seawall/drift", threshold="1000"))["edges"][0]
    assert quiet["flagged"] is False
    few = body(get(api, "/api/seawall/drift", minCalls="1000"))["edges"][0]
    assert few["reason"] == "too few calls"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"threshold": "1"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"threshold": "x"}, "threshold"),
        ({"minCalls": "0"}, "minCalls"),
        ({"current": "10ms"}, "current"),
        ({"baseline": "soon"}, "baseline"),
    ],
)
def test_drift_refuses_a_bad_parameter_naming_it(
    store: TraceStore, params: Mapping[str, str], param: str
) -> None:
    refused(get(api_of(store), "/api/seawall/drift", **params), param)
    refused(get(api_of(store), "/api/seawall/graph", **params), param)


# ------------------------------------------------------------ heatmap and BubbleUp


def test_the_heatmap_of_a_route_counts_each_attempt_once(store: TraceStore) -> None:
    shop(store)
    api = api_of(store)
    heat = body(get(api, "/api/seawall/heatmap", service="payments", route="pay", timeBuckets="10"))
    assert (heat["service"], heat["route"]) == ("payments", "pay")
    assert heat["total"] == 41  # 40 calls and the retried one's first attempt
    assert len(heat["counts"]) == 10
    assert len(heat["latencyEdgesMs"]) == 51
    assert sum(map(sum, heat["counts"])) == 41
    assert max(p for p in heat["p99Ms"] if p is not None) == pytest.approx(300)
    assert body(get(api, "/api/seawall/heatmap", service="payments", route="nope"))["total"] == 0
    every_route = body(get(api, "/api/seawall/heatmap", service="payments"))
    assert every_route["total"] == 41
    own = body(get(api, "/api/seawall/heatmap", service="payments", operation="GET inbound"))
    assert (own["operation"], own["total"]) == ("GET inbound", 41)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "service"),
        ({"service": "p", "route": "a", "operation": "b"}, "operation"),
        ({"service": "p", "timeBuckets": "0"}, "timeBuckets"),
        ({"service": "p", "timeBuckets": "2001"}, "timeBuckets"),
        ({"service": "p", "latencyBuckets": "401"}, "latencyBuckets"),
        ({"service": "p", "start": "5", "end": "5"}, "end"),
        ({"service": "p", "lookback": "1y"}, "lookback"),
    ],
)
def test_the_heatmap_refuses_a_bad_parameter_naming_it(
    store: TraceStore, params: Mapping[str, str], param: str
) -> None:
    refused(get(api_of(store), "/api/seawall/heatmap", **params), param)


def test_the_slow_band_compared_with_the_rest_ranks_the_slow_endpoint_first(
    store: TraceStore,
) -> None:
    shop(store)
    api = api_of(store)
    answer = body(
        get(
            api,
            "/api/seawall/compare",
            service="payments",
            route="pay",
            selMinDuration="100ms",
        )
    )
    assert (answer["selected"], answer["baseline"], answer["sampled"]) == (20, 21, False)
    first = answer["attributes"][0]
    assert first["key"] == "seawall.endpoint"
    assert first["score"] == pytest.approx(1.0)
    assert first["values"][0]["value"] == "127.0.0.1:2"
    keys = [a["key"] for a in answer["attributes"]]
    # the hop's attributes and events came along with each attempt
    assert {"seawall.route", "seawall.caller", "event:seawall.retry", "attempts"} <= set(keys)


def test_a_comparison_of_many_spans_samples_each_side(store: TraceStore) -> None:
    shop(store)
    api = api_of(store, max_compare_spans=8)
    answer = body(
        get(api, "/api/seawall/compare", service="payments", route="pay", selMinDuration="100ms")
    )
    assert (answer["selected"], answer["baseline"], answer["sampled"]) == (20, 21, True)
    assert answer["attributes"][0]["key"] == "seawall.endpoint"
    again = body(
        get(api, "/api/seawall/compare", service="payments", route="pay", selMinDuration="100ms")
    )
    assert again == answer  # the sample is seeded: the same spans, the same answer


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"selStart": "10", "selEnd": "10"}, "selEnd"),
        ({"selMinDuration": "2s", "selMaxDuration": "1s"}, "selMaxDuration"),
        ({"selMinDuration": "slow"}, "selMinDuration"),
        ({"top": "0"}, "top"),
        ({"selStart": "soon"}, "selStart"),
    ],
)
def test_the_comparison_refuses_a_bad_parameter_naming_it(
    store: TraceStore, params: Mapping[str, str], param: str
) -> None:
    refused(get(api_of(store), "/api/seawall/compare", service="payments", **params), param)


def test_routes_lists_the_routes_each_service_is_called_on(store: TraceStore) -> None:
    shop(store, 2)
    store.insert(call(Ids(3), NOW_NS - 10**9, "127.0.0.1:3", 1, route="refund"))
    api = api_of(store)
    assert body(get(api, "/api/seawall/routes")) == {
        "services": {"orders": [], "payments": ["pay", "refund"]}
    }
    assert body(get(api, "/api/seawall/routes", lookback="5s")) == {
        "services": {"orders": [], "payments": ["refund"]}
    }
    refused(get(api, "/api/seawall/routes", lookback="x"), "lookback")


# ------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"admin_urls": {"orders": "ftp://x"}}, "admin_urls['orders']"),
        ({"admin_urls": {"": "http://x"}}, "service name"),
        ({"admin_urls": ["http://x"]}, "mapping"),
        ({"admin_timeout": 0}, "admin_timeout"),
        ({"admin_timeout": 11}, "admin_timeout"),
        ({"admin_timeout": True}, "admin_timeout"),
    ],
)
def test_ui_config_refuses_a_bad_value_naming_it(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        UiConfig(**kwargs)


def test_ui_config_from_a_mesh_has_every_sidecars_admin_page() -> None:
    from seawall.config import load_mesh  # noqa: PLC0415

    mesh = load_mesh(
        "mesh: shop\n"
        "services:\n"
        "  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}\n"
        "  payments: {port: 8003, sidecar: {inbound: 18003, outbound: 15003, admin: 19003}}\n"
    )
    config = UiConfig.from_mesh(mesh)
    assert dict(config.admin_urls) == {
        "orders": "http://127.0.0.1:19002",
        "payments": "http://127.0.0.1:19003",
    }
    assert config.admin_timeout == 0.5
