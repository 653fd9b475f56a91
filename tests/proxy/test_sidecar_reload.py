"""Reloads of a config file being written (issue 8, part 3): a real sidecar process.

The file is written the way the issue found it applied half-done: the first
lines of a config (a valid mesh without its ``policies``), a pause shorter
than the settle interval, then the rest; and a value cut short
(``timeout: 12`` of ``120s``). A sampler thread reads the running config from
the admin ``/config`` endpoint every few milliseconds throughout, so that
"never ran the partial config" is checked, not assumed. Real time: these
exercise the real watcher (poll 0.25 s, default settle 1.5 s).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import Backend, BackendLoop, Echo, wait_until
from conftest import Mesh, SidecarProcess

from seawall.config import load_mesh

Start = Callable[[Mesh], SidecarProcess]
SETTLE = 1.5
"""The default ``sidecar.reload_settle``."""
PAUSE = 0.7
"""The writer's pause: well under the settle interval."""


class PoliciesLast(Mesh):
    """A mesh.yaml whose ``policies`` section comes last, as in the issue's file."""

    def yaml(self) -> str:
        doc = {k: v for k, v in self.doc.items() if k != "policies"}
        doc["policies"] = self.doc["policies"]
        return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def sidecar_svc(sidecar_loop: BackendLoop) -> Backend:
    return sidecar_loop.backend("svc", Echo())


def mesh_for(backend: Backend, timeout: str = "5s") -> PoliciesLast:
    mesh = PoliciesLast(backend)
    mesh.destination("svc", [backend], {"timeout": timeout})
    return mesh


