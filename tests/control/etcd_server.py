"""A real single-member etcd for tests: free loopback ports, a temporary data dir.

:class:`EtcdServer` starts ``etcd`` (Debian's etcd-server, installed by
``scripts/install_etcd.sh``; ``make test`` runs it), waits until ``/health``
says the member has a leader, and kills it at :meth:`~EtcdServer.stop`.
:meth:`~EtcdServer.stop` then :meth:`~EtcdServer.start` again restarts it on
the same ports and data dir, as a crash and recovery would: clients keep
their URL, the data survives.

Raft timings are shortened (heartbeat 50 ms, election 500 ms) so the member
elects itself quickly and etcd's minimum lease TTL drops to 1 s (it is
``1.5 * election timeout`` rounded up), which keeps lease-expiry tests short.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from backends import free_ports  # tests/proxy, on sys.path (conftest)

INSTALL_HINT = "install it with `bash scripts/install_etcd.sh` (`make test` does)"


def etcd_executable() -> str:
    """The path of ``etcd``; raises :class:`RuntimeError` with the install hint if missing."""
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError(f"etcd is not on PATH: {INSTALL_HINT}")
    return found


class EtcdServer:
    """One ``etcd`` process serving http://127.0.0.1:<port> (see the module docstring)."""

    def __init__(self, workdir: Path, *, start_timeout: float = 15.0) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "etcd.log"
        self.client_port, self.peer_port = free_ports(2)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL (what a store is given as an endpoint)."""
        return f"http://127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        """The etcd command line."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            etcd_executable(),
            "--name=default",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
        ]

    def start(self) -> None:
        """Start etcd and wait until it is healthy (raises :class:`RuntimeError` if not)."""
        if self.process is not None:
            raise RuntimeError("etcd is already running")
        command = self.command()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"etcd exited with {code} at start:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"etcd not healthy at {self.url} within {self.start_timeout}s:\n{self.log_tail()}"
        )

    def healthy(self) -> bool:
        """Whether ``/health`` answers ``{"health": "true"}``."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1.0) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Kill etcd (SIGKILL, like a crash) and wait for it; no-op if not running."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self) -> None:
        """:meth:`stop` then :meth:`start`: same ports, same data."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines etcd logged."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
