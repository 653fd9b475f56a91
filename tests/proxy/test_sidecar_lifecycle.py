"""Config reloads (SIGHUP, file change, invalid config) and graceful shutdown (SIGTERM).

Each test runs a sidecar of its own, since each changes or stops it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import threading
from collections.abc import Callable

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, Ok, RawConn, Trickle, wait_until
from conftest import Mesh, SidecarProcess

Start = Callable[[Mesh], SidecarProcess]
NEW_ROUTE = {
    "name": "new",
    "match": {"path_prefix": "/new"},
    "fault": {"abort": {"status": 418, "percent": 100}},
}


@pytest.fixture
def sidecar_svc(sidecar_loop: BackendLoop) -> Backend:
    """A backend: slow on /slow (0.8 s), echoing elsewhere."""
    backend = sidecar_loop.backend("svc", Echo())
    backend.script(Echo(), paths={"/slow": Ok(b"slow done", delay=0.8)})
    return backend


def mesh_for(backend: Backend) -> Mesh:
    mesh = Mesh(backend)
    mesh.destination("svc", [backend], {"timeout": "5s"})
    return mesh


def in_flight(sidecar: SidecarProcess, backend: Backend) -> tuple[threading.Thread, list[object]]:
    """Start GET /slow through the sidecar in a thread; return once the backend has it."""
    out: list[object] = []

    def run() -> None:
        try:
            with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
                out.append(client.get("http://svc/slow"))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    backend.wait_heads(1)
    return thread, out


def status(sidecar: SidecarProcess, path: str) -> int:
    with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
        return client.get(f"http://svc{path}").status_code


def test_sighup_reload_changes_behaviour_without_dropping_in_flight(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    mesh = mesh_for(sidecar_svc)
    sidecar = sidecar_start(mesh)
    digest = sidecar.admin_get("/config").json()["digest"]
    assert status(sidecar, "/new") == 200
    thread, out = in_flight(sidecar, sidecar_svc)

    mesh.doc["policies"]["svc"]["routes"] = [NEW_ROUTE]
    sidecar.rewrite(mesh, keep_mtime=True)  # only SIGHUP can tell
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: status(sidecar, "/new") == 418, timeout=3, what="the new route")

    thread.join(5)
    assert isinstance(out[0], httpx.Response)
    assert (out[0].status_code, out[0].content) == (200, b"slow done")
    assert status(sidecar, "/other") == 200
    assert sidecar.admin_get("/config").json()["digest"] != digest
    assert "config reloaded" in sidecar.stderr()


def test_settings_that_wait_for_a_restart_are_said_and_shown(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    """A new listener port or worker count cannot be taken live: the new config
    runs, the old listeners stay, and the sidecar says what waits for a restart
    (its log, and /config next to the version)."""
    mesh = mesh_for(sidecar_svc)
    sidecar = sidecar_start(mesh)
    doc = sidecar.admin_get("/config").json()
    assert (doc["version"], doc["restart_needed"]) == (1, [])
    old_inbound = mesh.inbound
    new_inbound = mesh.closed_port()
    mesh.doc["services"]["app"]["sidecar"]["inbound"] = new_inbound
    mesh.doc["sidecar"]["workers"] = 2
    mesh.doc["policies"]["svc"]["routes"] = [NEW_ROUTE]
    sidecar.rewrite(mesh, keep_mtime=True)
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: status(sidecar, "/new") == 418, timeout=3, what="the new route")
    doc = sidecar.admin_get("/config").json()
    assert doc["version"] == 2
    assert doc["restart_needed"] == [
        f"listeners.inbound: 127.0.0.1:{old_inbound} -> 127.0.0.1:{new_inbound}",
        "workers: 1 -> 2",
    ]
    err = sidecar.stderr()
    assert (
        f'restart_needed destination= settings=["listeners.inbound: 127.0.0.1:{old_inbound} -> '
        f'127.0.0.1:{new_inbound}", "workers: 1 -> 2"]'
    ) in err
    assert "config reloaded: version 2" in err
    # the old inbound listener still serves; the new port is not bound
    with httpx.Client(timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{old_inbound}/in").status_code == 200
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", new_inbound), 1):
        pass


def test_a_kept_alive_connection_gets_the_new_config_at_its_next_request(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    """A connection idle across a reload serves its next request with the new
    routes (it once kept the config of the moment it went idle)."""
    mesh = mesh_for(sidecar_svc)
    sidecar = sidecar_start(mesh)
    request = b"GET /new HTTP/1.1\r\nHost: svc\r\n\r\n"
    with RawConn(sidecar.outbound, timeout=5) as conn:  # one socket throughout
        conn.send(request)
        assert conn.response().status == 200
        mesh.doc["policies"]["svc"]["routes"] = [NEW_ROUTE]
        sidecar.rewrite(mesh, keep_mtime=True)
        sidecar.signal(signal.SIGHUP)
        wait_until(lambda: "config reloaded" in sidecar.stderr(), timeout=3, what="the reload")
        conn.send(request)
        assert conn.response().status == 418


def test_a_changed_config_file_is_reloaded(sidecar_start: Start, sidecar_svc: Backend) -> None:
    mesh = mesh_for(sidecar_svc)
    sidecar = sidecar_start(mesh)
    assert status(sidecar, "/new") == 200
    mesh.doc["policies"]["svc"]["routes"] = [NEW_ROUTE]
    before = sidecar.config.stat().st_mtime_ns
    sidecar.rewrite(mesh)
    os.utime(sidecar.config, ns=(before + 2_000_000_000, before + 2_000_000_000))
    wait_until(lambda: status(sidecar, "/new") == 418, timeout=3, what="the file change")


def test_an_invalid_config_is_rejected_and_the_old_one_kept(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    mesh = mesh_for(sidecar_svc)
    mesh.doc["policies"]["svc"]["routes"] = [NEW_ROUTE]
    sidecar = sidecar_start(mesh)
    digest = sidecar.admin_get("/config").json()["digest"]
    assert status(sidecar, "/new") == 418

    policy = mesh.doc["policies"]["svc"]
    policy["routes"] = []
    policy["retry"] = {"attempts": 0}
    policy["timeout"] = "-1s"
    sidecar.rewrite(mesh, keep_mtime=True)
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: "rejected" in sidecar.stderr(), timeout=3, what="the rejection")

    err = sidecar.stderr()
    assert "policies.svc.retry.attempts" in err
    assert "policies.svc.timeout" in err  # every error at once
    assert status(sidecar, "/new") == 418  # the old routes still apply
    assert status(sidecar, "/x") == 200
    assert sidecar.admin_get("/config").json()["digest"] == digest
    assert sidecar.proc is not None
    assert sidecar.proc.poll() is None


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains_in_flight_requests_then_exits_0(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    sidecar = sidecar_start(mesh_for(sidecar_svc))
    thread, out = in_flight(sidecar, sidecar_svc)
    sidecar.signal(signal.SIGTERM)
    wait_until(lambda: refused(sidecar.outbound), timeout=0.5, what="new connections refused")
    assert not out  # still in flight while new connections are refused
    thread.join(5)
    assert isinstance(out[0], httpx.Response)
    assert (out[0].status_code, out[0].content) == (200, b"slow done")
    assert sidecar.proc is not None
    assert sidecar.proc.wait(5) == 0
    assert "draining" in sidecar.stderr()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _core_threads(pid: int) -> list[int]:
    """Threads of ``pid`` that run the Rust core (named ``seawall-core``)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                if comm.read().strip() == "seawall-core":
                    found.append(int(tid))
        except OSError:
            continue
    return found


