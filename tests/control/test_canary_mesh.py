"""A progressive canary in a managed mesh: the control plane raises v2's weight while it
is as good as v1, and rolls it back to 0 by itself when it starts answering 500s.

Real control plane, real sidecars (mTLS), real backends; the control plane scrapes the
caller's sidecar every 0.5 s and judges each 1 s step on at least 10 requests a side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backends import Fail, wait_until
from managed import ROOT
from test_managed_mesh import Mesh

ROUTE = {
    "name": "work",
    "match": {"path_prefix": "/work"},
    "split": {"v1": 100, "v2": 0},
    "progressive": {"canary": "v2", "steps": [25, 50, 100], "interval": "1s", "min_events": 10},
}


class CanaryMesh(Mesh):
    """The managed mesh, with an availability SLO of ``backend`` (the canary's judge)."""

    def apply(self, via: int = 0, **policy: Any) -> int:
        self.doc["slos"] = {"backend": {"availability": "99%"}}
        return super().apply(via, **policy)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[CanaryMesh]:
    m = CanaryMesh(
        tmp_path,
        control_args=("--slo-interval", "500ms"),
        routes=[ROUTE],
        retry={"attempts": 1},
        outlier={"enabled": False},
    )
    yield m
    m.close()


def rollout(mesh: Mesh) -> dict[str, Any]:
    (found,) = mesh.control_json("/v1/status")["rollouts"]
    return dict(found)


def actions(mesh: Mesh) -> list[str]:
    return [d["action"] for d in rollout(mesh)["decisions"] if d["action"] != "hold"]


def drive(mesh: Mesh, until: Callable[[], bool], most: int = 1000) -> tuple[int, int]:
    """Requests through the caller's sidecar, one at a time, until ``until()`` (asked
    every 10 requests) or ``most`` were sent: (answered 200, answered otherwise)."""
    ok = failed = 0
    with httpx.Client(trust_env=False, timeout=5) as client:
        for i in range(most):
            if i % 10 == 0 and until():
                break
            status = client.get(f"http://127.0.0.1:{mesh.ports['api_up']}/work").status_code
            ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
            time.sleep(0.005)
        else:
            raise AssertionError(f"not done after {most} requests ({ok} ok, {failed} failed)")
    return ok, failed


def running_split(mesh: Mesh) -> dict[str, float]:
    config = mesh.api.admin_json("/config")["config"]
    return dict(config["policies"]["backend"]["routes"][0]["split"])


def test_a_canary_that_fails_is_rolled_back_by_the_control_plane(mesh: CanaryMesh) -> None:
    wait_until(lambda: running_split(mesh) == {"v1": 75, "v2": 25}, 15, "v2 at 25% (step 1)")
    assert rollout(mesh)["judges"] == ["backend:availability"]
    # v2 is as good as v1: the first step is judged and v2 goes to 50%
    ok, failed = drive(mesh, lambda: "advance" in actions(mesh))
    assert (ok >= 20, failed) == (True, 0)
    assert rollout(mesh)["weights"] == {"v1": 50, "v2": 50}
    wait_until(lambda: running_split(mesh) == {"v1": 50, "v2": 50}, 10, "the sidecar at 50%")
    # v2 breaks: the control plane rolls it back without being asked
    mesh.b2.script(Fail(500))
    ok, failed = drive(mesh, lambda: rollout(mesh)["phase"] == "rolled_back")
    assert failed >= 10  # the canary's 500s, until the rollback
    assert actions(mesh) == ["start", "advance", "rollback"]
    r = rollout(mesh)
    assert (r["weight"], r["weights"], r["step"]) == (0, {"v1": 100, "v2": 0}, -1)
    back = r["decisions"][-1]
    assert back["reason"].startswith("v2 burns faster than the baseline: backend:availability:")
    (figures,) = back["comparisons"]
    assert figures["verdict"] == "worse"
    assert figures["canary"]["bad"] > figures["allowed_bad"]
    assert figures["canary"]["total"] >= 10
    assert figures["baseline"]["total"] >= 10
    assert figures["baseline"]["bad"] == 0
    # the sidecars run v1 only, and mesh.yaml is still what was applied
    wait_until(lambda: running_split(mesh) == {"v1": 100, "v2": 0}, 10, "the sidecar at 0%")
    hits = mesh.b2.hits
    with mesh.load(count=40, seconds=1) as load:
        pass
    assert (load.ok, load.failures, mesh.b2.hits) == (40, [], hits)
    applied = mesh.control_json("/v1/config")["config"]["policies"]["backend"]["routes"][0]
    assert applied["split"] == {"v1": 100, "v2": 0}
    # seawall status shows the steps and the decisions, with their reasons and figures
    url = mesh.controls[0].url
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    run = [sys.executable, "-m", "seawall", "status", "--control", url]
    text = subprocess.run(
        run, check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=30
    )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    (row,) = [line for line in lines if line.startswith("backend/work ")]
    assert row.split()[1:5] == ["v2", "0%", "-", "ROLLED"]
    assert "backend/work: v2 against v1, steps 25%, 50%, 100% every 1s, judged on " \
           "backend:availability" in lines  # fmt: skip
    said = [line.split(maxsplit=2)[1:] for line in lines if line.startswith("  ")]
    assert [a for a, _ in said if a != "hold"] == ["start", "advance", "rollback"]
    assert said[0][1] == "v2 begins at 25% (step 1 of 3)"
    assert said[-1][1].startswith(
        "v2 burns faster than the baseline: backend:availability: canary "
    )
    as_json = subprocess.run(
        [*run, "--json"], check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=30
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["rollouts"][0]["decisions"] == r["decisions"]
    # the decisions survive a restart of the control plane, and so do the weights
    mesh.controls[0].stop()
    mesh.controls[0].start()
    wait_until(lambda: actions(mesh) == ["start", "advance", "rollback"], 10, "kept decisions")
    assert running_split(mesh) == {"v1": 100, "v2": 0}
    assert rollout(mesh)["phase"] == "rolled_back"
