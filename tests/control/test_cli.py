"""``seawall control``, ``apply``, ``status``, ``services`` and ``certs`` as real processes."""

from __future__ import annotations

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


def test_admin_token_printed_once(tmp_path: Path) -> None:
    proc = ControlProcess(tmp_path / "state")
    try:
        token = proc.admin_token
        assert proc.log.read_text().count(token) == 1
        proc.stop()
        proc.start()
        assert proc.log.read_text().count(token) == 1  # not printed again
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
