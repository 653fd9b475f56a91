"""The shop behind its service mesh: break email, then payments, and watch the mesh hold.

``python -m examples.mesh_demo [--config examples/shop/mesh.yaml]`` starts the
shop of ``examples/shop`` on loopback, every service as its own process next
to its own ``seawall sidecar`` process::

    client ──► gateway ──► orders ──► payments
                  │           └─────► email
                  └──────► login

External clients (here, the demo's load generator) reach the gateway through
its sidecar's inbound listener; every service calls the others only through
its own sidecar's outbound listener, so the policies of ``mesh.yaml`` apply to
every hop. The demo drives about 40 requests/s, half ``POST /checkout``, half
``POST /login``, through four phases:

1. healthy;
2. email hangs: orders waits for it at most 500 ms and at most 4 calls at
   once (timeout + bulkhead), so checkouts still complete ("email deferred")
   and login is untouched;
3. payments fails (503): the breaker of orders' sidecar opens, and checkouts
   fail fast instead of waiting on payments;
4. recovery: the faults are cleared; once the breaker has closed again,
   everything succeeds.

After each phase it prints, per route, the requests, success rate and p50/p99
latency (from the client, and from each app's view of its calls through its
sidecar), and what orders' sidecar reports on its ``/metrics`` and
``/clusters`` (breaker, retries, overflows). It ends by itself in well under a
minute and stops every process it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from prometheus_client.parser import text_string_to_metric_families

from seawall.config import MeshConfig, load_mesh

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = Path("examples/shop/mesh.yaml")
SERVICES = ("payments", "email", "login", "orders", "gateway")  # leaves first
RATE = 40.0  # requests per second, alternating /checkout and /login
CLIENT_TIMEOUT = 5.0
MAX_OUTSTANDING = 200  # the load loop never has more requests in flight than this
START_TIMEOUT = 30.0  # every sidecar /ready and app /health, all together
SETTLE_TIMEOUT = 8.0  # after the faults are cleared, for the payments breaker to close
STOP_GRACE = 8.0  # SIGTERM, then SIGKILL after this many seconds


@dataclass(frozen=True)
class Phase:
    title: str
    seconds: float
    modes: dict[str, str]  # service -> /_control mode for this phase
    story: str


PHASES = (
    Phase("healthy", 4.0, {}, "every service answers"),
    Phase("email hangs", 5.0, {"email": "hang"}, "email accepts calls and never answers"),
    Phase("payments fails", 5.0, {"payments": "fail"}, "every charge answers 503 at once"),
    Phase("recovery", 4.0, {}, "faults cleared, breakers closed again"),
)

T0 = time.monotonic()


def say(message: str = "") -> None:
    print(message, flush=True)


def stamp() -> str:
    return f"[{time.monotonic() - T0:5.1f}s]"


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str  # "app:orders", "sidecar:orders"
    process: subprocess.Popen[bytes]
    log: Path


class Supervisor:
    """Starts children each in its own process group; stops every one of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._logs: list[TextIO] = []

    def start(self, name: str, argv: list[str]) -> Child:
        log_path = self.log_dir / f"{name.replace(':', '-')}.log"
        log = log_path.open("w")
        self._logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            env.pop(var, None)
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0,  # its own group: Ctrl-C reaches the demo only, which stops it
        )
        child = Child(name, process, log_path)
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

        A signal goes to a child's group only while the child is not reaped (so
        its pid, the group id, cannot have been reused); a group member that
        outlived its leader is signalled by its own pid.
        """
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        groups = {child.process.pid for child in self.children}
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


def _processes_in_groups(groups: set[int]) -> list[int]:
    """Live (non-zombie) shop processes (apps, sidecars) in one of the process ``groups``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields_ = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields_[0], int(fields_[2])
        if pgrp in groups and state != "Z":
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"examples.shop" in cmdline or b"seawall" in cmdline:
                    found.append(int(entry.name))
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
)