class Sampler:
    """Reads the running config (``/config``) every few ms in a thread."""

    def __init__(self, sidecar: SidecarProcess) -> None:
        self.url = f"http://127.0.0.1:{sidecar.admin}/config"
        self.samples: list[tuple[float, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                doc = client.get(self.url).json()
                self.samples.append((time.monotonic(), doc["digest"], doc["config"]))
                time.sleep(0.005)

    def digest(self) -> str:
        return self.samples[-1][1] if self.samples else ""

    def digests(self) -> set[str]:
        return {digest for _, digest, _ in self.samples}

    def timeouts(self) -> set[float]:
        return {config["policies"]["svc"]["timeout"] for _, _, config in self.samples}

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        wait_until(lambda: bool(self.samples), timeout=5, what="a first sample")
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


def write_in_two_parts(path: Path, first: str, rest: str, pause: float = PAUSE) -> float:
    """Truncate and write ``first``, pause, then append ``rest`` (same inode, in place).

    Returns the time of the last write."""
    with path.open("w") as file:
        file.write(first)
        file.flush()
        time.sleep(pause)
        file.write(rest)
        file.flush()
        return time.monotonic()


def running_timeout(sidecar: SidecarProcess) -> float:
    timeout: float = sidecar.admin_get("/config").json()["config"]["policies"]["svc"]["timeout"]
    return timeout


def reloads(sidecar: SidecarProcess) -> int:
    return sidecar.stderr().count("config reloaded")


def test_a_partial_write_with_a_pause_is_never_applied(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    sidecar = sidecar_start(mesh_for(sidecar_svc))
    full_mesh = mesh_for(sidecar_svc, timeout="120s")
    full_mesh.doc["policies"]["svc"]["retry"] = {"attempts": 3}
    full = full_mesh.yaml()
    first, rest = full.split("policies:", 1)
    rest = "policies:" + rest
    partial = load_mesh(first)  # the first lines: a valid config, with default policies
    assert partial.policy_for("svc").timeout == 15.0
    initial = sidecar.admin_get("/config").json()["digest"]
    assert len({initial, partial.digest(), load_mesh(full).digest()}) == 3

    with Sampler(sidecar).running() as sampler:
        done = write_in_two_parts(sidecar.config, first, rest)
        wait_until(
            lambda: sampler.digest() == load_mesh(full).digest(),
            timeout=SETTLE + 3,
            what="the full config",
        )
        applied = time.monotonic()
    assert partial.digest() not in sampler.digests()
    assert sampler.digests() == {initial, load_mesh(full).digest()}
    assert applied - done >= SETTLE - 0.1  # written in place: it had to be still first
    assert sampler.timeouts() == {5.0, 120.0}
    assert reloads(sidecar) == 1
    sidecar.assert_alive()


def test_a_write_cut_mid_value_never_runs_with_the_cut_value(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    sidecar = sidecar_start(mesh_for(sidecar_svc))
    full = mesh_for(sidecar_svc, timeout="120s").yaml()
    assert full.rstrip().endswith("timeout: 120s")
    first, rest = full.rsplit("0s", 1)
    rest = "0s" + rest
    assert first.endswith("timeout: 12")
    assert load_mesh(first).policy_for("svc").timeout == 12.0  # a bare number is seconds

    with Sampler(sidecar).running() as sampler:
        write_in_two_parts(sidecar.config, first, rest)
        wait_until(lambda: 120.0 in sampler.timeouts(), timeout=SETTLE + 3, what="120s")
        time.sleep(0.3)  # and nothing after it
    assert sampler.timeouts() == {5.0, 120.0}
    assert 12.0 not in sampler.timeouts()
    assert reloads(sidecar) == 1


def test_an_atomic_rename_is_applied_at_once(sidecar_start: Start, sidecar_svc: Backend) -> None:
    mesh = mesh_for(sidecar_svc)
    mesh.doc["sidecar"]["reload_settle"] = "5s"  # only a rename can be this quick
    sidecar = sidecar_start(mesh)
    new = mesh_for(sidecar_svc, timeout="7s")
    new.doc["sidecar"]["reload_settle"] = "5s"
    temp = sidecar.config.with_name(".mesh.yaml.tmp")
    temp.write_text(new.yaml())

    with Sampler(sidecar).running() as sampler:
        renamed = time.monotonic()
        os.replace(temp, sidecar.config)
        wait_until(lambda: 7.0 in sampler.timeouts(), timeout=3, what="the renamed config")
        applied = time.monotonic()
    assert applied - renamed < 1.0  # a poll (0.25 s) and a reload, not the 5 s settle
    assert sampler.timeouts() == {5.0, 7.0}
    assert "config file changed (replaced)" in sidecar.stderr()


def test_an_in_place_edit_waits_for_the_configured_settle_interval(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    mesh = mesh_for(sidecar_svc)
    mesh.doc["sidecar"]["reload_settle"] = "500ms"
    sidecar = sidecar_start(mesh)
    new = mesh_for(sidecar_svc, timeout="7s")
    new.doc["sidecar"]["reload_settle"] = "500ms"

    with Sampler(sidecar).running() as sampler:
        sidecar.config.write_text(new.yaml())
        written = time.monotonic()
        wait_until(lambda: 7.0 in sampler.timeouts(), timeout=3, what="the edit")
        applied = time.monotonic()
    assert 0.5 - 0.1 <= applied - written < 1.5
    assert "config file changed (still for 0.5s)" in sidecar.stderr()


def test_sighup_applies_whatever_the_file_holds_at_once(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    # A reload validates the bytes in a short-lived child (about 0.5 s): a settle
    # interval of 5 s tells "at once" apart from "once settled" with room to spare.
    mesh = mesh_for(sidecar_svc)
    mesh.doc["sidecar"]["reload_settle"] = "5s"
    sidecar = sidecar_start(mesh)
    long = mesh_for(sidecar_svc, timeout="120s")
    long.doc["sidecar"]["reload_settle"] = "5s"
    full = long.yaml()
    first = full.rsplit("0s", 1)[0]  # `timeout: 12`: SIGHUP is an order, not a guess
    with sidecar.config.open("w") as file:
        file.write(first)
        file.flush()
        sidecar.signal(signal.SIGHUP)
        wait_until(
            lambda: running_timeout(sidecar) == 12.0,
            timeout=3,  # well before the settle interval
            what="the SIGHUP reload",
        )
        file.write("0s\n")
    wait_until(
        lambda: running_timeout(sidecar) == 120.0,
        timeout=5 + 3,
        what="the completed file",
    )


def test_a_deleted_config_file_keeps_the_running_config(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    sidecar = sidecar_start(mesh_for(sidecar_svc))
    digest = sidecar.admin_get("/config").json()["digest"]
    sidecar.config.unlink()
    time.sleep(SETTLE + 0.5)
    assert sidecar.admin_get("/config").json()["digest"] == digest
    sidecar.assert_alive()
    sidecar.config.write_text(mesh_for(sidecar_svc, timeout="7s").yaml())  # back, in place
    wait_until(
        lambda: running_timeout(sidecar) == 7.0,
        timeout=SETTLE + 3,
        what="the recreated file",
    )
