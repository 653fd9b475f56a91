"""The lesson's claims, as the shipped experiments prove them on the shop: ``seawall up
-f examples/shop/mesh.yaml`` (the real apps, sidecars, control plane and CardNet's
stand-in), then ``seawall chaos run --fast`` of each file in
``examples/shop/experiments/`` (shorter windows, the same assertions), checked by its
exit status and its JSON report: the verdict, the figures each claim rests on, and
nothing left in force afterwards.

The shop takes fixed ports (its mesh.yaml's: 7600, 8001-8005, 1800x, 1500x, 1900x,
4318, 9443), as ``make demo`` does: they never run at once (pytest runs one test at a
time).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "up"))
from tiny import kill_what_is_left  # noqa: E402

SHOP = ROOT / "examples" / "shop"
EXPERIMENTS = SHOP / "experiments"


def seawall(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("shop") / "state"
    up = seawall("up", "-f", str(SHOP / "mesh.yaml"), "--state-dir", str(state), "--detach",
                 "--status-interval", "600", timeout=180)  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        warm_up()
        yield state
    finally:
        doc = _json(state / "up.json")
        down = seawall("down", "--state-dir", str(state), timeout=120)
        assert kill_what_is_left(doc) == []
        assert down.returncode == 0, down.stdout + down.stderr


def warm_up() -> None:
    """Checkouts and logins one at a time until ten in a row succeed (30 s at most), as
    ``make demo`` does: every first connection and TLS handshake of the mesh made,
    CardNet's included, before an experiment measures its steady state."""
    deadline = time.monotonic() + 30
    good = 0
    with httpx.Client(base_url="http://127.0.0.1:18001", trust_env=False, timeout=5) as c:
        while good < 10:
            assert time.monotonic() < deadline, "the shop did not warm up in 30 s"
            try:
                ok = (c.post("/checkout", json={"user": "warm", "amount": 1}).status_code == 201
                      and c.post("/login", json={"user": "warm"}).status_code == 200)  # fmt: skip
            except httpx.HTTPError:
                ok = False
            good = good + 1 if ok else 0


def _json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def run(shop: Path, name: str) -> dict[str, Any]:
    """``seawall chaos run --fast`` of ``name``: its JSON report, after checking that it
    held (exit 0) and left nothing in force."""
    report = shop.parent / f"{name}.json"
    done = seawall("chaos", "run", str(EXPERIMENTS / f"{name}.yaml"), "--fast",
                   "--state-dir", str(shop), "--json", str(report),
                   "--markdown", str(shop.parent / f"{name}.md"))  # fmt: skip
    doc = _json(report)
    assert done.returncode == 0, done.stdout + done.stderr
    assert doc["verdict"] == "held"
    phases = ["before", "during", "after"] if name != "retry-storm-naive" else ["before", "during"]
    assert [p["phase"] for p in doc["phases"]] == phases
    assert all(c["passed"] for p in doc["phases"] for c in p["checks"])
    assert not (shop / "chaos.json").exists()
    status = seawall("chaos", "status", "--state-dir", str(shop))
    assert status.returncode == 0, status.stdout
    assert "no chaos fault in force" in status.stdout
    md = (shop.parent / f"{name}.md").read_text()
    assert md.startswith(f"# {doc['title']}\n")
    assert "**Verdict: held**" in md
    return doc


def check(doc: dict[str, Any], phase: str, name_start: str) -> dict[str, Any]:
    p = next(p for p in doc["phases"] if p["phase"] == phase)
    c = next(c for c in p["checks"] if c["probe"].startswith(name_start))
    measured: dict[str, Any] = c["measured"]
    return measured


def events(doc: dict[str, Any], phase: str, event: str) -> dict[str, float]:
    p = next(p for p in doc["phases"] if p["phase"] == phase)
    found: dict[str, float] = p["policy_events"].get(event, {})
    return found


def test_breakers_stop_a_failing_dependency_from_exhausting_its_callers(shop: Path) -> None:
    doc = run(shop, "breaker-payments-fails")
    assert events(doc, "during", "breakers opened").get("orders -> payments", 0) >= 1
    fast = check(doc, "during", "checkout fails fast")
    assert fast["statuses"].get("503", 0) > 0  # it failed, and fast
    assert check(doc, "during", "orders' requests in flight")["max seen"] <= 20
    assert check(doc, "after", "checkout availability")["availability"] >= 99


def test_bulkheads_stop_shared_fate(shop: Path) -> None:
    doc = run(shop, "bulkhead-email-hangs")
    assert check(doc, "during", "login availability")["availability"] >= 99.9
    assert events(doc, "during", "overflow (bulkhead full)").get("orders -> email", 0) >= 1


def test_retry_budgets_prevent_retry_storms_and_a_naive_policy_does_not(shop: Path) -> None:
    budget = run(shop, "retry-budget")
    naive = run(shop, "retry-storm-naive")
    with_budget = check(budget, "during", "retry amplification")["ratio"]
    without = check(naive, "during", "retry amplification")["ratio"]
    print(f"retry amplification at payments: {with_budget:.2f}x with the budget,"
          f" {without:.2f}x with a naive policy")  # fmt: skip
    assert with_budget <= 1.2
    assert without >= 2.5
    assert events(budget, "during", "retries refused by the budget")


def test_deadlines_fail_fast(shop: Path) -> None:
    doc = run(shop, "deadline-payments-slow")
    assert check(doc, "during", "every checkout answered")["within_2100ms"] == 100


def test_a_hung_shadow_target_never_affects_users(shop: Path) -> None:
    doc = run(shop, "shadow-failing")
    assert check(doc, "during", "checkout availability")["availability"] >= 99


def test_a_10_percent_canary_split_is_within_2_points(shop: Path) -> None:
    doc = run(shop, "canary-split")
    share = check(doc, "during", "v2's share")
    assert share["to"] >= 2000  # enough draws for 2 points to mean something
    assert 0.08 <= share["ratio"] <= 0.12


def test_overload_sheds_sheddable_traffic_and_critical_keeps_its_slo(shop: Path) -> None:
    doc = run(shop, "overload-shedding")
    shed = events(doc, "during", "shed")
    assert shed.get("gateway -> sheddable", 0) >= 1
    assert "gateway -> critical" not in shed
    assert check(doc, "during", "critical checkouts")["availability"] >= 99


def test_the_mesh_survives_its_control_plane(shop: Path) -> None:
    doc = run(shop, "control-plane-killed")
    for phase in ("before", "during", "after"):
        assert check(doc, phase, "no checkout fails")["failed"] == 0
        assert check(doc, phase, "no login fails")["failed"] == 0
    (action,) = doc["actions"]
    assert action["describe"].startswith("SIGKILL the control plane")
