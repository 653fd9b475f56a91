"""Fixtures for the sidecar's integration tests (every fixture here is prefixed ``sidecar_``).

The tests run a real ``python -m seawall sidecar`` process against scripted
backends (:mod:`tests.proxy.backends`) over loopback. A :class:`Mesh` builds
the mesh.yaml: it picks free ports, names each destination service after the
policy it exercises, and points its endpoints at backends. A
:class:`SidecarProcess` writes that file, starts the sidecar, waits for
``/ready`` and is killed at teardown.

``sidecar_main`` is one sidecar shared by the forwarding, policy and admin
tests: one destination per concern, so that a breaker tripped by one test
never changes another test's answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import (
    WAIT,
    Backend,
    BackendLoop,
    Echo,
    Hang,
    Ok,
    free_ports,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

OFF = {"enabled": False}
"""A breaker or outlier section that turns the policy off."""


def budgeted() -> dict[str, Any]:
    """A policy that retries 5xx up to 3 attempts on a small retry budget (ratio 0.1,
    a reserve of 0.1 retries a second over 10 s): about one retry, then none.
    A new dict each time (tests change it)."""
    return {
        "retry": {
            "attempts": 3,
            "on": ["5xx"],
            "backoff": {"base": "1ms", "max": "5ms"},
            "budget": {"ratio": 0.1, "min_per_second": 0.1, "ttl": "10s"},
        }
    }


class Mesh:
    """A mesh.yaml under construction, for the sidecar of service ``app``."""

    def __init__(self, app_backend: Backend, *, limits: dict[str, Any] | None = None) -> None:
        self.ports = iter(free_ports(400))
        self.outbound = next(self.ports)
        self.inbound = next(self.ports)
        self.admin = next(self.ports)
        self.upstreams: dict[str, int] = {}
        self.doc: dict[str, Any] = {
            "mesh": "t",
            "services": {
                "app": {
                    "port": app_backend.port,
                    "sidecar": {
                        "inbound": self.inbound,
                        "outbound": self.outbound,
                        "admin": self.admin,
                        "upstreams": self.upstreams,
                    },
                }
            },
            "policies": {},
            "limits": {"header_timeout": "1s", "body_timeout": "1s", "idle_timeout": "5s"}
            | (limits or {}),
            "sidecar": {"drain_grace": "3s"},
        }

    def closed_port(self) -> int:
        """A port nothing listens on (connections to it are refused)."""
        return next(self.ports)

    def destination(
        self,
        name: str,
        endpoints: list[Backend | int | tuple[Backend, str]],
        policy: dict[str, Any] | None = None,
        *,
        upstream_port: bool = False,
    ) -> Mesh:
        """Add service ``name`` with these endpoints (a ``(backend, subset)`` pair has a subset).

        The policy defaults to one attempt, no breaker and no outlier detection,
        so that only what a test turns on acts.
        """
        eps: list[dict[str, Any]] = []
        subsets: dict[str, dict[str, Any]] = {}
        for given in endpoints:
            ep, subset = given if isinstance(given, tuple) else (given, None)
            if subset is not None:
                subsets[subset] = {}
            entry: dict[str, Any] = {
                "address": "127.0.0.1",
                "port": ep if isinstance(ep, int) else ep.port,
            }
            if subset is not None:
                entry["subset"] = subset
            eps.append(entry)
        svc: dict[str, Any] = {
            "port": next(self.ports),
            "sidecar": {
                "inbound": next(self.ports),
                "outbound": next(self.ports),
                "admin": next(self.ports),
            },
            "endpoints": eps,
        }
        if subsets:
            svc["subsets"] = subsets
        self.doc["services"][name] = svc
        self.doc["policies"][name] = {
            "retry": {"attempts": 1},
            "circuit_breaker": OFF,
            "outlier": OFF,
        } | (policy or {})
        if upstream_port:
            self.upstreams[name] = next(self.ports)
        return self

    def yaml(self) -> str:
        return yaml.safe_dump(self.doc, sort_keys=False)


class SidecarProcess:
    """A ``seawall sidecar`` subprocess for service ``app`` of a :class:`Mesh`."""

    def __init__(self, mesh: Mesh, workdir: Path) -> None:
        self.mesh = mesh
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mesh.yaml"
        self.config.write_text(mesh.yaml())
        self.stderr_path = workdir / "stderr.log"
        self.stdout_path = workdir / "stdout.log"
        self.outbound = mesh.outbound
        self.inbound = mesh.inbound
        self.admin = mesh.admin
        self.proc: subprocess.Popen[bytes] | None = None
        self.service = "app"
        """The service it serves (``--service``)."""
        self.args: list[str] = []
        """More ``seawall sidecar`` arguments (``--log-format json``)."""

    def upstream(self, destination: str) -> int:
        """The local port of ``destination`` (``upstream_port=True``)."""
        return self.mesh.upstreams[destination]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def proxy(self) -> str:
        """The outbound listener as an HTTP_PROXY URL."""
        return f"http://127.0.0.1:{self.outbound}"

    def start(self) -> SidecarProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT / "src")
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            env.pop(var, None)
        with self.stderr_path.open("wb") as err, self.stdout_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "seawall",
                    "sidecar",
                    "--config",
                    str(self.config),
                    "--service",
                    self.service,
                    *self.args,
                ],
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.workdir,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited with {self.proc.returncode}: {self.stderr()}")
            with contextlib.suppress(httpx.TransportError):
                if self.admin_get("/ready", timeout=0.5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"sidecar not ready in {timeout}s: {self.stderr()}")
            time.sleep(0.02)

    def assert_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        assert code is None, f"the sidecar exited with {code}: {self.stderr()[-3000:]}"

    def admin_get(self, path: str, timeout: float = WAIT) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.admin}{path}", timeout=timeout)

    def metrics(self) -> list[Any]:
        """The admin ``/metrics`` page, parsed by prometheus_client's own parser."""
        text = self.admin_get("/metrics").text
        return list(text_string_to_metric_families(text))

    def metric(self, sample: str, **labels: str) -> float:
        """The sum of the samples named ``sample`` whose labels include ``labels``."""
        total = 0.0
        for family in self.metrics():
            for s in family.samples:
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        """Kill the process if it still runs (teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)

    def terminate(self, timeout: float = WAIT) -> int:
        """SIGTERM, then wait for the exit status."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(timeout)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def reload(self, mesh: Mesh) -> None:
        """Write ``mesh``, SIGHUP, and wait until the sidecar has applied it."""
        before = self.stderr().count("config reloaded")
        self.rewrite(mesh, keep_mtime=True)
        self.signal(signal.SIGHUP)
        wait_until(lambda: self.stderr().count("config reloaded") > before, 10, "the reload")

    def rewrite(self, mesh: Mesh, *, keep_mtime: bool = False) -> None:
        """Write a new config (``keep_mtime``: so that only SIGHUP can notice it)."""
        before = self.config.stat()
        self.config.write_text(mesh.yaml())
        if keep_mtime:
            os.utime(self.config, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture(scope="session")
def sidecar_loop() -> Iterator[BackendLoop]:
    """The thread that runs every scripted backend."""
    loop = BackendLoop()
    yield loop
    loop.close()


@pytest.fixture
def sidecar_start(tmp_path: Path) -> Iterator[Any]:
    """Start a sidecar for a :class:`Mesh`; every one started is killed at teardown."""
    started: list[SidecarProcess] = []

    def start(mesh: Mesh, name: str = "sidecar") -> SidecarProcess:
        process = SidecarProcess(mesh, tmp_path / name)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


class MainMesh:
    """The shared sidecar and its backends, by the name of the concern they serve."""

    def __init__(self, sidecar: SidecarProcess, backends: dict[str, Backend], closed: int):
        self.sidecar = sidecar
        self.b = backends
        self.closed_port = closed
        self.client = httpx.Client(proxy=sidecar.proxy, timeout=WAIT)
        """An httpx client whose proxy is the sidecar's outbound listener."""


@pytest.fixture(scope="session")
def sidecar_main(
    sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MainMesh]:
    """One sidecar with a destination per concern (see the module docstring)."""
    names = [
        "app", "plain", "hangs", "pertry_slow", "pertry_ok", "retry5xx", "connfail", "methods",
        "overloaded", "budget", "deadline", "breaker", "bulkhead", "outlier_bad", "outlier_good",
        "v1", "v2", "primary", "shadow", "faults", "counted",
    ]  # fmt: skip
    b = {name: sidecar_loop.backend(name, Echo()) for name in names}
    mesh = Mesh(b["app"], limits={"max_body_bytes": "1MiB"})
    closed = mesh.closed_port()
    fast = {"base": "1ms", "max": "5ms"}
    mesh.destination(
        "plain",
        [b["plain"]],
        {
            "timeout": "2s",
            "retry": {"attempts": 2, "on": ["connect-failure", "reset"], "backoff": fast},
            "routes": [
                {"name": "short", "match": {"path_prefix": "/short"}, "timeout": "500ms"},
                {"name": "no-upgrades", "match": {"path_prefix": "/no-up"}, "upgrades": []},
            ],
            "upgrades": ["websocket", "echo-proto"],
        },
        upstream_port=True,
    )
    mesh.destination("hangs", [b["hangs"]], {"timeout": "400ms"})
    mesh.destination(
        "pertry",
        [b["pertry_slow"], b["pertry_ok"]],
        {
            "timeout": "2s",
            "per_try_timeout": "300ms",
            "load_balancer": "round_robin",
            "retry": {"attempts": 2, "on": ["gateway-error"], "backoff": fast},
        },
    )
    mesh.destination(
        "retry5xx", [b["retry5xx"]], {"retry": {"attempts": 3, "on": ["5xx"], "backoff": fast}}
    )
    mesh.destination(
        "connfail",
        [closed, b["connfail"]],
        {
            "load_balancer": "round_robin",
            "retry": {"attempts": 2, "on": ["connect-failure"], "backoff": fast},
        },
    )
    mesh.destination(
        "methods", [b["methods"]], {"retry": {"attempts": 3, "on": ["5xx"], "backoff": fast}}
    )
    mesh.destination(
        "overloaded",
        [b["overloaded"]],
        {"retry": {"attempts": 3, "on": ["5xx"], "backoff": fast}},
    )
    mesh.destination("budget", [b["budget"]], budgeted())
    mesh.destination(
        "deadline",
        [b["deadline"]],
        {
            "timeout": "600ms",
            "retry": {
                "attempts": 10,
                "on": ["5xx"],
                "backoff": fast,
                "budget": {"min_per_second": 1000},
            },
            "bulkhead": {"max_retries": 100},
        },
    )
    mesh.destination(
        "breaker",
        [b["breaker"]],
        {
            "circuit_breaker": {
                "window": {"type": "count", "size": 10},
                "minimum_calls": 4,
                "failure_rate": "50%",
                "open_for": "60s",
            }
        },
    )
    mesh.destination(
        "bulkhead", [b["bulkhead"]], {"timeout": "3s", "bulkhead": {"max_in_flight": 1}}
    )
    mesh.destination(
        "outlier",
        [b["outlier_bad"], b["outlier_good"]],
        {
            "load_balancer": "round_robin",
            "outlier": {"consecutive_5xx": 3, "base_ejection": "30s", "max_ejected_percent": "50%"},
        },
    )
    mesh.destination(
        "split",
        [(b["v1"], "v1"), (b["v2"], "v2")],
        {"routes": [{"name": "canary", "split": {"v1": 90, "v2": 10}}]},
    )
    mesh.destination(
        "mirror", [b["primary"]], {"routes": [{"name": "copy", "mirror": {"to": "shadow"}}]}
    )
    mesh.destination("shadow", [b["shadow"]])
    mesh.destination(
        "faults",
        [b["faults"]],
        {
            "routes": [
                {
                    "name": "abort",
                    "match": {"path_prefix": "/abort"},
                    "fault": {"abort": {"status": 418, "percent": 100}},
                },
                {
                    "name": "hdr",
                    "match": {"path_prefix": "/hdr"},
                    "fault": {"header_trigger": True},
                },
            ]
        },
    )
    mesh.destination("counted", [b["counted"]])
    b["hangs"].script(Hang())
    b["bulkhead"].script(Hang())
    b["pertry_slow"].script(Hang())
    b["pertry_ok"].script(Ok(b"fast"))
    process = SidecarProcess(mesh, tmp_path_factory.mktemp("main"))
    try:
        main = MainMesh(process.start(), b, closed)
        with main.client:
            yield main
    finally:
        process.stop()
