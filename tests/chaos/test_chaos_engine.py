"""``seawall chaos`` on a small real mesh (``seawall up`` of two services of
``tests/up/app.py``: a, and b with two instances), one fault kind at a time, each
checked on the wire and in the report, and each rolled back: fault injection applied
live, a partition at the sidecars, a hung, a starved and a killed app, a forced
certificate expiry; an abort condition; an unknown service refused before anything is
injected; a run killed outright (its ledger, ``chaos status`` and ``--rollback``) and
one interrupted with Ctrl-C. With ``--netns``, a partition in the network (skipped,
with the reason, where ``ip netns`` is not allowed).

Every wait has a deadline; the experiments' windows are a second or two.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from seawall.up.netns import netns_available

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "up"))
from tiny import APP, PORTS, free_ports, kill_what_is_left, mesh_yaml  # noqa: E402


class Tiny:
    """A running ``seawall up`` of a (edge, plaintext in) and b (two instances, mTLS)."""

    def __init__(self, folder: Path, *, netns: bool = False) -> None:
        self.folder = folder
        p = free_ports(PORTS)
        self.a_inbound, self.control = p[1], p[8]
        self.state = folder / "state"
        self.file = folder / "mesh.yaml"
        b_run = f"{{command: {sys.executable} {APP}, instances: 2}}"
        policies = (
            "  b:\n    timeout: 2s\n    retry: {attempts: 1}\n"
            "    circuit_breaker: {enabled: false}\n    outlier: {enabled: false}"
        )
        self.file.write_text(mesh_yaml(p, b_run=b_run, a_extra="    mtls: permissive\n",
                                       b_extra="    mtls: strict\n", policies=policies,
                                       extra="limits: {idle_timeout: 500ms}\n"))  # fmt: skip
        argv = ["up", "-f", str(self.file), "--control-port", str(self.control), "--detach",
                "--status-interval", "600"] + (["--netns"] if netns else [])  # fmt: skip
        started = self.seawall(*argv, timeout=150)
        assert started.returncode == 0, started.stdout + started.stderr
        self.up = json.loads((self.state / "up.json").read_text())

    def seawall(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "seawall", *args, "--state-dir", str(self.state)],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
        )  # fmt: skip

    def edge(self) -> str:
        a = next(i for i in self.up["instances"] if i["name"] == "a")
        return f"http://{a.get('address') or '127.0.0.1'}:{a['inbound']}"

    def experiment(self, name: str, text: str) -> Path:
        path = self.folder / f"{name}.yaml"
        path.write_text(text)
        return path

    def run(self, name: str, text: str, *extra: str) -> tuple[int, dict[str, Any], str]:
        path = self.experiment(name, text)
        report = self.folder / f"{name}.json"
        done = self.seawall("chaos", "run", str(path), "--json", str(report), *extra)
        doc = json.loads(report.read_text()) if report.exists() else {}
        return done.returncode, doc, done.stdout + done.stderr

    def pid(self, process: str) -> int:
        doc = json.loads((self.state / "up.json").read_text())
        pid: int = doc["processes"][process]["pid"]
        return pid

    def config(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.control}/v1/config",
                                        trust_env=False).json()  # fmt: skip
        return doc

    def close(self) -> None:
        down = self.seawall("down", timeout=120)
        assert kill_what_is_left(self.up) == []
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    mesh = Tiny(tmp_path_factory.mktemp("tiny"))
    try:
        yield mesh
    finally:
        mesh.close()


def state_of(pid: int) -> str:
    """``R``, ``S``, ``T`` (stopped)...: the process's state letter."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


LOAD = """
load:
  calls: {{url: '{edge}/call/b', rate: 20, timeout: 3s}}
"""


def statuses(doc: dict[str, Any], phase: str) -> dict[str, int]:
    p = next(p for p in doc["phases"] if p["phase"] == phase)
    found: dict[str, int] = p["checks"][0]["measured"]["statuses"]
    return found


