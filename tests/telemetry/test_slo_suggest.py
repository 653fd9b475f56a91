"""`seawall slo suggest` against a real `seawall traces` holding a mesh's spans."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from collector_util import running_collector

from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode

ROOT = Path(__file__).resolve().parents[2]


def row(tid: int, sid: int, parent: int, service: str, kind: int, start: int, error: bool
        ) -> SpanRow:  # fmt: skip
    return SpanRow(
        trace_id=tid.to_bytes(16, "big"),
        span_id=sid.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        service=service,
        name="GET /checkout" if service == "gateway" else "POST /orders",
        kind=kind,
        start_ns=start,
        end_ns=start + 20_000_000,
        status_code=StatusCode.ERROR if error else StatusCode.UNSET,
        status_message="",
        flags=1,
        trace_state="",
        attributes="[]",
        events="[]",
        links="[]",
        resource=json.dumps(
            [{"key": "service.name", "value": {"stringValue": service}}], separators=(",", ":")
        ),  # fmt: skip
        scope="{}",
        tags=(f"service.name={service}",),
    )


def test_suggest_reads_the_graph_and_the_retries(tmp_path: Path) -> None:
    now = time.time_ns() - 60 * 10**9
    rows = []
    for i in range(1, 201):  # 200 checkouts: 4 failed at the gateway, 2 of them at orders
        start = now + i * 10**8
        failed, orders_failed = i % 50 == 0, i % 100 == 0
        rows += [
            row(i, 3 * i, 0, "gateway", SpanKind.SERVER, start, failed),
            row(i, 3 * i + 1, 3 * i, "gateway", SpanKind.CLIENT, start + 1000, orders_failed),
            row(i, 3 * i + 2, 3 * i + 1, "orders", SpanKind.SERVER, start + 2000, orders_failed),
        ]
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "mesh: shop\nservices:\n"
        "  gateway: {port: 8001, sidecar: {inbound: 18001, outbound: 15001, admin: 19001}}\n"
        "  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}\n"
        "policies: {orders: {retry: {attempts: 3}}}\n"
    )
    with running_collector(tmp_path, ui=True) as c:
        c.store.insert(rows)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "seawall", "slo", "suggest", *args, "--traces", c.url,
                 "--lookback", "1h"],
                capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
            )  # fmt: skip

        as_json = run("gateway", "-f", str(mesh), "--json")
        text = run("gateway", "-f", str(mesh))
        unknown = run("billing")
    assert as_json.returncode == 0, as_json.stderr
    s = json.loads(as_json.stdout)
    assert (s["calls"], s["errors"]) == (200, 4)
    assert s["achieved"] == 98.0
    (orders,) = s["dependencies"]
    assert (orders["name"], orders["calls"], orders["errors"], orders["attempts"]) == (
        "orders", 200, 2, 3,
    )  # fmt: skip
    assert s["ceiling"] == 99.0  # 1 - 2/200
    assert s["ceiling_with_retries"] == 100 * (1 - 0.01**3)
    assert s["suggested"] is None  # 98% achieved: not even 99% held
    assert text.returncode == 0, text.stderr
    assert "ceiling from its dependencies: 99.000%" in text.stdout
    assert "99.5    no    -300%        no                 yes" in text.stdout
    assert unknown.returncode == 1
    assert "no calls of 'billing'" in unknown.stderr
