"""Throughput and latency of the seawall sidecar against nginx, HAProxy and aiohttp, in one run.

One nginx backend (1 worker) answers ``hello, world\\n`` to everything. In front
of it, each target is measured with wrk (keep-alive, ``-t 1``, ``--latency``):

* ``direct``  - the backend itself, the ceiling;
* ``nginx``   - a second nginx as reverse proxy, 1 worker, upstream keep-alive;
* ``haproxy`` - HAProxy, ``nbthread 1``, http mode, keep-alive on both sides;
* ``aiohttp`` - benchmarks/aiohttp_proxy.py, the naive Python baseline;
* ``seawall`` - ``python -m seawall sidecar`` (1 worker) through its local port
  for the destination ``backend``, whose policy has a timeout, retries, a
  circuit breaker, a bulkhead and outlier detection on (see ``mesh_config``).

Every target gets a short warm-up, then is measured twice, the targets
interleaved round by round so that a noisy neighbour hurts them alike; the mean
of the two runs counts. Then a fresh sidecar idles for a second and its resident
memory is read. Everything listens on 127.0.0.1; every process started here runs
in its own process group and is stopped on the way out, whatever happens.

If the sidecar cannot run (module missing, it exits, it never gets ready, it
answers wrongly) that is said plainly, ``seawall`` is null and the other
targets are still measured.

The last line printed is one JSON object (see ``make bench-proxy``):
``{"direct": {"rps": .., "p50_ms": .., "p99_ms": ..}, ..., "seawall": {...} or null,
"seawall_idle_rss_mb": .. or null}``.
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
TARGETS = ("direct", "nginx", "haproxy", "aiohttp", "seawall")
ROUNDS = 2
HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# The goals of issue 3, section "Performance".
RPS_VS_NGINX_MIN = 0.5
RPS_VS_AIOHTTP_MIN = 3.0
P99_VS_NGINX_MAX = 2.0
IDLE_RSS_MB_MAX = 40.0


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


def mesh_config(ports: dict[str, int], backend_port: int) -> dict[str, Any]:
    """mesh.yaml for the sidecar of service ``bench`` calling destination ``backend``.

    The benchmark calls the sidecar's local port for ``backend``
    (``services.bench.sidecar.upstreams.backend``); ``backend``'s one static
    endpoint is the nginx backend. ``backend`` runs no sidecar, but the model
    requires its ports; they are free ports nobody binds. The policy turns on
    every per-request concern the issue names; tracing headers and metrics are
    always on in the sidecar. Keep this in step with src/seawall/config/model.py.
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
                    "ejection": "30s",
                    "max_ejected": "50%",
                },
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


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (workers), in MiB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in family:
                family.add(child)
                frontier.append(child)
    total_kb = 0
    for member in family:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --------------------------------------------------------------------------- targets


