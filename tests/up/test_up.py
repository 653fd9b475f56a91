"""``seawall up``, ``ps``, ``logs`` and ``down`` on a real mesh: two services of
``tests/up/app.py`` (one with two instances), a real control plane, real sidecars.

Checked: every process starts and is ready; requests flow app → sidecar → sidecar →
app; an app killed with SIGKILL is started again; a policy change in mesh.yaml is
applied live (every sidecar on the next version), while a changed ``run:`` restarts
that service's instances only; on SIGTERM everything stops in order and no process of
the group is left; ``--detach`` then ``down`` does the same in the background.

Bounded: every wait has a deadline, and pytest-timeout kills a stuck test.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tiny import APP, free_ports, kill_what_is_left, mesh_yaml

from seawall.config import parse_mesh
from seawall.up import cli as compose
from seawall.up.plan import instances, process_specs
from seawall.up.processes import Restarts, processes_in_groups

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Until ``check`` holds (a check that fails an assertion or a request is not yet)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            if check():
                return
        except (AssertionError, httpx.HTTPError, KeyError) as exc:
            last = f": {exc}"
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}{last}")
        time.sleep(0.1)


class Mesh:
    """A mesh.yaml of services a (one instance) and b (two), on free ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        p = free_ports(10)
        self.a_inbound, self.control = p[1], p[8]
        self.file = folder / "mesh.yaml"
        self.state = folder / "state"
        b_run = f"{{command: {sys.executable} {APP}, instances: 2, env: {{GREETING: hi}}}}"
        self.text = mesh_yaml(p, b_run=b_run)
        self.file.write_text(self.text)
        self.admin = {"a": p[3], "b": p[7]}

    def edit(self, old: str, new: str) -> None:
        assert old in self.text
        self.text = self.text.replace(old, new)
        self.file.write_text(self.text)

    def state_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.state / "up.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def seawall(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seawall", *args, "--state-dir", str(self.state)],
            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        )  # fmt: skip


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    yield m
    kill_what_is_left(m.state_doc())


