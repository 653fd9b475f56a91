"""The sidecar's traffic policies, each observed from outside over real sockets.

Every destination of the shared sidecar (``sidecar_main`` in conftest.py)
exercises one policy, so a test fails when its policy is missing: a timeout
that does not fire, a retry that is not sent (or sent when it must not be), a
breaker that still calls the backend, and so on.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest
import requests
from backends import Echo, Fail, Hang, Ok, RawConn, Reset, wait_until
from conftest import MainMesh

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@pytest.fixture
def mesh(sidecar_main: MainMesh) -> MainMesh:
    sidecar_main.sidecar.assert_alive()
    return sidecar_main


def get(mesh: MainMesh, url: str, **kwargs: Any) -> httpx.Response:
    """A request through the sidecar's HTTP proxy listener (one pooled httpx client)."""
    return mesh.client.request(kwargs.pop("method", "GET"), url, **kwargs)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def echoed(r: httpx.Response) -> dict[str, str]:
    """The headers the backend received (last value of each), from an Echo response."""
    return dict(r.json()["headers"])


# --------------------------------------------------------------------------- timeouts


def test_request_timeout_answers_504(mesh: MainMesh) -> None:
    mesh.b["hangs"].script(Hang())
    r, elapsed = timed(get, mesh, "http://hangs/slow")
    assert r.status_code == 504
    assert 0.35 <= elapsed < 1.5  # the route's 400 ms, not the client's 5 s
    assert mesh.b["hangs"].heads == 1


def test_per_try_timeout_retries_on_another_endpoint(mesh: MainMesh) -> None:
    slow, fast = mesh.b["pertry_slow"].script(Hang()), mesh.b["pertry_ok"].script(Ok(b"fast"))
    results = [timed(get, mesh, f"http://pertry/{i}") for i in range(4)]
    # round robin sends some first attempts to the hanging endpoint: they must be
    # cut at the 300 ms per-try timeout and retried on the other one
    assert slow.heads >= 1
    assert [r.status_code for r, _ in results] == [200] * 4
    assert [r.content for r, _ in results] == [b"fast"] * 4
    assert max(elapsed for _, elapsed in results) < 1.0
    assert fast.hits == 4


# --------------------------------------------------------------------------- retries


def test_retries_5xx_then_succeeds(mesh: MainMesh) -> None:
    backend = mesh.b["retry5xx"].script(Echo(), queue=[Fail(503), Fail(500)])
    r = get(mesh, "http://retry5xx/x")
    assert r.status_code == 200
    assert backend.hits == 3
    attempts = [seen.header("x-seawall-attempt") for seen in backend.seen]
    assert attempts == ["1", "2", "3"]


def test_retry_on_connect_failure_goes_to_a_live_endpoint(mesh: MainMesh) -> None:
    backend = mesh.b["connfail"].script(Ok(b"live"))
    before = mesh.sidecar.metric("seawall_retries_total", destination="connfail")
    responses = [get(mesh, f"http://connfail/{i}") for i in range(6)]
    assert [(r.status_code, r.content) for r in responses] == [(200, b"live")] * 6
    assert backend.hits == 6
    # round robin over [closed port, live]: some first attempts hit the closed port
    assert mesh.sidecar.metric("seawall_retries_total", destination="connfail") - before >= 1


def test_post_is_not_retried_put_is(mesh: MainMesh) -> None:
    backend = mesh.b["methods"].script(Fail(503))
    assert get(mesh, "http://methods/p", method="POST", content=b"data").status_code == 503
    assert backend.hits == 1
    backend.reset()
    assert get(mesh, "http://methods/p", method="PUT", content=b"data").status_code == 503
    assert backend.hits == 3
    assert [s.body for s in backend.seen] == [b"data"] * 3


def test_reset_is_retried_for_get_not_for_post(mesh: MainMesh) -> None:
    backend = mesh.b["plain"].script(Echo(), paths={}, queue=[Reset()])
    assert get(mesh, "http://plain/r").status_code == 200
    assert backend.hits == 2
    backend.script(Echo(), queue=[Reset()])
    assert get(mesh, "http://plain/r", method="POST", content=b"x").status_code == 502
    assert backend.hits == 1


