"""A new config keeps the state it does not change (issue 14, part 2): a real sidecar process.

The issue found that any config change closed every open breaker: the whole
runtime was rebuilt on each version, so a routine change in the middle of an
incident undid the protection the incident needed. Each test here builds up
one kind of state over real sockets (an open breaker, a spent retry budget,
an ejected endpoint, balancer counts, pooled connections, requests in flight
against a bulkhead), reloads the sidecar with a change elsewhere (or to that
very policy), and shows from outside that the state carried on. State a change
cannot keep is reset and logged with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import count
from typing import Any

import httpx
import pytest
from backends import Backend, BackendLoop, Echo, Fail, Hang, Ok, wait_until
from conftest import Mesh, SidecarProcess, budgeted

BREAKER = {
    "window": {"type": "count", "size": 10},
    "minimum_calls": 4,
    "failure_rate": "50%",
    "open_for": "60s",
}


BREAKERS = ["unrelated", "thresholds", "off"]


class Kept:
    """The sidecar under test, its backends, and the config it runs."""

    def __init__(self, sidecar: SidecarProcess, b: dict[str, Backend]) -> None:
        self.sidecar = sidecar
        self.mesh = sidecar.mesh
        self.b = b
        self.client = httpx.Client(proxy=sidecar.proxy, timeout=10)
        self._extra = count()

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url)

    def cluster(self, name: str) -> dict[str, Any]:
        clusters = self.sidecar.admin_get("/clusters").json()["clusters"]
        (found,) = [c for c in clusters if c["name"] == name]
        return found

    def policy(self, name: str) -> dict[str, Any]:
        policy: dict[str, Any] = self.mesh.doc["policies"][name]
        return policy

    def reload(self) -> None:
        """Apply the mesh as it now is (SIGHUP), and wait until the sidecar has."""
        self.sidecar.reload(self.mesh)

    def unrelated_change(self) -> None:
        """Add a service nothing calls, and reload."""
        self.mesh.destination(f"extra{next(self._extra)}", [self.mesh.closed_port()])
        self.reload()


@pytest.fixture(scope="module")
def kept(sidecar_loop: BackendLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kept]:
    names = ["app", "budget", "bad", "good", "pooled", "bulkhead", "lb_a", "lb_b", *BREAKERS]
    b = {name: sidecar_loop.backend(name, Echo()) for name in names}
    mesh = Mesh(b["app"])
    for name in BREAKERS:  # one per test: each trips its own
        mesh.destination(name, [b[name]], {"circuit_breaker": BREAKER})
    mesh.destination("budget", [b["budget"]], budgeted())
    mesh.destination(
        "outlier",
        [b["bad"], b["good"]],
        {
            "load_balancer": "round_robin",
            "outlier": {"consecutive_5xx": 3, "base_ejection": "60s", "max_ejected_percent": "50%"},
        },
    )
    mesh.destination("pooled", [b["pooled"]])
    mesh.destination(
        "bulkhead", [b["bulkhead"]], {"timeout": "5s", "bulkhead": {"max_in_flight": 1}}
    )
    mesh.destination("balanced", [b["lb_a"], b["lb_b"]], {"load_balancer": "least_request"})
    process = SidecarProcess(mesh, tmp_path_factory.mktemp("kept"))
    try:
        k = Kept(process.start(), b)
        with k.client:
            yield k
    finally:
        process.stop()


def trip(kept: Kept, name: str) -> Backend:
    backend = kept.b[name].script(Fail(500))
    assert [kept.get(f"http://{name}/{i}").status_code for i in range(4)] == [500] * 4
    assert kept.cluster(name)["breaker"]["state"] == "open"
    return backend


def test_an_open_breaker_stays_open_across_an_unrelated_change(kept: Kept) -> None:
    backend = trip(kept, "unrelated")
    kept.unrelated_change()
    backend.script(Ok(b"recovered"))  # even a healthy backend is not called: it is open
    r = kept.get("http://unrelated/after")
    assert r.status_code == 503
    assert r.headers["x-seawall-circuit"] == "open"
    assert backend.hits == 0
    assert kept.cluster("unrelated")["breaker"]["state"] == "open"


def test_an_open_breaker_stays_open_when_only_its_thresholds_change(kept: Kept) -> None:
    backend = trip(kept, "thresholds")
    kept.policy("thresholds")["circuit_breaker"] = BREAKER | {"failure_rate": "80%"}
    kept.reload()
    backend.script(Ok(b"recovered"))
    assert kept.get("http://thresholds/after").status_code == 503
    assert backend.hits == 0
    assert kept.cluster("thresholds")["breaker"]["state"] == "open"


def test_turning_a_breaker_off_is_a_reset_that_is_logged(kept: Kept) -> None:
    trip(kept, "off")
    kept.policy("off")["circuit_breaker"] = {"enabled": False}
    kept.reload()
    assert (
        'state_reset destination=off what="circuit breaker" '
        'reason="circuit_breaker turned off (it was open)"'
    ) in kept.sidecar.stderr()
    backend = kept.b["off"].script(Ok(b"through"))
    assert kept.get("http://off/now").status_code == 200
    assert backend.hits == 1
    # on again: a new breaker, closed
    kept.policy("off")["circuit_breaker"] = BREAKER
    kept.reload()
    assert kept.cluster("off")["breaker"]["state"] == "closed"


def test_a_spent_retry_budget_stays_spent(kept: Kept) -> None:
    backend = kept.b["budget"].script(Fail(503))
    assert [kept.get(f"http://budget/{i}").status_code for i in range(6)] == [503] * 6
    spent = backend.hits
    assert 6 <= spent <= 8  # the reserve's one retry or so, then no more
    exhausted = kept.sidecar.metric("seawall_retry_budget_exhausted_total", destination="budget")
    kept.unrelated_change()
    backend.script(Fail(503))
    assert kept.get("http://budget/after").status_code == 503
    # a fresh budget would have its reserve again: a new one would retry this request
    assert backend.hits == 1
    after = kept.sidecar.metric("seawall_retry_budget_exhausted_total", destination="budget")
    assert after == exhausted + 1


def test_an_ejected_endpoint_stays_ejected(kept: Kept) -> None:
    bad = kept.b["bad"].script(Fail(500))
    good = kept.b["good"].script(Ok(b"good"))
    [kept.get(f"http://outlier/{i}") for i in range(12)]
    assert bad.hits == 3
    ejected = {e["port"] for e in kept.cluster("outlier")["endpoints"] if e["ejected"]}
    assert ejected == {bad.port}
    # a change to the detector's thresholds keeps its ejections too
    kept.policy("outlier")["outlier"] = {
        "consecutive_5xx": 5,
        "base_ejection": "60s",
        "max_ejected_percent": "50%",
    }
    kept.reload()
    bad.script(Ok(b"bad but fine now"))
    good.script(Ok(b"good"))
    assert {kept.get(f"http://outlier/x{i}").status_code for i in range(10)} == {200}
    assert bad.hits == 0
    assert good.hits == 10
    ejected = {e["port"] for e in kept.cluster("outlier")["endpoints"] if e["ejected"]}
    assert ejected == {bad.port}


def test_pooled_connections_and_balancer_counts_carry_on(kept: Kept) -> None:
    pooled = kept.b["pooled"].script(Echo())
    a, b = kept.b["lb_a"].script(Echo()), kept.b["lb_b"].script(Echo())
    for i in range(5):
        assert kept.get(f"http://pooled/{i}").status_code == 200
        assert kept.get(f"http://balanced/{i}").status_code == 200
    assert pooled.connections == 1
    totals = {e["port"]: e["requests_total"] for e in kept.cluster("balanced")["endpoints"]}
    assert sum(totals.values()) == 5
    kept.unrelated_change()
    assert kept.get("http://pooled/after").status_code == 200
    assert pooled.connections == 1  # the same upstream connection, reused
    assert {s.connection for s in pooled.seen} == {pooled.seen[0].connection}
    after = {e["port"]: e["requests_total"] for e in kept.cluster("balanced")["endpoints"]}
    assert after == totals
    assert a.hits + b.hits == 5


def test_requests_in_flight_count_against_a_new_bulkhead_limit(kept: Kept) -> None:
    backend = kept.b["bulkhead"].script(Hang())
    answers: list[int] = []

    def call(path: str) -> None:
        answers.append(kept.client.get(f"http://bulkhead/{path}").status_code)

    first = threading.Thread(target=call, args=("one",))
    first.start()
    threads = [first]
    try:
        backend.wait_heads(1)
        kept.policy("bulkhead")["bulkhead"] = {"max_in_flight": 2}
        kept.reload()
        assert kept.cluster("bulkhead")["in_flight"] == 1  # carried over
        second = threading.Thread(target=call, args=("two",))
        second.start()
        threads.append(second)
        backend.wait_heads(2)
        r = kept.get("http://bulkhead/three")  # 2 in flight: the new limit
        assert r.status_code == 503
        assert r.headers["x-seawall-overflow"] == "in_flight"
        assert backend.heads == 2
    finally:
        backend.release()
        for t in threads:
            t.join(10)
    assert answers == [200, 200]
    wait_until(lambda: kept.cluster("bulkhead")["in_flight"] == 0, 5, "the slots back")
