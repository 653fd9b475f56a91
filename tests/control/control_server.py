"""A control-plane replica for tests: in-process on its own event loop thread, or a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from seawall.control.server import ControlServer
from seawall.control.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class InProcessControl:
    """A :class:`ControlServer` on 127.0.0.1:<free port>, served by a loop in a thread."""

    def __init__(self, state_dir: Path, **kwargs: Any) -> None:
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        store = kwargs.pop("store", None) or SqliteStore(state_dir / "seawall.db")
        self.server = ControlServer(store, state_dir, port=0, **kwargs)
        self.run(self.server.start())
        self.url = self.server.url
        assert self.server.tokens is not None
        self.tokens = self.server.tokens
        self.admin = {"authorization": f"Bearer {self.tokens.admin}"}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def join(self, service: str) -> dict[str, str]:
        """Headers with the join token of ``service``."""
        return {"authorization": f"Bearer {self.tokens.join_token(service)}"}

    def client(self, **headers: str) -> httpx.Client:
        """A client of the API (no proxy from the environment)."""
        return httpx.Client(base_url=self.url, trust_env=False, timeout=10.0, headers=headers)

    def close(self) -> None:
        """Stop the server and its loop."""
        with contextlib.suppress(Exception):
            self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def applied(state_dir: Path, mesh: str) -> Iterator[InProcessControl]:
    """An :class:`InProcessControl` with ``mesh`` applied (version 1), closed after."""
    server = InProcessControl(state_dir)
    try:
        with server.client(**server.admin) as c:
            answer = c.put("/v1/config", content=mesh)
            assert answer.status_code == 200, answer.text
        yield server
    finally:
        server.close()


class ControlProcess:
    """``python -m seawall control`` as a subprocess; its URL read from its log."""

    def __init__(self, state_dir: Path, *extra: str, listen: str | None = None) -> None:
        if listen is None:  # a fixed free port: a restart listens where sidecars look
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                listen = f"127.0.0.1:{s.getsockname()[1]}"
        self.state_dir = state_dir
        self.log = state_dir.parent / f"{state_dir.name}-control.log"
        self.args = [
            sys.executable, "-m", "seawall", "control",
            "--state-dir", str(state_dir), "--listen", listen, *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.start()

    def start(self) -> None:
        """Start (or restart) the process and wait until it serves."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("HTTP_PROXY", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            found = re.findall(rf"\[{self.proc.pid}\]: serving (http://\S+) ", text)
            if found:
                self.url = found[-1]
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"control plane did not start:\n{self.log.read_text()}")

    @property
    def admin_token(self) -> str:
        """The admin token it created in its state directory."""
        return (self.state_dir / "admin-token").read_text().strip()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL to simulate a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
