"""The shop behind its service mesh: a canary, then break email, the card network and
payments; the mesh holds.

``python -m examples.mesh_demo [--config examples/shop/mesh.yaml]`` runs the shop
of ``examples/shop`` on loopback with ``seawall up``: a control plane
(``seawall control``), ``mesh.yaml`` applied to it, and every service's ``run:``
(orders twice: v1, and v2 from its subset's ``run:``) as its own process next to
its own ``seawall sidecar --control`` process; and, beside it, a stand-in for
CardNet, the card network payments charges cards on: a host outside the mesh,
over HTTPS, with a certificate from a throwaway CA::

    client ──► gateway ──► orders v1 ──► payments ══TLS══► cardnet (external)
                  │    └─► orders v2 ─┘   email
                  └──────► login

Each sidecar gets its config, the endpoints of the other services (every
sidecar registers its own instance) and its certificate from the control
plane; sidecar to sidecar, every call is mutual TLS, and each callee's sidecar
checks who calls it. External clients (here, the demo's load generator) reach
the gateway through its sidecar's inbound listener (the mesh's edge: plaintext
from outside); every service calls the others only through its own sidecar's
outbound listener, so the policies of ``mesh.yaml`` apply to every hop. Orders
runs twice: v1, and v2 beside it, which gets no traffic until a canary.
Payments calls ``http://cardnet/charges`` through its sidecar too, in plain
HTTP: mesh.yaml declares ``cardnet`` under ``external:``, and the sidecar
originates the TLS to the stand-in and checks its certificate. The demo
writes the CA into its scratch directory and applies a copy of mesh.yaml
whose ``external.cardnet.ca_file`` names it (the committed file leaves it
out: the system's roots, as for a real provider).

After the start it shows the registry (``seawall services``) and the mTLS side:
every sidecar's certificate (``seawall certs``), a plaintext request to orders
refused, a caller that is not allowed refused (403). After a warm-up (three
checkouts and three logins, one at a time: the first connections and TLS
handshakes), it drives about 40 requests/s, half ``POST /checkout``, half
``POST /login``, through nine phases:

1. healthy;
2. canary: ``seawall apply`` of a copy of mesh.yaml whose place-order route
   splits orders ``{v1: 90, v2: 10}``; every sidecar has the new version
   within a fraction of a second, and about 10% of the checkouts are answered
   by v2;
3. shift back: the original split (``{v1: 100, v2: 0}``) applied again; v2
   gets nothing;
4. email hangs: orders waits for it at most 500 ms and at most 4 calls at
   once (timeout + bulkhead), so checkouts still complete ("email deferred")
   and login is untouched;
5. cardnet down (every charge answers 503): the breaker on ``cardnet`` in
   payments' sidecar opens, so payments fails the charges at once (402 "card
   network unavailable") without calling CardNet, which sees few of them;
   checkouts fail fast, orders' breaker on payments stays closed (payments
   answers), and login is untouched;
6. payments fails (503): the breaker of orders' sidecar opens, and checkouts
   fail fast instead of waiting on payments;
7. recovery: the faults are cleared; once both breakers have closed again,
   everything succeeds;
8. progressive canary: ``seawall apply`` of a copy whose place-order split is
   progressive (``{canary: v2, steps: [20, 50, 100], interval: 3s}``): the
   control plane gives v2 20% of the orders, then 50% once it has burnt no
   faster than v1;
9. canary fails: v2 answers 503 to every order, and the control plane rolls it
   back to 0% by itself (``seawall status`` shows each decision, with its
   figures).

The shop declares SLOs (``slos:`` in mesh.yaml): checkout at the gateway
(availability 99.5%, 95% within 300 ms) and login (99.9%). The control plane
scrapes every sidecar each second (``--slo-interval 1s``, budgets kept in 5 s
buckets: ``--slo-resolution 5s``) and sends its alerts to a webhook receiver
the demo runs (Alertmanager's JSON), with checkout's page alert scaled to the
demo's minute (14.4x over 30 s and 5 s). The demo prints the budgets after
"email hangs" (login's untouched: the bulkhead, told as budget), the alerts
received when the charges fail (the page alert firing), their resolution after
the recovery, and at the end ``seawall slo suggest gateway --route /checkout``:
what checkout achieved, the ceiling its dependencies set, and what the retries
buy.

After each phase it prints, per route, the requests, success rate and p50/p99
latency (from the client, and from each app's view of its calls through its
sidecar), which orders version answered the checkouts, and what orders'
sidecar reports on its ``/metrics`` and ``/clusters`` (breaker, retries,
overflows), what payments' sidecar reports of its calls to cardnet (breaker,
TLS failures) and what the stand-in saw (requests, TLS version, SNI, Host),
with the breaker events of payments' sidecar log.

Every hop is traced. The control plane serves the trace collector too
(``seawall control --traces``, where mesh.yaml's ``tracing.endpoint`` points),
and every sidecar and every app (``examples/shop/app.py``: seawall's ASGI
middleware and httpx transport) exports its spans there; the copy applied
sets ``tracing.interval`` to 200ms, so a phase's spans are in soon after it.
After "email hangs" and "payments fails", the demo reads one checkout from
the collector (the slowest while email hung; a typical one refused by the
breaker of orders' sidecar while payments failed) and prints its page in the
trace UI, its critical path (``seawall.telemetry.critical_path``: the spans
it waited on, in order, each with its service and self time, the largest
marked) and the mesh's decisions recorded on it (breaker refusals,
overflows, retries, timeouts), so the trace alone says where the time went::

    one checkout from its trace (24 spans, 590.9 ms): http://127.0.0.1:4318/ui/#/trace/bcca...
      critical path (what it waited on, in order; self time):
        gateway   sidecar POST checkout SERVER                   0.6 ms
        gateway   POST /checkout SERVER                          1.8 ms
        ...
        orders    sidecar POST default → email CLIENT            0.1 ms
        orders    sidecar POST default attempt 1 CLIENT          0.1 ms
        email     sidecar POST inbound SERVER                    0.9 ms
        email     POST /send SERVER                            499.8 ms   <- bottleneck
      the mesh's decisions on the trace: 1
        email     sidecar POST inbound SERVER: timeout: answered 504 (the caller's deadline: 499 ms)

It ends by itself in about a minute and a half and stops every process it
started (the control plane and the stand-in too), also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from seawall.config import MeshConfig, load_mesh
from seawall.telemetry.critical_path import TimedSpan, critical_path, self_times
from seawall.up.processes import processes_in_groups

from .shop import cardnet

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("examples/shop/mesh.yaml")
SERVICES = ("payments", "email", "login", "orders", "gateway")  # leaves first
EXTERNAL = "cardnet"  # the card network: external.cardnet, a stand-in started here
# Each breaker the demo watches: its destination, and the sidecar that holds it.
BREAKERS = (("payments", "orders"), (EXTERNAL, "payments"))
CONTROL_PORT = 7600  # seawall control's default
RATE = 40.0  # requests per second, alternating /checkout and /login
CLIENT_TIMEOUT = 5.0
MAX_OUTSTANDING = 200  # the load loop never has more requests in flight than this
WARM_UP = 3  # checkouts and logins sent one at a time before the load (see Demo.warm_up)
START_TIMEOUT = 60.0  # `seawall up`: every sidecar /ready and app port, all together
ROLLOUT_TIMEOUT = 10.0  # after `seawall apply`, for every sidecar to run the new version
CLI_TIMEOUT = 20.0  # one `seawall apply|status|certs|services` command
SETTLE_TIMEOUT = 8.0  # after the faults are cleared, for both breakers to close
STOP_GRACE = 30.0  # SIGTERM to `seawall up` (it drains each process), then SIGKILL
TRACE_INTERVAL = "200ms"  # tracing.interval in the copy applied: spans reach the collector soon
TRACE_POLL = 0.5  # between two looks at a trace (longer than the interval of every exporter)
TRACE_SETTLE = 5.0  # at most this long for a trace's spans to stop arriving
SLO_INTERVAL = "1s"  # seawall control --slo-interval: every sidecar scraped each second
SLO_RESOLUTION = "5s"  # seawall control --slo-resolution: the budget kept in 5 s buckets
# checkout's page alert in the copy applied: the workbook's 14.4x over 1h and 5m, its
# windows scaled to the demo's minute (both must burn: the long one says the budget is
# going, the short one that it still is, so the alert resolves soon after recovery)
DEMO_ALERT = {"severity": "page", "long": "30s", "short": "5s", "burn_rate": 14.4}
RESOLVE_TIMEOUT = 30.0  # after recovery, for checkout's alert to resolve
ROLLOUT_WAIT = 15.0  # at most this long for a progressive canary's next decision


@dataclass(frozen=True)
class TraceSearch:
    """Which checkout of a phase the demo reads from the collector: of the traces with a
    span of ``service`` named ``operation``, the slowest of those that took at least
    ``min_share`` of email's timeout; or, of those where ``event`` is on a span of
    ``service``, the one of median duration (a typical one)."""

    service: str
    operation: str
    min_share: float | None = None
    event: str | None = None


# The phases after which the demo reads one checkout from its trace.
TRACED = {
    # the gateway app's SERVER span of a checkout (the middleware's)
    "email hangs": TraceSearch("gateway", "POST /checkout", min_share=0.8),
    # orders' sidecar's span of a charge (the route `charge` of policies.payments)
    "payments fails": TraceSearch("orders", "POST charge", event="seawall.breaker.rejected"),
}


@dataclass(frozen=True)
class Phase:
    title: str
    seconds: float  # its length; with `until`, the longest it waits for that
    modes: dict[str, str]  # service (or instance: "orders-v2") -> /_control mode
    story: str
    split: dict[str, int] | None = None  # applied (seawall apply) before the phase starts
    progressive: dict[str, Any] | None = None  # the place-order route's, with the split
    until: str | None = None  # ends early once the canary's rollout is "advanced" or
    # "rolled_back"


# The progressive canary: the control plane raises v2's weight a step at a time while it
# burns checkout's budget no faster than v1, and rolls it back by itself once it does.
PROGRESSIVE = {"canary": "v2", "steps": [20, 50, 100], "interval": "3s", "min_events": 10}


PHASES = (
    Phase("healthy", 4.0, {}, "every service answers"),
    Phase("canary", 8.0, {}, "10% of the orders go to v2", split={"v1": 90, "v2": 10}),
    Phase("shift back", 4.0, {}, "every order goes to v1 again", split={"v1": 100, "v2": 0}),
    Phase("email hangs", 5.0, {"email": "hang"}, "email accepts calls and never answers"),
    Phase("cardnet down", 4.0, {EXTERNAL: "fail"}, "the card network answers 503 to every charge"),
    Phase("payments fails", 5.0, {"payments": "fail"}, "every charge answers 503 at once"),
    Phase("recovery", 4.0, {}, "faults cleared, breakers closed again"),
    Phase(
        "progressive canary",
        ROLLOUT_WAIT,
        {},
        "orders v2 rolled out by the control plane: 20%, then 50% if it burns no faster",
        split={"v1": 100, "v2": 0},
        progressive=PROGRESSIVE,
        until="advanced",
    ),
    Phase(
        "canary fails",
        ROLLOUT_WAIT,
        {"orders-v2": "fail"},
        "v2 answers 503 to every order: the control plane must roll it back by itself",
        until="rolled_back",
    ),
)

T0 = time.monotonic()


def say(message: str = "") -> None:
    print(message, flush=True)


def stamp() -> str:
    return f"[{time.monotonic() - T0:5.1f}s]"


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without HTTP proxies (everything here is loopback)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


@dataclass(frozen=True)
class Instance:
    """One instance of a service: its app and its sidecar, on their own ports."""

    name: str  # "orders", "orders-v2"
    service: str
    subset: str | None
    port: int  # the app's
    inbound: int
    outbound: int
    admin: int


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str  # "control", "app:orders", "sidecar:orders-v2"
    process: subprocess.Popen[bytes]
    log: Path
    stop_first: bool = False  # the control plane (see Supervisor.stop_all)


class Supervisor:
    """Starts children each in its own process group; stops every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._logs: list[TextIO] = []
        # what `seawall up` started (in a process group of its own): checked at the end
        self.up_group: int | None = None
        self.up_pids: list[int] = []

    def start(self, name: str, argv: list[str], *, stop_first: bool = False, **env: str) -> Child:
        log_path = self.log_dir / f"{name.replace(':', '-')}.log"
        log = log_path.open("w")
        self._logs.append(log)
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(**env),
            process_group=0,  # its own group: Ctrl-C reaches the demo only, which stops it
        )
        child = Child(name, process, log_path, stop_first)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"{child.name} (pid {child.process.pid}) exited with {code}:\n"
                    + tail(child.log)
                )

    def stop_all(self) -> list[int]:
        """SIGTERM every group, SIGKILL what is left after the grace; the pids still alive.

        The children started with ``stop_first`` (the control plane) are stopped
        before the others, so that no snapshot is pushed to a sidecar as it
        stops: with Python 3.11, one that gets a push just as it gets its
        SIGTERM may go on running (its lease loop's ``asyncio.wait_for`` can
        swallow the cancellation) until the SIGKILL. A signal goes to a
        child's group only while the child is not reaped (so its pid, the
        group id, cannot have been reused); a group member that outlived its
        leader is signalled by its own pid.
        """
        deadline = time.monotonic() + STOP_GRACE
        for first in (True, False):
            wave = [child for child in self.children if child.stop_first is first]
            for child in wave:
                if child.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.process.pid, signal.SIGTERM)
            for child in wave:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        groups = {child.process.pid for child in self.children}
        if self.up_group is not None:  # `seawall up` stopped its own; anything left goes
            groups.add(self.up_group)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.up_group, signal.SIGKILL)
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=2.0)
        for pid in _processes_in_groups(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for log in self._logs:
            log.close()
        alive = [c.process.pid for c in self.children if c.process.poll() is None]
        time.sleep(0.1)
        return sorted(set(alive) | set(_processes_in_groups(groups)))

    def pids(self) -> list[int]:
        """Every process of the demo: its children, and what `seawall up` started."""
        return [c.process.pid for c in self.children] + self.up_pids


def _processes_in_groups(groups: set[int]) -> list[int]:
    """Live (non-zombie) shop processes (control plane, apps, sidecars) in one of ``groups``."""
    found = []
    for pid in processes_in_groups(groups):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"examples.shop" in cmdline or b"seawall" in cmdline:
                found.append(pid)
    return found


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def busy_ports(ports: Iterable[int]) -> list[int]:
    busy = []
    for port in ports:
        with socket.socket() as sock:
            # as servers bind (asyncio sets SO_REUSEADDR): TIME_WAIT leftovers are no conflict
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


async def wait_ready(sup: Supervisor, client: httpx.AsyncClient, urls: dict[str, str]) -> None:
    """Wait until every URL answers 200 (bounded); fail early if a child exits."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = dict(urls)
    while waiting:
        sup.check_alive()
        for name, url in list(waiting.items()):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1.0)).status_code == 200:
                    del waiting[name]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {START_TIMEOUT:.0f} s: {', '.join(waiting)}")
        await asyncio.sleep(0.1)


async def seawall(*args: str) -> str:
    """Run ``python -m seawall ARGS`` (an operator's command): its output; raises if it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "seawall",
        *args,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except BaseException:  # timed out, or the demo is stopping
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await proc.communicate()  # reaped, its pipe closed, while the loop still runs
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"seawall {' '.join(args)} exited {proc.returncode}:\n{indent(text)}")
    return text


def write_mesh(source: Path, dest: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``source`` with ``change`` made to its document, every setting spelled
    out (the config as JSON, which is YAML too; checked by loading it)."""
    doc = json.loads(load_mesh(source).to_json())
    change(doc)
    dest.write_text(json.dumps(doc, indent=1) + "\n")
    load_mesh(dest)
    return dest


def write_split(
    source: Path, split: dict[str, int], dest: Path, progressive: dict[str, Any] | None = None
) -> Path:
    """A copy of ``source`` whose place-order route splits orders as ``split`` (and rolls
    the split's canary out as ``progressive`` says, when given)."""

    def change(doc: dict[str, Any]) -> None:
        routes = doc["policies"]["orders"]["routes"]
        (route,) = [r for r in routes if r.get("name") == "place-order"]
        route["split"] = dict(split)
        route.pop("progressive", None)
        if progressive is not None:
            route["progressive"] = dict(progressive)

    write_mesh(source, dest, change)
    route = next(r for r in load_mesh(dest).policy_for("orders").routes if r.name == "place-order")
    assert route.split == {k: float(v) for k, v in split.items()}, route.split
    return dest


def write_alerting(source: Path, webhook: str, dest: Path, origin: Path) -> Path:
    """A copy of ``source`` whose SLO alerts go to ``webhook`` (the demo's receiver), with
    checkout's page alert scaled to the demo's minute (:data:`DEMO_ALERT`), and each
    ``run.cwd`` made absolute (it was relative to ``origin``, the original's folder)."""

    def change(doc: dict[str, Any]) -> None:
        for svc in doc["services"].values():
            for run in [svc.get("run"), *(s.get("run") for s in svc["subsets"].values())]:
                if run is not None:
                    run["cwd"] = str((origin / (run.get("cwd") or ".")).resolve())
        doc["slos"]["checkout"]["alerts"] = {"burn": [dict(DEMO_ALERT)], "min_events": 50}
        doc["alerting"] = {
            "webhooks": [webhook],
            "timeout": "1s",
            "backoff": {"base": "100ms", "max": "1s"},
        }

    return write_mesh(source, dest, change)


def write_ca_file(source: Path, name: str, ca_file: Path, dest: Path) -> Path:
    """A copy of ``source`` whose external service ``name`` trusts ``ca_file``, and has no
    stand-in of its own for ``seawall up`` to run (the demo runs it, on its own CA)."""

    def change(doc: dict[str, Any]) -> None:
        external = doc["external"][name]
        external["ca_file"] = str(ca_file)
        external.pop("run", None)

    write_mesh(source, dest, change)
    assert load_mesh(dest).external[name].ca_file == str(ca_file), dest
    return dest


def write_tracing_interval(source: Path, interval: str, dest: Path) -> Path:
    """A copy of ``source`` whose ``tracing.interval`` is ``interval``."""

    def change(doc: dict[str, Any]) -> None:
        doc["tracing"]["interval"] = interval

    return write_mesh(source, dest, change)


def collector_address(config: MeshConfig) -> tuple[str, int]:
    """Where the demo serves ``seawall traces``: mesh.yaml's ``tracing.endpoint``, which
    must be ``http://127.0.0.1:PORT/v1/traces`` (the collector runs here, on loopback)."""
    endpoint = config.tracing.export_endpoint()
    url = urlsplit(endpoint)
    if url.scheme != "http" or url.hostname != "127.0.0.1" or url.path != "/v1/traces":
        raise ValueError(f"tracing.endpoint is {endpoint}: want http://127.0.0.1:PORT/v1/traces")
    return "127.0.0.1", url.port or 80


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def add(self, status: int, seconds: float) -> None:
        self.statuses.append(status)
        self.latencies.append(seconds)

    @property
    def success(self) -> float:
        ok = sum(1 for s in self.statuses if 200 <= s < 300)
        return 100.0 * ok / len(self.statuses) if self.statuses else float("nan")

    def failures_fast(self) -> list[float]:
        return [t for t, s in zip(self.latencies, self.statuses, strict=True) if not 200 <= s < 300]


ROWS = (
    ("client → gateway /checkout", "client", "/checkout"),
    ("client → gateway /login", "client", "/login"),
    ("gateway → orders /orders", "gateway", "orders /orders"),
    ("gateway → login /login", "gateway", "login /login"),
    ("orders → payments /charge", "orders", "payments /charge"),
    ("orders → email /send", "orders", "email /send"),
    ("payments → cardnet /charges", "payments", "cardnet /charges"),
)


def table(stats: dict[tuple[str, str], RouteStats]) -> list[str]:
    lines = [f"  {'route':<29} {'requests':>8} {'success':>8} {'p50 ms':>9} {'p99 ms':>9}"]
    for label, who, key in ROWS:
        rs = stats.get((who, key), RouteStats())
        ms = [t * 1000 for t in rs.latencies]
        if not ms:
            lines.append(f"  {label:<29} {0:>8} {'-':>8} {'-':>9} {'-':>9}")
            continue
        lines.append(
            f"  {label:<29} {len(ms):>8} {rs.success:>7.1f}% "
            f"{percentile(ms, 50):>9.1f} {percentile(ms, 99):>9.1f}"
        )
    return lines


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Observation:
    metrics: dict[str, Metrics]  # sidecar (orders, payments) -> its /metrics
    refused: dict[str, int]  # destination -> the calls its breaker refused at once, so far
    cardnet: dict[str, Any]  # the stand-in's /_stats: what it served, so far
    events: tuple[str, ...]  # the cardnet breaker's events in payments' sidecar log, so far


def parse_metrics(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(m: Metrics, name: str, **labels: str) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def metric_sum(m: Metrics, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that have ``labels`` (and any others)."""
    want = set(labels.items())
    return sum(v for (n, have), v in m.items() if n == name and want <= have)


def counted(stats: dict[str, Any], key: str) -> Counter[str]:
    return Counter({k: int(v) for k, v in (stats.get(key) or {}).items()})


def counts_text(counts: Counter[str]) -> str:
    """``TLSv1.3 57`` or ``200 40, 503 5``; ``-`` when empty."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "-"


def versions_text(seen: Counter[str]) -> str:
    """``orders v1 183 (90.6%), v2 19 (9.4%) of 202 checkouts``."""
    total = sum(seen.values())
    names = ["v1", "v2", *sorted(set(seen) - {"v1", "v2"})]
    parts = [f"{v} {seen[v]} ({100 * seen[v] / total if total else 0:.1f}%)" for v in names]
    return f"orders {', '.join(parts)} of {total} checkouts"


def show_events(events: tuple[str, ...], most: int = 4) -> None:
    """Breaker events of cardnet from payments' sidecar log: the first ``most``."""
    if events:
        say(f"  payments' sidecar log ({EXTERNAL} breaker events):")
        for line in events[:most]:
            say(f"    {line}")
        if len(events) > most:
            say(f"    ... and {len(events) - most} more")


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class TraceSpan:
    """A span of a trace as the demo shows it (from the collector's Jaeger API; µs)."""

    span_id: str
    parent_id: str | None
    follows_from: bool
    service: str
    sidecar: bool  # recorded by the service's sidecar (else by its app)
    label: str  # "sidecar POST place-order → orders CLIENT", "POST /send SERVER"
    start: float
    end: float
    events: tuple[tuple[str, dict[str, Any]], ...]  # (name, attributes), in order
    status: Any  # http.response.status_code, if any
    error: str | None  # error.type: the status code, or why the mesh answered itself


def span_label(name: str, tags: dict[str, Any], sidecar: bool) -> str:
    """What a span is: by whom (a sidecar, or the app), its name, where a call goes (an
    attempt goes where its call does), its kind."""
    kind = str(tags.get("span.kind", "")).upper()
    label = name
    attempt = tags.get("seawall.attempt")
    if attempt is not None:
        label += f" attempt {attempt}"
    elif kind == "CLIENT":
        destination = tags.get("seawall.destination") or tags.get("server.address")
        if destination:
            label += f" → {destination}"
    return f"{'sidecar ' if sidecar else ''}{label} {kind}".strip()


def jaeger_spans(trace: dict[str, Any]) -> dict[str, TraceSpan]:
    """The spans of one trace of Jaeger's UI model (``/api/traces``), by id."""
    services = {pid: p.get("serviceName", "?") for pid, p in trace.get("processes", {}).items()}
    spans = {}
    for span in trace.get("spans", []):
        tags = {t["key"]: t.get("value") for t in span.get("tags", [])}
        refs = span.get("references") or []
        parent = refs[0] if refs else None
        events = []
        for log in span.get("logs") or []:
            fields_ = {f["key"]: f.get("value") for f in log.get("fields", [])}
            events.append((str(fields_.pop("event", "?")), fields_))
        start = float(span["startTime"])
        sidecar = tags.get("otel.scope.name") == "seawall-sidecar"
        error = tags.get("error.type")
        spans[span["spanID"]] = TraceSpan(
            span_id=span["spanID"],
            parent_id=None if parent is None else parent["spanID"],
            follows_from=parent is not None and parent.get("refType") == "FOLLOWS_FROM",
            service=services.get(span.get("processID"), "?"),
            sidecar=sidecar,
            label=span_label(span.get("operationName", "?"), tags, sidecar),
            start=start,
            end=start + float(span.get("duration", 0)),
            events=tuple(events),
            status=tags.get("http.response.status_code"),
            error=None if error is None else str(error),
        )
    return spans


def is_policy_event(name: str) -> bool:
    """A decision of the mesh: every ``seawall.*`` event but the deadline a request came with."""
    return name.startswith("seawall.") and name != "seawall.deadline"


@dataclass(frozen=True)
class CheckoutTrace:
    """One checkout's trace, read from the collector."""

    trace_id: str
    spans: dict[str, TraceSpan]
    ui: str  # its page in the collector's UI

    @property
    def duration_ms(self) -> float:
        """How long the checkout took: its root span (the edge sidecar's)."""
        roots = [s for s in self.spans.values() if s.parent_id not in self.spans]
        root = min(roots, key=lambda s: s.start, default=None)
        return 0.0 if root is None else (root.end - root.start) / 1000

    def has_event(self, name: str, service: str) -> bool:
        """Whether ``name`` is an event on a span of ``service``."""
        return any(
            event == name
            for s in self.spans.values()
            if s.service == service
            for event, _ in s.events
        )

    def path(self) -> list[tuple[TraceSpan, float]]:
        """The critical path: the spans it waited on, in the order first waited on, each
        with its self time on the path (ms)."""
        sections = critical_path(
            TimedSpan(s.span_id, s.parent_id, s.start, s.end, s.follows_from)
            for s in self.spans.values()
        )
        totals = self_times(sections)
        order: dict[str, None] = {}
        for section in reversed(sections):  # latest first: the earliest is the root's
            order.setdefault(section.span_id)
        return [(self.spans[span_id], totals[span_id] / 1000) for span_id in order]

    def bottleneck(self) -> TraceSpan | None:
        """The span the critical path waited on longest."""
        path = self.path()
        return max(path, key=lambda p: p[1])[0] if path else None

    def policy_events(self) -> list[tuple[TraceSpan, str]]:
        """The mesh's decisions recorded on the trace, in time order: the policies' events,
        and the answers a sidecar made itself (a timeout: ``error.type`` says why)."""
        found = []
        for span in sorted(self.spans.values(), key=lambda s: s.start):
            found += [
                (span, event_text(n, attrs)) for n, attrs in span.events if is_policy_event(n)
            ]
            if span.sidecar and span.error is not None and not span.error.isdigit():
                found.append((span, answer_text(span)))
        return found


def possessive(name: str) -> str:
    """``orders'``, ``gateway's``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def event_text(name: str, attrs: dict[str, Any]) -> str:
    """``seawall.breaker.rejected (state open)``."""
    shown = [f"{k.removeprefix('seawall.').split('.')[-1]} {v}" for k, v in attrs.items()]
    return name + (f" ({', '.join(shown)})" if shown else "")


def answer_text(span: TraceSpan) -> str:
    """``timeout: answered 504 (the caller's deadline: 499 ms)``: why a sidecar answered, and
    on an inbound span, the deadline the caller gave it (what it enforced)."""
    text = f"{span.error}: " + (f"answered {span.status}" if span.status else "no response")
    left = [a.get("seawall.deadline.left_ms") for n, a in span.events if n == "seawall.deadline"]
    if span.label.endswith(" SERVER") and left and left[0] is not None:
        text += f" (the caller's deadline: {float(left[0]):.0f} ms)"
    return text


# --------------------------------------------------------------------------- the demo


def percent(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def slo_lines(doc: dict[str, Any]) -> list[str]:
    """``GET /v1/slos`` as a small table: each objective's SLI, budget left and events."""
    rows = [("OBJECTIVE", "TARGET", "SLI", "BUDGET LEFT", "EVENTS (BAD)")]
    for o in doc.get("objectives", []):
        left = o.get("budget_remaining")
        events = o.get("events") or {}
        rows.append((
            str(o.get("name")),
            f"{o.get('target')}%",
            percent(o.get("sli"), 3),
            percent(None if left is None else 100 * left, 1),
            f"{events.get('total', 0):.0f} ({events.get('bad', 0):.0f})",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def say_notices(title: str, notices: list[Notice]) -> None:
    say(f"  {title}:")
    for n in notices:
        say(f"    {n.text()}")
    if not notices:
        say("    none")


@dataclass(frozen=True)
class Notice:
    """One alert of a webhook the demo received: when (demo seconds), in which phase."""

    at: float
    phase: str
    status: str  # firing or resolved
    labels: dict[str, str]

    def text(self) -> str:
        labels = self.labels
        return (
            f"[{self.at:5.1f}s] {self.status.upper():<8} {labels.get('alertname')}"
            f" slo={labels.get('slo')} objective={labels.get('objective')}"
            f" severity={labels.get('severity')} windows {labels.get('long')}/"
            f"{labels.get('short')} (during {self.phase})"
        )


class AlertInbox:
    """The demo's webhook receiver, on loopback: what the control plane sends to
    ``alerting.webhooks``, in Alertmanager's JSON (any Alertmanager receiver takes it)."""

    def __init__(self, phase: Callable[[], str]) -> None:
        self.notices: list[Notice] = []
        self.payloads = 0
        self.url = ""
        self._phase = phase
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/alerts"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        doc = await request.json()
        self.payloads += 1
        for alert in doc.get("alerts", []):
            labels = {str(k): str(v) for k, v in alert.get("labels", {}).items()}
            at = time.monotonic() - T0
            self.notices.append(Notice(at, self._phase(), str(alert.get("status")), labels))
        return web.Response(text="ok\n")

    def of(self, slo: str, status: str | None = None) -> list[Notice]:
        return [
            n for n in self.notices if n.labels.get("slo") == slo and status in (None, n.status)
        ]


class Demo:
    def __init__(
        self,
        config_path: Path,
        config: MeshConfig,
        sup: Supervisor,
        scratch: Path,
        up_state: Path | None = None,
    ):
        self.source = config_path  # mesh.yaml as committed
        self.config_path = config_path  # what is applied: a copy with cardnet's ca_file
        self.config = config
        self.sup = sup
        self.scratch = scratch
        self.up_state = up_state or scratch / "up"  # `seawall up`'s state directory
        self.state = self.up_state / "control"  # the control plane's, within it
        self.control_url = f"http://127.0.0.1:{CONTROL_PORT}"
        self.instances: dict[str, Instance] = {}  # as `seawall up` started them
        self.phase = "starting"
        self.client_stats: dict[str, dict[str, RouteStats]] = {}
        self.versions: dict[str, Counter[str]] = {}  # phase -> orders version -> checkouts
        # phase -> destination (payments, cardnet) -> breaker states sampled
        self.breaker_seen: dict[str, dict[str, Counter[str]]] = {}
        self.outstanding: dict[str, set[asyncio.Task[None]]] = {}
        self.connections: dict[str, tuple[int, int]] = {}  # sidecar -> inbound (mtls, plaintext)
        self.dropped = 0
        self.started: dict[str, float] = {}
        self.http = httpx.AsyncClient(trust_env=False, timeout=2.0)
        external = config.external[EXTERNAL]
        self.cardnet_host, self.cardnet_port = external.host, external.effective_port()
        self.cardnet_url = f"https://{self.cardnet_host}:{self.cardnet_port}"
        self.cardnet_http: httpx.AsyncClient | None = None  # trusts the stand-in's CA
        self.observed: dict[str, tuple[Observation, Observation, Any]] = {}  # phase -> report
        self.traces_host, self.traces_port = collector_address(config)
        self.traces_url = f"http://{self.traces_host}:{self.traces_port}"
        # phase -> its start and end in Unix seconds: the collector's API searches by those
        self.wall: dict[str, tuple[float, float]] = {}
        self.traced: dict[str, CheckoutTrace | None] = {}  # phase -> the checkout read
        self.inbox = AlertInbox(lambda: self.phase)
        self.slo_seen: dict[str, dict[str, Any]] = {}  # phase -> GET /v1/slos at its end
        self.rollouts: dict[str, dict[str, Any]] = {}  # phase -> the canary's rollout then
        self.resolved_after: float | None = None  # seconds from recovery to "resolved"
        self.suggested = ""

    def admin(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.instances[name].admin}{path}"

    def app(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.instances[name].port}{path}"

    async def seawall(self, *args: str) -> str:
        """An operator's command against this demo's control plane."""
        return await seawall(*args, "--state-dir", str(self.state))

    async def seawall_all(self, *commands: tuple[str, ...]) -> list[str]:
        """Several commands at once; every one is reaped (failed, or on Ctrl-C) before we go on."""
        answers = await asyncio.gather(
            *(self.seawall(*c) for c in commands), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return [str(answer) for answer in answers]

    # -- start ------------------------------------------------------------

    async def start(self) -> None:
        await self.inbox.start()
        await self.start_cardnet()
        argv = [sys.executable, "-m", "seawall", "up", "-f", str(self.config_path),
                "--state-dir", str(self.up_state), "--control-port", str(CONTROL_PORT),
                "--status-interval", "0",
                # the SLOs, at the demo's pace: every sidecar scraped each second, 5 s buckets
                "--slo-interval", SLO_INTERVAL, "--slo-resolution", SLO_RESOLUTION]  # fmt: skip
        up = self.sup.start("up", argv, stop_first=True)
        say(
            f"  {'up':<9} pid {up.process.pid:<7} seawall up -f {self.config_path}"
            f" (its state in {self.up_state}): the whole mesh from the file"
        )
        doc = await self.wait_up(up.process.pid)
        processes = doc["processes"]
        self.sup.up_group = int(doc["group"])
        self.sup.up_pids = [int(p["pid"]) for p in processes.values()]
        say(
            f"  {'control':<9} pid {processes['control']['pid']:<7} {self.control_url}, state in"
            f" {self.state}; traces at {self.traces_url} (OTLP /v1/traces, /api/, the UI /ui/)"
        )
        status = (await self.http.get(f"{self.control_url}/v1/status")).json()
        say(
            f"{stamp()} control plane up; seawall up applied {self.config_path}"
            f"   ({self.source}, external.{EXTERNAL}.ca_file set to the stand-in's CA,"
            f" tracing.interval {TRACE_INTERVAL}):"
        )
        say(
            f"    applied {self.config_path} as version {status['config_version']}"
            f" (digest {status['digest'][:12]})"
        )
        # seawall up minted one join token per service (orders v1 and v2 share orders'):
        # it lets a sidecar register an instance of that service and get its certificate
        say(f"{stamp()} seawall up minted a join token per service and started the shop:")
        for d in doc["instances"]:
            inst = Instance(d["name"], d["service"], d["subset"], d["app_port"], d["inbound"],
                            d["outbound"], d["admin"])  # fmt: skip
            self.instances[inst.name] = inst
            app, car = processes[f"app:{inst.name}"], processes[f"sidecar:{inst.name}"]
            say(
                f"  {inst.name:<9} app pid {app['pid']:<7} :{inst.port}   "
                f"sidecar pid {car['pid']:<7} "
                f"in :{inst.inbound} out :{inst.outbound} admin :{inst.admin}"
                + (f"   --subset {inst.subset}" if inst.subset else "")
            )
        version = await self.wait_mesh(1)
        say(
            f"{stamp()} all {len(self.sup.pids())} processes ready;"
            f" {len(self.instances)} of {len(self.instances)} sidecars registered with the"
            f" control plane, each running config version {version} from it"
        )

    async def wait_up(self, pid: int) -> dict[str, Any]:
        """``seawall up``'s ``up.json`` once everything it starts is ready (bounded)."""
        deadline = time.monotonic() + START_TIMEOUT
        path = self.up_state / "up.json"
        while True:
            self.sup.check_alive()
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(path.read_text())
                if isinstance(doc, dict) and doc.get("pid") == pid:
                    return doc
            if time.monotonic() > deadline:
                raise RuntimeError(f"seawall up not ready after {START_TIMEOUT:g} s")
            await asyncio.sleep(0.1)

    async def start_cardnet(self) -> None:
        """CardNet's stand-in: a throwaway CA and its certificate, the HTTPS server, and the
        copy of mesh.yaml (the one applied) whose ``external.cardnet.ca_file`` is that CA."""
        certs = cardnet.write_certificates(self.scratch / EXTERNAL, self.cardnet_host)
        source = self.source if self.source.is_absolute() else ROOT / self.source
        applied = write_ca_file(source, EXTERNAL, certs.ca, self.scratch / source.name)
        # ... whose spans reach the collector soon, to read a phase's trace right after it
        applied = write_tracing_interval(applied, TRACE_INTERVAL, applied)
        # ... and whose SLO alerts come to the demo's receiver
        self.config_path = write_alerting(applied, self.inbox.url, applied, source.parent)
        self.config = load_mesh(self.config_path)
        self.cardnet_http = httpx.AsyncClient(
            trust_env=False,
            timeout=2.0,
            verify=ssl.create_default_context(cafile=str(certs.ca)),
        )
        argv = ["--port", str(self.cardnet_port), "--cert", str(certs.cert)]
        argv += ["--key", str(certs.key)]
        child = self.sup.start(
            f"external:{EXTERNAL}", [sys.executable, "-m", "examples.shop.cardnet", *argv]
        )
        await wait_ready(self.sup, self.cardnet_http, {EXTERNAL: f"{self.cardnet_url}/health"})
        say(
            f"  {EXTERNAL:<9} pid {child.process.pid:<7} {self.cardnet_url}, the card network's"
            f" stand-in (outside the mesh); its certificate from a throwaway CA: {certs.ca}"
        )

    async def wait_mesh(self, version: int) -> int:
        """Wait until every sidecar runs ``version`` and every caller knows every instance."""
        deadline = time.monotonic() + ROLLOUT_TIMEOUT
        why: str | None = "no answer yet"
        while True:
            self.sup.check_alive()
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                why = await self.not_yet(version)
                if why is None:
                    return version
            if time.monotonic() > deadline:
                raise RuntimeError(f"the mesh is not on version {version}: {why}")
            await asyncio.sleep(0.05)

    async def not_yet(self, version: int) -> str | None:
        """What is not yet so of :meth:`wait_mesh`; None once everything is."""
        status = (await self.http.get(f"{self.control_url}/v1/status")).json()
        versions = sorted(s["config_version"] for s in status["sidecars"])
        if status["config_version"] != version or versions != [version] * len(self.instances):
            return f"sidecars at versions {versions} of {status['config_version']}"
        orders = {i.inbound for i in self.instances.values() if i.service == "orders"}
        expected = {  # caller -> destination -> the inbound ports of its instances
            "gateway": {"orders": orders, "login": {self.instances["login"].inbound}},
            **{
                name: {dest: {self.instances[dest].inbound} for dest in ("payments", "email")}
                for name, inst in self.instances.items()
                if inst.service == "orders"
            },
        }
        for caller, destinations in expected.items():
            clusters = await self.clusters(caller)
            for dest, ports in destinations.items():
                have = {e["port"] for e in clusters[dest]["endpoints"]}
                if have != ports:
                    return f"{caller}'s sidecar has {dest} at {sorted(have)}"
        return None

    async def show_mtls(self) -> None:
        """Every sidecar's certificate; a plaintext caller and a caller not allowed, refused."""
        registry, certs = await self.seawall_all(("services",), ("certs",))
        say(f"{stamp()} the registry (seawall services), where every caller's endpoints come from:")
        say(indent(registry))
        say(f"{stamp()} mTLS: each sidecar's certificate, from the mesh CA (seawall certs):")
        say(indent(certs))
        orders = self.instances["orders"]
        try:
            r = await self.http.post(
                f"http://127.0.0.1:{orders.inbound}/orders", json={"user": "mallory", "amount": 1}
            )
            verdict = f"ANSWERED {r.status_code} (mTLS is not enforced!)"
        except httpx.HTTPError as exc:
            verdict = f"refused ({type(exc).__name__}: closed before any answer)"
        metrics = parse_metrics((await self.http.get(self.admin("orders", "/metrics"))).text)
        refused = metric(metrics, "seawall_inbound_tls_refused_total", reason="plaintext")
        say(
            f"  plaintext request to orders' inbound :{orders.inbound}: {verdict};"
            f" orders' sidecar counts {refused:.0f} in"
            ' seawall_inbound_tls_refused_total{reason="plaintext"}'
        )
        # A service of the mesh, over mTLS, that payments does not allow: login.
        login = self.instances["login"]
        async with httpx.AsyncClient(
            proxy=f"http://127.0.0.1:{login.outbound}", trust_env=False, timeout=2.0
        ) as through_login:
            r = await through_login.post("http://payments/charge", json={"order": 0, "amount": 1})
        say(
            f"  login's sidecar → payments /charge (mTLS, as login): {r.status_code}"
            f" (x-seawall-denied: {r.headers.get('x-seawall-denied', '-')}):"
            f" payments allows orders only"
        )

    # -- load -------------------------------------------------------------

    async def warm_up(self) -> None:
        """A few checkouts and logins, one at a time, before the load. The first request
        through each app and sidecar pays for its connections, TLS handshakes and lazy
        set-up; at 40 requests/s, a burst of such first requests overruns the per-try
        timeouts and can trip a breaker in the "healthy" phase."""
        inbound = self.instances["gateway"].inbound
        seen: Counter[str] = Counter()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{inbound}", trust_env=False, timeout=CLIENT_TIMEOUT
        ) as client:
            for n in range(WARM_UP):
                for path in ("/checkout", "/login"):
                    try:
                        r = await client.post(path, json={"user": f"warm-up{n}", "amount": 42})
                        seen[str(r.status_code)] += 1
                    except httpx.HTTPError as exc:
                        seen[type(exc).__name__] += 1
        say(f"{stamp()} warm-up: {seen.total()} requests one at a time ({counts_text(seen)})")

    async def load(self, stop: asyncio.Event) -> None:
        """Open-loop load at RATE/s, bounded to MAX_OUTSTANDING requests in flight."""
        inbound = self.instances["gateway"].inbound
        limits = httpx.Limits(max_connections=MAX_OUTSTANDING, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{inbound}",
            trust_env=False,
            timeout=CLIENT_TIMEOUT,
            limits=limits,
        ) as client:
            loop = asyncio.get_running_loop()
            tick = loop.time()
            users = itertools.count(1)
            paths = itertools.cycle(("/checkout", "/login"))
            while not stop.is_set():
                path = next(paths)
                phase = self.phase
                running = self.outstanding.setdefault(phase, set())
                if sum(len(s) for s in self.outstanding.values()) < MAX_OUTSTANDING:
                    task = loop.create_task(self._one(client, phase, path, next(users)))
                    running.add(task)
                    task.add_done_callback(running.discard)
                else:
                    self.dropped += 1
                tick += 1.0 / RATE
                delay = tick - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                else:
                    tick = loop.time()  # fell behind: do not burst to catch up
                    await asyncio.sleep(0)
            await self.finish(None)

    async def _one(self, client: httpx.AsyncClient, phase: str, path: str, user: int) -> None:
        body: dict[str, Any] = {"user": f"user{user}"}
        if path == "/checkout":
            body["amount"] = 42
        start = time.perf_counter()
        version = None
        try:
            response = await client.post(path, json=body)
            status = response.status_code
            if path == "/checkout" and 200 <= status < 300:
                with contextlib.suppress(ValueError, AttributeError):
                    version = response.json().get("version")  # which orders answered
        except httpx.HTTPError:
            status = 0
        self.client_stats.setdefault(phase, {}).setdefault(path, RouteStats()).add(
            status, time.perf_counter() - start
        )
        if version is not None:
            self.versions.setdefault(phase, Counter())[str(version)] += 1

    async def finish(self, phase: str | None) -> None:
        """Wait (bounded) for the requests sent in ``phase`` (None: all) to finish."""
        tasks = [t for p, s in self.outstanding.items() if phase in (None, p) for t in s]
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT + 1.0)

    # -- observing ---------------------------------------------------------

    async def control(self, modes: dict[str, str]) -> None:
        """Every app's mode, and the stand-in's, for the next phase (``ok`` unless given)."""
        for name, inst in self.instances.items():
            mode = modes.get(name, modes.get(inst.service, "ok"))
            r = await self.http.get(self.app(name, "/_control"), params={"mode": mode})
            r.raise_for_status()
        assert self.cardnet_http is not None
        params = {"mode": modes.get(EXTERNAL, "ok")}
        r = await self.cardnet_http.get(f"{self.cardnet_url}/_control", params=params)
        r.raise_for_status()

    def begin(self, phase: str) -> None:
        self.started[phase] = time.monotonic()
        self.wall[phase] = (time.time(), math.inf)  # Unix time: what the traces API takes
        self.phase = phase

    async def app_stats(self, start: float, end: float) -> dict[tuple[str, str], RouteStats]:
        """What gateway, orders (both versions) and payments saw of their calls in
        ``start``..``end``."""
        out: dict[tuple[str, str], RouteStats] = {}
        for name, inst in self.instances.items():
            if inst.service not in ("gateway", "orders", "payments"):
                continue
            doc = (await self.http.get(self.app(name, "/_stats"))).json()
            for key, calls in doc.items():
                rs = out.setdefault((inst.service, key), RouteStats())
                for started, seconds, status in calls:
                    if start <= started < end:
                        rs.add(status, seconds)
        return out

    async def observe(self) -> Observation:
        """Now: the /metrics of orders' (v1) and payments' sidecars, each watched breaker's
        refusals from its sidecar's /clusters, and what the stand-in served."""
        metrics, refused = {}, {}
        for dest, sidecar in BREAKERS:
            text = (await self.http.get(self.admin(sidecar, "/metrics"))).text
            metrics[sidecar] = parse_metrics(text)
            breaker = (await self.clusters(sidecar))[dest]["breaker"] or {}
            refused[dest] = breaker.get("not_permitted_calls", 0)
        assert self.cardnet_http is not None
        served = (await self.cardnet_http.get(f"{self.cardnet_url}/_stats")).json()
        return Observation(metrics, refused, served, self.breaker_events("payments", EXTERNAL))

    async def clusters(self, sidecar: str) -> dict[str, Any]:
        doc = (await self.http.get(self.admin(sidecar, "/clusters"))).json()
        return {c["name"]: c for c in doc["clusters"]}

    async def watch_breaker(self, stop: asyncio.Event) -> None:
        """Sample the payments breaker of orders' sidecar and the cardnet breaker of
        payments' sidecar, to report the states seen."""
        while not stop.is_set():
            for dest, sidecar in BREAKERS:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    breaker = (await self.clusters(sidecar))[dest]["breaker"]
                    if breaker is not None:
                        seen = self.breaker_seen.setdefault(self.phase, {})
                        seen.setdefault(dest, Counter())[breaker["state"]] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    def breaker_events(self, sidecar: str, destination: str) -> tuple[str, ...]:
        """The events of ``destination``'s breaker in ``sidecar``'s log so far
        (``... payments breaker_opened destination=cardnet from=closed ...``)."""
        log = self.up_state / "logs" / f"sidecar-{sidecar}.log"  # as `seawall up` keeps it
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return ()
        mark = re.compile(rf" breaker_\w+ destination={re.escape(destination)}(?:\s|$)")
        return tuple(line.strip() for line in lines if mark.search(line))

    async def read_trace(self, phase: str) -> CheckoutTrace | None:
        """One checkout of ``phase``, from the collector (:data:`TRACED` says which); read
        again until its spans stop arriving (bounded). None if the collector has none."""
        search = TRACED[phase]
        start, end = self.wall[phase]
        params = {
            "service": search.service,
            "operation": search.operation,
            "start": str(int(start * 1e6)),  # Jaeger's API: Unix microseconds
            "end": str(int(end * 1e6)),
            "limit": "200",  # more than a phase has checkouts
        }
        if search.min_share is not None:
            timeout = self.config.policy_for("email").timeout
            params["minDuration"] = f"{search.min_share * timeout * 1000:.0f}ms"
        found = [self.checkout_trace(t) for t in await self.jaeger("/api/traces", params)]
        if search.event is not None:
            found = sorted(
                (t for t in found if t.has_event(search.event, search.service)),
                key=lambda t: t.duration_ms,
            )
            picked = found[len(found) // 2] if found else None
        else:
            picked = max(found, key=lambda t: t.duration_ms, default=None)
        if picked is None:
            return None
        # Read it by its id until a look finds no new span (every exporter has sent its own).
        count, trace = len(picked.spans), None
        deadline = time.monotonic() + TRACE_SETTLE
        while True:
            await asyncio.sleep(TRACE_POLL)
            again = await self.jaeger(f"/api/traces/{picked.trace_id}")
            trace = self.checkout_trace(again[0]) if again else trace
            if trace is None or len(trace.spans) == count or time.monotonic() > deadline:
                return trace
            count = len(trace.spans)

    async def jaeger(self, path: str, params: dict[str, str] | None = None) -> list[Any]:
        """The traces of a Jaeger API answer (``data``); none if the collector failed."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            r = await self.http.get(f"{self.traces_url}{path}", params=params, timeout=5.0)
            if r.status_code == 200:
                return list(r.json()["data"] or [])
        return []

    def checkout_trace(self, doc: dict[str, Any]) -> CheckoutTrace:
        trace_id = str(doc["traceID"])
        ui = f"{self.traces_url}/ui/#/trace/{trace_id}"
        return CheckoutTrace(trace_id, jaeger_spans(doc), ui)

    def trace_lines(self, trace: CheckoutTrace | None) -> list[str]:
        """One checkout, from its trace alone: where it is, what it waited on, what the
        mesh decided on the way."""
        if trace is None:
            return ["  one checkout from its trace: none found in the collector"]
        path = trace.path()
        lines = [
            f"  one checkout from its trace ({len(trace.spans)} spans,"
            f" {trace.duration_ms:.1f} ms): {trace.ui}",
            "    critical path (what it waited on, in order; self time):",
        ]
        worst = trace.bottleneck()
        width = max((len(span.label) for span, _ in path), default=0)
        for span, ms in path:
            mark = "   <- bottleneck" if span is worst else ""
            lines.append(f"      {span.service:<9} {span.label:<{width}} {ms:8.1f} ms{mark}")
        events = trace.policy_events()
        lines.append(f"    the mesh's decisions on the trace: {len(events) or 'none'}")
        for span, text in events[:6]:
            lines.append(f"      {span.service:<9} {span.label}: {text}")
        if len(events) > 6:
            lines.append(f"      ... and {len(events) - 6} more")
        return lines

    async def count_connections(self) -> None:
        """Every sidecar's inbound connections so far, by transport (its /metrics)."""
        for name in self.instances:
            m = parse_metrics((await self.http.get(self.admin(name, "/metrics"))).text)
            self.connections[name] = (
                round(metric(m, "seawall_inbound_connections_total", transport="mtls")),
                round(metric(m, "seawall_inbound_connections_total", transport="plaintext")),
            )

    def sidecar_lines(
        self, phase: str, first: Observation, last: Observation, hops: Any
    ) -> list[str]:
        def delta(sidecar: str, name: str, **labels: str) -> int:
            now, then = last.metrics[sidecar], first.metrics[sidecar]
            return round(metric_sum(now, name, **labels) - metric_sum(then, name, **labels))

        def breaker(dest: str, sidecar: str) -> str:
            """``opened 1x, closed 0x, seen closed, open``, from /metrics and /clusters."""
            moved = "seawall_breaker_transitions_total"
            opened = delta(sidecar, moved, destination=dest, to_state="open")
            closed = delta(sidecar, moved, destination=dest, to_state="closed")
            seen = self.breaker_seen.get(phase, {}).get(dest, Counter())
            seen_text = ", ".join(s for s in ("closed", "open", "half_open") if seen[s]) or "-"
            return f"opened {opened}x, closed {closed}x, seen {seen_text}"

        requests = "seawall_requests_total"
        failed = delta(
            "orders",
            requests,
            direction="outbound",
            destination="payments",
            route="charge",
            status_class="5xx",
        )
        retries, exhausted = "seawall_retries_total", "seawall_retry_budget_exhausted_total"
        email = hops.get(("orders", "email /send"), RouteStats())
        timed_out = sum(1 for s in email.statuses if s == 504)
        overflow = {
            limit: delta("orders", "seawall_overflow_total", destination="email", limit=limit)
            for limit in ("in_flight", "pending", "connections")
        }
        bh = self.config.policy_for("email").bulkhead
        # payments' sidecar, of its calls to CardNet; and what CardNet served
        calls = delta("payments", requests, direction="outbound", destination=EXTERNAL)
        calls_failed = delta(
            "payments", requests, direction="outbound", destination=EXTERNAL, status_class="5xx"
        )
        tls_failures = delta(
            "payments", "seawall_upstream_tls_failures_total", destination=EXTERNAL, reason="origin"
        )
        served = {
            key: counted(last.cardnet, key) - counted(first.cardnet, key)
            for key in ("statuses", "tls", "sni", "hosts")
        }
        handshakes = last.cardnet["handshake_failures"] - first.cardnet["handshake_failures"]
        return [
            "  orders' sidecar (/metrics, /clusters):",
            f"    payments breaker: {breaker('payments', 'orders')};"
            f" {failed} charges failed,"
            f" {last.refused['payments'] - first.refused['payments']} attempts refused at once"
            " while open",
            f"    payments retries {delta('orders', retries, destination='payments')},"
            f" not retried for want of budget {delta('orders', exhausted, destination='payments')}",
            f"    email overflow {sum(overflow.values())} (in_flight {overflow['in_flight']},"
            f" pending {overflow['pending']}; limits {bh.max_in_flight} in flight,"
            f" {bh.max_pending} pending), timed out {timed_out}"
            f" (after {self.config.policy_for('email').timeout * 1000:.0f} ms)",
            f"  payments' sidecar → {EXTERNAL} (external, TLS to"
            f" {self.cardnet_host}:{self.cardnet_port}):",
            f"    {EXTERNAL} breaker: {breaker(EXTERNAL, 'payments')}; {calls} calls,"
            f" {calls_failed} failed,"
            f" {last.refused[EXTERNAL] - first.refused[EXTERNAL]} refused at once while open;"
            f" TLS failures {tls_failures}",
            f"  {EXTERNAL} (the stand-in) served {sum(served['statuses'].values())} requests"
            + (
                f" ({counts_text(served['statuses'])}), every one over TLS:"
                f" {counts_text(served['tls'])}; SNI {counts_text(served['sni'])};"
                f" Host {counts_text(served['hosts'])}"
                if sum(served["statuses"].values())
                else ""
            )
            + f"; handshakes failed {handshakes}",
        ]

    def report(
        self, index: int, phase: Phase, hops: Any, before: Observation, after: Observation
    ) -> None:
        self.observed[phase.title] = (before, after, hops)
        stats = dict(hops)
        for path, rs in self.client_stats.get(phase.title, {}).items():
            stats[("client", path)] = rs
        say()
        began, ended = self.wall[phase.title]
        say(f"== phase {index}/{len(PHASES)}: {phase.title} ({ended - began:.0f} s): {phase.story}")
        for line in table(stats):
            say(line)
        seen = self.versions.get(phase.title)
        if seen:
            say(f"  checkouts answered by {versions_text(seen)}")
        for line in self.sidecar_lines(phase.title, before, after, hops):
            say(line)
        show_events(after.events[len(before.events) :])
        if phase.title in self.traced:
            for line in self.trace_lines(self.traced[phase.title]):
                say(line)

    # -- the story --------------------------------------------------------

    async def run(self) -> None:
        await self.start()
        await self.show_mtls()
        await self.warm_up()
        say(f"{stamp()} load: {RATE:.0f} req/s into the gateway's sidecar, /checkout and /login")
        stop = asyncio.Event()
        loader = asyncio.create_task(self.load(stop))
        watcher = asyncio.create_task(self.watch_breaker(stop))
        try:
            before = await self.observe()
            for index, phase in enumerate(PHASES, 1):
                if phase.title == "recovery":
                    await self.settle()
                    before = await self.observe()
                elif phase.split is not None:
                    await self.rollout(phase)
                    before = await self.observe()
                if self.phase != phase.title:
                    await self.control(phase.modes)
                    self.begin(phase.title)
                say(f"{stamp()} phase {index}: {phase.title}: {phase.story}")
                await self.hold(phase)
                ended = time.monotonic()
                self.wall[phase.title] = (self.wall[phase.title][0], time.time())
                self.phase = "between"
                if loader.done():
                    loader.result()  # raise what stopped the load
                self.sup.check_alive()
                after = await self.observe()
                # the budgets as the phase ends (the next one begins at once)
                slos = await self.http.get(f"{self.control_url}/v1/slos")
                self.slo_seen[phase.title] = slos.json()
                following = PHASES[index] if index < len(PHASES) else None
                if following is not None and following.title != "recovery" and not following.split:
                    await self.control(following.modes)
                    self.begin(following.title)  # the load goes on without a gap
                await self.finish(phase.title)
                hops = await self.app_stats(self.started[phase.title], ended)
                if phase.title in TRACED:
                    self.traced[phase.title] = await self.read_trace(phase.title)
                self.report(index, phase, hops, before, after)
                await self.slo_story(phase)
                before = after
            await self.count_connections()
            self.suggested = await self.seawall(
                "slo", "suggest", "gateway", "--route", "/checkout", "-f", str(self.config_path)
            )
            say()
            say(
                f"{stamp()} a realistic objective for checkout, from what the traces saw"
                " (seawall slo suggest gateway --route /checkout):"
            )
            say(indent(self.suggested))
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(loader, watcher), CLIENT_TIMEOUT + 2.0)
            await self.http.aclose()
            await self.inbox.stop()
        self.summary()

    async def rollout(self, phase: Phase) -> None:
        """Apply mesh.yaml with the phase's split (load on); wait for every sidecar to run it."""
        assert phase.split is not None
        self.begin(f"rollout: {phase.title}")  # requests meanwhile count in no phase
        original = next(
            r.split for r in self.config.policy_for("orders").routes if r.name == "place-order"
        )
        if original == {k: float(v) for k, v in phase.split.items()} and not phase.progressive:
            path = self.config_path  # the original file, as it is
        else:
            slug = phase.title.replace(" ", "-")
            dest = self.scratch / f"mesh-{slug}.yaml"
            path = write_split(self.config_path, phase.split, dest, phase.progressive)
        spelled = ", ".join(f"{k}: {v}" for k, v in phase.split.items())
        if phase.progressive:
            p = phase.progressive
            steps = ", ".join(map(str, p["steps"]))
            spelled += (
                f"}}, progressive {{canary: {p['canary']}, steps: [{steps}],"
                f" interval: {p['interval']}, min_events: {p['min_events']}"
            )
        say()
        say(f"{stamp()} {phase.title}: seawall apply -f {path}   (place-order split {{{spelled}}})")
        applied = await self.seawall("apply", "-f", str(path))
        say(indent(applied))
        found = re.search(r"as version (\d+)", applied)
        if found is None:
            raise RuntimeError(f"seawall apply stored no new version: {applied.strip()}")
        start = time.monotonic()
        version = await self.wait_mesh(int(found.group(1)))
        took = time.monotonic() - start
        pushed = (await self.http.get(self.admin("gateway", "/config"))).json()
        routes = pushed["config"]["policies"]["orders"]["routes"]
        split = next(r["split"] for r in routes if r["name"] == "place-order")
        say(
            f"{stamp()} every sidecar runs version {version} ({took:.2f} s after the apply);"
            f" the gateway's sidecar splits place-order"
            f" {', '.join(f'{k} {v:g}%' for k, v in split.items())} (its /config)"
        )
        if phase.title == "canary":
            say("  seawall status:")
            say(indent(await self.seawall("status")))

    # -- the SLO stories ----------------------------------------------------

    async def hold(self, phase: Phase) -> None:
        """The phase's length; a phase waiting on the canary ends once its rollout got
        there (``advanced``: a step up; ``rolled_back``), or after ``seconds`` at most."""
        if phase.until is None:
            await asyncio.sleep(phase.seconds)
            return
        deadline = time.monotonic() + phase.seconds
        while time.monotonic() < deadline:
            rollout = await self.rollout_status()
            actions = [d["action"] for d in (rollout or {}).get("decisions", [])]
            if rollout is not None and (
                (phase.until == "advanced" and "advance" in actions)
                or (phase.until == "rolled_back" and rollout["phase"] == "rolled_back")
            ):
                await asyncio.sleep(1.0)  # the load goes on a moment at the new weights
                return
            await asyncio.sleep(0.25)

    async def rollout_status(self) -> dict[str, Any] | None:
        """The place-order rollout in ``GET /v1/status``, if there is one."""
        status = (await self.http.get(f"{self.control_url}/v1/status")).json()
        for r in status.get("rollouts") or []:
            if r["destination"] == "orders" and r["route"] == "place-order":
                return dict(r)
        return None

    async def slo_story(self, phase: Phase) -> None:
        """What the SLOs say after a phase: the budgets (login's, while email hung), the
        alerts received, the resolution after recovery, the canary's decisions."""
        if phase.title == "email hangs":
            say("  the budgets as it ended (GET /v1/slos, as `seawall slo` shows them): login's")
            say("  untouched, the bulkhead told as budget; checkouts waited on email, slowly")
            for line in slo_lines(self.slo_seen.get(phase.title, {})):
                say(f"    {line}")
        if phase.title == "payments fails":
            fired = self.inbox.of("checkout", "firing")
            say_notices(f"alerts received by the demo's webhook ({self.inbox.url}), so far", fired)
        if phase.title == "recovery":
            await self.await_resolution()
        if phase.title in ("progressive canary", "canary fails"):
            rollout = await self.rollout_status()
            if rollout is not None:
                self.rollouts[phase.title] = rollout
                weights = ", ".join(f"{k} {v:g}%" for k, v in rollout["weights"].items())
                say(f"  the rollout (seawall status): {rollout['phase']}, weights {weights}")
                for d in rollout["decisions"]:
                    say(f"    {d['action']:<8} {d['reason']}")

    async def await_resolution(self) -> None:
        """Wait (bounded) for checkout's firing alerts to resolve, the load on."""
        start = time.monotonic()
        while time.monotonic() - start < RESOLVE_TIMEOUT:
            firing = {n.labels.get("objective") for n in self.inbox.of("checkout", "firing")}
            resolved = {n.labels.get("objective") for n in self.inbox.of("checkout", "resolved")}
            if not firing or firing <= resolved:
                break
            await asyncio.sleep(0.25)
        self.resolved_after = time.monotonic() - start
        say_notices(
            f"alerts resolved ({self.resolved_after:.1f} s after the recovery phase ended)",
            self.inbox.of("checkout", "resolved"),
        )

    async def settle(self) -> None:
        """Clear the faults, keep the load on, and wait for both breakers to close: payments
        in orders' sidecar, cardnet in payments' sidecar."""
        await self.control({})
        self.begin("settling")
        start = time.monotonic()
        states = {dest: "?" for dest, _ in BREAKERS}
        while time.monotonic() - start < SETTLE_TIMEOUT:
            for dest, sidecar in BREAKERS:
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                    states[dest] = (await self.clusters(sidecar))[dest]["breaker"]["state"]
            if all(state == "closed" for state in states.values()):
                break
            await asyncio.sleep(0.1)
        took = time.monotonic() - start
        await self.finish("settling")
        checkouts = self.client_stats.get("settling", {}).get("/checkout", RouteStats())
        failed = sum(1 for s in checkouts.statuses if not 200 <= s < 300)
        breakers = ", ".join(f"{dest} breaker {states[dest]}" for dest, _ in BREAKERS)
        say()
        say(
            f"{stamp()} faults cleared: {breakers} after {took:.1f} s "
            f"({failed} of {len(checkouts.statuses)} checkouts failed meanwhile)"
        )
        last = list(self.observed.values())[-1][1] if self.observed else None
        events = self.breaker_events("payments", EXTERNAL)
        show_events(events[len(last.events) if last else 0 :])
        self.begin("recovery")

    def summary(self) -> None:
        email_phase = self.client_stats.get("email hangs", {})
        pay_phase = self.client_stats.get("payments fails", {})
        login = email_phase.get("/login", RouteStats())
        slow_checkout = email_phase.get("/checkout", RouteStats())
        checkout = pay_phase.get("/checkout", RouteStats())
        fails = [t * 1000 for t in checkout.failures_fast()]
        seen = self.breaker_seen.get("payments fails", {}).get("payments", Counter())
        rec = RouteStats()
        for rs in self.client_stats.get("recovery", {}).values():
            rec.latencies += rs.latencies
            rec.statuses += rs.statuses
        email_timeout = self.config.policy_for("email").timeout * 1000
        canary = self.versions.get("canary", Counter())
        back = self.versions.get("shift back", Counter())
        n = sum(canary.values())
        sd = 100 * math.sqrt(0.1 * 0.9 / n) if n else float("nan")
        edge = self.connections.get("gateway", (0, 0))
        inside = {k: v for k, v in self.connections.items() if k != "gateway"}

        def p(rs: RouteStats, q: float) -> float:
            return percentile([t * 1000 for t in rs.latencies], q)

        say()
        say("== what it shows")
        each = ", ".join(
            f"{k} {m}" + (f" + {t} PLAINTEXT" if t else "") for k, (m, t) in inside.items()
        )
        say(
            f"  mTLS: the sidecars behind the edge accepted {sum(m for m, _ in inside.values())}"
            f" inbound connections over mTLS and {sum(t for _, t in inside.values())} in plaintext"
            f" ({each}); the gateway's sidecar, the edge, took {edge[1]} in plaintext from the"
            f" load (outside the mesh) and {edge[0]} over mTLS"
        )
        say(
            f"  canary: v2 answered {canary['v2']} of {n} checkouts"
            f" ({100 * canary['v2'] / n if n else 0:.1f}%; the split asks 10%,"
            f" give or take {sd:.1f} points by chance at this count);"
            f" after the shift back, {back['v2']} of {sum(back.values())}"
        )
        say(
            f"  while email hung:  login {login.success:.1f}% ok, p99 {p(login, 99):.1f} ms;"
            f" checkout {slow_checkout.success:.1f}% ok (email deferred),"
            f" p99 {p(slow_checkout, 99):.0f} ms (email timeout {email_timeout:.0f} ms)"
        )
        say(
            f"  while payments failed:  checkout {checkout.success:.1f}% ok, failures p50"
            f" {percentile(fails, 50):.1f} ms; payments breaker seen open:"
            f" {'yes' if seen['open'] else 'no'} (orders failed fast)"
        )
        for line in self.cardnet_summary():
            say(line)
        for line in self.trace_summary():
            say(line)
        say(f"  after recovery:  {rec.success:.1f}% ok of {len(rec.statuses)} requests")
        for line in self.slo_summary():
            say(line)
        if self.dropped:
            say(f"  (the load loop skipped {self.dropped} requests: too many in flight)")

    def slo_summary(self) -> list[str]:
        """What the SLOs told: checkout's alert, login's budget, the canary's rollback."""
        lines = []
        fired = self.inbox.of("checkout", "firing")
        resolved = self.inbox.of("checkout", "resolved")
        if fired:
            first = fired[0]
            text = (
                f"  SLO checkout: the page alert ({first.labels.get('objective')}, burn >="
                f" {DEMO_ALERT['burn_rate']}x over {DEMO_ALERT['long']} and"
                f" {DEMO_ALERT['short']}) fired at {first.at:.1f} s, during {first.phase};"
            )
            if resolved:
                text += f" resolved at {resolved[-1].at:.1f} s, after the recovery"
            else:
                text += " NOT RESOLVED"
            lines.append(text + f" ({self.inbox.payloads} webhook deliveries received)")
        else:
            lines.append("  SLO checkout: NO ALERT FIRED")
        while_email = self.slo_seen.get("email hangs", {}).get("objectives", [])
        login = next((o for o in while_email if o.get("name") == "login:availability"), None)
        if login is not None:
            sli, left = login.get("sli"), login.get("budget_remaining")
            lines.append(
                f"  SLO login while email hung: SLI {percent(sli, 2)},"
                f" budget left {percent(None if left is None else 100 * left, 1)}"
                " (the bulkhead, told as budget)"
            )
        final = self.rollouts.get("canary fails")
        if final is not None:
            rolled = [d for d in final["decisions"] if d["action"] == "rollback"]
            steps = [d for d in final["decisions"] if d["action"] == "advance"]
            lines.append(
                f"  progressive canary of orders v2: {len(steps)} step(s) up while healthy, then "
                + (
                    f"rolled back by the control plane: {rolled[-1]['reason']}"
                    if rolled
                    else f"NOT ROLLED BACK (phase {final['phase']})"
                )
            )
        return lines

    def trace_summary(self) -> list[str]:
        """What the two checkouts read from the collector answer, from their traces alone."""
        lines = []
        slow = self.traced.get("email hangs")
        worst = slow.bottleneck() if slow is not None else None
        if slow is not None and worst is not None:
            waited = {span.span_id: ms for span, ms in slow.path()}[worst.span_id]
            lines.append(
                f"  from its trace alone, a slow checkout while email hung: it waited"
                f" {waited:.0f} of its {slow.duration_ms:.0f} ms on {worst.service}"
                f" ({worst.label}), the bottleneck"
            )
        failed = self.traced.get("payments fails")
        refused = [
            (span, text)
            for span, text in (failed.policy_events() if failed is not None else [])
            if text.startswith("seawall.breaker.rejected")
        ]
        if refused:
            span, text = refused[0]
            lines.append(
                f"  from its trace alone, a failed checkout while payments failed:"
                f" {possessive(span.service)} sidecar refused the charge ({text}):"
                " the breaker answered for payments"
            )
        return lines

    def cardnet_summary(self) -> list[str]:
        """While CardNet was down, and over the whole run: its breaker, and TLS."""
        down = self.client_stats.get("cardnet down", {})
        checkout, login = down.get("/checkout", RouteStats()), down.get("/login", RouteStats())
        fails = [t * 1000 for t in checkout.failures_fast()]
        seen = self.breaker_seen.get("cardnet down", {})
        states = seen.get("payments", Counter())
        payments = ", ".join(s for s in ("closed", "open", "half_open") if states[s]) or "-"
        lines = []
        if "cardnet down" in self.observed:
            before, after, hops = self.observed["cardnet down"]
            tried = len(hops.get(("payments", f"{EXTERNAL} /charges"), RouteStats()).statuses)
            got = after.cardnet["requests"] - before.cardnet["requests"]
            lines.append(
                f"  while cardnet was down:  checkout {checkout.success:.1f}% ok, failures p50"
                f" {percentile(fails, 50):.1f} ms; cardnet breaker (payments' sidecar) seen"
                f" open: {'yes' if seen.get(EXTERNAL, Counter())['open'] else 'no'};"
                f" payments tried {tried} charges, CardNet got {got} (the rest refused at once);"
                f" orders' breaker on payments seen {payments} (payments answered);"
                f" login {login.success:.1f}% ok"
            )
        if self.observed:
            last = list(self.observed.values())[-1][1]
            tls = counted(last.cardnet, "tls")
            failures = metric_sum(
                last.metrics["payments"],
                "seawall_upstream_tls_failures_total",
                destination=EXTERNAL,
                reason="origin",
            )
            lines.append(
                f"  cardnet over TLS: the stand-in served {last.cardnet['requests']} requests"
                f" in all, {counts_text(tls)} (SNI {counts_text(counted(last.cardnet, 'sni'))},"
                f" Host {counts_text(counted(last.cardnet, 'hosts'))}); TLS failures of"
                f" payments' sidecar to it: {failures:.0f}"
            )
        return lines


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.mesh_demo", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--logs",
        type=Path,
        help="keep each process's output in this directory, and `seawall up`'s state in"
        " its up/ (default: discard)",
    )
    args = parser.parse_args()
    config_path: Path = args.config
    config = load_mesh(ROOT / config_path if not config_path.is_absolute() else config_path)
    if EXTERNAL not in config.external:
        say(f"{config_path}: no external.{EXTERNAL} (the card network payments calls)")
        return 1
    try:
        _, traces_port = collector_address(config)
    except ValueError as exc:
        say(f"{config_path}: {exc} (the demo serves the trace collector there)")
        return 1
    ports = [CONTROL_PORT, traces_port, config.external[EXTERNAL].effective_port()] + [
        port
        for svc in config.services.values()
        for port in (svc.port, svc.sidecar.inbound, svc.sidecar.outbound, svc.sidecar.admin)
    ]
    busy = busy_ports(ports)
    if busy:
        say(f"ports already in use on 127.0.0.1: {', '.join(map(str, busy))}: is a shop running?")
        return 1

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds into the finally below, which stops everything

    signal.signal(signal.SIGTERM, terminate)
    say(
        f"seawall mesh demo: the shop of {config_path}, every service beside its sidecar,"
        " under a control plane"
    )
    status = 0
    with tempfile.TemporaryDirectory(prefix="seawall-shop-") as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        sup = Supervisor(logs)
        try:
            # with --logs, `seawall up`'s state (its processes' logs in it) is kept there too
            up_state = args.logs / "up" if args.logs else None
            asyncio.run(Demo(config_path, config, sup, Path(scratch), up_state).run())
        except KeyboardInterrupt:
            say("\ninterrupted")
            status = 130
        except Exception as exc:
            say(f"\ndemo failed: {type(exc).__name__}: {exc}")
            for child in sup.children:
                say(f"  --- {child.name} log (last lines):\n{tail(child.log, 8)}")
            status = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
            left = sup.stop_all()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            every = sup.pids()
            pids = " ".join(map(str, every))
            if left:
                say(f"stopped {len(every)} processes; STILL RUNNING: {left}")
                status = status or 1
            else:
                say(f"stopped {len(every)} processes (pids {pids}); none remain")
    say(f"demo finished in {time.monotonic() - T0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
