"""SloEngine: sidecars' metric pages in, statuses and notices out; the page parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seawall.config import SloConfig
from seawall.slo import objectives
from seawall.slo.engine import SloEngine, history
from seawall.slo.scrape import MetricsError, PageIndex, counters, parse
from seawall.slo.series import EventSeries

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def page(
    direction: str, destination: str, ok: float, failed: float, route: str = "inbound",
    fast: float | None = None, le: str = "0.3",
) -> str:  # fmt: skip
    """A sidecar's page as the Rust core writes it (the families an SLO reads)."""
    labels = f'direction="{direction}",destination="{destination}",route="{route}"'
    total = ok + failed
    lines = [
        "# HELP seawall_requests_total Requests finished by the sidecar.",
        "# TYPE seawall_requests_total counter",
        f'seawall_requests_total{{{labels},status_class="2xx"}} {ok!r}',
        f'seawall_requests_total{{{labels},status_class="5xx"}} {failed!r}',
        "# TYPE seawall_request_duration_seconds histogram",
        f'seawall_request_duration_seconds_bucket{{{labels},le="0.25"}} 0.0',
        f'seawall_request_duration_seconds_bucket{{{labels},le="{le}"}} {fast or 0.0!r}',
        f'seawall_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total!r}',
        f"seawall_request_duration_seconds_sum{{{labels}}} 1.5",
        f"seawall_request_duration_seconds_count{{{labels}}} {total!r}",
        'seawall_breaker_state{destination="x",state="closed"} 1.0',
    ]
    return "\n".join(lines) + "\n"


def slo(**fields: object) -> SloConfig:
    return SloConfig.model_validate(fields)


def test_values_holding_commas_equals_and_braces_read_the_same_either_way() -> None:
    plain = 'x{a="p,q=r}s",b="",c="t"} 1\n'
    escaped = 'x{a="p,q=r}s",b="",c="t\\\\"} 1\n'  # a backslash: the careful path
    (fast,) = parse(plain)
    (slow,) = parse(escaped)
    assert fast.labels == {"a": "p,q=r}s", "b": "", "c": "t"}
    assert slow.labels == {"a": "p,q=r}s", "b": "", "c": "t\\"}
    (trailing,) = parse('x{a="1",} 2\n')
    assert trailing.labels == {"a": "1"}


