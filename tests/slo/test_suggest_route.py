"""``seawall slo suggest SERVICE --route R``: one route's figures from whole traces, by
hand, then through a real ``seawall traces``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seawall.slo.suggest import Dependency, route_calls, snippet, suggest
from seawall.telemetry.jaeger import to_jaeger_traces
from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "telemetry"))  # the collector the telemetry tests run

from collector_util import running_collector  # noqa: E402

MS = 1_000_000


def span(
    tid: int, sid: int, parent: int, service: str, kind: int, start: int, duration_ms: int,
    *, error: bool = False, **attributes: str,
) -> SpanRow:  # fmt: skip
    attrs = {k.replace("_", "."): v for k, v in attributes.items()}
    return SpanRow(
        trace_id=tid.to_bytes(16, "big"),
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        service=service,
        name=f"{service} {attrs.get('http.route', '')}",
        kind=kind,
        start_ns=start,
        end_ns=start + duration_ms * MS,
        status_code=StatusCode.ERROR if error else StatusCode.UNSET,
        status_message="",
        flags=1,
        trace_state="",
        attributes=json.dumps(
            [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()],
            separators=(",", ":"),
        ),
        events="[]",
        links="[]",
        resource=json.dumps(
            [{"key": "service.name", "value": {"stringValue": service}}], separators=(",", ":")
        ),
        scope="{}",
        tags=(f"service.name={service}", *(f"{k}={v}" for k, v in attrs.items())),
    )


def shop(now: int) -> list[SpanRow]:
    """100 checkouts and 100 logins at the gateway, each through its sidecar.

    A checkout (gateway sidecar span ``seawall.route=checkout``, the app's span under it
    ``http.route=/checkout``) takes i ms (i = 1..100) and fails when i % 20 == 0 (5); it
    calls orders (fails when i % 10 == 0: 10), payments (i % 25 == 0: 4) and email,
    which no instrumented server answers (i % 50 == 0: 2). A login calls login, which
    fails one call in two, and fails itself one in five.
    """
    rows = []
    for i in range(1, 101):
        t, b = 2 * i, 100 * i  # trace ids, span ids
        start = now + i * 10 * MS
        server, app = (SpanKind.SERVER, SpanKind.SERVER)
        client = SpanKind.CLIENT
        rows += [
            span(t, b + 1, 0, "gateway", server, start, i, error=i % 20 == 0,
                 seawall_route="checkout", http_route="checkout"),
            span(t, b + 2, b + 1, "gateway", app, start, i, error=i % 20 == 0,
                 http_route="/checkout"),
            span(t, b + 3, b + 2, "gateway", client, start, 1, seawall_destination="orders"),
            span(t, b + 4, b + 3, "orders", server, start, 1, error=i % 10 == 0),
            span(t, b + 5, b + 2, "gateway", client, start, 1, seawall_destination="payments",
                 seawall_route="pay-any"),
            span(t, b + 6, b + 5, "payments", server, start, 1, error=i % 25 == 0),
            span(t, b + 7, b + 2, "gateway", client, start, 1, error=i % 50 == 0,
                 seawall_destination="email"),
            # orders' own call under the checkout: not the gateway's dependency
            span(t, b + 8, b + 4, "orders", client, start, 1, seawall_destination="payments"),
            span(t, b + 9, b + 8, "payments", server, start, 1, error=True),
        ]  # fmt: skip
        rows += [
            span(t + 1, b + 1, 0, "gateway", server, start, 500, error=i % 5 == 0,
                 seawall_route="login", http_route="login"),
            span(t + 1, b + 2, b + 1, "gateway", client, start, 1, seawall_destination="login"),
            span(t + 1, b + 3, b + 2, "login", server, start, 1, error=i % 2 == 0),
        ]  # fmt: skip
    return rows


def test_a_routes_requests_and_the_calls_they_made_by_hand() -> None:
    traces = to_jaeger_traces(shop(1_700_000_000 * 10**9))
    for route in ("checkout", "/checkout"):  # the sidecar's route name, the app's template
        found = route_calls(traces + traces[:10], "gateway", route)  # repeats count once
        assert (found.calls, found.errors, found.traces) == (100, 5, 200)
        assert (found.p50_ms, found.p99_ms) == (50.0, 99.0)  # the 50th and 99th of 1..100 ms
        assert found.dependencies == (
            Dependency("email", 100, 2),  # unanswered CLIENT spans, by seawall.destination
            Dependency("orders", 100, 10),
            Dependency("payments", 100, 4),  # orders' own calls to payments are not counted
        )
        # the routes of the gateway's own sidecar its calls took (their retries count)
        assert found.routes == {"payments": ("pay-any",)}
    login = route_calls(traces, "gateway", "login")
    assert (login.calls, login.errors, login.dependencies) == (
        100,
        20,
        (Dependency("login", 100, 50),),
    )
    assert route_calls(traces, "gateway", "nope").calls == 0
    # the route's ceiling: orders 0.9, payments 0.96 (3 attempts: 1 - 0.04^3), email soft
    deps = [Dependency("orders", 100, 10), Dependency("payments", 100, 4, attempts=3)]
    s = suggest("gateway", 100, 5, deps, p50_ms=50.0, p99_ms=99.0, soft=["email"])
    assert s.ceiling == pytest.approx(100 * 0.9 * 0.96)  # 86.4%
    assert s.ceiling_with_retries == pytest.approx(100 * 0.9 * (1 - 0.04**3))
    assert s.achieved == 95.0
    assert s.suggested is None  # 95% holds none of the usual targets
    assert snippet(s, route="checkout") == (
        "slos:\n  gateway: {route: checkout, latency: {threshold: 100ms, percent: 99%}}\n"
    )


def test_suggest_route_against_a_real_collector(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "mesh: shop\nservices:\n"
        "  gateway: {port: 8001, sidecar: {inbound: 18001, outbound: 15001, admin: 19001}}\n"
        "  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}\n"
        "  payments: {port: 8003, sidecar: {inbound: 18003, outbound: 15003, admin: 19003}}\n"
        "policies: {payments: {retry: {attempts: 3}}}\n"
    )
    with running_collector(tmp_path, ui=True) as c:
        c.store.insert(shop(time.time_ns() - 600 * 10**9))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "seawall", "slo", "suggest", "gateway", *args,
                 "--traces", c.url, "--lookback", "1h", "-f", str(mesh)],
                capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
            )  # fmt: skip

        as_json = run("--route", "/checkout", "--soft", "email", "--json")
        # with a policy route that takes the path, the snippet names that route
        routed = tmp_path / "routed.yaml"
        routed.write_text(mesh.read_text().replace(
            "policies: {", "policies: {gateway: {routes: [{name: pay, match: {path_prefix: /x}},"
            " {name: checkout, match: {path_exact: /checkout, method: POST}}]}, "
        ).replace(  # the route the checkout's charges take never retries
            "payments: {retry: {attempts: 3}}",
            "payments: {retry: {attempts: 3}, routes: [{name: pay-any, retry: {attempts: 1}}]}",
        ))  # fmt: skip
        mesh, original = routed, mesh
        by_path = run("--route", "/checkout", "--json")
        mesh = original
        text = run("--route", "checkout", "--soft", "email")
        nothing = run("--route", "nope")
    assert as_json.returncode == 0, as_json.stderr
    s = json.loads(as_json.stdout)
    assert (s["route"], s["calls"], s["errors"], s["achieved"]) == ("/checkout", 100, 5, 95.0)
    assert [(d["name"], d["calls"], d["errors"], d["attempts"]) for d in s["dependencies"]] == [
        ("orders", 100, 10, 2), ("payments", 100, 4, 3),  # orders: the default 2
    ]  # fmt: skip
    assert s["ceiling"] == pytest.approx(86.4)
    assert s["snippet"].startswith("# /checkout is not a route name of mesh.yaml")
    assert by_path.returncode == 0, by_path.stderr
    named = json.loads(by_path.stdout)
    assert named["route"] == "/checkout"
    assert named["snippet"].startswith("slos:\n  gateway: {route: checkout, ")
    # its charges took payments' route pay-any, which never retries: 1 attempt, not 3
    assert [(d["name"], d["attempts"]) for d in named["dependencies"]] == [
        ("email", 1), ("orders", 2), ("payments", 1),
    ]  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(
        "gateway, route checkout, the last 1h (100 traces): 100 calls, 5 failed: 95.000% available;"
        " latency p50 50 ms, p99 99 ms\n"
    )
    assert "  depends on orders: 90.000% of 100 calls, 2 attempt(s) a call\n" in text.stdout
    assert "ceiling from its dependencies: 86.400%" in text.stdout
    assert text.stdout.endswith(
        "slos:\n  gateway: {route: checkout, latency: {threshold: 100ms, percent: 99%}}\n"
    )
    assert nothing.returncode == 1
    assert "no calls of 'gateway' on route 'nope' in the last 1h" in nothing.stderr