class Bench:
    """Starts the backend and the targets; knows each target's port."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.children = Children(tmp)
        self.ports = Ports(args.port_base)
        self.backend_port = 0
        self.seawall: Child | None = None

    def _nginx(self, name: str, http_block: str) -> Child:
        prefix = self.tmp / name
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_COMMON.format(dir=prefix, http=http_block))
        # -e: the error log before the config is read, else /var/log/nginx/error.log.
        argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        return self.children.start(name, [*argv, "-g", "daemon off;"])

    def start_backend(self) -> None:
        self.backend_port = self.ports.take()
        child = self._nginx("backend", NGINX_BACKEND.format(host=HOST, port=self.backend_port))
        self._serving(child, self.backend_port)

    def start(self, target: str) -> int:
        """Start ``target`` and return its port, or raise TargetDown."""
        if target == "direct":
            return self.backend_port
        port = self.ports.take()
        fmt = {"host": HOST, "port": port, "backend": self.backend_port}
        if target == "nginx":
            child = self._nginx("nginx", NGINX_PROXY.format(**fmt))
        elif target == "haproxy":
            conf = self.tmp / "haproxy.cfg"
            conf.write_text(HAPROXY.format(**fmt))
            child = self.children.start("haproxy", ["haproxy", "-db", "-f", str(conf)])
        elif target == "aiohttp":
            argv = [sys.executable, str(HERE / "aiohttp_proxy.py"), "--port", str(port)]
            child = self.children.start(
                "aiohttp", [*argv, "--upstream", f"{HOST}:{self.backend_port}"]
            )
        elif target == "seawall":
            child, port = self.start_sidecar("seawall")
            self.seawall = child
            return port
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

    def start_sidecar(self, name: str, *, probe: bool = True) -> tuple[Child, int]:
        """A sidecar for service ``bench``; returns it and its local port for ``backend``.

        Ready means: the local port accepts, admin ``/ready`` answers 200 and,
        with ``probe``, a request through the sidecar gets the backend's body.
        """
        ports = {key: self.ports.take() for key in MESH_PORTS}
        mesh = self.tmp / f"{name}-mesh.yaml"
        write_mesh(mesh, mesh_config(ports, self.backend_port))
        child = self.children.start(name, sidecar_argv(mesh), cwd=REPO)
        try:
            port, admin = ports["bench_backend"], ports["bench_admin"]
            timeout = self.args.start_timeout
            _wait_until(lambda: _port_open(port), child, timeout, f"listener on {HOST}:{port}")
            _wait_until(lambda: _answers(admin, "/ready"), child, timeout, "200 from admin /ready")
            if probe:
                wait_serving(child, port, timeout)
        except TargetDown as exc:
            self.children.stop(child)
            raise TargetDown(f"{exc}\n    (config: {mesh})") from exc
        return child, port

    def idle_rss_mb(self) -> float:
        """RSS of a fresh sidecar that has idled for about a second, never having proxied."""
        child, _ = self.start_sidecar("seawall-idle", probe=False)
        try:
            time.sleep(1.0)
            if child.proc.poll() is not None:
                raise TargetDown(f"seawall-idle exited while idle\n{child.tail()}")
            return rss_mb(child.proc.pid)
        finally:
            self.children.stop(child)


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str  # "" when wrk saw none


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: (.*)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(out: str) -> Run:
    rps = _RPS.search(out)
    percentiles = {p: float(v) * _UNIT_MS[u] for p, v, u in _PERCENTILE.findall(out)}
    if rps is None or set(percentiles) != {"50", "99"}:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    errors = []
    if m := _SOCKET_ERRORS.search(out):
        errors.append(f"socket errors: {m.group(1)}")
    if m := _NON_2XX.search(out):
        errors.append(f"{m.group(1)} non-2xx")
    return Run(float(rps.group(1)), percentiles["50"], percentiles["99"], "; ".join(errors))


def wrk(port: int, duration: int, connections: int) -> Run:
    """One wrk run; wrk takes whole seconds only."""
    argv = [
        "wrk",
        "-t", "1",
        "-c", str(connections),
        "-d", f"{duration}s",
        "--timeout", "5s",
        "--latency",
        f"http://{HOST}:{port}/",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=duration + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- report


def mean(runs: list[Run]) -> dict[str, float]:
    return {
        "rps": round(statistics.fmean(r.rps for r in runs), 1),
        "p50_ms": round(statistics.fmean(r.p50_ms for r in runs), 3),
        "p99_ms": round(statistics.fmean(r.p99_ms for r in runs), 3),
    }


def report(
    targets: list[str],
    runs: dict[str, list[Run]],
    results: dict[str, dict[str, float] | None],
    down: dict[str, str],
    rss: float | None,
) -> None:
    print()
    head = (
        f"{'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9}"
        "   runs (req/s, p50/p99 ms)"
    )
    print(head)
    print("-" * len(head))
    nginx = results.get("nginx")
    for target in targets:
        result = results.get(target)
        if result is None:
            print(f"{target:<8} {'not measured':>10}   {down.get(target, '')}".rstrip())
            continue
        vs = f"{result['rps'] / nginx['rps']:.2f}x" if nginx else "n/a"
        each = ", ".join(f"{r.rps:.0f} {r.p50_ms:.2f}/{r.p99_ms:.2f}" for r in runs[target])
        print(
            f"{target:<8} {result['rps']:>10.0f} {result['p50_ms']:>8.3f}"
            f" {result['p99_ms']:>8.3f} {vs:>9}   {each}"
        )
        for r in runs[target]:
            if r.errors:
                print(f"{'':<8} warning: {r.errors}")

    if "seawall" not in targets:
        return
    print()
    seawall, aio = results.get("seawall"), results.get("aiohttp")

    def goal(label: str, value: float | None, ok: Callable[[float], bool], why: str) -> None:
        if value is None:
            print(f"  FAIL  {label:<32} {'n/a':>8}   ({why})")
        else:
            print(f"  {'PASS' if ok(value) else 'FAIL'}  {label:<32} {value:>8.2f}")

    missing = "seawall not measured" if seawall is None else "peer not measured"
    goal(
        f"seawall/nginx req/s >= {RPS_VS_NGINX_MIN:g}",
        seawall["rps"] / nginx["rps"] if seawall and nginx else None,
        lambda v: v >= RPS_VS_NGINX_MIN,
        missing,
    )
    goal(
        f"seawall/aiohttp req/s >= {RPS_VS_AIOHTTP_MIN:g}",
        seawall["rps"] / aio["rps"] if seawall and aio else None,
        lambda v: v >= RPS_VS_AIOHTTP_MIN,
        missing,
    )
    goal(
        f"seawall/nginx p99 <= {P99_VS_NGINX_MAX:g}",
        seawall["p99_ms"] / nginx["p99_ms"] if seawall and nginx else None,
        lambda v: v <= P99_VS_NGINX_MAX,
        missing,
    )
    goal(
        f"seawall idle RSS MB <= {IDLE_RSS_MB_MAX:g}",
        rss,
        lambda v: v <= IDLE_RSS_MB_MAX,
        "seawall not measured",
    )


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target (1)")
    parser.add_argument(
        "--only",
        type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
        default=list(TARGETS),
        help=f"comma-separated subset of {','.join(TARGETS)}",
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
    parser.add_argument("--keep-tmp", action="store_true", help="keep configs and logs")
    args = parser.parse_args()
    unknown = sorted(set(args.only) - set(TARGETS))
    if unknown or not args.only:
        parser.error(f"--only: unknown target(s) {unknown}; choose from {','.join(TARGETS)}")
    if args.duration < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be >= 1, --warmup >= 0")
    args.only = [t for t in TARGETS if t in args.only]
    return args


def check_tools(targets: list[str]) -> None:
    need = {"wrk", "nginx"} | ({"haproxy"} & set(targets))
    missing = sorted(tool for tool in need if shutil.which(tool) is None)
    if missing:
        raise BenchError(
            f"missing {', '.join(missing)}: run bash benchmarks/install_proxy_peers.sh"
        )
    if "aiohttp" in targets:
        import importlib.util

        if importlib.util.find_spec("aiohttp") is None:
            raise BenchError(
                f"aiohttp is not installed for {sys.executable}: "
                "pip install -r benchmarks/requirements-proxy.txt"
            )


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


def main() -> int:
    args = parse_args()
    targets: list[str] = args.only
    check_tools(targets)
    print(
        f"wrk: -t 1 -c {args.connections} -d {args.duration:g}s --latency, keep-alive; "
        f"{ROUNDS} rounds, interleaved; warm-up {args.warmup:g}s; targets: {', '.join(targets)}"
    )

    runs: dict[str, list[Run]] = {t: [] for t in targets}
    down: dict[str, str] = {}
    rss: float | None = None
    tmp = Path(tempfile.mkdtemp(prefix="seawall-bench-proxy-"))
    tmp.chmod(0o755)  # nginx workers drop to an unprivileged user when started as root
    bench = Bench(args, tmp)
    try:
        with terminate_as_exit():
            bench.start_backend()
            ports: dict[str, int] = {}
            for target in targets:
                try:
                    ports[target] = bench.start(target)
                except TargetDown as exc:
                    if target != "seawall":
                        raise BenchError(str(exc)) from exc
                    down[target] = "sidecar not runnable (see above)"
                    print(f"\nseawall: NOT MEASURED - the sidecar is not runnable yet:\n{exc}\n")
                    continue
                print(f"  {target:<8} ready on {HOST}:{ports[target]}")

            live = [t for t in targets if t in ports]
            for target in live if args.warmup else ():
                wrk(ports[target], args.warmup, args.connections)
            for n in range(1, ROUNDS + 1):
                for target in live:
                    run = wrk(ports[target], args.duration, args.connections)
                    runs[target].append(run)
                    note = f"  ({run.errors})" if run.errors else ""
                    print(
                        f"  round {n} {target:<8} {run.rps:>9.0f} req/s"
                        f"  p50 {run.p50_ms:.3f} ms  p99 {run.p99_ms:.3f} ms{note}"
                    )
                    if bench.seawall is not None and bench.seawall.proc.poll() is not None:
                        raise BenchError(f"the sidecar died during the run\n{bench.seawall.tail()}")

            if bench.seawall is not None:
                bench.children.stop(bench.seawall)
                try:
                    rss = round(bench.idle_rss_mb(), 1)
                    print(f"  seawall idle RSS {rss} MB")
                except TargetDown as exc:
                    print(f"\nseawall idle RSS: NOT MEASURED:\n{exc}\n")
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

    results: dict[str, dict[str, float] | None] = {
        t: mean(runs[t]) if runs.get(t) else None for t in TARGETS
    }
    report(targets, runs, results, down, rss)
    print(json.dumps({**results, "seawall_idle_rss_mb": rss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
