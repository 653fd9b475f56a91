"""One checkout through the shop is ONE connected trace: app, sidecar, sidecar, app, and on.

A slice of the shop on loopback: the gateway and orders apps (``python -m
examples.shop.<service>``: seawall's ASGI middleware, and seawall's httpx
transport through the sidecar's outbound listener), each beside its ``seawall
sidecar`` (a static mesh.yaml, no control plane), and a real ``seawall
traces`` collector that the sidecars and the apps all export to. Payments is
declared but not running, so orders' sidecar fails the charge (nothing
listens) and the checkout answers 503: the trace still runs from the edge to
orders' call to payments, which is all this test is about.

The test calls the gateway's sidecar with a ``traceparent`` of its own and
reads the trace back: one trace, every span's parent in it but the root's
(the test's span), and the chain the docs promise (docs/telemetry/spans.md)::

    gateway's sidecar SERVER → gateway SERVER (POST /checkout) → gateway CLIENT → attempt
      → gateway's sidecar CLIENT → attempt → orders' sidecar SERVER → orders SERVER
      (POST /orders) → orders CLIENT → attempt → orders' sidecar CLIENT → attempt
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "telemetry"))
from collector_util import RunningCollector, running_collector  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER, CLIENT = 2, 3  # OTLP span kinds
SIDECAR_SCOPE = "seawall-sidecar"
APP_SCOPE = "seawall"  # the middleware's and the transport's instrumentation scope


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


def _wait_ok(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"{process.args!r} exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{url} not ready:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


@dataclass
class Shop:
    """The slice of the shop running: ports by service, and where the edge listens."""

    ports: dict[str, dict[str, int]]

    @property
    def edge(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']['inbound']}"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Shop, RunningCollector]]:
    with running_collector(tmp_path) as collector:
        ports = iter(_free_ports(12))
        keys = ("app", "inbound", "outbound", "admin")
        numbers = {name: dict(zip(keys, ports, strict=False)) for name in ("gateway", "orders")}
        numbers["payments"] = dict(zip(keys, ports, strict=False))  # nothing listens there
        off = {"enabled": False}
        doc: dict[str, Any] = {
            "mesh": "shop-trace",
            "services": {
                name: {
                    "port": p["app"],
                    "sidecar": {k: p[k] for k in ("inbound", "outbound", "admin")},
                }
                for name, p in numbers.items()
            },
            "policies": {
                "orders": {
                    "circuit_breaker": off,
                    "outlier": off,
                    "routes": [
                        {
                            "name": "place-order",
                            "match": {"path_exact": "/orders", "method": "POST"},
                        }
                    ],
                },
                "payments": {"retry": {"attempts": 1}, "circuit_breaker": off, "outlier": off},
            },
            # every sidecar and every app (seawall.telemetry.setup) exports here, soon
            "tracing": {"endpoint": f"{collector.url}/v1/traces", "interval": "50ms"},
        }
        config = tmp_path / "mesh.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        processes: list[subprocess.Popen[bytes]] = []
        try:
            ready = []
            for name in ("orders", "gateway"):
                for kind, argv in (
                    ("sidecar", ["-m", "seawall", "sidecar", "--config", str(config)]),
                    ("app", ["-m", f"examples.shop.{name}", "--config", str(config)]),
                ):
                    log = tmp_path / f"{kind}-{name}.log"
                    with log.open("wb") as out:
                        process = subprocess.Popen(
                            [
                                sys.executable,
                                *argv,
                                *(["--service", name] if kind == "sidecar" else []),
                            ],
                            cwd=ROOT,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            env=_env(),
                        )
                    processes.append(process)
                    port = numbers[name]["admin" if kind == "sidecar" else "app"]
                    path = "/ready" if kind == "sidecar" else "/health"
                    ready.append((f"http://127.0.0.1:{port}{path}", process, log))
            for url, process, log in ready:
                _wait_ok(url, process, log)
            yield Shop(numbers), collector
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str
    service: str
    scope: str
    kind: int
    name: str
    attributes: dict[str, Any]


def _exported(admin: int) -> float:
    """What a sidecar counts in ``seawall_trace_spans_total{outcome="exported"}``."""
    text = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('seawall_trace_spans_total{outcome="exported"}')
    )


def _warm_up(shop: Shop) -> None:
    """Checkouts until both sidecars have exported spans.

    A sidecar drops, uncounted, the spans it records before its exporter's
    first interval has passed (the exporter reads its settings before that
    first wait, and finds none yet: crates/seawall-proxy/src/export.rs,
    ``drain``), so a request in the sidecar's first second may leave a hole
    in its trace.
    """
    deadline = time.monotonic() + 15
    while not all(_exported(shop.ports[name]["admin"]) > 0 for name in ("gateway", "orders")):
        assert time.monotonic() < deadline, "the sidecars exported no span"
        httpx.post(f"{shop.edge}/checkout", json={"user": "warm-up"}, timeout=10)
        time.sleep(0.3)


def _spans(collector: RunningCollector, trace_id: str, at_least: int) -> list[Span]:
    """The trace's spans (api_v3), once at least ``at_least`` are in and a look finds no more."""
    deadline = time.monotonic() + 20
    found: list[Span] = []
    while True:
        collector.flush()
        r = httpx.get(f"{collector.url}/api/v3/traces/{trace_id}", timeout=5)
        before, found = len(found), []
        if r.status_code == 200:
            for rs in r.json()["result"]["resourceSpans"]:
                service = next(
                    kv["value"]["stringValue"]
                    for kv in rs["resource"]["attributes"]
                    if kv["key"] == "service.name"
                )
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        assert s["traceId"] == trace_id
                        attributes = {
                            kv["key"]: next(iter(kv["value"].values()), None)
                            for kv in s.get("attributes", [])
                        }
                        found.append(
                            Span(
                                s["spanId"],
                                s.get("parentSpanId", ""),
                                service,
                                ss.get("scope", {}).get("name", ""),
                                s["kind"],
                                s["name"],
                                attributes,
                            )
                        )
        if len(found) >= at_least and len(found) == before:
            return found
        assert time.monotonic() < deadline, f"{len(found)} spans of {trace_id}: {found}"
        time.sleep(0.3)