def call(mesh: Mesh, path: str) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{mesh.a_inbound}{path}", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def version(port: int) -> int:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/config", timeout=2, trust_env=False)
        return int(r.json()["version"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.timeout(180)
def test_up_runs_restarts_follows_and_stops_everything(mesh: Mesh) -> None:
    out = mesh.folder / "up.out"
    with out.open("w") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "seawall", "up", "-f", str(mesh.file), "--state-dir",
             str(mesh.state), "--control-port", str(mesh.control), "--status-interval", "0"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        wait_for("ready", lambda: "| ready: 3 instance(s) of 2 service(s)" in out.read_text(), 90)
        wait_for("the status table", lambda: "BREAKERS OPEN" in out.read_text())
        text = out.read_text()
        assert "| applied " in text
        assert "| control plane up at http://127.0.0.1:" in text
        for name in ("a", "b", "b-2"):
            assert f"app:{name}" in text  # its own lines, prefixed
        # the status table: each instance on version 1 with its certificate
        assert "INSTANCE  APP" in text
        # requests through the mesh, to both instances of b
        seen = {call(mesh, "/call/b")["instance"] for _ in range(6)}
        assert seen == {"b", "b-2"}
        assert call(mesh, "/call/b")["greeting"] == "hi"
        doc = mesh.state_doc()
        group, processes = doc["group"], doc["processes"]
        assert len(processes) == 7  # the control plane, 3 sidecars, 3 apps
        assert all(p["pid"] in processes_in_groups({group}) for p in processes.values())

        # an app killed: started again, and serving
        victim = processes["app:b"]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for("the restart", lambda: "app:b exited with -9; starting it again" in
                 out.read_text())  # fmt: skip
        wait_for("b serving again", lambda: mesh.state_doc()["processes"]["app:b"]["pid"]
                 not in (None, victim) and len({call(mesh, "/call/b")["instance"]
                                                for _ in range(6)}) == 2)  # fmt: skip

        # a policy change: applied live, every sidecar on version 2, no restart
        sidecars = {n: p["pid"] for n, p in mesh.state_doc()["processes"].items()
                    if n.startswith("sidecar:")}  # fmt: skip
        mesh.edit("b: {timeout: 2s}", "b: {timeout: 3s}")
        wait_for("version 2", lambda: version(mesh.admin["a"]) == 2 == version(mesh.admin["b"]))
        after = mesh.state_doc()["processes"]
        assert {n: after[n]["pid"] for n in sidecars} == sidecars

        # a changed run: b's instances start again, a's do not
        a_pids = (after["app:a"]["pid"], after["sidecar:a"]["pid"])
        mesh.edit("GREETING: hi", "GREETING: hey")
        wait_for("b restarted", lambda: "| b: its run changed" in out.read_text())
        wait_for("b says hey", lambda: call(mesh, "/call/b")["greeting"] == "hey")
        now = mesh.state_doc()["processes"]
        assert (now["app:a"]["pid"], now["sidecar:a"]["pid"]) == a_pids

        # ps and logs
        ps = mesh.seawall("ps")
        assert ps.returncode == 0, ps.stdout + ps.stderr
        assert [line.split()[0] for line in ps.stdout.splitlines()[2:]] == ["a", "b", "b-2"]
        logs = mesh.seawall("logs", "b")
        assert logs.returncode == 0
        assert "app:b | b listening on :" in logs.stdout
        assert "sidecar:b-2 | " in logs.stdout
        # an invalid edit: said, and the mesh keeps running the last good one
        mesh.edit("b: {timeout: 3s}", "b: {timeout: -3s}")
        wait_for("the refusal", lambda: "changed but is not valid" in out.read_text())
        assert "policies.b.timeout" in out.read_text()
        assert call(mesh, "/call/b")["service"] == "b"
        pids = [p["pid"] for p in mesh.state_doc()["processes"].values()]
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    text = out.read_text()
    assert code == 0, text[-3000:]
    assert "| stopped; no process is left" in text
    assert processes_in_groups({group}) == []
    assert [p for p in pids if alive(p)] == []
    assert not (mesh.state / "up.json").exists()
    # the order: the apps and sidecars before the control plane
    lines = text.splitlines()
    stopped_control = max(i for i, line in enumerate(lines) if "control" in line.split("|")[0]
                          and "stopping" in line)  # fmt: skip
    assert all(i < stopped_control for i, line in enumerate(lines)
               if line.startswith("sidecar:a ") and "stopped after" in line)  # fmt: skip


@pytest.mark.timeout(180)
def test_detach_ps_and_down(mesh: Mesh) -> None:
    started = mesh.seawall("up", "-f", str(mesh.file), "--detach", "--control-port",
                           str(mesh.control))  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert "running in the background" in started.stdout
    assert call(mesh, "/call/b")["service"] == "b"
    doc = mesh.state_doc()
    group = doc["group"]
    assert mesh.seawall("ps").returncode == 0
    # the live table: requests per second between two of its frames
    frames = io.StringIO()
    calls = threading.Thread(target=lambda: [call(mesh, "/call/b") for _ in range(20)])
    calls.start()
    assert compose.ps(mesh.state, watch=1.0, frames=2, out=frames) == 0
    calls.join()
    first, second = frames.getvalue().split("seawall up pid ")[1:]
    header = second.splitlines()[1]
    at = header.index("REQ/S")
    rates = {line.split()[0]: line[at:].split()[0] for line in second.splitlines()[2:]}
    assert "REQ/S" in first
    assert set(rates) == {"a", "b", "b-2"}
    assert float(rates["a"]) > 0, second  # called by the test, between the two frames
    again = mesh.seawall("up", "-f", str(mesh.file))
    assert again.returncode == 1
    assert "already running" in again.stdout
    down = mesh.seawall("down")
    assert down.returncode == 0, down.stdout
    assert "stopped" in down.stdout
    assert processes_in_groups({group}) == []
    assert mesh.seawall("ps").returncode == 1  # nothing runs
    # a second up reuses the state directory: the same CA, the config's history kept
    ca = (mesh.state / "control" / "ca.pem").read_bytes()
    mesh.edit("b: {timeout: 2s}", "b: {timeout: 4s}")
    second = mesh.seawall("up", "-f", str(mesh.file), "--detach", "--control-port",
                          str(mesh.control))  # fmt: skip
    try:
        assert second.returncode == 0, second.stdout + second.stderr
        assert (mesh.state / "control" / "ca.pem").read_bytes() == ca
        assert version(mesh.admin["b"]) == 2  # version 1 was the first up's
        assert call(mesh, "/call/b")["service"] == "b"
    finally:
        assert mesh.seawall("down").returncode == 0


def test_the_plan_names_instances_and_gives_extra_ones_allocated_ports(tmp_path: Path) -> None:
    config = parse_mesh({
        "mesh": "m",
        "services": {
            "a": {"port": 8001, "sidecar": {"inbound": 18001, "outbound": 15001, "admin": 19001},
                  "run": {"command": "python app.py", "instances": 2, "subset": "v1",
                          "cwd": "apps", "env": {"X": "1"}},
                  "subsets": {"v1": {}}},
            "b": {"port": 8002, "sidecar": {"inbound": 18002, "outbound": 15002, "admin": 19002}},
        },
    })  # fmt: skip
    ports = iter(range(30000, 30100))
    found = instances(config, lambda: next(ports))
    assert [(i.name, i.app_port, i.inbound, i.outbound, i.admin) for i in found] == [
        ("a", 8001, 18001, 15001, 19001),
        ("a-2", 30000, 30001, 30002, 30003),
    ]  # fmt: skip  (b has no run: not started)
    sidecar, app = process_specs(found[1], control_url="http://127.0.0.1:7600",
                                 state_dir=tmp_path, base_dir=tmp_path, python="py")  # fmt: skip
    assert sidecar.argv[:8] == ("py", "-P", "-m", "seawall", "sidecar", "--service", "a",
                               "--control")  # fmt: skip
    assert sidecar.argv[-2:] == ("--subset", "v1")
    assert sidecar.ready == "http://127.0.0.1:30003/ready"
    assert app.argv == ("py", "app.py")  # `python` is the Python seawall runs on
    assert app.cwd == tmp_path / "apps"
    assert app.env["SEAWALL_APP_PORT"] == "30000"
    assert app.env["HTTP_PROXY"] == "http://127.0.0.1:30002"
    assert (app.env["X"], app.env["SEAWALL_INSTANCE"], app.env["SEAWALL_SUBSET"]) == (
        "1", "a-2", "v1",
    )  # fmt: skip
    assert app.ready == "tcp://127.0.0.1:30000"


def test_restarts_back_off_and_start_over_after_a_healthy_run() -> None:
    r = Restarts()
    assert [r.delay(0.0, 1.0) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert r.delay(100.0, 200.0) == 0.5  # it ran 100 s: a fresh start


def test_the_shop_runs_each_service_from_the_repository_and_orders_twice() -> None:
    from seawall.config import load_mesh  # noqa: PLC0415

    shop = ROOT / "examples" / "shop" / "mesh.yaml"
    ports = iter(range(41000, 41100))
    found = instances(load_mesh(shop), lambda: next(ports))
    assert [(i.name, i.subset) for i in found] == [
        ("gateway", None), ("orders", "v1"), ("orders-v2", "v2"), ("payments", None),
        ("email", None), ("login", None),
    ]  # fmt: skip
    canary = next(i for i in found if i.name == "orders-v2")
    assert (canary.app_port, canary.admin) == (41000, 41003)  # its own, allocated
    _, app = process_specs(canary, control_url="http://127.0.0.1:7600", state_dir=ROOT,
                           base_dir=shop.parent, mesh_file=shop, python="/venv/python")  # fmt: skip
    assert app.argv == ("/venv/python", "-m", "examples.shop.orders")  # `python`: seawall's
    assert app.cwd.resolve() == ROOT
    assert (app.env["SEAWALL_SUBSET"], app.env["SEAWALL_MESH_FILE"]) == ("v2", str(shop))
