"""The canary controller (fake clock, pages as the sidecars write them) and the
publisher's effective splits."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from seawall.config import parse_mesh
from seawall.config.model import MeshConfig
from seawall.control.rollouts import CanaryController
from seawall.control.snapshot import Publisher, SplitOverride, route_identity
from seawall.control.store import ConfigRecord
from seawall.control.store.registry import Registry
from seawall.slo.monitor import Target


def mesh(**progressive: Any) -> MeshConfig:
    return parse_mesh({
        "mesh": "shop",
        "services": {
            "gateway": {"port": 8001, "sidecar": {"inbound": 18001, "outbound": 15001,
                                                  "admin": 19001}},
            "orders": {"port": 8002, "sidecar": {"inbound": 18002, "outbound": 15002,
                                                 "admin": 19002},
                       "subsets": {"v1": {}, "v2": {}}},
        },
        "policies": {"orders": {"routes": [
            {"name": "place-order", "split": {"v1": 100, "v2": 0},
             "progressive": {"steps": [20, 100], "interval": "10s", "min_events": 50,
                             **progressive}},
        ]}},
        "slos": {"orders": {"availability": "99%"}},
    })  # fmt: skip


def page(v1: tuple[int, int], v2: tuple[int, int]) -> str:
    lines = []
    for subset, (ok, failed) in (("v1", v1), ("v2", v2)):
        labels = f'destination="orders",route="place-order",subset="{subset}"'
        lines.append(f'seawall_subset_requests_total{{{labels},status_class="2xx"}} {ok}')
        lines.append(f'seawall_subset_requests_total{{{labels},status_class="5xx"}} {failed}')
    return "\n".join(lines) + "\n"


GATEWAY = Target("gateway.1", "gateway", "http://127.0.0.1:19001/metrics")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def controller(tmp_path: Path, pushed: list[list[SplitOverride]], clock: Clock) -> CanaryController:
    return CanaryController(
        pushed.append,
        state_file=tmp_path / "canaries.json",
        clock=clock,
        wall=lambda: 1_700_000_000.0 + clock.now,
    )


def test_it_rolls_out_records_pushes_and_keeps_its_state(tmp_path: Path) -> None:
    clock = Clock()
    pushed: list[list[SplitOverride]] = []
    c = controller(tmp_path, pushed, clock)
    m = mesh()
    assert c.wanted(m)  # a progressive split: the sidecars are scraped for it
    c.pages(m, [(GATEWAY, page((0, 0), (0, 0)))])  # begins: 20%, the page a baseline
    (started,) = pushed
    declared = route_identity(m.policies["orders"].routes[0].model_dump(mode="json"))
    assert started == [SplitOverride("orders", "place-order", declared, {"v1": 80, "v2": 20})]
    clock.now += 10
    c.pages(m, [(GATEWAY, page((200, 0), (50, 0)))])
    assert len(pushed) == 2
    assert pushed[-1][0].weights == {"v1": 0, "v2": 100}  # promoted
    assert not c.wanted(m)  # nothing left to judge: no scrape for it
    (view,) = c.view()
    assert (view["phase"], view["weight"], view["judges"]) == (
        "promoted",
        100,
        ["orders:availability"],
    )
    assert [d["action"] for d in view["decisions"]] == ["start", "promote"]
    assert view["decisions"][1]["at"] == 1_700_001_010.0
    assert view["decisions"][1]["comparisons"][0]["canary"] == {
        "total": 50, "bad": 0, "ratio": 0.0, "burn": 0.0
    }  # fmt: skip
    # a restart: the saved weights go out with the first snapshot, and it carries on
    c.close()  # (its last write done, as the server does when it stops)
    again = controller(tmp_path, pushed, clock)
    assert again.saved_overrides() == [pushed[-1][0]]
    again.pages(m, [(GATEWAY, page((0, 0), (0, 0)))])
    (view,) = again.view()
    assert (view["phase"], view["weights"]) == ("promoted", {"v1": 0, "v2": 100})
    assert [d["action"] for d in view["decisions"]] == ["start", "promote"]
    # a new rollout (the steps changed) begins anew; the old one's weights go
    n = len(pushed)
    again.pages(mesh(steps=[50, 100]), [(GATEWAY, page((0, 0), (0, 0)))])
    assert pushed[n:][-1][0].weights == {"v1": 50, "v2": 50}
    # no progressive split left: nothing overridden
    plain = parse_mesh({**json.loads(m.to_json()), "policies": {}})
    again.pages(plain, [])
    assert pushed[-1] == []
    assert again.view() == []


def test_a_failing_canary_is_rolled_back_and_shown_with_its_figures(tmp_path: Path) -> None:
    clock = Clock()
    pushed: list[list[SplitOverride]] = []
    c = controller(tmp_path, pushed, clock)
    m = mesh()
    c.pages(m, [(GATEWAY, page((0, 0), (0, 0)))])
    clock.now += 1
    c.pages(m, [(GATEWAY, page((30, 0), (10, 20)))])  # canary 30 < 50: wait
    assert len(pushed) == 1
    clock.now += 1
    c.pages(m, [(GATEWAY, page((250, 0), (10, 50)))])
    assert pushed[-1][0].weights == {"v1": 100, "v2": 0}
    (view,) = c.view()
    rollback = view["decisions"][-1]
    assert (view["phase"], rollback["action"], rollback["weight"]) == ("rolled_back", "rollback", 0)
    # an interim look: pi = 60 / 310; b bad of b has the chance pi^b: 0.0014 at 4,
    # 0.00027 at 5 (< 1/1000): 4 allowed
    assert rollback["reason"] == (
        "v2 burns faster than the baseline: orders:availability: canary 50 bad of 60 "
        "(83.33%, burn 83.3x), baseline 0 bad of 250 (0.00%, burn 0.0x); canary allowed 4 bad"
    )
    c.flush()  # written off the event loop
    saved = json.loads((tmp_path / "canaries.json").read_text())
    assert saved["rollouts"][0]["phase"] == "rolled_back"


def test_the_publisher_pushes_the_effective_splits_as_the_same_version() -> None:
    m = mesh()
    document = json.loads(m.to_json())
    record = ConfigRecord(3, m.digest(), m.to_json(), 0.0)
    p = Publisher(Registry())
    p.set_config(record, document)
    p.publish()
    before = p.current.etag
    route = document["policies"]["orders"]["routes"][0]
    override = SplitOverride("orders", "place-order", route_identity(route), {"v1": 80, "v2": 20})
    assert p.set_splits([override])
    assert p.pending()
    assert p.publish()
    pushed = json.loads(p.full_body())["config"]
    assert (pushed["version"], pushed["digest"]) == (3, m.digest())
    assert pushed["document"]["policies"]["orders"]["routes"][0]["split"] == {"v1": 80, "v2": 20}
    assert parse_mesh(pushed["document"]).policies["orders"].routes[0].split == {"v1": 80, "v2": 20}
    delta = json.loads(p.delta_body(before) or b"{}")
    assert delta["config"]["document"]["policies"]["orders"]["routes"][0]["split"]["v2"] == 20
    assert not p.set_splits([override])  # the same: nothing to push
    # the route changed since: the override no longer applies, the document's weights do
    stale = SplitOverride("orders", "place-order", "{}", {"v1": 80, "v2": 20})
    assert p.set_splits([stale])
    p.publish()
    assert p.current.etag == before  # as it was without any
    assert json.loads(p.full_body())["config"]["document"] == document


def test_a_damaged_state_file_loses_its_bad_rollouts_not_the_control_plane(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {
        "destination": "orders",
        "route": "place-order",
        "declared": "x",
        "phase": "progressing",
        "step": 0,
        "weights": {"v1": 90, "v2": 10},
        "decisions": [],
    }
    rollouts = [
        good,
        {**good, "route": "a", "weights": {"v1": None}},
        {**good, "route": "b", "weights": {"v1": 90, "v2": 20}},
        {**good, "route": "c", "step": "1"},
        {**good, "route": "d", "phase": "exploded"},
        "junk",
    ]  # fmt: skip
    (tmp_path / "canaries.json").write_text(json.dumps({"version": 1, "rollouts": rollouts}))
    with caplog.at_level(logging.WARNING, "seawall.control.canary"):
        c = CanaryController(lambda _: None, state_file=tmp_path / "canaries.json")
    assert [(o.route, o.weights) for o in c.saved_overrides()] == [
        ("place-order", {"v1": 90.0, "v2": 10.0})
    ]
    for index, why in enumerate(["a weight is not a finite number >= 0",
                                 "the weights sum to 110, not 100", "step is not an integer",
                                 "phase 'exploded'", "not an object"], start=1):  # fmt: skip
        assert re.search(rf"ignored rollouts\[{index}\] of \S+: {re.escape(why)}", caplog.text)
    c.close()
