"""Tests for seawall.proxy.upstream.outlier: Envoy's consecutive-error ejection, on a fake clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.policy.clock import FakeClock
from seawall.policy.outlier import OutlierConfig, OutlierDetector


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint key, as the sidecar's were (any hashable key works)."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def eps(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}", 8080) for i in range(n)]


def fail(
    od: OutlierDetector,
    ep: Endpoint,
    now: float,
    times: int,
    status: int | None = 500,
    gateway_error: bool = False,
) -> list[bool]:
    return [od.on_result(ep, now, status, gateway_error) for _ in range(times)]


# --------------------------------------------------------------------------- config


def test_defaults_are_envoys() -> None:
    c = OutlierDetector().config
    assert c == OutlierConfig(
        consecutive_5xx=5,
        consecutive_gateway_errors=5,
        base_ejection=30.0,
        max_ejection=300.0,
        max_ejected_percent=10.0,
        always_eject_one=True,
        interval=10.0,
    )


def test_max_ejection_defaults_to_at_least_base() -> None:
    assert OutlierDetector(base_ejection=600).config.max_ejection == 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consecutive_5xx": -1}, "OutlierDetector: consecutive_5xx must be an int >= 0, got -1"),
        ({"consecutive_gateway_errors": 2.0}, "consecutive_gateway_errors must be an int >= 0"),
        ({"base_ejection": 0}, "base_ejection must be a finite number > 0, got 0"),
        ({"base_ejection": math.inf}, "base_ejection must be a finite number > 0"),
        ({"max_ejection": 10.0}, "max_ejection must be >= base_ejection \\(30.0\\), got 10.0"),
        ({"max_ejected_percent": 101}, "max_ejected_percent must be in 0..100, got 101"),
        ({"max_ejected_percent": math.nan}, "max_ejected_percent must be in 0..100, got nan"),
        ({"interval": -1}, "interval must be a finite number > 0, got -1"),
        ({"always_eject_one": 1}, "always_eject_one must be a bool, got 1"),
    ],
)
def test_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OutlierDetector(**kwargs)


# --------------------------------------------------------------------------- counting and tripping


def test_consecutive_5xx_trip_at_threshold() -> None:
    clock = FakeClock(0.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    assert fail(od, a, clock(), 4) == [False] * 4
    assert not od.is_ejected(a, clock())
    assert od.on_result(a, clock(), 500) is True
    assert od.is_ejected(a, clock())
    assert od.eligible([a, b], clock()) == [b]
    snap = od.snapshot(clock())
    assert snap.ejections == od.ejections == 1
    assert snap.ejections_by_reason == {"consecutive_5xx": 1, "consecutive_gateway_error": 0}


def test_success_resets_the_counters() -> None:
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, 0.0, 4)
    od.on_result(a, 0.0, 200)
    assert fail(od, a, 0.0, 4) == [False] * 4
    od.on_result(a, 0.0, 404)  # a 4xx is the caller's fault: the endpoint is fine
    assert fail(od, a, 0.0, 4) == [False] * 4
    assert not od.is_ejected(a, 0.0)
    assert od.snapshot(0.0).endpoints[0].consecutive_5xx == 4


@pytest.mark.parametrize(
    ("status", "gateway_error"),
    [(502, False), (503, False), (504, False), (None, True)],
    ids=["502", "503", "504", "connect-failure"],
)
def test_gateway_errors_trip_the_gateway_rule(status: int | None, gateway_error: bool) -> None:
    a, b = eps(2)
    od = OutlierDetector([a, b], consecutive_5xx=0, max_ejected_percent=50)
    assert fail(od, a, 0.0, 5, status, gateway_error) == [False] * 4 + [True]
    assert od.snapshot(0.0).ejections_by_reason["consecutive_gateway_error"] == 1


def test_plain_5xx_resets_gateway_counter_but_counts_as_5xx() -> None:
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, 0.0, 4, 503)
    state = od.snapshot(0.0).endpoints[0]
    assert (state.consecutive_5xx, state.consecutive_gateway_errors) == (4, 4)
    # A 500 is not a gateway error: it resets that counter, and is the 5th 5xx.
    assert od.on_result(a, 0.0, 500) is True
    assert od.snapshot(0.0).ejections_by_reason == {
        "consecutive_5xx": 1,
        "consecutive_gateway_error": 0,
    }


def test_gateway_rule_alone_when_5xx_rule_is_higher() -> None:
    a, b = eps(2)
    od = OutlierDetector(
        [a, b], consecutive_5xx=100, consecutive_gateway_errors=3, max_ejected_percent=50
    )
    fail(od, a, 0.0, 10, 500)  # plain 5xx: gateway rule untouched
    assert not od.is_ejected(a, 0.0)
    assert fail(od, a, 0.0, 3, None, True) == [False, False, True]


def test_no_status_and_no_gateway_error_is_ignored() -> None:
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, 0.0, 4)
    od.on_result(a, 0.0, None)  # cancelled by the caller: says nothing
    assert od.on_result(a, 0.0, 500) is True


def test_zero_threshold_disables_a_rule() -> None:
    a, b = eps(2)
    od = OutlierDetector(
        [a, b], consecutive_5xx=0, consecutive_gateway_errors=0, max_ejected_percent=50
    )
    assert not any(fail(od, a, 0.0, 50, 503))


def test_counters_restart_after_a_detection_that_overflows() -> None:
    endpoints = eps(3)
    a, b, _ = endpoints
    od = OutlierDetector(endpoints, max_ejected_percent=10)  # one ejection at most
    fail(od, a, 0.0, 5)
    assert od.is_ejected(a, 0.0)
    assert fail(od, b, 0.0, 5) == [False] * 5  # detected, but may not eject
    snap = od.snapshot(0.0)
    assert snap.overflows == 1
    assert snap.detections["consecutive_5xx"] == 2
    assert snap.endpoints[1].consecutive_5xx == 0
    assert fail(od, b, 0.0, 5) == [False] * 5
    assert od.snapshot(0.0).overflows == 2


# --------------------------------------------------------------------------- ejection time


def test_ejection_time_grows_and_is_capped() -> None:
    clock = FakeClock(1000.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], base_ejection=30, max_ejection=100, max_ejected_percent=50)
    durations = []
    for _ in range(5):
        start = clock()
        fail(od, a, start, 5)
        until = od.snapshot(start).endpoints[0].ejected_until
        assert until is not None
        durations.append(until - start)
        clock.advance(until - start)
        assert not od.is_ejected(a, clock())
    assert durations == [30, 60, 90, 100, 100]
    assert od.snapshot(clock()).endpoints[0].times_ejected == 5


def test_endpoint_returns_exactly_after_its_ejection_time() -> None:
    clock = FakeClock(4.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, clock(), 5)
    clock.advance(29.75)
    assert od.is_ejected(a, clock())
    assert od.eligible([a, b], clock()) == [b]
    clock.advance(0.25)
    assert not od.is_ejected(a, clock())
    assert od.eligible([a, b], clock()) == [a, b]
    assert od.ejected_count(clock()) == 0


def test_results_while_ejected_are_ignored_and_counters_restart() -> None:
    clock = FakeClock(0.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, clock(), 5)
    # Late answers of requests sent before the ejection
    assert fail(od, a, clock(), 20) == [False] * 20
    clock.advance(30)
    state = od.snapshot(clock()).endpoints[0]
    assert (state.ejected, state.consecutive_5xx, state.consecutive_gateway_errors) == (
        False,
        0,
        0,
    )
    assert fail(od, a, clock(), 5) == [False] * 4 + [True]


def test_multiplier_shrinks_by_one_per_interval_in_service() -> None:
    clock = FakeClock(0.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], base_ejection=30, max_ejected_percent=50, interval=10)
    fail(od, a, clock(), 5)  # k=1: 30 s
    clock.advance(30)
    fail(od, a, clock(), 5)  # back for 0 s: k=2: 60 s
    clock.advance(60)
    fail(od, a, clock(), 5)  # k=3: 90 s
    assert od.snapshot(clock()).endpoints[0].multiplier == 3
    clock.advance(90)
    clock.advance(25)  # 25 s in service: two intervals, k 3 -> 1
    fail(od, a, clock(), 5)  # k=2: 60 s
    state = od.snapshot(clock()).endpoints[0]
    assert state.multiplier == 2
    assert state.ejection_remaining == 60
    clock.advance(60)
    clock.advance(1000)  # long healthy: back to the base time
    fail(od, a, clock(), 5)
    assert od.snapshot(clock()).endpoints[0].ejection_remaining == 30


# --------------------------------------------------------------------------- max ejected percent


def _eject_all(od: OutlierDetector, endpoints: list[Endpoint], now: float = 0.0) -> int:
    for ep in endpoints:
        fail(od, ep, now, 5)
    return od.ejected_count(now)


@pytest.mark.parametrize(
    ("n", "percent", "always_one", "expected"),
    [
        (10, 10, True, 1),  # 10% of 10
        (20, 10, True, 2),  # 10% of 20
        (19, 10, True, 1),  # 2/19 = 10.5% > 10%
        (3, 10, True, 1),  # small set: at least one (Envoy's documented rule)
        (3, 10, False, 0),  # strict: 1/3 > 10%
        (3, 50, True, 1),  # 2/3 > 50%
        (4, 50, True, 2),
        (2, 100, True, 2),
        (5, 0, True, 0),  # 0 disables ejection
    ],
)
def test_max_ejected_percent(n: int, percent: float, always_one: bool, expected: int) -> None:
    endpoints = eps(n)
    od = OutlierDetector(endpoints, max_ejected_percent=percent, always_eject_one=always_one)
    assert _eject_all(od, endpoints) == expected


def test_room_frees_when_an_endpoint_returns() -> None:
    clock = FakeClock(0.0)
    a, b, c = eps(3)
    od = OutlierDetector([a, b, c], max_ejected_percent=10)
    fail(od, a, clock(), 5)
    fail(od, b, clock(), 5)
    assert od.eligible([a, b, c], clock()) == [b, c]
    clock.advance(30)
    fail(od, b, clock(), 5)
    assert od.eligible([a, b, c], clock()) == [a, c]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    percent=st.sampled_from([0, 10, 33, 50, 100]),
    always_one=st.booleans(),
    events=st.lists(
        st.tuples(
            st.integers(0, 11),
            st.sampled_from([200, 404, 500, 502, 503, 504, None]),
            st.booleans(),
            st.floats(0, 20),
        ),
        max_size=200,
    ),
)
def test_never_more_ejected_than_allowed(
    n: int,
    percent: int,
    always_one: bool,
    events: list[tuple[int, int | None, bool, float]],
) -> None:
    endpoints = eps(n)
    od = OutlierDetector(
        endpoints,
        consecutive_5xx=2,
        consecutive_gateway_errors=2,
        max_ejected_percent=percent,
        always_eject_one=always_one,
    )
    allowed = math.floor(percent * n / 100 + 1e-9)
    if always_one and percent > 0:
        allowed = max(allowed, 1)
    clock = FakeClock(0.0)
    versions = {od.version(clock())}
    for index, status, gateway_error, dt in events:
        clock.advance(dt)
        ejected_before = od.ejected_count(clock())
        did = od.on_result(endpoints[index % n], clock(), status, gateway_error)
        count = od.ejected_count(clock())
        assert count <= allowed
        assert count == ejected_before + did
        if did:
            assert od.version(clock()) not in versions
        versions.add(od.version(clock()))
        snap = od.snapshot(clock())
        assert snap.ejected == sum(s.ejected for s in snap.endpoints) == count
        for s in snap.endpoints:
            assert (s.ejected_until is None) is (not s.ejected)
            if s.ejected_until is not None:
                assert 0 < s.ejection_remaining <= od.config.max_ejection


# --------------------------------------------------------------------------- membership, snapshot


def test_update_keeps_state_of_remaining_and_forgets_removed() -> None:
    a, b, c = eps(3)
    od = OutlierDetector([a, b, c], max_ejected_percent=100)
    fail(od, a, 0.0, 5)
    fail(od, b, 0.0, 3)
    v = od.version(0.0)
    od.update([b, c])
    assert od.version(0.0) != v
    assert od.ejected_count(0.0) == 0  # a left the set: no longer counted
    assert od.snapshot(0.0).endpoints[0].consecutive_5xx == 3  # b kept its counter
    assert od.on_result(a, 0.0, 500) is False  # unknown endpoint: ignored
    od.update([a, b, c])  # a comes back: afresh
    state = od.snapshot(0.0).endpoints[0]
    assert (state.endpoint, state.ejected, state.times_ejected) == (a, False, 0)


def test_update_drops_ejection_of_removed_endpoint_and_keeps_others() -> None:
    clock = FakeClock(0.0)
    a, b, c = eps(3)
    od = OutlierDetector([a, b, c], max_ejected_percent=100)
    fail(od, a, clock(), 5)
    clock.advance(10)
    fail(od, b, clock(), 5)
    od.update([b, c])
    clock.advance(29)
    assert od.is_ejected(b, clock())
    clock.advance(1)
    assert not od.is_ejected(b, clock())


def test_version_changes_on_ejection_and_return_only() -> None:
    clock = FakeClock(0.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    v0 = od.version(clock())
    fail(od, a, clock(), 4)
    assert od.version(clock()) == v0
    fail(od, a, clock(), 1)
    v1 = od.version(clock())
    assert v1 != v0
    clock.advance(29)
    assert od.version(clock()) == v1
    clock.advance(1)
    assert od.version(clock()) != v1


def test_snapshot() -> None:
    clock = FakeClock(100.0)
    a, b = eps(2)
    od = OutlierDetector([a, b], max_ejected_percent=50)
    fail(od, a, clock(), 5, 503)
    fail(od, b, clock(), 2, 500)
    clock.advance(10)
    snap = od.snapshot(clock())
    assert snap.ejected == 1
    assert snap.ejections == 1
    assert snap.overflows == 0
    sa, sb = snap.endpoints
    assert (sa.endpoint, sa.ejected, sa.ejected_until, sa.ejection_remaining) == (
        a,
        True,
        130.0,
        20.0,
    )
    assert (sa.times_ejected, sa.multiplier) == (1, 1)
    assert (sb.ejected, sb.ejected_until, sb.ejection_remaining) == (False, None, 0.0)
    assert (sb.consecutive_5xx, sb.consecutive_gateway_errors) == (2, 0)