def test_overloaded_response_is_never_retried(mesh: MainMesh) -> None:
    backend = mesh.b["overloaded"].script(Fail(503, headers=[("x-seawall-overloaded", "1")]))
    r = get(mesh, "http://overloaded/x")
    assert r.status_code == 503
    assert r.headers["x-seawall-overloaded"] == "1"
    assert backend.hits == 1  # attempts: 3, on: 5xx, yet a single attempt


def test_retry_budget_exhaustion_stops_retries(mesh: MainMesh) -> None:
    backend = mesh.b["budget"].script(Fail(503))
    statuses = [get(mesh, f"http://budget/{i}").status_code for i in range(6)]
    assert statuses == [503] * 6
    # without a budget: 6 x 3 attempts; with ratio 0.1 and a reserve of 1 retry: 6 + ~1
    assert 6 <= backend.hits <= 8
    assert mesh.sidecar.metric("seawall_retry_budget_exhausted_total", destination="budget") >= 4


def test_retries_never_run_past_the_deadline(mesh: MainMesh) -> None:
    backend = mesh.b["deadline"].script(Ok(b"late", 503, delay=0.25))
    r, elapsed = timed(get, mesh, "http://deadline/x")
    assert r.status_code in (503, 504)
    assert elapsed < 0.9  # timeout 600 ms, 10 attempts of 250 ms each allowed
    assert 2 <= backend.heads <= 3


# --------------------------------------------------------------------------- breaker, bulkhead


def test_open_breaker_answers_503_without_calling_the_backend(mesh: MainMesh) -> None:
    backend = mesh.b["breaker"].script(Fail(500))
    assert [get(mesh, f"http://breaker/{i}").status_code for i in range(4)] == [500] * 4
    assert backend.heads == 4
    for i in range(3):
        r, elapsed = timed(get, mesh, f"http://breaker/open{i}")
        assert r.status_code == 503
        assert r.headers["x-seawall-circuit"] == "open"
        assert r.headers["x-seawall-overloaded"] == "1"
        # every answer the sidecar makes: a reason phrase and a line of JSON
        assert r.reason_phrase == "Service Unavailable"
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": "circuit_open",
            "destination": "breaker",
            "reason": "circuit open for breaker",
        }
        assert elapsed < 0.5
    assert backend.heads == 4
    assert backend.connections <= 1  # no new connection attempt either
    clusters = mesh.sidecar.admin_get("/clusters").json()["clusters"]
    (breaker,) = [c for c in clusters if c["name"] == "breaker"]
    assert breaker["breaker"]["state"] == "open"


def test_bulkhead_overflow_answers_503_at_once(mesh: MainMesh) -> None:
    backend = mesh.b["bulkhead"].script(Hang())
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(get(mesh, "http://bulkhead/hang")))
    thread.start()
    try:
        backend.wait_heads(1)
        r, elapsed = timed(get, mesh, "http://bulkhead/second")
        assert r.status_code == 503
        assert r.headers["x-seawall-overflow"] == "in_flight"
        assert r.headers["x-seawall-overloaded"] == "1"
        assert r.json()["error"] == "overflow"
        assert r.json()["destination"] == "bulkhead"
        assert elapsed < 0.5
        assert backend.heads == 1
    finally:
        backend.release()
        thread.join(5)
    assert first[0].status_code == 200
    assert first[0].content == b"released"


# --------------------------------------------------------------------------- outliers


def test_outlier_detection_ejects_the_failing_endpoint(mesh: MainMesh) -> None:
    bad = mesh.b["outlier_bad"].script(Fail(500))
    good = mesh.b["outlier_good"].script(Ok(b"good"))
    statuses = [get(mesh, f"http://outlier/{i}").status_code for i in range(20)]
    assert bad.hits == 3  # consecutive_5xx: 3, then ejected for 30 s
    assert good.hits == 17
    assert statuses[-10:] == [200] * 10
    clusters = mesh.sidecar.admin_get("/clusters").json()["clusters"]
    (outlier,) = [c for c in clusters if c["name"] == "outlier"]
    ejected = {ep["port"]: ep["ejected"] for ep in outlier["endpoints"]}
    assert ejected == {bad.port: True, good.port: False}


