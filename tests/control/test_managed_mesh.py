"""A mesh run by the control plane, end to end: real processes, real mTLS, real backends.

The control plane (``seawall control``) serves config, endpoints and
certificates; sidecars started with ``--control`` register, subscribe and
talk mTLS to each other. Each test drives one promise of the control plane:
push, registry (lease expiry, deregistration, outlier ejection before expiry),
static stability (the control plane killed under load, a sidecar restarted
while it is down), replicas on one etcd failing over, certificate rotation.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import BackendLoop, Ok, wait_until
from control_server import ControlProcess
from etcd_server import EtcdServer
from managed import Load, ManagedSidecar, allocate, mesh_doc


class Mesh:
    """Control plane(s), two backend instances (v1, v2) and the caller ``api``, running."""

    def __init__(
        self,
        tmp: Path,
        *,
        control_args: tuple[str, ...] = (),
        replicas: int = 1,
        **policy: Any,
    ) -> None:
        self.tmp = tmp
        self.ports = allocate()
        self.loop = BackendLoop()
        self.b1 = self.loop.backend("b1", Ok(b"v1"))
        self.b2 = self.loop.backend("b2", Ok(b"v2"))
        self.ports["b2_app"] = self.b2.port
        self.doc = mesh_doc(self.ports, self.b1.port, **policy)
        state = tmp / "control"
        self.controls = [ControlProcess(state, *control_args)]
        for _ in range(replicas - 1):
            self.controls.append(ControlProcess(state, *control_args))
        self.admin = {"authorization": f"Bearer {self.controls[0].admin_token}"}
        self.apply()
        self.sidecars: list[ManagedSidecar] = []
        urls = ",".join(c.url for c in self.controls)
        p = self.ports
        self.backend1 = self.sidecar(
            "backend", "b1", p["b_admin"], ["--subset", "v1", "--label", "zone=a"], urls
        )
        self.backend2 = self.sidecar(
            "backend",
            "b2",
            p["b2_admin"],
            [
                "--subset",
                "v2",
                "--app-port",
                str(p["b2_app"]),
                "--inbound-port",
                str(p["b2_in"]),
                "--outbound-port",
                str(p["b2_out"]),
                "--admin-port",
                str(p["b2_admin"]),
            ],
            urls,
        )
        self.api = self.sidecar("api", "api", p["api_admin"], [], urls)
        for s in self.sidecars:
            s.start(wait=False)
        for s in self.sidecars:
            s.wait_ready()
        both = {f"127.0.0.1:{p['b_in']}", f"127.0.0.1:{p['b2_in']}"}
        wait_until(lambda: self.api.endpoints("backend") == both, 10, "both backends registered")

    def token(self, service: str) -> str:
        with httpx.Client(base_url=self.controls[0].url, trust_env=False) as c:
            r = c.post("/v1/join-tokens", json={"service": service}, headers=self.admin)
            return str(r.json()["token"])

    def sidecar(
        self, service: str, name: str, admin: int, extra: list[str], urls: str
    ) -> ManagedSidecar:
        s = ManagedSidecar(service, urls, self.token(service), self.tmp / name, admin, extra)
        self.sidecars.append(s)
        return s

    def apply(self, via: int = 0, **policy: Any) -> int:
        doc = self.doc
        if policy:
            doc = {**doc, "policies": {"backend": {**doc["policies"]["backend"], **policy}}}
        with httpx.Client(base_url=self.controls[via].url, trust_env=False) as c:
            r = c.put("/v1/config", content=yaml.safe_dump(doc), headers=self.admin)
            assert r.status_code == 200, r.text
            return int(r.json()["version"])

    def control_json(self, path: str, via: int = 0) -> Any:
        with httpx.Client(base_url=self.controls[via].url, trust_env=False) as c:
            return c.get(path).json()

    def load(self, count: int, seconds: float) -> Load:
        return Load(self.ports["api_up"], count=count, seconds=seconds)

    def close(self) -> None:
        for s in self.sidecars:  # every sidecar drains at once, then each is waited for
            s.send()
        for s in self.sidecars:
            s.wait_stopped()
        for c in self.controls:
            c.stop()
        self.loop.close()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    yield m
    m.close()


def test_push_registry_and_mtls_end_to_end(mesh: Mesh) -> None:
    p = mesh.ports
    with mesh.load(count=60, seconds=2) as load:
        pass
    assert load.failures == []
    assert load.ok == 60
    assert mesh.b1.hits > 0
    assert mesh.b2.hits > 0
    # the callee's inbound is strict mTLS: a plaintext client is refused
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{p['b_in']}/work", trust_env=False, timeout=2)
    # ... and it presents a certificate naming its service (TLS 1.3)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", p["b_in"]), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() == "TLSv1.3"
    # every sidecar reports the version it runs
    wait_until(
        lambda: len(mesh.control_json("/v1/status")["sidecars"]) == 3, 10, "3 sidecars reported"
    )
    digests = {s.digest() for s in (mesh.backend1, mesh.api)}
    version = mesh.apply(timeout="3s")
    assert version == 2
    for s in mesh.sidecars:
        wait_until(lambda s=s: s.digest() not in digests, 5, f"{s.state_dir.name} got version 2")
    wait_until(
        lambda: all(not x["lagging"] for x in mesh.control_json("/v1/status")["sidecars"]),
        10,
        "no sidecar lags",
    )
    rows = mesh.control_json("/v1/services")["instances"]
    assert {(r["service"], r["subset"], r["health"]) for r in rows} == {
        ("backend", "v1", "healthy"),
        ("backend", "v2", "healthy"),
        ("api", None, "healthy"),
    }
    # its labels, and the admin port it listens on (for the SLOs' scrapes)
    v1 = {"zone": "a", "seawall.admin": str(mesh.ports["b_admin"])}
    assert {r["subset"]: r["metadata"] for r in rows}["v1"] == v1
    sidecars = mesh.control_json("/v1/status")["sidecars"]
    assert all(s["certificate_serial"] for s in sidecars)
    assert all(s["certificate_expires"] > time.time() + 3600 for s in sidecars)


def test_expired_and_deregistered_instances_leave_every_endpoint_set(mesh: Mesh) -> None:
    p = mesh.ports
    b2 = f"127.0.0.1:{p['b2_in']}"
    # a crash: no deregistration; the lease (2 s) expires and the endpoint goes
    mesh.backend2.stop(signal.SIGKILL)
    with mesh.load(count=80, seconds=4) as load:
        wait_until(lambda: b2 not in mesh.api.endpoints("backend"), 10, "expired b2 dropped")
    assert load.failures == []  # connect failures to the dead one were retried elsewhere
    # it comes back with the same instance id (kept in its state directory)
    ids = {r["id"] for r in mesh.control_json("/v1/services")["instances"]}
    # the api sidecar's event log says so (issue 14: operators see what the mesh did)
    assert f" instance_left destination=backend endpoint={b2} subset=v2" in mesh.api.text()
    mesh.backend2.start()
    wait_until(lambda: b2 in mesh.api.endpoints("backend"), 10, "b2 back")
    assert f" instance_joined destination=backend endpoint={b2} subset=v2" in mesh.api.text()
    rows = mesh.control_json("/v1/services")["instances"]
    assert len(rows) == 3
    assert {r["id"] for r in rows} >= ids
    # a clean stop deregisters at once, before its process exits
    mesh.backend2.stop(signal.SIGTERM)
    rows = mesh.control_json("/v1/services")["instances"]
    assert all(r["subset"] != "v2" for r in rows)


def test_outlier_ejection_stops_traffic_before_the_lease_expires(mesh: Mesh) -> None:
    p = mesh.ports
    b2 = f"127.0.0.1:{p['b2_in']}"
    mesh.b2.script(default=Ok(b"broken", status=503))
    with mesh.load(count=40, seconds=2) as load:
        pass
    # 3 consecutive 503s eject b2 (each was retried on b1: callers saw none)
    assert load.failures == []
    hits = mesh.b2.hits
    with mesh.load(count=40, seconds=1) as load:
        pass
    assert load.failures == []
    assert mesh.b2.hits == hits  # ejected: no more traffic, though it is still registered
    assert b2 in mesh.api.endpoints("backend")
    assert f" endpoint_ejected destination=backend endpoint={b2} " in mesh.api.text()
    wait_until(
        lambda: (
            {r["subset"]: r for r in mesh.control_json("/v1/services")["instances"]}["v2"]["health"]
            == "ejected"
        ),
        5,
        "the api sidecar reported the ejection",
    )
    # the mesh-wide view: the api sidecar's edge to backend shows the ejection
    def api_edge() -> dict[str, Any]:
        (api,) = [s for s in mesh.control_json("/v1/status")["sidecars"] if s["service"] == "api"]
        edge: dict[str, Any] = api["edges"]["backend"]
        return edge

    wait_until(lambda: b2 in api_edge()["ejected"], 5, "the edge reported")
    assert api_edge()["breaker"] is None  # this mesh turns the breaker off
    rows = {r["subset"]: r for r in mesh.control_json("/v1/services")["instances"]}
    assert rows["v2"]["ejected_by"]
    assert rows["v2"]["ejected_by"][0].startswith("api.")
    assert rows["v1"]["health"] == "healthy"


def test_static_stability_control_plane_killed_under_load(mesh: Mesh) -> None:
    control = mesh.controls[0]
    with mesh.load(count=200, seconds=4) as load:
        time.sleep(1)
        control.stop(signal.SIGKILL)
    assert load.failures == []
    assert load.ok == 200
    wait_until(lambda: " control_plane_lost " in mesh.backend1.text(), 10, "the loss logged")
    # a sidecar restarted while the control plane is down comes up with its
    # persisted snapshot and certificate, and serves
    mesh.api.stop()
    mesh.api.start()
    assert "persisted snapshot" in mesh.api.text()
    with mesh.load(count=40, seconds=1) as load:
        pass
    assert load.failures == []
    # the control plane comes back (same state): sidecars resubscribe, new versions flow
    control.start()
    before = mesh.api.digest()
    mesh.apply(timeout="4s")
    wait_until(lambda: mesh.api.digest() != before, 15, "the api sidecar resubscribed")
    wait_until(lambda: " control_plane_regained " in mesh.backend1.text(), 10, "the return")


@pytest.mark.usefixtures("etcd")
def test_two_replicas_on_etcd_fail_over_without_failed_requests(
    tmp_path: Path, etcd: EtcdServer
) -> None:
    prefix = f"/t-{uuid.uuid4().hex[:8]}/"
    m = Mesh(
        tmp_path,
        control_args=("--store", "etcd", "--etcd", etcd.url, "--etcd-prefix", prefix),
        replicas=2,
    )
    try:
        with m.load(count=200, seconds=5) as load:
            time.sleep(1)
            m.controls[0].stop(signal.SIGKILL)
            time.sleep(0.5)
            before = m.api.digest()
            assert m.apply(via=1, timeout="5s") == 2
            wait_until(lambda: m.api.digest() != before, 10, "push through replica 2")
        assert load.failures == []
        assert load.ok == 200
        # leases are kept alive through replica 2: after several TTLs, all still registered
        time.sleep(3)
        rows = m.control_json("/v1/services", via=1)["instances"]
        assert len(rows) == 3
        status = m.control_json("/v1/status", via=1)
        assert status["config_version"] == 2
        wait_until(
            lambda: all(not s["lagging"] for s in m.control_json("/v1/status", via=1)["sidecars"]),
            10,
            "every sidecar reports version 2 to replica 2",
        )
    finally:
        m.close()


def test_certificates_rotate_under_load_without_failed_requests(tmp_path: Path) -> None:
    m = Mesh(tmp_path, control_args=("--cert-ttl", "3s"))
    try:

        def serials() -> dict[str, str]:
            return {
                s["id"]: s["certificate_serial"] for s in m.control_json("/v1/status")["sidecars"]
            }

        wait_until(lambda: len(serials()) == 3, 10, "3 sidecars reported")
        first = serials()
        with m.load(count=240, seconds=6) as load:
            pass
        assert load.failures == []
        assert load.ok == 240
        wait_until(
            lambda: all(serials()[k] != v for k, v in first.items()), 10, "every cert renewed"
        )
        assert " certificate_rotated destination= serial=" in m.api.text()
    finally:
        m.close()


def test_the_control_plane_scrapes_the_sidecars_for_the_slos(tmp_path: Path) -> None:
    m = Mesh(tmp_path, control_args=("--slo-interval", "0.5s"))
    try:
        m.doc["slos"] = {
            "backend": {"availability": "99.9%", "latency": {"threshold": "1s", "percent": "99%"},
                        "window": "2d"},
            "backend-from-api": {"service": "backend", "measured_at": "callers",
                                 "availability": "99%"},
        }  # fmt: skip
        m.apply()

        def objectives() -> dict[str, Any]:
            return {o["name"]: o for o in m.control_json("/v1/slos")["objectives"]}

        # a sidecar's first page is a baseline: what it counted before is not charged
        wait_until(lambda: "backend-from-api:availability" in objectives(), 10, "the SLOs")
        passes = m.control_json("/v1/slos")["passes"]
        wait_until(lambda: m.control_json("/v1/slos")["passes"] >= passes + 2, 10, "2 passes")
        with m.load(count=40, seconds=2) as load:
            pass
        assert load.ok == 40

        # the backend's two inbound sidecars (their admin ports as they registered them),
        # and the api's outbound sidecar for the callers' view
        wait_until(
            lambda: objectives().get("backend:availability", {}).get("events", {}).get("total")
            == 40
            and objectives()["backend-from-api:availability"]["events"]["total"] == 40,
            20,
            "the SLOs counted the 40 requests",
        )
        found = objectives()
        assert found["backend:availability"]["sli"] == 100.0
        assert found["backend:availability"]["budget_remaining"] == 1.0
        assert found["backend:latency"]["events"]["total"] == 40
        assert found["backend:availability"]["service"] == "backend"
        shown = subprocess.run(
            [sys.executable, "-m", "seawall", "slo", "--control", m.controls[0].url],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0].split()[:3] == ["OBJECTIVE", "TARGET", "SLI"]
        row = next(line for line in lines if line.startswith("backend:availability"))
        assert row.split()[1:3] == ["99.9%", "100.000%"]
        assert "alerts: none" in shown.stdout
        # how the budget was spent: one row an hour over a 2-day window
        spent = subprocess.run(
            [sys.executable, "-m", "seawall", "slo", "history", "backend:availability",
             "--control", m.controls[0].url, "--json"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert spent.returncode == 0, spent.stderr
        history = json.loads(spent.stdout)
        assert sum(r["total"] for r in history["rows"]) == 40
        assert history["rows"][-1]["budget_remaining"] == 1.0
        with httpx.Client(base_url=m.controls[0].url, trust_env=False) as c:
            assert c.get("/v1/slos/nope:availability/history").status_code == 404
            bad = c.get("/v1/slos/backend:availability/history", params={"step": "fast"})
            assert bad.status_code == 400
            assert "query.step" in bad.json()["error"]
        # a restart keeps the history (slo.db in the state dir, saved as it stopped)
        m.controls[0].stop()
        m.controls[0].start()
        wait_until(
            lambda: objectives().get("backend:availability", {}).get("events", {}).get("total")
            == 40,
            20,
            "the 40 requests counted again after the restart",
        )
    finally:
        m.close()
