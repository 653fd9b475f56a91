"""A real control plane evaluating SLOs, for the SLO page's browser tests.

The control plane (``seawall.control.server.ControlServer``, in this process on
its own loop thread, scraping every half second) has a mesh of two services,
``gateway`` and ``auth``, with the shop's objectives: checkout (the gateway's
availability 99.5% and latency 95% within 300 ms) and login (auth's
availability 99.9%). Their sidecars are played by :class:`MetricsPage`:
real HTTP servers on loopback, registered with the control plane under the
admin port they serve ``/metrics`` on, writing OpenMetrics with exemplars
when asked for it, as the Rust core does.

A test cannot wait hours for burn rates over an hour: :func:`seed_history`
writes the three and a half hours before now to the control plane's
``slo.db`` before it starts (the same objectives fed the same pages through
:class:`~seawall.slo.engine.SloEngine`, saved as the monitor saves them), and
the control plane reads them back as after a restart. In the last 25 minutes
of it the gateway answers 30% of its requests 5xx and 20% slower than
300 ms: checkout burns, its 1h / 5m page alert fires; login is untouched.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seawall.config import load_mesh
from seawall.config.model import SloConfig
from seawall.slo.engine import SloEngine
from seawall.slo.history import Saved, SloHistory, definition

SEEDED_S = 3.5 * 3600
"""How much history is written before the control plane starts."""
OUTAGE_S = 25 * 60
"""The last part of it in which the gateway fails 30% and is slow for 20%."""
PER_MINUTE = 120
"""Requests a minute at each service."""
STEP_S = 30
"""The seeded samples' spacing (the monitor's scrapes, as they would have been)."""


def mesh_doc() -> dict[str, Any]:
    return {
        "mesh": "shop",
        "services": {
            "gateway": {"port": 18080, "sidecar": {"inbound": 18081, "outbound": 18082,
                                                   "admin": 18083}},
            "auth": {"port": 18090, "sidecar": {"inbound": 18091, "outbound": 18092,
                                                "admin": 18093}},
        },
        "slos": {
            "checkout": {"service": "gateway", "availability": "99.5%",
                         "latency": {"threshold": "300ms", "percent": "95%"}},
            "login": {"service": "auth", "availability": "99.9%"},
        },
    }  # fmt: skip


def slos(tmp_path: Path) -> dict[str, SloConfig]:
    """The ``slos:`` of :func:`mesh_doc`, validated as the control plane will have them."""
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh_doc(), sort_keys=False))
    return dict(load_mesh(path).slos)


@dataclass
class Counts:
    """A sidecar's counters: requests by outcome."""

    ok: float = 0.0
    failed: float = 0.0
    slow: float = 0.0  # answered, above 300 ms

    def advance(self, minutes: float, failing: float = 0.0, slow: float = 0.0) -> None:
        n = PER_MINUTE * minutes
        self.failed += n * failing
        self.slow += n * slow
        self.ok += n * (1 - failing)


@dataclass
class Exemplars:
    """What a page's exemplars point at: (trace id, Unix seconds, latency)."""

    error: tuple[str, float] | None = None
    slow: tuple[str, float, float] | None = None
    fast: tuple[str, float, float] | None = None


def page(service: str, counts: Counts, exemplars: Exemplars | None = None) -> str:
    """The service's inbound sidecar's page (OpenMetrics with exemplars when given them)."""
    labels = f'direction="inbound",destination="{service}",route="inbound"'
    om = exemplars is not None
    ex = exemplars or Exemplars()
    total = counts.ok + counts.failed
    fast = total - counts.slow
    lines = [
        "# HELP seawall_requests Requests finished by the sidecar."
        if om else "# HELP seawall_requests_total Requests finished by the sidecar.",
        "# TYPE seawall_requests counter" if om else "# TYPE seawall_requests_total counter",
        f'seawall_requests_total{{{labels},status_class="2xx"}} {counts.ok!r}',
        f'seawall_requests_total{{{labels},status_class="5xx"}} {counts.failed!r}'
        + (f' # {{trace_id="{ex.error[0]}"}} 1 {ex.error[1]!r}' if ex.error else ""),
        "# TYPE seawall_request_duration_seconds histogram",
        f'seawall_request_duration_seconds_bucket{{{labels},le="0.1"}} {fast!r}'
        + (f' # {{trace_id="{ex.fast[0]}"}} {ex.fast[2]!r} {ex.fast[1]!r}' if ex.fast else ""),
        f'seawall_request_duration_seconds_bucket{{{labels},le="0.3"}} {fast!r}',
        f'seawall_request_duration_seconds_bucket{{{labels},le="1.0"}} {total!r}'
        + (f' # {{trace_id="{ex.slow[0]}"}} {ex.slow[2]!r} {ex.slow[1]!r}' if ex.slow else ""),
        f'seawall_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total!r}',
        f"seawall_request_duration_seconds_sum{{{labels}}} {total * 0.05!r}",
        f"seawall_request_duration_seconds_count{{{labels}}} {total!r}",
    ]  # fmt: skip
    if om:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class Shop:
    """The two sidecars' counters at the end of the seeded history."""

    gateway: Counts = field(default_factory=Counts)
    auth: Counts = field(default_factory=Counts)


def seed_history(state_dir: Path, configs: dict[str, SloConfig], now: float) -> Shop:
    """The hours before ``now``, scraped every ``STEP_S``, saved in ``state_dir/slo.db``."""
    engine = SloEngine(configs)
    shop = Shop()
    t = now - SEEDED_S
    while t <= now:
        engine.scrape("gateway.1", "gateway", page("gateway", shop.gateway), t)
        engine.scrape("auth.1", "auth", page("auth", shop.auth), t)
        minutes = STEP_S / 60
        failing = now - t <= OUTAGE_S
        shop.gateway.advance(minutes, 0.3 if failing else 0.0, 0.2 if failing else 0.0)
        shop.auth.advance(minutes)
        t += STEP_S
    store = SloHistory(state_dir / "slo.db")
    try:
        saved = [
            Saved(o.name, definition(o), engine.series(o.name).take_changes())
            for o in engine.objectives
        ]
        store.save(saved, [o.name for o in engine.objectives])
    finally:
        store.close()
    return shop


class LoopbackServer:
    """An ``http.server`` handler class served on a free loopback port, in a thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class MetricsPage:
    """A sidecar's admin listener on loopback: ``/metrics``, OpenMetrics when the scrape
    asks for it (with the exemplars given), else Prometheus's text."""

    def __init__(self, service: str, counts: Counts, exemplars: Exemplars) -> None:
        self.service = service
        self.counts = counts
        self.exemplars = exemplars
        self.accepts: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                accept = self.headers.get("Accept", "")
                outer.accepts.append(accept)
                om = "application/openmetrics-text" in accept
                body = page(outer.service, outer.counts, outer.exemplars if om else None)
                kind = (
                    "application/openmetrics-text; version=1.0.0"
                    if om
                    else "text/plain; version=0.0.4"
                )
                data = body.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.loopback = LoopbackServer(Handler)
        self.port = self.loopback.port

    def close(self) -> None:
        self.loopback.close()


@contextmanager
def metrics_pages(pages: list[MetricsPage]) -> Iterator[list[MetricsPage]]:
    try:
        yield pages
    finally:
        for p in pages:
            p.close()


def now() -> float:
    return time.time()