# --------------------------------------------------------------------------- split, mirror, faults


SPLIT_REQUESTS = 10_000


def test_traffic_split_follows_the_weights(mesh: MainMesh) -> None:
    v1, v2 = mesh.b["v1"].script(Ok(b"1")), mesh.b["v2"].script(Ok(b"2"))
    req = b"GET http://split/ HTTP/1.1\r\nHost: split\r\n\r\n"
    batch = 500

    def drive(n: int) -> None:
        with RawConn(mesh.sidecar.outbound, timeout=10) as conn:
            for _ in range(n // batch):
                conn.send(req * batch)  # pipelined
                for _ in range(batch):
                    assert conn.response().status == 200

    threads = [threading.Thread(target=drive, args=(SPLIT_REQUESTS // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert v1.hits + v2.hits == SPLIT_REQUESTS
    assert abs(v2.hits / SPLIT_REQUESTS - 0.10) <= 0.02


def test_mirror_sends_a_copy_with_a_shadow_host(mesh: MainMesh) -> None:
    primary, shadow = mesh.b["primary"].script(Ok(b"primary")), mesh.b["shadow"].script(Echo())
    r = requests.get(
        "http://mirror/m?q=1", proxies={"http": mesh.sidecar.proxy}, headers={"x-a": "b"}, timeout=5
    )
    assert (r.status_code, r.content) == (200, b"primary")
    wait_until(lambda: shadow.hits == 1, what="the mirrored copy")
    copy = shadow.seen[0]
    assert copy.header("host") == "mirror-shadow"
    assert (copy.method, copy.target, copy.header("x-a")) == ("GET", "/m?q=1", "b")
    assert primary.hits == 1
    assert primary.seen[0].header("host") == "mirror"


@pytest.mark.parametrize("shadow_fault", [Hang(), Reset(), Fail(500)], ids=["hang", "reset", "500"])
def test_slow_or_failing_shadow_does_not_change_the_primary(
    mesh: MainMesh, shadow_fault: Any
) -> None:
    primary, shadow = (
        mesh.b["primary"].script(Ok(b"primary")),
        mesh.b["shadow"].script(shadow_fault),
    )
    try:
        for i in range(3):
            r, elapsed = timed(get, mesh, f"http://mirror/s{i}", method="PUT", content=b"body")
            assert (r.status_code, r.content) == (200, b"primary")
            assert elapsed < 0.5  # a shadow that hangs would hold it for 5 s
        shadow.wait_heads(1)  # the copies did meet the fault (best effort: copies may be lost)
        assert primary.hits == 3
    finally:
        shadow.release()


def test_fault_abort_from_config(mesh: MainMesh) -> None:
    backend = mesh.b["faults"].script(Echo())
    r = get(mesh, "http://faults/abort/x")
    assert r.status_code == 418
    assert r.headers["x-seawall-fault"] == "abort"
    assert get(mesh, "http://faults/other").status_code == 200  # another route: no fault
    assert [s.target for s in backend.seen] == ["/other"]


def test_fault_from_request_headers(mesh: MainMesh) -> None:
    backend = mesh.b["faults"].script(Echo())
    r = get(mesh, "http://faults/hdr", headers={"x-seawall-fault-abort": "429"})
    assert r.status_code == 429
    assert backend.hits == 0
    r, elapsed = timed(get, mesh, "http://faults/hdr", headers={"x-seawall-fault-delay-ms": "300"})
    assert r.status_code == 200
    assert elapsed >= 0.3
    assert "x-seawall-fault-delay-ms" not in echoed(r)
    assert get(mesh, "http://faults/hdr").status_code == 200
    # a route without header_trigger ignores the headers
    r = get(mesh, "http://faults/plain", headers={"x-seawall-fault-abort": "429"})
    assert r.status_code == 200
    assert backend.hits == 3


# --------------------------------------------------------------------------- deadlines


def test_deadline_reaches_the_backend_within_the_route_timeout(mesh: MainMesh) -> None:
    mesh.b["plain"].script(Echo(), paths={})
    default = int(echoed(get(mesh, "http://plain/d"))["x-seawall-deadline-ms"])
    assert 1500 < default <= 2000  # the destination's 2 s
    short = int(echoed(get(mesh, "http://plain/short"))["x-seawall-deadline-ms"])
    assert 0 < short <= 500  # the route's 500 ms
    given = get(mesh, "http://plain/d", headers={"x-seawall-deadline-ms": "300"})
    assert 0 < int(echoed(given)["x-seawall-deadline-ms"]) <= 300  # the caller's, sooner


def test_inbound_with_an_expired_deadline_answers_504_without_calling_the_app(
    mesh: MainMesh,
) -> None:
    app = mesh.b["app"].script(Echo())
    with RawConn(mesh.sidecar.inbound) as conn:
        conn.send(b"GET /work HTTP/1.1\r\nHost: app\r\nx-seawall-deadline-ms: 0\r\n\r\n")
        assert conn.response().status == 504
    assert app.heads == 0
    with RawConn(mesh.sidecar.inbound) as conn:
        conn.send(b"GET /work HTTP/1.1\r\nHost: app\r\nx-seawall-deadline-ms: 800\r\n\r\n")
        ok = conn.response()
    assert ok.status == 200
    assert app.hits == 1
    assert 0 < int(app.seen[0].header("x-seawall-deadline-ms") or 0) <= 800


# --------------------------------------------------------------------------- correlation


def test_request_id_is_created_when_absent_and_kept_when_present(mesh: MainMesh) -> None:
    mesh.b["plain"].script(Echo(), paths={})
    ids = {echoed(get(mesh, "http://plain/id")).get("x-request-id") for _ in range(3)}
    assert None not in ids
    assert len(ids) == 3
    assert all(len(i) >= 16 for i in ids if i)
    kept = echoed(get(mesh, "http://plain/id", headers={"x-request-id": "abc-123"}))
    assert kept["x-request-id"] == "abc-123"


def test_traceparent_is_continued_with_a_new_parent_id(mesh: MainMesh) -> None:
    mesh.b["plain"].script(Echo(), paths={})
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    got = echoed(get(mesh, "http://plain/t", headers={"traceparent": f"00-{trace}-{parent}-01"}))
    match = TRACEPARENT.fullmatch(got["traceparent"])
    assert match is not None
    assert match.group(1) == trace
    assert match.group(2) != parent
    assert match.group(2) != "0" * 16
    assert match.group(3) == "01"


@pytest.mark.parametrize(
    "bad",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "garbage",
    ],
)
def test_invalid_traceparent_starts_a_new_trace(mesh: MainMesh, bad: str) -> None:
    mesh.b["plain"].script(Echo(), paths={})
    got = echoed(get(mesh, "http://plain/t", headers={"traceparent": bad}))
    match = TRACEPARENT.fullmatch(got["traceparent"])
    assert match is not None
    assert match.group(1) not in bad.lower()
    assert match.group(1) != "0" * 32


def test_tracestate_is_forwarded_with_its_trace(mesh: MainMesh) -> None:
    mesh.b["plain"].script(Echo(), paths={})
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    got = echoed(get(mesh, "http://plain/ts", headers={"traceparent": parent, "tracestate": state}))
    members = [m.strip() for m in got["tracestate"].split(",")]
    assert members == ["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"]
    # without a valid traceparent, tracestate cannot be trusted: a new trace drops it
    restarted = echoed(get(mesh, "http://plain/ts", headers={"tracestate": state}))
    assert "tracestate" not in restarted


def test_two_traceparent_fields_restart_the_trace(mesh: MainMesh) -> None:
    """W3C Trace Context: traceparent is one value, never a list; two fields cannot be
    parsed as one, so the request is treated as having none, and its tracestate too."""
    mesh.b["plain"].script(Echo(), paths={})
    first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    second = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("traceparent", first), ("traceparent", second), ("tracestate", "congo=t61")]
    r = get(mesh, "http://plain/t2", headers=headers)
    received = [(n, v) for n, v in r.json()["headers"] if n in ("traceparent", "tracestate")]
    assert [n for n, _ in received] == ["traceparent"]  # one field forwarded, no tracestate
    match = TRACEPARENT.fullmatch(received[0][1])
    assert match is not None
    assert match.group(1) not in (first.split("-")[1], second.split("-")[1])