def table(stats: dict[tuple[str, str], RouteStats]) -> list[str]:
    lines = [f"  {'route':<28} {'requests':>8} {'success':>8} {'p50 ms':>9} {'p99 ms':>9}"]
    for label, who, key in ROWS:
        rs = stats.get((who, key), RouteStats())
        ms = [t * 1000 for t in rs.latencies]
        if not ms:
            lines.append(f"  {label:<28} {0:>8} {'-':>8} {'-':>9} {'-':>9}")
            continue
        lines.append(
            f"  {label:<28} {len(ms):>8} {rs.success:>7.1f}% "
            f"{percentile(ms, 50):>9.1f} {percentile(ms, 99):>9.1f}"
        )
    return lines


Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Observation:
    metrics: Metrics
    refused: int  # calls the payments breaker refused at once, so far


def parse_metrics(text: str) -> Metrics:
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(m: Metrics, name: str, **labels: str) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


# --------------------------------------------------------------------------- the demo


class Demo:
    def __init__(self, config_path: Path, config: MeshConfig, sup: Supervisor) -> None:
        self.config_path = config_path
        self.config = config
        self.sup = sup
        self.phase = "starting"
        self.client_stats: dict[str, dict[str, RouteStats]] = {}
        self.breaker_seen: dict[str, Counter[str]] = {}
        self.outstanding: dict[str, set[asyncio.Task[None]]] = {}
        self.dropped = 0
        self.started: dict[str, float] = {}
        self.http = httpx.AsyncClient(trust_env=False, timeout=2.0)

    def svc(self, name: str) -> Any:
        return self.config.services[name]

    def admin(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.svc(name).sidecar.admin}{path}"

    def app(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.svc(name).port}{path}"

    # -- start ------------------------------------------------------------

    async def start(self) -> None:
        python = sys.executable
        cfg = str(self.config_path)
        for name in SERVICES:
            sidecar = self.sup.start(
                f"sidecar:{name}",
                [python, "-m", "seawall", "sidecar", "--config", cfg, "--service", name],
            )
            app = self.sup.start(
                f"app:{name}", [python, "-m", f"examples.shop.{name}", "--config", cfg]
            )
            say(
                f"  {name:<9} app pid {app.process.pid:<7} :{self.svc(name).port}   "
                f"sidecar pid {sidecar.process.pid:<7} "
                f"in :{self.svc(name).sidecar.inbound} out :{self.svc(name).sidecar.outbound} "
                f"admin :{self.svc(name).sidecar.admin}"
            )
        urls = {f"sidecar:{n}": self.admin(n, "/ready") for n in SERVICES}
        urls |= {f"app:{n}": self.app(n, "/health") for n in SERVICES}
        await wait_ready(self.sup, self.http, urls)
        say(f"{stamp()} all {len(urls)} processes ready (sidecar /ready, app /health)")

    # -- load -------------------------------------------------------------

    async def load(self, stop: asyncio.Event) -> None:
        """Open-loop load at RATE/s, bounded to MAX_OUTSTANDING requests in flight."""
        inbound = self.svc("gateway").sidecar.inbound
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
        try:
            status = (await client.post(path, json=body)).status_code
        except httpx.HTTPError:
            status = 0
        self.client_stats.setdefault(phase, {}).setdefault(path, RouteStats()).add(
            status, time.perf_counter() - start
        )

    async def finish(self, phase: str | None) -> None:
        """Wait (bounded) for the requests sent in ``phase`` (None: all) to finish."""
        tasks = [t for p, s in self.outstanding.items() if phase in (None, p) for t in s]
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT + 1.0)

    # -- observing ---------------------------------------------------------

    async def control(self, modes: dict[str, str]) -> None:
        for name in SERVICES:
            mode = modes.get(name, "ok")
            r = await self.http.get(self.app(name, "/_control"), params={"mode": mode})
            r.raise_for_status()

    def begin(self, phase: str) -> None:
        self.started[phase] = time.monotonic()
        self.phase = phase

    async def app_stats(self, start: float, end: float) -> dict[tuple[str, str], RouteStats]:
        """What gateway and orders saw of their calls started between ``start`` and ``end``."""
        out: dict[tuple[str, str], RouteStats] = {}
        for name in ("gateway", "orders"):
            doc = (await self.http.get(self.app(name, "/_stats"))).json()
            for key, calls in doc.items():
                rs = out.setdefault((name, key), RouteStats())
                for started, seconds, status in calls:
                    if start <= started < end:
                        rs.add(status, seconds)
        return out

    async def observe(self) -> Observation:
        """Orders' sidecar now: its /metrics, and its payments breaker from /clusters."""
        metrics = parse_metrics((await self.http.get(self.admin("orders", "/metrics"))).text)
        breaker = (await self.clusters("orders"))["payments"]["breaker"] or {}
        return Observation(metrics, breaker.get("not_permitted_calls", 0))

    async def clusters(self, service: str) -> dict[str, Any]:
        doc = (await self.http.get(self.admin(service, "/clusters"))).json()
        return {c["name"]: c for c in doc["clusters"]}

    async def watch_breaker(self, stop: asyncio.Event) -> None:
        """Sample the payments breaker of orders' sidecar, to report the states seen."""
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                breaker = (await self.clusters("orders"))["payments"]["breaker"]
                if breaker is not None:
                    self.breaker_seen.setdefault(self.phase, Counter())[breaker["state"]] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    def sidecar_lines(
        self, phase: str, first: Observation, last: Observation, hops: Any
    ) -> list[str]:
        def delta(name: str, **labels: str) -> int:
            return round(
                metric(last.metrics, name, **labels) - metric(first.metrics, name, **labels)
            )

        opened = delta(
            "seawall_breaker_transitions_total",
            destination="payments",
            from_state="closed",
            to_state="open",
        ) + delta(
            "seawall_breaker_transitions_total",
            destination="payments",
            from_state="half_open",
            to_state="open",
        )
        closed = delta(
            "seawall_breaker_transitions_total",
            destination="payments",
            from_state="half_open",
            to_state="closed",
        )
        seen = self.breaker_seen.get(phase, Counter())
        seen_text = ", ".join(s for s in ("closed", "open", "half_open") if seen[s]) or "-"
        failed = delta(
            "seawall_requests_total",
            direction="outbound",
            destination="payments",
            route="charge",
            status_class="5xx",
        )
        refused = last.refused - first.refused
        exhausted = "seawall_retry_budget_exhausted_total"
        email = hops.get(("orders", "email /send"), RouteStats())
        timed_out = sum(1 for s in email.statuses if s == 504)
        overflow = {
            limit: delta("seawall_overflow_total", destination="email", limit=limit)
            for limit in ("in_flight", "pending", "connections")
        }
        bh = self.config.policy_for("email").bulkhead
        return [
            "  orders' sidecar (/metrics, /clusters):",
            f"    payments breaker: opened {opened}x, closed {closed}x, seen {seen_text};"
            f" {failed} charges failed, {refused} attempts refused at once while open",
            f"    payments retries {delta('seawall_retries_total', destination='payments')},"
            f" not retried for want of budget {delta(exhausted, destination='payments')}",
            f"    email overflow {sum(overflow.values())} (in_flight {overflow['in_flight']},"
            f" pending {overflow['pending']}; limits {bh.max_in_flight} in flight,"
            f" {bh.max_pending} pending), timed out {timed_out}"
            f" (after {self.config.policy_for('email').timeout * 1000:.0f} ms)",
        ]

    def report(
        self, index: int, phase: Phase, hops: Any, before: Observation, after: Observation
    ) -> None:
        stats = dict(hops)
        for path, rs in self.client_stats.get(phase.title, {}).items():
            stats[("client", path)] = rs
        say()
        say(f"== phase {index}/{len(PHASES)}: {phase.title} ({phase.seconds:.0f} s): {phase.story}")
        for line in table(stats):
            say(line)
        for line in self.sidecar_lines(phase.title, before, after, hops):
            say(line)

    # -- the story --------------------------------------------------------

    async def run(self) -> None:
        await self.start()
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
                if self.phase != phase.title:
                    await self.control(phase.modes)
                    self.begin(phase.title)
                say(f"{stamp()} phase {index}: {phase.title}: {phase.story}")
                await asyncio.sleep(phase.seconds)
                ended = time.monotonic()
                self.phase = "between"
                if loader.done():
                    loader.result()  # raise what stopped the load
                self.sup.check_alive()
                after = await self.observe()
                if index < len(PHASES) and PHASES[index].title != "recovery":
                    await self.control(PHASES[index].modes)
                    self.begin(PHASES[index].title)  # the load goes on without a gap
                await self.finish(phase.title)
                hops = await self.app_stats(self.started[phase.title], ended)
                self.report(index, phase, hops, before, after)
                before = after
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(loader, watcher), CLIENT_TIMEOUT + 2.0)
            await self.http.aclose()
        self.summary()

    async def settle(self) -> None:
        """Clear the faults, keep the load on, and wait for the payments breaker to close."""
        await self.control({})
        self.begin("settling")
        start = time.monotonic()
        state = "?"
        while time.monotonic() - start < SETTLE_TIMEOUT:
            with contextlib.suppress(httpx.HTTPError, KeyError):
                state = (await self.clusters("orders"))["payments"]["breaker"]["state"]
                if state == "closed":
                    break
            await asyncio.sleep(0.1)
        took = time.monotonic() - start
        await self.finish("settling")
        checkouts = self.client_stats.get("settling", {}).get("/checkout", RouteStats())
        failed = sum(1 for s in checkouts.statuses if not 200 <= s < 300)
        say()
        say(
            f"{stamp()} faults cleared: payments breaker {state} after {took:.1f} s "
            f"({failed} of {len(checkouts.statuses)} checkouts failed meanwhile)"
        )
        self.begin("recovery")

    def summary(self) -> None:
        email_phase = self.client_stats.get("email hangs", {})
        pay_phase = self.client_stats.get("payments fails", {})
        login = email_phase.get("/login", RouteStats())
        slow_checkout = email_phase.get("/checkout", RouteStats())
        checkout = pay_phase.get("/checkout", RouteStats())
        fails = [t * 1000 for t in checkout.failures_fast()]
        seen = self.breaker_seen.get("payments fails", Counter())
        rec = RouteStats()
        for rs in self.client_stats.get("recovery", {}).values():
            rec.latencies += rs.latencies
            rec.statuses += rs.statuses
        email_timeout = self.config.policy_for("email").timeout * 1000

        def p(rs: RouteStats, q: float) -> float:
            return percentile([t * 1000 for t in rs.latencies], q)

        say()
        say("== what it shows")
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
        say(f"  after recovery:  {rec.success:.1f}% ok of {len(rec.statuses)} requests")
        if self.dropped:
            say(f"  (the load loop skipped {self.dropped} requests: too many in flight)")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.mesh_demo", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--logs", type=Path, help="keep each process's output in this directory (default: discard)"
    )
    args = parser.parse_args()
    config_path: Path = args.config
    config = load_mesh(ROOT / config_path if not config_path.is_absolute() else config_path)
    ports = [
        port
        for s in config.services.values()
        for port in (s.port, s.sidecar.inbound, s.sidecar.outbound, s.sidecar.admin)
    ]
    busy = busy_ports(ports)
    if busy:
        say(f"ports already in use on 127.0.0.1: {', '.join(map(str, busy))}: is a shop running?")
        return 1

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds into the finally below, which stops everything

    signal.signal(signal.SIGTERM, terminate)
    say(f"seawall mesh demo: the shop of {config_path}, every service beside its sidecar")
    status = 0
    with tempfile.TemporaryDirectory(prefix="seawall-shop-") as scratch:
        logs = args.logs or Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        sup = Supervisor(logs)
        try:
            asyncio.run(Demo(config_path, config, sup).run())
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
            pids = " ".join(str(c.process.pid) for c in sup.children)
            if left:
                say(f"stopped {len(sup.children)} processes; STILL RUNNING: {left}")
                status = status or 1
            else:
                say(f"stopped {len(sup.children)} processes (pids {pids}); none remain")
    say(f"demo finished in {time.monotonic() - T0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
