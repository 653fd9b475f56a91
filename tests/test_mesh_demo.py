"""The mesh demo runs the shop end to end, tells the story it promises, and cleans up.

``python -m examples.mesh_demo`` starts five apps and five sidecars on
loopback, drives load through the gateway's sidecar and breaks email, then
payments. Its tables must show: login healthy while email hangs (bulkhead and
timeout), checkout failing fast while payments is down (breaker), everything
recovered at the end, and no process left behind.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMAIL_TIMEOUT_MS = 500  # policies.email.timeout in examples/shop/mesh.yaml

ROW = re.compile(
    r"^\s+(?P<route>\S+ → \S+ /\S+)\s+(?P<n>\d+)\s+(?P<ok>[\d.]+)%\s+"
    r"(?P<p50>[\d.]+)\s+(?P<p99>[\d.]+)\s*$"
)


def _phases(out: str) -> dict[str, str]:
    """The text of each phase's report, by title."""
    parts = re.split(r"^== phase \d/4: ([a-z ]+) \(", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _rows(section: str) -> dict[str, dict[str, float]]:
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["route"]] = {k: float(m[k]) for k in ("n", "ok", "p50", "p99")}
    return rows


def _alive(pid: int) -> bool:
    """A live (non-zombie) process with this pid that is one of the demo's children."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return state != "Z" and (b"examples.shop" in cmdline or b"seawall" in cmdline)


def test_mesh_demo_story() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.mesh_demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    report = f"\n--- stdout:\n{out}\n--- stderr:\n{done.stderr}"
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    # Every process the demo started is gone, whatever else happened.
    assert len(pids) == 10, report
    assert [p for p in pids if _alive(p)] == [], report
    assert re.search(r"stopped 10 processes \(pids [\d ]+\); none remain", out), report
    assert done.returncode == 0, report
    assert "Traceback" not in done.stderr, report

    phases = _phases(out)
    assert list(phases) == ["healthy", "email hangs", "payments fails", "recovery"], report
    healthy, hang, broken, recovery = (_rows(phases[t]) for t in phases)
    for rows in (healthy, hang, broken, recovery):
        assert len(rows) >= 5, report  # orders → email is empty while payments fails

    # 1. Healthy: everything succeeds.
    for route, row in healthy.items():
        assert row["ok"] >= 95, (route, report)

    # 2. Email hangs: login stays fast and whole; checkouts still complete, and
    #    wait for email no longer than its timeout; the bulkhead overflowed.
    login = hang["client → gateway /login"]
    assert login["n"] >= 50, report
    assert login["ok"] >= 95, report
    assert login["p99"] < EMAIL_TIMEOUT_MS / 2, report
    checkout = hang["client → gateway /checkout"]
    assert checkout["ok"] >= 95, report
    assert checkout["p99"] < EMAIL_TIMEOUT_MS + 400, report
    assert hang["orders → email /send"]["ok"] <= 5, report
    overflow = re.search(r"email overflow (\d+)", phases["email hangs"])
    assert overflow, report
    assert int(overflow.group(1)) > 0, report

    # 3. Payments fails: checkouts fail, fast (the breaker answers for payments),
    #    while login is untouched; the breaker was seen open.
    checkout = broken["client → gateway /checkout"]
    assert checkout["n"] >= 50, report
    assert checkout["ok"] <= 10, report
    assert checkout["p50"] < 50, report
    assert broken["client → gateway /login"]["ok"] >= 95, report
    breaker = re.search(
        r"payments breaker: opened (\d+)x, closed \d+x, seen ([a-z_, ]+);", phases["payments fails"]
    )
    assert breaker, report
    assert int(breaker.group(1)) >= 1, report
    assert "open" in breaker.group(2).split(", "), report
    fast = re.search(r"failures p50 ([\d.]+) ms; payments breaker seen open: yes", out)
    assert fast, report
    assert float(fast.group(1)) < 50, report

    # 4. Recovery: every route succeeds again.
    for route, row in recovery.items():
        assert row["n"] >= 50, (route, report)
        assert row["ok"] >= 95, (route, report)

    finished = re.search(r"demo finished in ([\d.]+) s", out)
    assert finished, report
    assert float(finished.group(1)) < 60, report