def test_an_unknown_service_is_refused_before_anything_is_injected(tiny: Tiny) -> None:
    before = tiny.config()["version"]
    code, _, out = tiny.run(
        "unknown",
        f"""
title: refused
{LOAD.format(edge=tiny.edge())}
steady_state:
  probes: [{{load: calls, availability: 99%}}]
method:
  actions:
    - {{action: fault, service: b, abort: {{status: 503, percent: 100}}}}
    - {{action: hang, service: c}}
    - {{action: kill, service: b, instance: b-7}}
""",
    )
    assert code == 2, out
    assert "refused, nothing injected" in out
    assert "method.actions[1].service: no service 'c' in the mesh (its services: a, b)" in out
    assert "method.actions[2].instance: no instance 'b-7' of 'b' (its instances: b, b-2)" in out
    assert tiny.config()["version"] == before
    assert not (tiny.state / "chaos.json").exists()
    bad = tiny.run("invalid", "title: t\nmethod: {actions: [{action: hang}]}\n")
    assert bad[0] == 2
    assert "steady_state: required" in bad[2]
    assert "method.actions[0].service: required" in bad[2]


def test_fault_injection_is_applied_live_and_rolled_back(tiny: Tiny) -> None:
    base = tiny.config()
    code, doc, out = tiny.run(
        "abort",
        f"""
title: every call to b aborted
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 2s
  recovery: 0s
  probes:
    - {{load: calls, availability: 99%, when: [before, after]}}
    - name: b is not called (the caller's sidecar answers)
      metric: {{service: b, name: seawall_requests_total, labels: {{direction: inbound}}}}
      max: 3
      when: [during]
method:
  duration: 3s
  settle: 0.5s
  actions:
    - {{action: fault, service: b, abort: {{status: 503, percent: 100}}}}
""",
    )
    assert code == 0, out
    during = next(p for p in doc["phases"] if p["phase"] == "during")
    assert during["held"]
    assert statuses(doc, "after") == {"200": statuses(doc, "after")["200"]}
    assert "fault on calls to b: abort 503 on 100%" in doc["actions"][0]["describe"]
    # rolled back: the config in force is the one before, again (a newer version)
    now = tiny.config()
    assert now["version"] > base["version"]
    assert now["config"] == base["config"]


def test_a_delay_fault_and_an_action_that_fails_rolls_back_the_others(tiny: Tiny) -> None:
    b = tiny.pid("app:b")
    closed = free_ports(1)[0]  # nothing listens there
    code, doc, out = tiny.run(
        "delay",
        f"""
title: calls to b delayed, then a switch that is not there
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 1.5s
  recovery: 0s
  probes:
    - {{load: calls, latency: {{threshold: 100ms, percent: 99%}}, when: [before, after]}}
    - name: every call delayed 300 ms
      load: calls
      latency: {{threshold: 250ms, percent: 1%}}
      when: [during]
method:
  duration: 2.5s
  settle: 0.5s
  actions:
    - {{action: fault, service: b, delay: {{duration: 300ms, percent: 100}}}}
    - {{action: hang, service: b, instance: b, at: 0.5s}}
    - {{action: http, url: 'http://127.0.0.1:{closed}/switch', at: 1s}}
""",
    )
    assert code == 1, out
    assert doc["verdict"] == "error"
    first = f"method.actions[2]: not injected: GET http://127.0.0.1:{closed}/switch: ConnectError"
    assert doc["problems"][0].startswith(first), doc["problems"]
    during = next(p for p in doc["phases"] if p["phase"] == "during")
    delayed = during["checks"][0]["measured"]
    assert delayed["p50_ms"] >= 300, delayed
    after = next(p for p in doc["phases"] if p["phase"] == "after")
    assert after["held"], after
    assert state_of(b) != "T"
    assert not (tiny.state / "chaos.json").exists()


