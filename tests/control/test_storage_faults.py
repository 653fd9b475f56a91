"""Issue 8, part 4: a full disk is a clear 503, and nothing already stored is affected.

The state directory is a real tmpfs of 4 MiB, filled to the last byte (this
needs root, as in CI and on the developers' machines). Where mounting is not
allowed, a store whose SQLite calls fail with SQLite's own "database or disk
is full" error plays the disk instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_server import InProcessControl

from seawall.control.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
MESH = """\
mesh: shop
services:
  orders: {{port: 8002, sidecar: {{inbound: 18002, outbound: 15002, admin: 19002}}}}
policies:
  orders: {{timeout: {timeout}}}
"""


class _FullDisk:
    """Fills a directory's file system, and frees it again."""

    def __init__(self, directory: Path) -> None:
        self.filler = directory / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = 65536
            while size:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size //= 2
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


class _FailingStore(SqliteStore):
    """A SQLite store whose writes fail as on a full disk (when no tmpfs can be mounted)."""

    full = False

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False

    @contextlib.contextmanager
    def _transaction(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        if self.full:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13  # type: ignore[attr-defined]
            raise self._error(what, error)
        with super()._transaction(what, durable=durable) as conn:
            yield conn


@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | None]:
    """A 4 MiB tmpfs; ``None`` for the injected fault (and where mounting is refused)."""
    if request.param == "injected":
        yield None
        return
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_503_and_loses_nothing(tmp_path: Path, small_disk: Path | None) -> None:
    state = (small_disk or tmp_path) / "state"
    failing = None if small_disk is not None else _FailingStore(state / "seawall.db")
    control = InProcessControl(state, **({"store": failing} if failing else {}))
    disk: _FullDisk | _FailingStore = failing if failing is not None else _FullDisk(state)
    try:
        with control.client(**control.admin) as c:
            first = c.put("/v1/config", content=MESH.format(timeout="2s"))
            assert first.status_code == 200
            disk.fill()
            r = c.put("/v1/config", content=MESH.format(timeout="3s"))
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error.startswith("store unavailable: disk full (state dir ")
            assert str(state) in error
            # the CLI says the same and fails
            (tmp_path / "mesh.yaml").write_text(MESH.format(timeout="4s"))
            env = {
                **os.environ,
                "SEAWALL_CONTROL": control.url,
                "SEAWALL_TOKEN": control.tokens.admin,
            }
            done = subprocess.run(
                [sys.executable, "-m", "seawall", "apply", "-f", str(tmp_path / "mesh.yaml")],
                capture_output=True, text=True, env=env, cwd=ROOT, check=False,
            )  # fmt: skip
            assert done.returncode != 0
            assert "503" in done.stderr
            assert "store unavailable: disk full" in done.stderr
            # what was stored is intact, and served
            current = c.get("/v1/config").json()
            assert current["version"] == 1
            assert current["config"]["policies"]["orders"]["timeout"] == 2.0
            # once there is room again, applies work again
            disk.free()
            again = c.put("/v1/config", content=MESH.format(timeout="3s"))
            assert again.status_code == 200, again.text
            assert again.json()["version"] == 2
    finally:
        disk.free()
        control.close()