def test_workers_are_threads_of_one_process(sidecar_start: Start, sidecar_svc: Backend) -> None:
    """``workers: N`` runs N core threads in one process: one pool, breaker and budget
    per destination (not N of each), and one process's memory."""
    mesh = mesh_for(sidecar_svc)
    mesh.doc["sidecar"]["workers"] = 2
    sidecar = sidecar_start(mesh)
    assert _children(sidecar.pid) == []
    assert len(_core_threads(sidecar.pid)) >= 2
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: status(sidecar, "/x"), range(40)))
    assert statuses == [200] * 40
    assert sidecar.terminate() == 0


def test_access_log_is_one_json_line_per_request(
    sidecar_start: Start, sidecar_svc: Backend
) -> None:
    mesh = mesh_for(sidecar_svc)
    mesh.doc["sidecar"]["access_log"] = True
    sidecar = sidecar_start(mesh)
    with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
        client.get("http://svc/logged?q=1", headers={"x-request-id": "abc123"})
    sidecar.terminate()
    records = [json.loads(line) for line in sidecar.stdout().splitlines() if line.strip()]
    (record,) = [r for r in records if r["path"] == "/logged?q=1"]
    assert record["method"] == "GET"
    assert record["status"] == 200
    assert record["destination"] == "svc"
    assert record["request_id"] == "abc123"
    assert record["duration_ms"] >= 0


def test_access_log_is_off_by_default(sidecar_start: Start, sidecar_svc: Backend) -> None:
    sidecar = sidecar_start(mesh_for(sidecar_svc))
    assert status(sidecar, "/quiet") == 200
    sidecar.terminate()
    assert sidecar.stdout() == ""


def test_idle_timeout_cuts_an_upstream_that_goes_silent(
    sidecar_start: Start, sidecar_loop: BackendLoop
) -> None:
    backend = sidecar_loop.backend("trickle", Echo())
    backend.script(
        Echo(),
        paths={
            "/stalls": Trickle(b"x" * 40, pieces=4, interval=0.6),  # silent 0.6 s between pieces
            "/flows": Trickle(b"y" * 40, pieces=8, interval=0.05),  # never silent for long
        },
    )
    mesh = Mesh(backend)
    mesh.destination("trickle", [backend], {"timeout": "5s", "idle_timeout": "300ms"})
    sidecar = sidecar_start(mesh)
    with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
        flowing = client.get("http://trickle/flows")
        assert flowing.status_code == 200
        assert flowing.content == b"y" * 40  # 0.4 s in all, but never 300 ms of silence
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("http://trickle/stalls")  # cut mid-body: incomplete response