def test_a_partition_at_the_sidecars_and_a_hung_app(tiny: Tiny) -> None:
    code, doc, out = tiny.run(
        "partition",
        f"""
title: a and b cut off
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 2s
  recovery: 0.5s
  probes:
    - {{load: calls, availability: 99%, when: [before, after]}}
    - {{name: measured only (judged by the test), load: calls, max_failed: 1000000,
        when: [during]}}
    - {{name: refused, when: [during], min: 5, metric: {{service: b,
        name: seawall_inbound_tls_refused_total, labels: {{reason: caller}}}}}}
    - {{name: no request reached b's rules, when: [during], max: 0,
        metric: {{service: b, name: seawall_inbound_denied_total}}}}
method:
  duration: 3s
  settle: 0.5s
  actions:
    - {{action: partition, between: [a, b]}}
""",
    )
    assert code == 0, out
    assert doc["actions"][0]["describe"].startswith(
        "partition a <-> b at the sidecars (each refuses the other's connections)"
    )
    during = next(p for p in doc["phases"] if p["phase"] == "during")
    # b's sidecars closed a's connections unanswered: a's sidecar answered its app
    # with a gateway error, never a 403 (no request was read, so no rule was asked)
    seen = statuses(doc, "during")
    assert "403" not in seen, seen
    assert sum(n for code, n in seen.items() if code in ("502", "503")) >= 20, seen
    assert set(during["policy_events"]["connections refused (partition)"]) <= {"b", "b-2"}
    assert "denied by authorization" not in during["policy_events"]

    b2 = tiny.pid("app:b-2")
    code, doc, out = tiny.run(
        "hang",
        f"""
title: b-2 hangs
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 1s
  recovery: 0s
  probes: [{{load: calls, availability: 10%}}]
method:
  duration: 2s
  settle: 0s
  actions: [{{action: hang, service: b, instance: b-2}}]
""",
    )
    assert code == 0, out
    assert doc["actions"][0]["describe"] == "app hangs (SIGSTOP): b-2"
    assert state_of(b2) != "T"  # continued


def test_cpu_starvation_and_a_killed_app_come_back(tiny: Tiny) -> None:
    b = tiny.pid("app:b")
    code, doc, out = tiny.run(
        "cpu-kill",
        f"""
title: b starved, then b-2 killed
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 1s
  recovery: 0.5s
  probes: [{{load: calls, availability: 99%, when: [before, after]}}]
method:
  duration: 3s
  settle: 0s
  actions:
    - {{action: cpu, service: b, instance: b, percent: 80%, for: 1.5s}}
    - {{action: kill, service: b, instance: b-2, at: 1.5s}}
""",
    )
    assert code == 0, out
    kinds = [a["describe"] for a in doc["actions"]]
    assert kinds[0] == "CPU starved 80% of the time: b"
    assert kinds[1] == "SIGKILL app of b-2"
    assert "rolled_back" in doc["actions"][0]
    assert state_of(b) != "T"
    assert tiny.pid("app:b-2") != 0
    r = httpx.get(f"{tiny.edge()}/call/b", trust_env=False, timeout=5)
    assert r.status_code == 200


def test_an_abort_condition_stops_the_experiment_and_rolls_back(tiny: Tiny) -> None:
    base = tiny.config()["config"]
    started = time.monotonic()
    code, doc, out = tiny.run(
        "abort-condition",
        f"""
title: aborted
{LOAD.format(edge=tiny.edge())}
steady_state:
  window: 1s
  recovery: 0.5s
  probes: [{{load: calls, availability: 99%, when: [before, after]}}]
method:
  duration: 30s
  actions: [{{action: fault, service: b, abort: {{status: 503, percent: 100}}}}]
abort:
  - {{name: calls burning 20x, load: calls, availability: 99%, max_burn_rate: 20, window: 1s}}
""",
    )
    assert code == 1, out
    assert doc["verdict"] == "aborted"
    # The 1 s window may still hold a few calls from before the fault reached b's sidecar.
    burning = re.match(r"calls burning 20x: budget burning ([0-9.]+)x > 20x", doc["aborted"])
    assert burning, doc["aborted"]
    assert 20 < float(burning.group(1)) <= 100
    assert time.monotonic() - started < 20  # long before the method's 30 s
    assert tiny.config()["config"] == base
    assert "ABORT" in out


