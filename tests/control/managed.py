"""A mesh run by a real control plane: sidecars started with ``--control``, real backends.

Service ``api`` is the caller (tests send requests to its sidecar's
per-destination port for ``backend``); service ``backend`` runs one or more
instances, each a scripted backend (tests/proxy/backends.py) behind its own
sidecar, registered with the control plane. Every sidecar gets its config,
endpoints and certificate from the control plane; their traffic is mTLS.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from backends import Backend, free_ports, wait_until

ROOT = Path(__file__).resolve().parents[2]


def mesh_doc(ports: dict[str, int], backend_app: int, **policy: Any) -> dict[str, Any]:
    """The mesh: api -> backend (subsets v1, v2), strict mTLS, api allowed to call backend."""
    return {
        "mesh": "t",
        "services": {
            "api": {
                "port": ports["api_app"],
                "sidecar": {
                    "inbound": ports["api_in"],
                    "outbound": ports["api_out"],
                    "admin": ports["api_admin"],
                    "upstreams": {"backend": ports["api_up"]},
                },
                "mtls": "strict",
            },
            "backend": {
                "port": backend_app,
                "sidecar": {
                    "inbound": ports["b_in"],
                    "outbound": ports["b_out"],
                    "admin": ports["b_admin"],
                },
                "subsets": {"v1": {}, "v2": {}},
                "mtls": "strict",
                "authorization": {
                    "default": "deny",
                    "rules": [{"action": "allow", "from": ["api"]}],
                },
            },
        },
        "policies": {
            "backend": {
                "timeout": "2s",
                "retry": {"attempts": 3, "on": ["gateway-error", "connect-failure", "reset"],
                          "backoff": {"base": "5ms", "max": "20ms"}},
                "circuit_breaker": {"enabled": False},
                "outlier": {
                    "consecutive_5xx": 3, "base_ejection": "30s", "max_ejected_percent": "50%",
                },
            }
            | policy
        },
        "limits": {"idle_timeout": "5s"},
        "sidecar": {"drain_grace": "2s"},
    }


@dataclass
class ManagedSidecar:
    """``python -m seawall sidecar --control ...`` for one instance."""

    service: str
    urls: str
    token: str
    state_dir: Path
    admin: int
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    def start(self, *, wait: bool = True) -> ManagedSidecar:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = str(ROOT / "src")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "seawall", "sidecar",
                    "--service", self.service,
                    "--control", self.urls,
                    "--join-token", self.token,
                    "--state-dir", str(self.state_dir),
                    "--lease-ttl", "2s",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited {self.proc.returncode}:\n{self.text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.admin}/ready", timeout=0.5,
                             trust_env=False).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"sidecar not ready in {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def admin_json(self, path: str) -> Any:
        return httpx.get(f"http://127.0.0.1:{self.admin}{path}", timeout=5,
                         trust_env=False).json()

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.admin}/metrics", timeout=5,
                         trust_env=False).text

    def endpoints(self, destination: str) -> set[str]:
        clusters = self.admin_json("/clusters")["clusters"]
        for c in clusters:
            if c["name"] == destination:
                return {f"{e['address']}:{e['port']}" for e in c["endpoints"]}
        raise AssertionError(f"no cluster {destination}")

    def digest(self) -> str:
        return str(self.admin_json("/config")["digest"])

    def send(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` (if it runs), without waiting: several drain at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_stopped(self) -> None:
        """Wait for the exit :meth:`send` asked for (SIGKILL after 10 s)."""
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Load:
    """A bounded load through the caller's sidecar: ``count`` requests, ``workers`` threads."""

    def __init__(self, port: int, *, count: int, seconds: float, workers: int = 4) -> None:
        self.url = f"http://127.0.0.1:{port}/work"
        self.count = count
        self.deadline = time.monotonic() + 3 * seconds + 5  # the bound; pacing aims at `seconds`
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._left = count
        self.threads = [threading.Thread(target=self._run) for _ in range(workers)]
        self.pause = seconds / count * workers

    def _take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.monotonic() > self.deadline:
                return False
            self._left -= 1
            return True

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=5) as client:
            while self._take():
                try:
                    r = client.get(self.url)
                    if r.status_code == 200:
                        with self._lock:
                            self.ok += 1
                    else:
                        with self._lock:
                            self.failures.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(self.pause)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self.threads:
            t.join(60)


def allocate() -> dict[str, int]:
    names = ["api_app", "api_in", "api_out", "api_admin", "api_up", "b_in", "b_out", "b_admin",
             "b2_app", "b2_in", "b2_out", "b2_admin"]
    return dict(zip(names, free_ports(len(names)), strict=True))


def write_mesh(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


__all__ = ["Backend", "Load", "ManagedSidecar", "allocate", "mesh_doc", "wait_until",
           "write_mesh"]
