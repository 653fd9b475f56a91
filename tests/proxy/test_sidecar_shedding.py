"""Criticality shedding at a real inbound sidecar: the overload experiment.

The app can serve two requests at a time (20 ms each; more queue inside it, so its
latency rises with load). Its sidecar keeps an adaptive concurrency limit in front of
it (``services.app.shedding``). 24 clients send ``sheddable`` requests and 4 send
``critical`` ones (the route's default), all at once, as fast as they are answered:
far more than the app can take. The issue's bar: critical requests keep >= 99%
success while the sheddable ones absorb the shedding, every shed answer is a 503 with
``x-seawall-overloaded: 1`` (so no hop retries it), the sidecar counts the shed per
criticality, and a shed request's span says so (a real collector receives it).

Bounded: each client stops after ``SECONDS`` or ``PER_CLIENT`` requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from backends import BackendLoop, Behaviour, Ok, _Context, wait_until
from conftest import Mesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
from collector_util import running_collector  # noqa: E402

SECONDS = 4.0
PER_CLIENT = 400
CRITICAL_CLIENTS = 4
SHEDDABLE_CLIENTS = 24


@dataclass
class Capacity(Behaviour):
    """An app that serves ``slots`` requests at a time, ``seconds`` each; the rest wait
    inside it (its latency grows with its load, as a saturated app's does)."""

    slots: int = 2
    seconds: float = 0.02

    def __post_init__(self) -> None:
        self._gate: asyncio.Semaphore | None = None

    async def act(self, ctx: _Context) -> bool:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.slots)  # made in the backends' loop
        async with self._gate:
            await asyncio.sleep(self.seconds)
            return await Ok(b"served").act(ctx)


async def _client(url: str, criticality: str | None, until: float) -> list[tuple[int, str]]:
    """Requests one after another until ``until`` (or ``PER_CLIENT``): (status, overloaded)."""
    headers = {"x-seawall-criticality": criticality} if criticality else {}
    seen: list[tuple[int, str]] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(PER_CLIENT):
            if time.monotonic() >= until:
                break
            r = await client.get(url, headers=headers)
            seen.append((r.status_code, r.headers.get("x-seawall-overloaded", "")))
    return seen


async def _overload(url: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    until = time.monotonic() + SECONDS
    critical = [_client(f"{url}/pay", None, until) for _ in range(CRITICAL_CLIENTS)]
    sheddable = [_client(f"{url}/pay", "sheddable", until) for _ in range(SHEDDABLE_CLIENTS)]
    results = await asyncio.gather(*critical, *sheddable)
    flat = [[r for rs in group for r in rs] for group in (results[:CRITICAL_CLIENTS],
                                                          results[CRITICAL_CLIENTS:])]  # fmt: skip
    return flat[0], flat[1]


@pytest.mark.timeout(90)
def test_critical_requests_keep_99_percent_while_sheddable_ones_absorb_the_shedding(
    sidecar_loop: BackendLoop, sidecar_start: Any, tmp_path: Path
) -> None:
    app = sidecar_loop.backend("shed-app", Capacity())
    mesh = Mesh(app)
    mesh.doc["services"]["app"]["shedding"] = {
        "limit": "adaptive",
        "adaptive": {"initial": 8, "min": 2, "max": 32},
        "max_waiting": 4,
        "max_wait": "250ms",
    }
    mesh.doc["policies"]["app"] = {
        "routes": [{"name": "pay", "match": {"path_prefix": "/pay"}, "criticality": "critical"}]
    }
    with running_collector(tmp_path) as collector:
        mesh.doc["tracing"] = {"endpoint": f"{collector.url}/v1/traces", "interval": "50ms",
                               "sample": "100%"}  # fmt: skip
        sidecar = sidecar_start(mesh)
        critical, sheddable = asyncio.run(_overload(f"http://127.0.0.1:{sidecar.inbound}"))

        ok = sum(status == 200 for status, _ in critical)
        assert len(critical) >= 40, len(critical)
        assert ok / len(critical) >= 0.99, (ok, len(critical))
        shed = [(s, o) for s, o in sheddable if s != 200]
        assert len(shed) > 0.2 * len(sheddable), (len(shed), len(sheddable))
        # every refusal is the mesh's overload answer, never an app error
        assert {s for s, _ in shed} == {503}
        assert {o for _, o in shed} == {"1"}
        counted = sidecar.metric("seawall_shed_total", service="app", criticality="sheddable")
        assert counted == len(shed)
        assert sidecar.metric("seawall_shed_total", criticality="critical") == (len(critical) - ok)
        admitted = sidecar.metric("seawall_shedding_admitted_total", criticality="critical")
        assert admitted == ok
        limit = sidecar.metric("seawall_concurrency_limit", service="app")
        assert 2 <= limit <= 32

        # a shed request's span carries its criticality and the shed event
        def shed_traces() -> list[dict[str, Any]]:
            collector.flush()
            tags = json.dumps({"seawall.criticality": "sheddable"})
            r = httpx.get(f"{collector.url}/api/traces",
                          params={"service": "app", "tags": tags, "limit": 3})  # fmt: skip
            return list(r.json()["data"]) if r.status_code == 200 else []

        wait_until(lambda: bool(shed_traces()), timeout=20)
        span = shed_traces()[0]["spans"][0]
        tags = {t["key"]: t["value"] for t in span["tags"]}
        assert tags["seawall.criticality"] == "sheddable"
        assert tags["http.response.status_code"] == 503
        events = [f["value"] for log in span["logs"] for f in log["fields"] if f["key"] == "event"]
        assert "seawall.shed" in events


def test_an_unknown_criticality_is_refused_with_its_value(
    sidecar_loop: BackendLoop, sidecar_start: Any
) -> None:
    app = sidecar_loop.backend("shed-bad-app", Ok(b"served"))
    mesh = Mesh(app)
    mesh.doc["services"]["app"]["shedding"] = {"limit": 4}
    sidecar = sidecar_start(mesh)
    r = httpx.get(f"http://127.0.0.1:{sidecar.inbound}/x",
                  headers={"x-seawall-criticality": "urgent"}, timeout=5)  # fmt: skip
    assert r.status_code == 400
    assert "x-seawall-criticality: 'urgent' is not one of" in r.text
    assert "critical_plus, critical, sheddable_plus, sheddable" in r.text
    assert app.hits == 0
    ok = httpx.get(f"http://127.0.0.1:{sidecar.inbound}/x",
                   headers={"x-seawall-criticality": "SHEDDABLE_PLUS"}, timeout=5)  # fmt: skip
    assert ok.status_code == 200