def test_the_parser_reads_labels_escapes_and_special_values() -> None:
    text = (
        '# TYPE x counter\nx{a="1",b="q\\"uote\\\\d\\nl"} 3\nup 1 1700000000000\n'
        'y{le="+Inf"} +Inf\nz{} NaN\n'
    )
    samples = list(parse(text))
    assert samples[0].labels == {"a": "1", "b": 'q"uote\\d\nl'}
    assert samples[0].value == 3
    assert (samples[1].name, samples[1].value) == ("up", 1)
    assert samples[2].value == float("inf")
    assert samples[3].labels == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ok 1\n{a="1"} 2\n', "line 2: no metric name"),
        ('x{a="1" 2\n', "line 1: malformed labels"),
        ('x{a="\\q"} 2\n', r"line 1: unknown escape '\\\\q'"),
        ("x 1 2 3\n", "line 1: expected a value"),
        ("x one\n", "line 1: 'one' is not a number"),
        ("x{a=1} 2\n", "line 1: malformed labels"),
        ('x{a="1",b} 2\n', "line 1: malformed labels"),
        ('x{a="1"x} 2\n', "line 1: malformed labels"),
        ('x{9a="1"} 2\n', "line 1: malformed labels"),
    ],
)
def test_a_malformed_page_names_its_line(text: str, message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        list(parse(text))


def test_counters_select_the_side_the_route_and_the_caller() -> None:
    server = slo(service="orders", availability="99%")
    callers = slo(service="orders", measured_at="callers", caller="gateway", availability="99%")
    routed = slo(service="orders", route="checkout", latency={"threshold": "300ms",
                                                              "percent": "95%"})  # fmt: skip
    (o_server,) = objectives({"s": server})
    (o_callers,) = objectives({"c": callers})
    (o_routed,) = objectives({"r": routed})
    inbound = PageIndex(parse(page("inbound", "orders", 90, 10)))
    outbound = PageIndex(parse(page("outbound", "orders", 45, 5)))
    assert counters(o_server, server, "orders", inbound) == (100, 10)
    assert counters(o_server, server, "gateway", inbound) is None  # not orders' sidecar
    assert counters(o_callers, callers, "gateway", outbound) == (50, 5)
    assert counters(o_callers, callers, "login", outbound) is None  # not the caller
    assert counters(o_callers, callers, "orders", outbound) is None  # its own, not a caller
    at_route = PageIndex(parse(page("inbound", "orders", 80, 0, route="checkout", fast=60)))
    assert counters(o_routed, routed, "orders", at_route) == (80, 20)  # 20 over 300ms
    assert counters(o_routed, routed, "orders", inbound) is None  # not that route
    no_bound = PageIndex(parse(page("inbound", "orders", 80, 0, route="checkout", le="0.5")))
    assert counters(o_routed, routed, "orders", no_bound) is None  # no exact bucket


def test_a_caller_measured_at_the_server_reads_its_counts_by_caller() -> None:
    """The server's sidecar counts each mTLS caller's requests apart
    (``seawall_caller_*``): an SLO of one caller measured there reads those only."""
    by_gateway = slo(service="orders", caller="gateway", availability="99%",
                     latency={"threshold": "300ms", "percent": "95%"})  # fmt: skip
    availability, latency = objectives({"g": by_gateway})
    text = page("inbound", "orders", 90, 10) + page("inbound", "orders", 30, 6, fast=20).replace(
        "seawall_request", "seawall_caller_request"
    ).replace('direction="inbound"', 'caller="gateway"')
    index = PageIndex(parse(text))
    assert counters(availability, by_gateway, "orders", index) == (36, 6)
    assert counters(latency, by_gateway, "orders", index) == (36, 16)
    # another caller, or no count by caller at all: nothing measured
    other = slo(service="orders", caller="login", availability="99%")
    (o_other,) = objectives({"o": other})
    assert counters(o_other, other, "orders", index) is None
    plain = PageIndex(parse(page("inbound", "orders", 90, 10)))
    assert counters(availability, by_gateway, "orders", plain) is None


def engine() -> SloEngine:
    return SloEngine(
        {
            "orders": slo(availability="99%"),
            "gateway": slo(availability="99%"),
            "trip": slo(journey={"of": ["orders", "gateway"]}),
        }
    )


def clean_minutes(e: SloEngine, n: int) -> list[str]:
    """Two orders sidecars and a gateway sidecar, 100 requests a minute each, all fine;
    the problems the engine reported."""
    problems = []
    for minute in range(n + 1):
        t = T0 + 60 * minute
        for source in ("orders-1", "orders-2"):
            problems.append(e.scrape(source, "orders", page("inbound", "orders", 100 * minute,
                                                               0), t))  # fmt: skip
        problems.append(e.scrape("gateway-1", "gateway", page("inbound", "gateway",
                                                                100 * minute, 0), t))  # fmt: skip
    return [p for p in problems if p]


def test_pages_in_statuses_and_a_page_out() -> None:
    e = engine()
    assert clean_minutes(e, 120) == []
    ev = e.evaluate(T0 + 120 * 60)
    by_name = {s.name: s for s in ev.statuses}
    assert set(by_name) == {"orders:availability", "gateway:availability", "trip"}
    assert by_name["orders:availability"].total == pytest.approx(2 * 100 * 120)
    assert by_name["trip"].budget_remaining == 1.0
    assert ev.notices == []
    # orders starts failing everything: the 1h page fires for orders and for the journey
    fired = []
    for minute in range(121, 135):
        t = T0 + 60 * minute
        for source in ("orders-1", "orders-2"):
            bad = 100 * (minute - 120)
            e.scrape(source, "orders", page("inbound", "orders", 12000, bad), t)
        e.scrape("gateway-1", "gateway", page("inbound", "gateway", 100 * minute, 0), t)
        fired += e.evaluate(t).notices
    pages = {(n.labels["slo"], n.labels["long"]) for n in fired if n.status == "firing"}
    assert ("orders", "1h") in pages
    assert ("trip", "1h") in pages  # worst of its parts
    assert ("gateway", "1h") not in pages


def test_a_malformed_page_changes_nothing_and_is_counted() -> None:
    e = engine()
    assert e.scrape("orders-1", "orders", page("inbound", "orders", 100, 0), T0) is None
    before = e.series("orders:availability").events(T0 - 60, T0 + 120)
    why = e.scrape("orders-1", "orders", page("inbound", "orders", 200, 0) + "bad line\n",
                   T0 + 60)  # fmt: skip
    assert why is not None
    assert why.startswith("orders-1: line 12:")
    assert e.malformed == 1
    assert e.pages == 2
    assert e.series("orders:availability").events(T0 - 60, T0 + 120) == before
    # a counter gone backwards by itself is a reset, not an error
    assert e.scrape("orders-1", "orders", page("inbound", "orders", 5, 0), T0 + 120) is None


def test_a_new_config_keeps_the_history_of_unchanged_objectives() -> None:
    e = engine()
    e.scrape("orders-1", "orders", page("inbound", "orders", 0, 0), T0)
    e.scrape("orders-1", "orders", page("inbound", "orders", 100, 0), T0 + 60)
    kept = e.series("orders:availability")
    e.apply({"orders": slo(availability="99%"), "login": slo(availability="99.9%")})
    assert e.series("orders:availability") is kept
    assert [o.name for o in e.objectives] == ["orders:availability", "login:availability"]
    with pytest.raises(KeyError):
        e.series("gateway:availability")
    e.apply({"orders": slo(availability="99%", route="checkout")})  # other requests: anew
    assert e.series("orders:availability") is not kept
    e.forget("orders-1")
    assert e.series("orders:availability").sources == []


def three_hours() -> tuple[EventSeries, float]:
    """One source from T0: three hours at 100 requests a minute, the second hour 2% bad;
    the series and the time of its last sample."""
    s = EventSeries(resolution=60)
    t, total, bad = T0, 0.0, 0.0
    s.observe("a", t, total, bad)
    for minute in range(180):
        t += 60
        total += 100
        bad += 2 if 60 <= minute < 120 else 0
        s.observe("a", t, total, bad)
    return s, t


def test_history_tells_how_the_budget_was_spent() -> None:
    (o,) = objectives({"orders": slo(availability="99%", window="2d")})
    s, t = three_hours()
    rows = history(o, s, t)  # a 2-day period: one row an hour
    assert len(rows) == 48
    first = next(i for i, r in enumerate(rows) if r["total"])
    hours = rows[first : first + 3]
    assert [r["total"] for r in hours] == [6000, 6000, 6000]
    assert [r["bad"] for r in hours] == [0, 120, 0]
    assert [r["burn"] for r in hours] == [0, pytest.approx(2.0), 0]
    assert [r["budget_remaining"] for r in hours] == [
        1.0,
        pytest.approx(1 - (120 / 12000) / 0.01),
        pytest.approx(1 - (120 / 18000) / 0.01),
    ]
    assert rows[0]["burn"] is None  # no requests before the first hour: no burn
    with pytest.raises(ValueError, match="step"):
        history(o, s, t, step=0)
