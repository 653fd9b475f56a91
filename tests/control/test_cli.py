"""``seawall control``, ``apply``, ``status``, ``services`` and ``certs`` as real processes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_server import ControlProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: cliutil
from cliutil import seawall  # noqa: E402

MESH = """\
mesh: shop
services:
  orders:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
    subsets: {v1: {}, v2: {}}
  payments:
    port: 8003
    sidecar: {inbound: 18003, outbound: 15003, admin: 19003}
"""


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlProcess]:
    proc = ControlProcess(tmp_path_factory.mktemp("cli") / "state")
    yield proc
    proc.stop()


def test_the_admin_token_is_a_0600_file_never_printed(tmp_path: Path) -> None:
    proc = ControlProcess(tmp_path / "state")
    try:
        token = proc.admin_token
        path = proc.state_dir / "admin-token"
        assert path.stat().st_mode & 0o777 == 0o600
        assert token not in proc.log.read_text()
        assert f"admin token created in {path} (0600; not shown)" in proc.log.read_text()
        proc.stop()
        proc.start()
        assert token not in proc.log.read_text()
        # the CLI finds it there: a write works with only --state-dir
        mesh = tmp_path / "mesh.yaml"
        mesh.write_text(MESH)
        out = seawall("apply", "-f", str(mesh), "--state-dir", str(proc.state_dir))
        assert out.returncode == 0, out.stderr
    finally:
        proc.stop()


def test_apply_refuses_an_invalid_file_and_lists_every_error(
    control: ControlProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MESH.replace("port: 8003", "port: 0").replace("admin: 19002", "admin: -1"))
    out = seawall("apply", "-f", str(bad), "--state-dir", str(control.state_dir))
    assert out.returncode == 1
    assert "services.payments.port" in out.stderr
    assert "services.orders.sidecar.admin" in out.stderr
    assert "nothing applied" in out.stderr
    status = seawall("status", "--state-dir", str(control.state_dir))
    assert "config version 0" in status.stdout


def test_apply_status_services_certs(control: ControlProcess, tmp_path: Path) -> None:
    state = ["--state-dir", str(control.state_dir)]
    good = tmp_path / "mesh.yaml"
    good.write_text(MESH)
    out = seawall("apply", "-f", str(good), *state)
    assert out.returncode == 0, out.stderr
    assert "as version 1" in out.stdout
    again = seawall("apply", "-f", str(good), *state)
    assert again.returncode == 0
    assert "unchanged: version 1" in again.stdout
    assert "no instance is registered" in seawall("services", *state).stdout

    token = seawall("certs", "token", "orders", *state).stdout.strip()
    assert token.startswith("orders.")
    with httpx.Client(base_url=control.url, trust_env=False) as c:
        r = c.post(
            "/v1/instances",
            headers={"authorization": f"Bearer {token}"},
            json={"id": "orders.a", "service": "orders", "address": "127.0.0.1",
                  "port": 18002, "subset": "v2"},
        )
        assert r.status_code == 200, r.text
        lease = r.json()["lease"]
        r = c.put(
            f"/v1/leases/{lease}/status",
            headers={"authorization": f"Bearer {token}"},
            json={"id": "orders.a", "config_version": 1},
        )
        assert r.status_code == 200
    services = seawall("services", *state).stdout
    assert "orders.a" in services
    assert "127.0.0.1:18002" in services
    assert "healthy" in services
    status = seawall("status", *state)
    assert "config version 1" in status.stdout
    assert "orders.a" in status.stdout
    assert "current" in status.stdout
    assert seawall("status", "--check", *state).returncode == 0
    good.write_text(MESH.replace("8003", "8013"))
    assert seawall("apply", "-f", str(good), *state).returncode == 0
    lagging = seawall("status", "--check", *state)
    assert lagging.returncode == 1
    assert "LAGGING" in lagging.stdout
    ca = seawall("certs", "ca", *state).stdout
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    assert "orders.a" in seawall("certs", *state).stdout
    # revoking the token deregisters the instance and prints the new token
    revoked = seawall("certs", "revoke", "orders", *state)
    assert revoked.returncode == 0, revoked.stderr
    assert "1 instance(s) deregistered" in revoked.stderr
    new_token = revoked.stdout.strip()
    assert new_token.startswith("orders.g1.")
    assert seawall("certs", "token", "orders", *state).stdout.strip() == new_token
    assert "no instance is registered" in seawall("services", *state).stdout
    with httpx.Client(base_url=control.url, trust_env=False) as c:
        r = c.put(f"/v1/leases/{lease}", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert "revoked" in r.json()["error"]
    bad = seawall("certs", "revoke", "Orders", *state)
    assert bad.returncode == 1
    assert "DNS label" in bad.stderr


def test_commands_without_a_control_plane(tmp_path: Path) -> None:
    out = seawall("status", "--control", "http://127.0.0.1:9", "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert "cannot reach the control plane at http://127.0.0.1:9" in out.stderr
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    out = seawall("apply", "-f", str(mesh), "--control", "http://127.0.0.1:9",
                  "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert "no admin token" in out.stderr


def test_control_refuses_bad_arguments(tmp_path: Path) -> None:
    out = seawall("control", "--state-dir", str(tmp_path), "--listen", "nowhere")
    assert out.returncode == 2
    assert "--listen" in out.stderr
    out = seawall("control", "--state-dir", str(tmp_path), "--store", "etcd")
    assert out.returncode == 2
    assert "--etcd" in out.stderr
    out = seawall("control", "--state-dir", str(tmp_path), "--ca-cert", "x.pem")
    assert out.returncode == 2
    assert "--ca-key" in out.stderr


def test_diff_and_apply_dry_run(tmp_path: Path) -> None:
    """``seawall diff``: every changed setting, what waits for a restart, what state
    is reset; exit 0 no change, 1 changes, 2 an invalid file. ``apply --dry-run``
    prints the same and stores nothing."""
    proc = ControlProcess(tmp_path / "state")
    try:
        state = ["--state-dir", str(proc.state_dir)]
        first = tmp_path / "mesh.yaml"
        first.write_text(MESH)
        out = seawall("diff", "-f", str(first), *state)
        assert (out.returncode, out.stdout) == (1, f"nothing applied yet: all of {first} is new\n")
        assert seawall("apply", "-f", str(first), *state).returncode == 0
        same = seawall("diff", "-f", str(first), *state)
        assert (same.returncode, same.stdout) == (0, "no change\n")
        second = tmp_path / "next.yaml"
        second.write_text(
            MESH.replace("inbound: 18003", "inbound: 18013")
            + "policies:\n  orders:\n    load_balancer: round_robin\n"
            "    circuit_breaker: {enabled: false}\n"
        )
        changed = seawall("diff", "-f", str(second), *state)
        assert changed.returncode == 1, changed.stderr
        assert changed.stdout.splitlines() == [
            "~ services.payments.sidecar.inbound: 18003 -> 18013",
            "    restart: the sidecar of payments: listener ports are bound when it starts",
            "~ policies.orders.circuit_breaker.enabled: true -> false",
            "    resets: orders: circuit breaker",
            '~ policies.orders.load_balancer: "peak_ewma" -> "round_robin"',
            "    resets: orders: balancer estimates",
            "3 changes; 1 restart needed; 2 state resets",
        ]
        as_json = seawall("diff", "-f", str(second), "--json", *state)
        doc = json.loads(as_json.stdout)
        assert doc["resets"] == ["orders: balancer estimates", "orders: circuit breaker"]
        assert [c["path"] for c in doc["changes"]][0] == "services.payments.sidecar.inbound"
        dry = seawall("apply", "--dry-run", "-f", str(second), *state)
        assert (dry.returncode, dry.stdout) == (1, changed.stdout)
        assert "config version 1 " in seawall("status", *state).stdout  # nothing stored
        # comparing two files needs no control plane
        offline = seawall("diff", "-f", str(second), "--against", str(first),
                          "--control", "http://127.0.0.1:9")
        assert (offline.returncode, offline.stdout) == (1, changed.stdout)
        bad = tmp_path / "bad.yaml"
        bad.write_text(MESH.replace("port: 8003", "port: 0"))
        invalid = seawall("diff", "-f", str(bad), *state)
        assert invalid.returncode == 2
        assert "services.payments.port" in invalid.stderr
    finally:
        proc.stop()


def applied_and_joined(
    control: ControlProcess, tmp_path: Path, iid: str, port: int
) -> tuple[list[str], int, dict[str, str], str]:
    """MESH applied and instance ``iid`` (of the service its id names) registered:
    the CLI's state arguments, the config version, the join token's header, the lease."""
    state = ["--state-dir", str(control.state_dir)]
    good = tmp_path / "mesh.yaml"
    good.write_text(MESH)
    assert seawall("apply", "-f", str(good), *state).returncode == 0
    version = int(json.loads(seawall("status", "--json", *state).stdout)["config_version"])
    service = iid.partition(".")[0]
    token = seawall("certs", "token", service, *state).stdout.strip()
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=control.url, trust_env=False, headers=auth) as c:
        r = c.post("/v1/instances", json={"id": iid, "service": service,
                                          "address": "127.0.0.1", "port": port})
        assert r.status_code == 200, r.text
    return state, version, auth, str(r.json()["lease"])


def test_status_shows_a_sidecar_that_waits_for_a_restart(
    control: ControlProcess, tmp_path: Path
) -> None:
    state, version, auth, lease = applied_and_joined(control, tmp_path, "payments.r", 18003)
    with httpx.Client(base_url=control.url, trust_env=False, headers=auth) as c:
        bad = c.put(f"/v1/leases/{lease}/status",
                    json={"id": "payments.r", "config_version": version, "restart_needed": "x"})
        assert bad.status_code == 422
        assert "body.restart_needed" in bad.json()["error"]
        waiting = ["listeners.inbound: 127.0.0.1:18003 -> 127.0.0.1:18013"]
        r = c.put(f"/v1/leases/{lease}/status",
                  json={"id": "payments.r", "config_version": version, "restart_needed": waiting})
        assert r.status_code == 200, r.text
    out = seawall("status", *state).stdout
    (row,) = [line for line in out.splitlines() if line.split()[:2] == ["payments.r", "payments"]]
    assert "current, RESTART NEEDED" in row
    assert (
        "payments.r runs its config but waits for a restart: "
        "listeners.inbound: 127.0.0.1:18003 -> 127.0.0.1:18013"
    ) in out
    doc = json.loads(seawall("status", "--json", *state).stdout)
    (mine,) = [s for s in doc["sidecars"] if s["id"] == "payments.r"]
    assert mine["restart_needed"] == waiting


def test_status_shows_every_edge_and_watches(control: ControlProcess, tmp_path: Path) -> None:
    """Each caller's breaker state and ejected endpoints per destination, as the
    sidecars report them; ``--watch`` prints it again; bad reports are refused."""
    state, version, auth, lease = applied_and_joined(control, tmp_path, "orders.e", 18002)
    edges = {
        "payments": {"breaker": "open", "ejected": ["127.0.0.1:18003"]},
        "orders": {"breaker": None, "ejected": []},
    }
    with httpx.Client(base_url=control.url, trust_env=False, headers=auth) as c:
        for bad, field in (
            ({"payments": {"breaker": "melted"}}, "body.edges.payments.breaker"),
            ({"payments": {"ejected": "x"}}, "body.edges.payments.ejected"),
            (["payments"], "body.edges"),
        ):
            r = c.put(f"/v1/leases/{lease}/status",
                      json={"id": "orders.e", "config_version": version, "edges": bad})
            assert r.status_code == 422, bad
            assert field in r.json()["error"]
        r = c.put(f"/v1/leases/{lease}/status",
                  json={"id": "orders.e", "config_version": version, "edges": edges})
        assert r.status_code == 200, r.text
    out = seawall("status", *state).stdout
    lines = [line.split() for line in out.splitlines()]
    assert ["orders", "(orders.e)", "payments", "OPEN", "127.0.0.1:18003"] in lines
    assert ["orders", "(orders.e)", "orders", "-", "-"] in lines
    watched = seawall("status", "--watch", "0.1", "--count", "2", "--json", *state)
    assert watched.returncode == 0, watched.stderr
    docs = [json.loads(line) for line in watched.stdout.splitlines()]
    assert len(docs) == 2
    (mine,) = [s for s in docs[-1]["sidecars"] if s["id"] == "orders.e"]
    assert mine["edges"] == edges
