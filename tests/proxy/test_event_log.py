"""``seawall.proxy.events``: the Python side of the event log, on a fake clock."""

from __future__ import annotations

import io
import json

import pytest

from seawall.proxy.events import BURST, EventLog, Limiter


def test_a_burst_then_one_per_interval_each_counting_the_dropped() -> None:
    # the same sequence as the core's Limiter test (crates/seawall-proxy/src/events.rs)
    lim = Limiter()
    key = ("x", "a")
    assert [lim.decide(key, 0.0) for _ in range(BURST)] == [0] * BURST
    assert lim.decide(key, 1.0) is None
    assert lim.decide(key, 2.0) is None
    assert lim.decide(("x", "b"), 2.0) == 0
    assert lim.decide(("y", "a"), 2.0) == 0
    assert lim.decide(key, 9.0) is None
    assert lim.decide(key, 10.0) == 3
    assert lim.decide(key, 10.5) is None
    assert lim.decide(key, 1000.0) == 1
    assert [lim.decide(key, 1000.0) for _ in range(BURST - 1)] == [0] * (BURST - 1)
    assert lim.decide(key, 1000.0) is None


def test_lines_in_both_formats_and_limits_only_where_asked() -> None:
    now = [0.0]
    out = io.StringIO()
    log = EventLog("orders", "json", out=out, clock=lambda: now[0], wall=lambda: 1.7648e9)
    for _ in range(BURST + 3):
        log.event("control_plane_lost", limited=True, attempt=1)
    for _ in range(BURST + 3):
        log.message("config reloaded", "config_reloaded")  # an operator's: never limited
    now[0] = 10.0
    log.event("control_plane_lost", limited=True, attempt=2)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    lost = [d for d in docs if d["event"] == "control_plane_lost"]
    assert len(lost) == BURST + 1
    assert lost[-1]["dropped"] == 3
    assert len([d for d in docs if d["event"] == "config_reloaded"]) == BURST + 3
    assert docs[0] == {
        "time": "2025-12-03T22:13:20.000Z",
        "service": "orders",
        "event": "control_plane_lost",
        "destination": "",
        "attempt": 1,
    }
    text = io.StringIO()
    EventLog("orders", out=text, wall=lambda: 1.7648e9).event(
        "instance_joined", "payments", endpoint="10.0.0.1:80", subset=None, note="two words"
    )
    assert text.getvalue() == (
        "2025-12-03T22:13:20.000Z orders instance_joined destination=payments "
        'endpoint=10.0.0.1:80 subset=null note="two words"\n'
    )
    with pytest.raises(ValueError, match="log format 'yaml': must be text or json"):
        EventLog("orders", "yaml")
