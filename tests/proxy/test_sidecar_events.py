"""The sidecar's event log (issue 14, part 3): what the mesh did, one line per event.

A real sidecar process with ``--log-format json``: a breaker opens, goes half
open and closes; an endpoint is ejected and returns; a retry budget runs out;
a bulkhead overflows (rate-limited: a burst of lines, not one per request); a
config swap says its version and what it reset. Each line is one JSON object
with the time, the service, the event, the destination and its figures. The
default text format has the same fields as ``key=value``.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, Fail, Hang, Ok, wait_until
from conftest import Mesh, SidecarProcess, budgeted


class Logged:
    def __init__(self, sidecar: SidecarProcess, b: dict[str, Backend]) -> None:
        self.sidecar = sidecar
        self.b = b
        self.client = httpx.Client(proxy=sidecar.proxy, timeout=10)

    def events(self, event: str | None = None, destination: str | None = None) -> list[Any]:
        found = []
        for line in self.sidecar.stderr().splitlines():
            doc = json.loads(line)  # every line is one JSON object
            if event in (None, doc["event"]) and destination in (None, doc["destination"]):
                found.append(doc)
        return found

    def wait_for(self, event: str, destination: str, n: int = 1) -> list[Any]:
        wait_until(
            lambda: len(self.events(event, destination)) >= n, 5, f"{n} {event} for {destination}"
        )
        return self.events(event, destination)


@pytest.fixture(scope="module")
def logged(sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    names = ["app", "breaker", "bad", "good", "budget", "bulkhead"]
    b = {name: sidecar_loop.backend(name, Echo()) for name in names}
    mesh = Mesh(b["app"])
    mesh.destination(
        "breaker",
        [b["breaker"]],
        {
            "circuit_breaker": {
                "window": {"type": "count", "size": 4},
                "minimum_calls": 4,
                "failure_rate": "50%",
                "open_for": "200ms",
                "half_open_calls": 1,
            }
        },
    )
    mesh.destination(
        "outlier",
        [b["bad"], b["good"]],
        {
            "load_balancer": "round_robin",
            "outlier": {
                "consecutive_5xx": 2, "base_ejection": "300ms", "max_ejected_percent": "50%",
            },
        },
    )
    mesh.destination("budget", [b["budget"]], budgeted())
    mesh.destination("bulkhead", [b["bulkhead"]], {"bulkhead": {"max_in_flight": 1}})
    process = SidecarProcess(mesh, tmp_path_factory.mktemp("events"))
    process.args = ["--log-format", "json"]
    try:
        logged = Logged(process.start(), b)
        with logged.client:
            yield logged
    finally:
        process.stop()


def test_every_line_is_an_event_with_time_service_and_destination(logged: Logged) -> None:
    (serving,) = logged.events("serving")
    assert serving["service"] == "app"
    assert serving["message"].startswith("serving app on the Rust core: ")
    for doc in logged.events():
        assert {"time", "service", "event", "destination"} <= doc.keys()
        assert doc["time"].endswith("Z")
        assert doc["time"][10] == "T"


def test_a_breaker_opens_goes_half_open_and_closes(logged: Logged) -> None:
    backend = logged.b["breaker"].script(Fail(500))
    for i in range(4):
        assert logged.client.get(f"http://breaker/{i}").status_code == 500
    (opened,) = logged.wait_for("breaker_opened", "breaker")
    assert opened["from"] == "closed"
    assert opened["failure_rate"] == 100.0
    assert 0 < opened["open_for"] <= 0.2
    backend.script(Ok(b"back"))
    # after open_for, the next call is the probe: half open, then closed
    wait_until(lambda: logged.client.get("http://breaker/probe").status_code == 200, 5, "probe")
    (half,) = logged.wait_for("breaker_half_open", "breaker")
    (closed,) = logged.wait_for("breaker_closed", "breaker")
    assert closed["from"] == "half_open"
    assert half["time"] <= closed["time"]


def test_a_breaker_seen_half_open_by_the_admin_page_says_so(logged: Logged) -> None:
    """Reading /clusters after open_for moves the breaker to half open (it shows
    what is due): that move is an event and a counted transition like any other."""
    before = len(logged.events("breaker_half_open", "breaker"))
    counted = logged.sidecar.metric(
        "seawall_breaker_transitions_total", destination="breaker", to_state="half_open"
    )
    opened = len(logged.events("breaker_opened", "breaker"))
    backend = logged.b["breaker"].script(Fail(500))
    for i in range(4):
        logged.client.get(f"http://breaker/again{i}")
    logged.wait_for("breaker_opened", "breaker", opened + 1)
    backend.script(Ok(b"back"))

    def half_open_on_the_page() -> bool:
        clusters = logged.sidecar.admin_get("/clusters").json()["clusters"]
        (breaker,) = [c for c in clusters if c["name"] == "breaker"]
        return bool(breaker["breaker"]["state"] == "half_open")

    wait_until(half_open_on_the_page, 5, "half open on /clusters")
    logged.wait_for("breaker_half_open", "breaker", before + 1)
    assert (
        logged.sidecar.metric(
            "seawall_breaker_transitions_total", destination="breaker", to_state="half_open"
        )
        == counted + 1
    )
    # the probe closes it, as before
    wait_until(lambda: logged.client.get("http://breaker/p").status_code == 200, 5, "probe")


def test_an_endpoint_is_ejected_and_returns(logged: Logged) -> None:
    bad = logged.b["bad"].script(Fail(503))
    logged.b["good"].script(Ok(b"good"))
    for i in range(6):
        logged.client.get(f"http://outlier/{i}")
    (ejected,) = logged.wait_for("endpoint_ejected", "outlier")
    assert ejected["endpoint"] == f"127.0.0.1:{bad.port}"
    assert ejected["reason"] == "consecutive_5xx"
    assert 0 < ejected["ejected_for"] <= 0.3
    bad.script(Ok(b"fine"))
    # returned once its ejection is over: noticed at the next pick
    wait_until(
        lambda: logged.client.get("http://outlier/x").status_code == 200
        and bool(logged.events("endpoint_returned", "outlier")),
        5,
        "the return",
    )
    (back,) = logged.events("endpoint_returned", "outlier")
    assert back["endpoint"] == f"127.0.0.1:{bad.port}"


def test_a_retry_budget_runs_out(logged: Logged) -> None:
    logged.b["budget"].script(Fail(503))
    for i in range(4):
        logged.client.get(f"http://budget/{i}")
    first = logged.wait_for("retry_budget_exhausted", "budget")[0]
    assert first["refused_total"] == 1


def test_bulkhead_overflows_are_rate_limited(logged: Logged) -> None:
    backend = logged.b["bulkhead"].script(Hang())
    holder = threading.Thread(target=lambda: logged.client.get("http://bulkhead/hold"))
    holder.start()
    try:
        backend.wait_heads(1)
        with httpx.Client(proxy=logged.sidecar.proxy, timeout=5) as other:
            statuses = [other.get(f"http://bulkhead/{i}").status_code for i in range(12)]
        assert statuses == [503] * 12
    finally:
        backend.release()
        holder.join(5)
    lines = logged.wait_for("bulkhead_overflow", "bulkhead", 5)
    assert len(lines) == 5  # the burst; the other 7 are counted, not written
    assert {(d["limit"], d["max"]) for d in lines} == {("in_flight", 1)}
    metric = logged.sidecar.metric(
        "seawall_overflow_total", destination="bulkhead", limit="in_flight"
    )
    assert metric == 12


def test_a_config_swap_says_its_version_and_what_it_reset(logged: Logged) -> None:
    mesh = logged.sidecar.mesh
    mesh.doc["policies"]["budget"]["retry"]["budget"]["ttl"] = "5s"
    logged.sidecar.rewrite(mesh, keep_mtime=True)
    logged.sidecar.signal(signal.SIGHUP)
    (swapped,) = logged.wait_for("config_swapped", "app")
    assert swapped["version"] == 2
    assert swapped["state_resets"] == 1
    assert swapped["restart_needed"] == []
    (reset,) = logged.events("state_reset", "budget")
    assert reset["what"] == "retry budget"
    assert reset["reason"] == "its ttl changed from 10s to 5s: the budget starts empty"
    (reloaded,) = logged.events("config_reloaded")
    assert reloaded["message"].startswith("config reloaded: version 2 ")
    assert reloaded["changes"] == 1
    assert reloaded["changed"] == ["policies.budget.retry.budget.ttl"]


def test_the_text_format_has_the_same_fields(
    sidecar_loop: BackendLoop, tmp_path: Any
) -> None:
    backend = sidecar_loop.backend("plain", Fail(500))
    mesh = Mesh(backend)
    mesh.destination(
        "plain",
        [backend],
        {"circuit_breaker": {"window": {"type": "count", "size": 2}, "minimum_calls": 2,
                             "failure_rate": "50%", "open_for": "60s"}},
    )
    sidecar = SidecarProcess(mesh, tmp_path).start()
    try:
        with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
            for i in range(2):
                client.get(f"http://plain/{i}")
        wait_until(lambda: " breaker_opened " in sidecar.stderr(), 5, "the event")
        (line,) = [x for x in sidecar.stderr().splitlines() if " breaker_opened " in x]
        time_, service, event, *figures = line.split(" ")
        assert (service, event) == ("app", "breaker_opened")
        assert time_.endswith("Z")
        assert figures[:3] == ["destination=plain", "from=closed", "failure_rate=100.0"]
    finally:
        sidecar.stop()