def test_a_forced_certificate_expiry_is_refused_on_the_wire_then_renewed(tiny: Tiny) -> None:
    # A connection in a pool keeps the certificates of its handshake: one call a second,
    # each on a new connection (b's sidecar closes one idle for 500 ms), so each call
    # shakes hands with b's certificate of the moment.
    code, doc, out = tiny.run(
        "cert",
        f"""
title: b's certificate expires
load:
  calls: {{url: '{tiny.edge()}/call/b', rate: 1, timeout: 3s}}
steady_state:
  window: 2s
  recovery: 6s                   # a sidecar refused renewal retries with backoff, up to 5 s
  probes:
    - {{load: calls, availability: 99%, when: [before, after]}}
    - name: handshakes refused once it expired
      metric: {{service: a, name: seawall_upstream_tls_failures_total}}
      min: 1
      when: [during]
method:
  duration: 7s
  settle: 3.5s
  actions: [{{action: cert_expiry, service: b, ttl: 2, block_renewal: true}}]
""",
    )
    assert code == 0, out
    assert doc["actions"][0]["describe"] == "certificates of b live 2s, renewal refused"
    faults = httpx.get(f"http://127.0.0.1:{tiny.control}/v1/chaos/certificates",
                       headers={"authorization": "Bearer " + (tiny.state / "control" /
                                "admin-token").read_text().strip()}, trust_env=False)  # fmt: skip
    assert faults.json()["faults"] == []


HANG_LONG = """
title: b hangs for a long while
steady_state:
  window: 1s
  probes: [{{http: {{url: '{edge}/', within: 2s}}}}]
method:
  duration: 60s
  actions: [{{action: hang, service: b, instance: b}}]
"""


def _start(tiny: Tiny, name: str) -> subprocess.Popen[str]:
    path = tiny.experiment(name, HANG_LONG.format(edge=tiny.edge()))
    return subprocess.Popen(
        [sys.executable, "-m", "seawall", "chaos", "run", str(path), "--state-dir",
         str(tiny.state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip


def _wait_hung(pid: int) -> None:
    deadline = time.monotonic() + 30
    while state_of(pid) != "T":
        assert time.monotonic() < deadline, "the app was not stopped"
        time.sleep(0.1)


def test_a_run_killed_outright_leaves_a_ledger_that_status_rolls_back(tiny: Tiny) -> None:
    b = tiny.pid("app:b")
    run = _start(tiny, "killed")
    try:
        _wait_hung(b)
        run.kill()
        run.wait(10)
        status = tiny.seawall("chaos", "status")
        assert status.returncode == 1
        assert "faults left by a run that did not finish (b hangs for a long while" in status.stdout
        assert "app hangs (SIGSTOP): b" in status.stdout
        # a new run is refused while they are in force
        again = tiny.run("again", HANG_LONG.format(edge=tiny.edge()))
        assert again[0] == 2
        assert "faults of another run are still in force" in again[2]
        assert state_of(b) == "T"
        back = tiny.seawall("chaos", "status", "--rollback")
        assert back.returncode == 0, back.stdout
        assert state_of(b) != "T"
        assert tiny.seawall("chaos", "status").stdout == "no chaos fault in force\n"
    finally:
        run.kill()
        os.kill(b, signal.SIGCONT)


def test_ctrl_c_rolls_back(tiny: Tiny) -> None:
    b = tiny.pid("app:b")
    run = _start(tiny, "interrupted")
    try:
        _wait_hung(b)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 130, out
        assert "seawall chaos: interrupted\nevery fault was rolled back\n" in out
        assert state_of(b) != "T"
        assert not (tiny.state / "chaos.json").exists()
    finally:
        run.kill()
        os.kill(b, signal.SIGCONT)


def test_a_partition_in_the_network_with_netns(tmp_path: Path) -> None:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    mesh = Tiny(tmp_path, netns=True)
    try:
        code, doc, out = mesh.run(
            "netns",
            f"""
title: a and b cut off in the network
{LOAD.format(edge=mesh.edge())}
steady_state:
  window: 2s
  recovery: 0.5s
  probes:
    - {{load: calls, availability: 99%, when: [before, after]}}
    - {{load: calls, max_failed: 1000, min_requests: 5, when: [during]}}
method:
  duration: 3s
  settle: 0.5s
  actions: [{{action: partition, between: [a, b]}}]
""",
            "--netns",
        )
        assert code == 0, out
        assert doc["actions"][0]["describe"].startswith("network partition a <-> b: ")
        during = statuses(doc, "during")
        assert during.get("503", 0) + during.get("502", 0) >= 5, during
        assert mesh.seawall("chaos", "status").stdout == "no chaos fault in force\n"
    finally:
        mesh.close()