@pytest.mark.timeout(90)
def test_a_checkout_is_one_connected_trace_through_apps_and_sidecars(
    shop: tuple[Shop, RunningCollector],
) -> None:
    edge, collector = shop
    _warm_up(edge)
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(
        f"{edge.edge}/checkout",
        json={"user": "ada", "amount": 42},
        headers={"traceparent": f"00-{trace_id}-{caller}-01"},
        timeout=10,
    )
    # payments is not running: orders says so, through the gateway
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "payment unavailable", r.text

    spans = _spans(collector, trace_id, 12)
    by_id = {s.span_id: s for s in spans}
    # ONE connected trace: every span's parent is in it, but the root's, which is the test's
    (root,) = [s for s in spans if s.parent_id not in by_id]
    assert root.parent_id == caller

    walked = {root.span_id}

    def child(parent: Span, service: str, scope: str, kind: int, **attributes: Any) -> Span:
        """The one child of ``parent`` that is this (the test's description of the step)."""
        found = [
            s
            for s in spans
            if s.parent_id == parent.span_id
            and (s.service, s.scope, s.kind) == (service, scope, kind)
            and all(str(s.attributes.get(k)) == str(v) for k, v in attributes.items())
        ]
        assert len(found) == 1, (parent, service, scope, kind, attributes, spans)
        walked.add(found[0].span_id)
        return found[0]

    # the edge: the gateway's sidecar took the request from outside
    assert (root.service, root.scope, root.kind) == ("gateway", SIDECAR_SCOPE, SERVER)
    # the gateway app, under the middleware, then its call to orders through seawall's transport
    gateway = child(root, "gateway", APP_SCOPE, SERVER)
    assert gateway.name == "POST /checkout"
    assert gateway.attributes["http.route"] == "/checkout"
    call = child(gateway, "gateway", APP_SCOPE, CLIENT, **{"seawall.destination": "orders"})
    assert "seawall.attempt" not in call.attributes
    attempt = child(call, "gateway", APP_SCOPE, CLIENT, **{"seawall.attempt": 1})
    # the gateway's sidecar continued the trace under the app's attempt
    hop = child(attempt, "gateway", SIDECAR_SCOPE, CLIENT, **{"seawall.destination": "orders"})
    assert hop.name == "POST place-order"
    hop_attempt = child(hop, "gateway", SIDECAR_SCOPE, CLIENT, **{"seawall.attempt": 1})
    # orders' sidecar, then the orders app under it
    inbound = child(hop_attempt, "orders", SIDECAR_SCOPE, SERVER)
    orders = child(inbound, "orders", APP_SCOPE, SERVER)
    assert orders.name == "POST /orders"
    # orders' call to payments: app, then its sidecar, which found nothing listening
    call = child(orders, "orders", APP_SCOPE, CLIENT, **{"seawall.destination": "payments"})
    attempt = child(call, "orders", APP_SCOPE, CLIENT, **{"seawall.attempt": 1})
    hop = child(attempt, "orders", SIDECAR_SCOPE, CLIENT, **{"seawall.destination": "payments"})
    assert int(hop.attributes["http.response.status_code"]) >= 500
    # every span of the trace is on that chain, but the attempts of that last hop
    rest = [s for s in spans if s.span_id not in walked]
    assert all(s.parent_id == hop.span_id and "seawall.attempt" in s.attributes for s in rest)
