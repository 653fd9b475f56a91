"""How probes are judged, on made-up scrapes and records (no mesh, no clock): counters'
increases by instance across restarts and missing pages, a metric no page declares, a
gauge's both ends, a ratio's draws, requests not yet answered, burn rates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seawall.chaos.measure import (
    Record,
    increase,
    judge_load,
    judge_metric,
    judge_slo,
    policy_events,
)
from seawall.chaos.mesh import InstanceInfo, MeshState, Scrape
from seawall.chaos.model import Probe
from seawall.config import parse_mesh
from seawall.slo.scrape import parse

SIDECAR = {"inbound": 18001, "outbound": 15001, "admin": 19001}
MESH = parse_mesh({
    "mesh": "m",
    "services": {"a": {"port": 8001, "sidecar": SIDECAR},
                 "b": {"port": 8002, "sidecar": {k: v + 1 for k, v in SIDECAR.items()}}},
    "slos": {"b-ok": {"service": "b", "availability": 99.0}},
})  # fmt: skip
STATE = MeshState(
    state_dir=Path("/nonexistent"), control_url="http://127.0.0.1:1", admin_token="t",
    config=MESH, document={}, version=1,
    instances={name: InstanceInfo(name, svc, 1, 2, 3) for name, svc in
               (("a", "a"), ("b", "b"), ("b-2", "b"))},
    collector="http://127.0.0.1:4318",
)  # fmt: skip


def page(**counts: float) -> str:
    """A sidecar page: ``seawall_retries_total`` to payments, and b's inbound requests
    (``ok`` 2xx, ``bad`` 5xx), each declared as the sidecar does."""
    lines = ["# TYPE seawall_retries_total counter", "# TYPE seawall_requests_total counter",
             "# TYPE seawall_in_flight_requests gauge"]  # fmt: skip
    if "retries" in counts:
        lines.append(f'seawall_retries_total{{destination="payments"}} {counts["retries"]}')
    for cls, key in (("2xx", "ok"), ("5xx", "bad")):
        if key in counts:
            lines.append(f'seawall_requests_total{{direction="inbound",destination="b",'
                         f'route="",status_class="{cls}"}} {counts[key]}')  # fmt: skip
    if "in_flight" in counts:
        lines.append(f'seawall_in_flight_requests{{destination="payments"}} {counts["in_flight"]}')
    return "\n".join(lines) + "\n"


def scrape(t: float, **pages: str) -> Scrape:
    return Scrape(t, {k.replace("_", "-"): list(parse(v)) for k, v in pages.items()},
                  {k.replace("_", "-"): v for k, v in pages.items()})  # fmt: skip


def probe(**data: Any) -> Probe:
    return Probe.model_validate(data)


def test_a_counters_increase_is_summed_per_instance_across_restarts_and_gaps() -> None:
    scrapes = [
        scrape(0, b=page(retries=1000), b_2=page(retries=100)),
        scrape(1, b=page(retries=1010), b_2=page(retries=5)),  # b-2 restarted: 5 new
        scrape(2, b_2=page(retries=20)),  # b's page missing: its interval is lost
        scrape(3, b=page(retries=1030), b_2=page(retries=25)),
    ]
    retries = probe(metric={"service": "b", "name": "seawall_retries_total"}, max=100)
    r = judge_metric(retries, STATE, scrapes)
    # b: 10, then 20 across the gap; b-2: 5 (restart), 15, 5 -- never a lifetime's 1030
    assert r.measured == {"increase": 55.0}
    assert r.passed
    grew, seen = increase(scrapes[:1], lambda inst, s: {"x": 1.0})
    assert (grew, seen) == ({"x": 0.0}, True)  # one scrape: nothing grew


def test_a_metric_no_page_declares_fails_and_one_not_counted_yet_is_zero() -> None:
    scrapes = [scrape(0, b=page()), scrape(1, b=page())]
    typo = probe(metric={"service": "b", "name": "seawall_retry_total"}, max=0)
    r = judge_metric(typo, STATE, scrapes)
    assert not r.passed
    assert r.reason == "no page of b declares seawall_retry_total (a typo?)"
    none_yet = probe(metric={"service": "b", "name": "seawall_retries_total"}, max=0)
    assert judge_metric(none_yet, STATE, scrapes).measured == {"increase": 0.0}


def test_a_gauge_is_judged_at_its_lowest_and_its_highest() -> None:
    scrapes = [scrape(t, b=page(in_flight=v)) for t, v in enumerate((3, 0, 7, 2))]
    both = probe(metric={"service": "b", "name": "seawall_in_flight_requests"}, min=1, max=5)
    r = judge_metric(both, STATE, scrapes)
    assert r.measured == {"min seen": 0.0, "max seen": 7.0}
    assert r.reason == "7 > 5; 0 < 1"


def test_a_ratio_needs_its_draws() -> None:
    scrapes = [scrape(0, b=page(retries=0, ok=0)), scrape(1, b=page(retries=30, ok=300))]
    ratio = {"of": {"service": "b", "name": "seawall_retries_total"},
             "to": {"service": "b", "name": "seawall_requests_total"}}  # fmt: skip
    r = judge_metric(probe(ratio=ratio, max=0.2), STATE, scrapes)
    assert (r.passed, r.measured["ratio"]) == (True, 0.1)
    few = judge_metric(probe(ratio=ratio | {"min_to": 1000}, max=0.2), STATE, scrapes)
    assert not few.passed
    assert few.reason == "the denominator grew by 300, fewer than 1000"


def test_an_slo_probe_counts_the_services_inbound_requests_by_instance() -> None:
    scrapes = [
        scrape(0, b=page(ok=500, bad=5), b_2=page(ok=10)),
        scrape(1, b=page(ok=590, bad=6), b_2=page(ok=3, bad=2)),
    ]  # b-2 restarted
    r = judge_slo(probe(slo="b-ok"), STATE, scrapes)
    # b: 91 requests, 1 bad; b-2: 5 and 2 (counted from 0) -> 96 requests, 3 bad
    assert r.measured["requests"] == 96
    assert r.measured["failed"] == 3
    assert r.measured["availability"] == round(93 / 96 * 100, 4)
    assert not r.passed  # 97.03% < 99%


def test_load_probes_availability_latency_burn_and_requests_not_answered_yet() -> None:
    records = [Record(0.1 * i, 0.05, 200, f"{i:032x}") for i in range(95)]
    records += [Record(10.0 + i, 0.01, 503, f"{100 + i:032x}") for i in range(5)]
    burn = probe(load="l", availability=99.9, max_burn_rate=20)
    r = judge_load(burn, records, STATE)
    assert r.measured["burn_rate"] == 50.0  # 5% bad over a 0.1% budget
    assert r.reason == "budget burning 50.0x > 20x"
    assert r.traces[0] == "http://127.0.0.1:4318/ui/#/trace/" + f"{100:032x}"
    fast = probe(load="l", latency={"threshold": "100ms", "percent": "100%"}, max_failed=5)
    assert judge_load(fast, records, STATE).passed  # the 503s answered fast, and 5 <= 5
    slow = records + [Record(20.0, 2.5, 1, "", "no answer yet")]  # still out after 2.5 s
    r = judge_load(fast, slow, STATE)
    assert not r.passed
    assert r.measured["statuses"]["pending"] == 1
    none = judge_load(probe(load="l", availability=99.0, min_requests=0), [], STATE)
    assert none.passed  # min_requests 0: an empty window is allowed, by choice


def test_policy_events_count_increases_per_instance_not_lifetimes() -> None:
    """The report's events are increases like a metric probe's: a restart counts from 0,
    and an instance whose first page is missing loses that interval, not its lifetime."""
    scrapes = [
        scrape(0, b=page(retries=1000)),  # b-2's page missing
        scrape(1, b=page(retries=1010), b_2=page(retries=500)),
        scrape(2, b=page(retries=3), b_2=page(retries=520)),  # b restarted: 3 new
    ]
    assert policy_events(scrapes, STATE) == {
        "retries sent": {"b -> payments": 13.0, "b-2 -> payments": 20.0}
    }
    assert policy_events(scrapes[:1], STATE) == {}
